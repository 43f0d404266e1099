//! Managed credentials: which key a configured credential holds now.

use time::OffsetDateTime;
use tsrotate::api;
use tsrotate::key::{KeyId, KeyRef};
use tsrotate::rotate::places::{self, Reading};
use tsrotate::rotate::plan::{self, KeyStatus};

use crate::args::GlobalArgs;
use crate::context;
use crate::exit::UserError;

/// The key credential `name` holds now: what its readable places hold (the live, newest one
/// when they disagree), else what its last rotation left in its write-only places.
pub(crate) async fn current_key(
    global: &GlobalArgs,
    client: &api::Client,
    name: &str,
    readings: &[Reading],
) -> anyhow::Result<KeyRef> {
    let held = places::held_ids(readings);
    if held.is_empty() {
        let state_dir = context::state_dir(global)?;
        return match tsrotate::journal::Index::new(&state_dir).last_done_for(name)? {
            Some(id) => Ok(KeyRef::Id(id)),
            None => Err(UserError::new(format!(
                "cannot tell which key credential `{name}` holds: none of its places can be read, and tsrotate has not rotated it before"
            ))
            .hint("give the current key or its ID: `tsrotate rotate KEY_ID --credential NAME`")
            .into()),
        };
    }
    if held.len() == 1 {
        return Ok(KeyRef::Id(held[0].0.clone()));
    }
    // None live: the most common (`held` is ordered by how many places hold each).
    let chosen = newest_live(client, &held).await?;
    Ok(KeyRef::Id(chosen.unwrap_or_else(|| held[0].0.clone())))
}

/// Among keys held by places that disagree, the live one created last (`None` when none is
/// live). Liveness is judged by the control plane's clock. A key whose lookup fails is left
/// out when another is live (a stale copy must not stop the choice); when none is, the
/// failure is the answer, since the one that failed may be the current key.
pub(crate) async fn newest_live(
    client: &api::Client,
    held: &[(KeyId, usize)],
) -> Result<Option<KeyId>, api::Error> {
    let mut best: Option<(OffsetDateTime, KeyId)> = None;
    let mut first_error = None;
    for (id, _) in held {
        let (status, meta) = match plan::lookup(client, id).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!("looking up key {id}: {e}");
                first_error.get_or_insert(e);
                continue;
            }
        };
        if status == KeyStatus::Live {
            let created = meta
                .and_then(|k| k.created)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(c, _)| created > *c) {
                best = Some((created, id.clone()));
            }
        }
    }
    match (best, first_error) {
        (Some((_, id)), _) => Ok(Some(id)),
        // None live among those that answered: one that did not may be the current key.
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}
