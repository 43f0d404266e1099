//! Observing managed credentials: what each one's places hold, which key it holds now, what
//! the API says of that key, its rotations, and so whether it is due. `status` shows it;
//! `rotate --due` acts on it (observing each due credential again under its lock).

use futures_util::StreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Due, Observation};
use crate::api;
use crate::config::{Config, Credential};
use crate::journal;
use crate::key::{KeyId, KeyKind};
use crate::rotate::places::{self, Reading};
use crate::rotate::plan::{self, KeyStatus};
use crate::rotate::{End, State};

#[derive(Debug, Clone, Serialize)]
pub struct LastRotation {
    pub rotation_id: String,
    /// `done`, `rolled-back`, `abandoned` or `unfinished`.
    pub outcome: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
}

/// One credential as observed now.
#[derive(Debug, Serialize)]
pub struct Observed {
    pub name: String,
    pub kind: KeyKind,
    pub key_id: Option<KeyId>,
    pub key_status: Option<KeyStatus>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    pub days_left: Option<i64>,
    pub in_sync: bool,
    pub places: Vec<PlaceState>,
    pub last_rotation: Option<LastRotation>,
    pub due: Due,
    /// What the API said of the key, so that planning need not ask again.
    #[serde(skip)]
    pub looked_up: Option<(KeyStatus, Option<api::Key>)>,
    /// What the places and journals said, to tell later whether anything changed since.
    #[serde(skip)]
    pub evidence: Evidence,
}

/// Everything local an observation was based on: what each place holds and every rotation of
/// the credential with how it ended. If none of it changed, neither did the key the
/// credential holds, and the API's answer about that key still stands.
#[derive(Debug, PartialEq, Eq)]
pub struct Evidence {
    pub places: Vec<(String, Option<KeyId>, bool)>,
    pub rotations: Vec<(String, &'static str)>,
}

#[derive(Debug, Serialize)]
pub struct PlaceState {
    pub place: String,
    pub holds: Option<KeyId>,
    pub readable: bool,
}

/// The rotations of credential `name`, oldest first, with their states.
fn rotations_of(journals: &journal::Index, name: &str) -> Vec<(String, State, OffsetDateTime)> {
    let rotations = journals.of_credential(name).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        Vec::new()
    });
    rotations
        .into_iter()
        .filter_map(|(id, records)| {
            let started = records[0].at;
            State::replay(&records).map(|state| (id, state, started))
        })
        .collect()
}

/// Read a credential's places, find its key, ask the API, decide whether it is due.
///
/// With an `earlier` observation of the same credential whose places and journals say the
/// same as now, its API answer is reused instead of asking again: `rotate --due` observes
/// each due credential a second time under its lock, and only another runner's work (which
/// shows in the places or the journals) can have changed the answer in between.
pub async fn observe(
    client: &api::Client,
    credential: &Credential,
    credentials: &crate::sink::Logins,
    journals: &journal::Index,
    earlier: Option<&Observed>,
) -> (Observed, Vec<Reading>) {
    let readings = places::read(credential, credentials).await;
    let problem = readings
        .iter()
        .find_map(Reading::failed)
        .map(ToString::to_string);
    let held = places::held_ids(&readings);
    let rotations = rotations_of(journals, &credential.name);
    let unfinished = rotations
        .iter()
        .rev()
        .find(|(_, s, _)| !s.is_finished())
        .map(|(id, _, _)| id.clone());
    let last_rotation = rotations.last().map(|(id, s, at)| LastRotation {
        rotation_id: id.clone(),
        outcome: outcome_word(s),
        started: *at,
    });
    let evidence = Evidence {
        places: readings
            .iter()
            .map(|r| {
                (
                    crate::sink::describe(&r.sink.spec),
                    r.key_id(),
                    r.snapshot.is_ok(),
                )
            })
            .collect(),
        rotations: rotations
            .iter()
            .map(|(id, s, _)| (id.clone(), outcome_word(s)))
            .collect(),
    };
    let unchanged =
        earlier.filter(|e| e.evidence == evidence && (e.looked_up.is_some() || e.key_id.is_none()));
    let (key_id, looked_up, undecided) =
        match find_key(client, credential, &held, &rotations, unchanged).await {
            Ok((key_id, looked_up)) => (key_id, looked_up, None),
            Err(problem) => (None, None, Some(problem)),
        };
    let key_status = looked_up.as_ref().map(|(status, _)| *status);
    let expires = looked_up
        .as_ref()
        .and_then(|(_, meta)| meta.as_ref()?.expires);
    let now = client.server_now();
    let observation = Observation {
        status: key_status,
        expires,
        in_sync: held.len() <= 1,
        unfinished,
        problem: problem
            .or(undecided)
            .or_else(|| damaged_problem(journals, &credential.name, key_id.as_ref()))
            .or_else(|| {
                key_id.is_none().then(|| {
                    "no place can be read and tsrotate never rotated it: rotate it once by key ID"
                        .to_owned()
                })
            }),
    };
    let due = super::due(&observation, credential.rotate_before_seconds, now);
    let observed = Observed {
        name: credential.name.clone(),
        kind: credential.kind.clone(),
        days_left: expires.map(|e| (e - now).whole_days()),
        key_id,
        key_status,
        expires,
        in_sync: held.len() <= 1,
        places: evidence
            .places
            .iter()
            .map(|(place, holds, readable)| PlaceState {
                place: place.clone(),
                holds: holds.clone(),
                readable: *readable,
            })
            .collect(),
        last_rotation,
        due,
        looked_up,
        evidence,
    };
    (observed, readings)
}

