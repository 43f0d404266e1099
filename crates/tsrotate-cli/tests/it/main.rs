//! CLI integration tests: one binary, one module per command family.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc, unreachable_pub)]

mod crash;
mod rotate;
mod scan;
mod support;
