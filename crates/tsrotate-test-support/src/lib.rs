//! Shared test helpers for the tsrotate workspace. Not published; only ever a
//! `[dev-dependencies]` entry.
//!
//! - [`openapi`]: validate request and response bodies against Tailscale's `OpenAPI` description
//!   (the copy in `testdata/openapi/`), with the spec's known looseness and strictness handled
//!   explicitly.
//! - [`emulator`]: start a `tsrotate-emulator` on its own thread and drive its `/_emulator/`
//!   admin routes from synchronous tests.
//! - [`http`]: the minimal blocking HTTP/1.1 client behind [`emulator`], for loopback only.
//! - [`oidc_issuer`]: a test OIDC issuer (discovery, JWKS, ES256 tokens) and a fake of GitHub
//!   Actions' ID-token endpoint, for workload identity federation.
//! - [`journal_seal`]: seal a journal that a test planted or edited with the test's journal
//!   key, so that it reaches the check the test is about.
//! - [`services`]: real `OpenBao` and moto servers from `PyPI`, on free loopback ports.

pub mod emulator;
pub mod github_fake;
pub mod http;
pub mod journal_seal;
pub mod kubernetes_fake;
pub mod oidc_issuer;
pub mod openapi;
pub mod services;
