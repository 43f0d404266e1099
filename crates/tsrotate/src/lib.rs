//! tsrotate: rotate Tailscale credentials without breaking what uses them.
//!
//! This crate is the engine behind the `tsrotate` command: the credential model ([`key`]),
//! the Tailscale API client ([`api`]), safe file writes ([`fs`]), the places credentials live
//! ([`sink`]), the rotation protocol ([`rotate`]) with its [`journal`], and the [`audit`] log.
//! It never prints, never reads the environment and never exits the process: the CLI resolves
//! settings and renders what this crate returns.
//!
//! # Vocabulary
//!
//! The same words mean the same things in every module, in the CLI's output and in the
//! documentation:
//!
//! - A **key** is an object in the Tailscale API with a key ID (`k…CNTRL`): an auth key, an
//!   OAuth client, an API access token, a federated identity. [`api::Key`] is what the API
//!   says about one; [`hygiene::Kind`] names its kind as output shows it, from the API's
//!   [`api::KeyType`] and its owner.
//! - A **credential** is the secret string of a key, `tskey-<type>-<key ID>-<secret>`:
//!   [`key::Credential`] is one parsed, [`key::Secret`] holds its value so it cannot print,
//!   and [`key::KeyKind`] is its kind, read from its prefix. In the configuration a
//!   `[[credential]]` ([`config::Credential`]) is one credential that tsrotate manages: which
//!   key it is now, where it lives, how to replace it; its `kind` is a [`key::KeyKind`] too,
//!   named by [`key::KeyKind::slug`] (one of [`config::MANAGED_KINDS`]).
//! - A **place** is where a credential is kept for whoever uses it: a file, a field of a
//!   dotenv/JSON/YAML/TOML file, a Vault secret, an AWS secret or parameter, a Kubernetes
//!   Secret, a GitHub Actions secret, a command. [`sink`] is the code that reads and writes
//!   places (a [`sink::Sink`] is one place); the word "sink" stays inside the code, people
//!   read "place". [`sink::Logins`] are tsrotate's own logins to the services that hold
//!   places (Vault token, AWS keys, GitHub token): never called credentials.
//! - **Rotation** replaces the credential every place holds with a new one and revokes the
//!   old key ([`rotate`]); each step is recorded first in the rotation's [`journal`].
//! - The **audit log** ([`audit`]) is tsrotate's own record of what it did, one line per
//!   step of every rotation and revocation. **Hygiene** ([`hygiene`]) is the review of the
//!   tailnet's keys that the `audit` command runs: the command is named for what people ask
//!   ("audit my keys"), the modules for what they hold.
//! - **Containment** ([`contain`]) finds and acts on what a leaked credential was used for.

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