/// The key a credential holds and what the API says of it: an unchanged `earlier`
/// observation's answer (re-judged by the clock), or found afresh.
async fn find_key(
    client: &api::Client,
    credential: &Credential,
    held: &[(KeyId, usize)],
    rotations: &[(String, State, OffsetDateTime)],
    unchanged: Option<&Observed>,
) -> Result<(Option<KeyId>, Option<(KeyStatus, Option<api::Key>)>), String> {
    if let Some(earlier) = unchanged {
        // The key is the same; whether it has expired meanwhile is the clock's to say.
        let looked_up = earlier.looked_up.clone().map(|(status, meta)| match &meta {
            Some(key) => (KeyStatus::of(key, client.server_now()), meta),
            None => (status, meta),
        });
        Ok((earlier.key_id.clone(), looked_up))
    } else if credential.kind == KeyKind::Webhook {
        // The keys API does not know webhook secrets, and they do not expire: such a
        // credential is due only when its places disagree or a rotation is unfinished.
        let key_id = held
            .first()
            .map(|(id, _)| id.clone())
            .or_else(|| last_done(rotations));
        let looked_up = key_id.as_ref().map(|_| (KeyStatus::Live, None));
        Ok((key_id, looked_up))
    } else {
        let key_id = current_key(client, held, last_done(rotations))
            .await
            .map_err(|e| {
                format!("its places disagree and the API could not say which key is live: {e}")
            })?;
        let looked_up = match &key_id {
            Some(id) => plan::lookup(client, id)
                .await
                .inspect_err(|e| tracing::warn!("looking up key {id}: {e}"))
                .ok(),
            None => None,
        };
        Ok((key_id, looked_up))
    }
}

/// The key a credential holds now: what its readable places hold (the live one created last
/// when they disagree; the most common when none is live), else `last_done`, what its last
/// finished rotation left in its write-only places. Used by `status`, `rotate --due` and
/// `rotate --credential` alike.
///
/// When places disagree and the API cannot say which of their keys is live, the answer is
/// the API's error: rotating a dead copy's key would leave the live one running unreferenced.
pub async fn current_key(
    client: &api::Client,
    held: &[(KeyId, usize)],
    last_done: Option<KeyId>,
) -> Result<Option<KeyId>, api::Error> {
    match held {
        [] => Ok(last_done),
        [(id, _)] => Ok(Some(id.clone())),
        many => Ok(newest_live(client, many)
            .await?
            .or_else(|| many.first().map(|(id, _)| id.clone()))),
    }
}

/// Among keys held by places that disagree, the live one created last (`None` when none is
/// live). Liveness is judged by the control plane's clock. A key whose lookup fails is left
/// out when another is live (a stale copy must not stop the choice); when none is, the
/// failure is the answer, since the one that failed may be the current key.
pub async fn newest_live(
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

/// A journal of a rotation of this credential or key that cannot be read: the rotation may be
/// unfinished, so nothing is rotated until a person looks.
fn damaged_problem(
    journals: &journal::Index,
    name: &str,
    key_id: Option<&KeyId>,
) -> Option<String> {
    journals.damaged_for(Some(name), key_id).first().map(|d| {
        format!(
            "the journal of its rotation {} cannot be read ({}): repair it, or move it out of the state directory once you know the rotation's keys are in order",
            d.rotation_id, d.error
        )
    })
}

/// The key the last finished rotation left in the places.
fn last_done(rotations: &[(String, State, OffsetDateTime)]) -> Option<KeyId> {
    rotations.iter().rev().find_map(|(_, s, _)| match &s.end {
        Some(End::Done(id)) => Some(id.clone()),
        _ => None,
    })
}

fn outcome_word(state: &State) -> &'static str {
    match state.end {
        Some(End::Done(_)) => "done",
        Some(End::RolledBack) => "rolled-back",
        Some(End::Abandoned) => "abandoned",
        None => "unfinished",
    }
}

