//! Find Tailscale credentials in files and git history, fast, without ever holding on to a
//! secret longer than it takes to fingerprint it.
//!
//! This crate is the engine of `tsrotate scan`: rules as data ([`rule`]), a literal prefilter
//! plus structural validation ([`matcher`]), bounded-memory chunked reading ([`stream`]), a
//! parallel ripgrep-style walk ([`walk`]), git history blob by blob ([`git`]), and the shapes
//! that leave the process ([`Finding`], [`sarif`]). It never prints and never reads the
//! environment: the CLI renders what it returns. It does not talk to the Tailscale API either;
//! `--verify` lives in the CLI, which owns the client settings.
//!
//! # Security
//!
//! The secret of a match exists only inside [`Match`] (as a [`tsrotate::key::Secret`], which
//! cannot be printed or serialized) until [`Finding::new`] turns it into a key ID, a
//! fingerprint and positions. Nothing this crate returns can carry the secret.

mod base64;
pub mod finding;
pub mod git;
pub mod matcher;
pub mod placeholder;
pub mod progress;
pub mod report;
pub mod rule;
pub mod sarif;
pub mod stream;
pub mod walk;

pub use finding::{Encoding, Finding, Origin, PathName, Position, Status};
pub use matcher::{Match, Matcher, Verdict};
pub use progress::{Progress, Snapshot};
pub use report::{Problem, Report, Stats};
pub use rule::{Rule, RuleSet};
pub use walk::{Ignores, Symlinks, WalkOptions, scan_paths, scan_reader};
