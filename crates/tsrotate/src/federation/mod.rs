//! Moving a credential's consumers to workload identity federation.
//!
//! A federated identity holds no secret: a workload presents an OIDC token from its own
//! identity provider and Tailscale exchanges it for a short-lived API token. Moving a
//! consumer there removes a stored secret instead of replacing it. This module holds the
//! pure parts of `tsrotate migrate-to-federated`:
//!
//! - [`workflow`]: find the GitHub Actions workflows that pass a Tailscale credential, work
//!   out the narrowest subject pattern they allow, and rewrite them in place (a minimal text
//!   edit, checked against a YAML parse of the result);
//! - [`subject`]: Tailscale's subject and claim patterns (`*` wildcards) and how several
//!   subjects fold into one pattern;
//! - [`token`]: whether a sample identity token would be accepted by an identity, naming the
//!   claim that differs when not;
//! - [`consumer`]: consumers tsrotate cannot rewrite (containerboot, the Kubernetes operator's
//!   Helm values, anything else): the exact change to make by hand.
//!
//! It reads workflow files it is pointed at and, in [`token::check_issuer`], the issuer's
//! public discovery document; it never prints and never writes (the CLI writes the rewritten
//! text with [`crate::fs::atomic_write`]).

pub mod consumer;
pub mod subject;
pub mod token;
pub mod workflow;

/// The issuer of GitHub Actions' OIDC tokens.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// What a migrated consumer presents instead of a secret: the federated identity's ID (its
/// OAuth client ID) and the audience its tokens must carry. Neither is a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The federated identity's key ID (`k…CNTRL`), sent as `client_id`.
    pub client_id: String,
    /// The `aud` the identity accepts.
    pub audience: String,
}
