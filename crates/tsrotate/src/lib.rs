//! tsrotate: rotate Tailscale credentials without breaking what uses them.
//!
//! This crate is the engine behind the `tsrotate` command: the credential model ([`key`]),
//! the Tailscale API client ([`api`]), safe file writes ([`fs`]) and the rotation protocol.
//! It never prints, never reads the environment and never exits the process: the CLI resolves
//! settings and renders what this crate returns.

pub mod api;
pub mod key;
