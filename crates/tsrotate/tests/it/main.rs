//! Integration tests for the tsrotate library, one binary for link time (STYLE.md §9).

#![allow(
    clippy::unwrap_used,
    clippy::unreadable_literal,
    clippy::doc_markdown,
    clippy::disallowed_methods
)]

mod api;
mod contain;
mod federated;
mod files;
mod rotation;
mod sink_aws;
mod sink_command;
mod sink_github;
mod sink_kubernetes;
mod sink_vault;