/// Observe every configured credential, `concurrency` at a time, in configuration order.
/// Observing is an API lookup or two per credential plus reading its places; nothing is
/// locked or changed here (`rotate --due` observes each due credential again under its lock).
pub async fn observe_all(
    client: &api::Client,
    config: &Config,
    credentials: &crate::sink::Logins,
    journals: &journal::Index,
    concurrency: usize,
) -> Vec<Observed> {
    futures_util::stream::iter(&config.credentials)
        .map(|credential| async {
            observe(client, credential, credentials, journals, None)
                .await
                .0
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use serde_json::json;
    use tsrotate_test_support::{emulator, http};

    use super::*;
    use crate::api::{Auth, ClientBuilder};
    use crate::journal::Journal;
    use crate::key::Secret;

    fn mint(emu: &emulator::ThreadServer) -> String {
        let auth = format!("Bearer {}", emu.bootstrap().api_key);
        let body = json!({
            "capabilities": {"devices": {"create": {"reusable": true, "tags": ["tag:ci"]}}},
            "expirySeconds": 90 * 86400,
        });
        let response = http::send(
            emu.url(),
            "POST",
            "/api/v2/tailnet/-/keys",
            &[("Authorization", &auth)],
            Some(&body),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        response.json()["key"].as_str().unwrap().to_owned()
    }

    fn api_calls(emu: &emulator::ThreadServer) -> usize {
        emulator::requests(emu.url()).len()
    }

    fn put(path: &Path, value: &str) {
        #[allow(
            clippy::disallowed_methods,
            reason = "a test fixture: another runner's write"
        )]
        std::fs::write(path, value).unwrap();
    }

    /// Another runner's rotation of `name`, as its journal shows it.
    fn journal_of(state_dir: &Path, name: &str, old: &KeyId) {
        let started = journal::Started {
            rotation_id: "r20261128000000other0".into(),
            tailnet: "-".into(),
            user: "other".into(),
            credential: Some(name.into()),
            old: journal::OldKey {
                key_id: old.clone(),
                kind: "auth-key".into(),
                fingerprint: None,
                metadata: None,
            },
            template: journal::Template::AuthKey(journal::AuthKeyTemplate {
                reusable: true,
                ephemeral: false,
                preauthorized: false,
                tags: vec!["tag:ci".into()],
                expiry_seconds: None,
                description: None,
            }),
            roots: Vec::new(),
            resolved_roots: Vec::new(),
            sinks: Vec::new(),
            revoke_first: false,
            verify_cmd: None,
            credential_verify: Vec::new(),
            not_updated: Vec::new(),
        };
        Journal::create(
            state_dir,
            &journal::JournalKey::from_bytes([7; 32]),
            started,
        )
        .unwrap();
    }

    /// The second observation under the lock asks the API again exactly when the places or
    /// the journals changed since the first: that is how a runner sees another's work.
    #[tokio::test]
    async fn an_observation_is_reused_only_while_places_and_journals_say_the_same() {
        let emu = emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let place = dir.path().join("authkey");
        let first = mint(&emu);
        put(&place, &first);
        let config = Config::parse(
            &format!(
                "[[credential]]\nname = \"ci\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"file\"\npath = \"{}\"\n",
                place.display()
            ),
            &dir.path().join("tsrotate.toml"),
        )
        .unwrap();
        let credential = &config.credentials[0];
        let client = ClientBuilder::new(Auth::ApiAccessToken(Secret::new(
            emu.bootstrap().api_key.clone(),
        )))
        .base_url(emu.url())
        .build()
        .unwrap();
        let creds = crate::sink::Logins::default();
        let state_dir = dir.path().join("state");
        let journals = journal::Index::new(&state_dir, &journal::JournalKey::from_bytes([7; 32]));
        let _ = emulator::advance_clock(emu.url(), 80 * 86_400);

        let (earlier, _) = observe(&client, credential, &creds, &journals, None).await;
        assert!(earlier.due.is_due(), "{:?}", earlier.due);
        let calls = api_calls(&emu);

        // Nothing changed: the API's answer stands, and nothing is asked.
        let (again, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls);
        assert_eq!(
            (again.key_id.as_ref(), &again.due),
            (earlier.key_id.as_ref(), &earlier.due)
        );

        // Another runner started rotating it: the API is asked again.
        let old = earlier.key_id.clone().unwrap();
        journal_of(&state_dir, "ci", &old);
        let calls = api_calls(&emu);
        let (started, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls + 1);
        assert_eq!(
            started.due,
            Due::Unfinished {
                rotation_id: "r20261128000000other0".into()
            }
        );

        // Another runner put a fresh key in place: the API is asked about that key.
        let second = mint(&emu);
        put(&place, &second);
        let calls = api_calls(&emu);
        let (after, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls + 1);
        assert_ne!(after.key_id, earlier.key_id);
        assert_eq!(after.key_status, Some(KeyStatus::Live));
    }
}
