//! `scan --verify`: ask the API about each distinct key ID found.
//!
//! Only `GET /tailnet/{tailnet}/keys/{key ID}` is sent, with the operator's own credentials.
//! The found secret never leaves the process: Tailscale's unauthenticated
//! `/secret-scanning/verify` would tell liveness from the secret alone, but sending a leaked
//! secret to any endpoint is one more copy of it in flight, and the key ID is enough for keys
//! of our own tailnet. A key of another tailnet shows as `not-found`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tsrotate::api;
use tsrotate::key::KeyId;
use tsrotate_scan::{Finding, Status};

use crate::args::GlobalArgs;
use crate::settings::ApiSettings;

/// Read-only scopes, enough to GET every kind of key. An OAuth client lacking one of them
/// gets `unknown` for that kind, never more power than reading.
const SCOPES: [&str; 3] = [
    "auth_keys:read",
    "oauth_keys:read",
    "api_access_tokens:read",
];

/// Requests in flight at once: quick for dozens of keys, gentle on the rate limit.
const CONCURRENCY: usize = 4;

/// What verification did, for the summary.
pub(super) enum Verification {
    /// `--verify` was not given.
    NotAsked,
    /// It was given, but could not run (why).
    Skipped(String),
    /// It ran.
    Done { asked: usize, live: usize },
}

/// Set `status` on every finding, asking once per key ID.
pub(super) fn verify(
    global: &GlobalArgs,
    findings: &mut [Finding],
) -> anyhow::Result<Verification> {
    let settings = ApiSettings::configured(global, &SCOPES)?;
    let Some(client) = settings.client()? else {
        return Ok(Verification::Skipped(
            "no API credentials (set TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET, or TAILSCALE_API_KEY, or [tailscale] in the configuration)".to_owned(),
        ));
    };
    let ids: BTreeSet<KeyId> = findings.iter().map(|f| f.key_id.clone()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let statuses = runtime.block_on(ask_all(&client, ids));
    for f in findings.iter_mut() {
        f.status = statuses.get(&f.key_id).copied();
    }
    let live = statuses.values().filter(|s| **s == Status::Live).count();
    Ok(Verification::Done {
        asked: statuses.len(),
        live,
    })
}

async fn ask_all(client: &api::Client, ids: BTreeSet<KeyId>) -> BTreeMap<KeyId, Status> {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let client = client.clone();
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let status = status_of(&id, client.get_key(&id).await);
            (id, status)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((id, status)) = joined {
            out.insert(id, status);
        }
    }
    out
}

fn status_of(id: &KeyId, answer: Result<api::Key, api::Error>) -> Status {
    match answer {
        Ok(key) => {
            let now = OffsetDateTime::now_utc();
            let past_expiry = key.expires.is_some_and(|e| e <= now);
            if key.revoked.is_some() {
                Status::Revoked
            } else if past_expiry || (key.invalid && key.expires.is_some()) {
                // Invalid, not revoked, with an expiry: expired by the API's clock, which is
                // the one that counts (ours may be off).
                Status::Expired
            } else if key.invalid {
                // Invalid without a revocation or expiry date: deleted.
                Status::Revoked
            } else {
                Status::Live
            }
        }
        Err(e) if e.is_not_found() => Status::NotFound,
        Err(e) => {
            tracing::warn!("could not verify key {id}: {e}");
            Status::Unknown
        }
    }
}
