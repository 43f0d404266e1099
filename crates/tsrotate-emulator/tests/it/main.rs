//! Integration tests for the emulator, driven over real HTTP (reqwest) and checked against
//! Tailscale's `OpenAPI` description. One binary, one module per concern.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::missing_panics_doc
)]
// Tests write fixture files directly; `tsrotate::fs::atomic_write` is for consumers' files, and
// the emulator must not depend on `tsrotate` anyway.
#![allow(clippy::disallowed_methods)]

mod admin;
mod auth;
mod common;
mod devices;
mod faults;
mod fidelity;
mod guard;
mod oauth;
mod persistence;
mod rules;
mod thread_server;
mod visibility;
mod webhooks;
