//! CLI integration tests: one binary, one module per command family.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::naive_bytecount,
    clippy::map_unwrap_or,
    clippy::disallowed_methods,
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    clippy::format_push_string,
    unreachable_pub
)]

mod admission;
mod audit;
mod children;
mod config;
mod contain;
mod contain_faults;
mod contain_red_team;
mod crash;
mod escaping;
mod fault_matrix;
mod federated;
mod fields;
mod human;
mod kinds;
mod migrate_federated;
mod pinned;
mod places;
mod redact;
mod replay;
mod rotate;
mod scan;
mod schedule;
mod seal;
mod sinks;
mod support;
mod trust;
mod user_errors;
