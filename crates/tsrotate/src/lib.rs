//! tsrotate: rotate Tailscale credentials without breaking what uses them.
//!
//! This crate is the engine behind the `tsrotate` command: the credential model ([`key`]),
//! the Tailscale API client ([`api`]), safe file writes ([`fs`]), the places credentials live
//! ([`sink`]), the rotation protocol ([`rotate`]) with its [`journal`], and the [`audit`] log.
//! It never prints, never reads the environment and never exits the process: the CLI resolves
//! settings and renders what this crate returns.

pub mod api;
pub mod audit;
pub mod child;
pub mod config;
pub mod contain;
pub mod federation;
pub mod fs;
mod http;
pub mod hygiene;
pub mod journal;
pub mod key;
pub mod notify;
pub mod rotate;
pub mod schedule;
pub mod sink;
pub mod text;
