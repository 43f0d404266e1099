//! Whole rotations through the library against the emulator, with something changing the
//! places between the plan and the writes. The change happens in an [`Observer`], which the
//! executor calls after each journal record and before the next side effect: once the key
//! is minted, exactly where an attacker (or an unlucky operator) would strike.

use std::fs;
use std::path::{Path, PathBuf};

use tsrotate::api::{Auth, Client, ClientBuilder, CreateAuthKey, DeviceCreateCapabilities};
use tsrotate::config;
use tsrotate::journal::Event;
use tsrotate::key::{KeyId, KeyRef, Secret};
use tsrotate::rotate::places::Reading;
use tsrotate::rotate::plan::{self, Overrides, Request};
use tsrotate::rotate::session::{Admission, Lock, StateDir};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::rotate::{Executor, Observer, State, Stop};
use tsrotate::sink::{SinkSpec, Snapshot};
use tsrotate_test_support::emulator::{self, ThreadServer};

/// Runs `act` once, right after the new key is minted.
struct AfterMint<F: FnMut()>(Option<F>);

impl<F: FnMut()> Observer for AfterMint<F> {
    fn recorded(&mut self, _state: &State, event: &Event) {
        if matches!(event, Event::Minted { .. })
            && let Some(mut act) = self.0.take()
        {
            act();
        }
    }
}

fn client(emu: &ThreadServer) -> Client {
    ClientBuilder::new(Auth::ApiAccessToken(Secret::new(
        emu.bootstrap().api_key.clone(),
    )))
    .base_url(emu.url())
    .build()
    .unwrap()
}

async fn mint_old(client: &Client) -> (KeyId, String) {
    let mut request = CreateAuthKey::new(DeviceCreateCapabilities {
        reusable: true,
        ephemeral: false,
        preauthorized: false,
        tags: vec!["tag:ci".into()],
    });
    request.expiry_seconds = Some(86_400);
    request.description = Some("ci runners".into());
    let created = client.create_auth_key(&request).await.unwrap();
    (created.key.id, created.secret.expose_secret().to_owned())
}

fn request(old: &str, roots: Vec<PathBuf>, configured: Vec<Reading>) -> Request {
    Request {
        key: KeyRef::parse(old).unwrap(),
        roots,
        configured,
        overrides: Overrides::default(),
        revoke_first: false,
        verify_cmd: None,
        user: "test".into(),
        credential: None,
        kind_hint: None,
        migrate_to: None,
        webhook_endpoint: None,
        looked_up: None,
        skip_unwritable: false,
    }
}

/// A configured dotenv place holding `value` under `TS_AUTHKEY`, as `places::read` finds it.
fn dotenv_place(path: &Path, value: &str) -> Reading {
    Reading {
        sink: config::Sink {
            spec: SinkSpec::Dotenv {
                path: path.to_owned(),
                field: "TS_AUTHKEY".into(),
            },
            after: Vec::new(),
            verify: Vec::new(),
        },
        credential: None,
        credential_verify: Vec::new(),
        snapshot: Ok(Snapshot {
            value: Some(Secret::new(value.to_owned())),
            version: Some(tsrotate::sink::Version(
                tsrotate::fs::ContentHash::of(&fs::read(path).unwrap()).to_string(),
            )),
        }),
        writable: Ok(()),
    }
}

/// Every `tskey-` value under `dir` that is not `old`: a new key where it must not be.
fn other_keys_under(dir: &Path, old: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            found.extend(other_keys_under(&path, old));
        } else if meta.is_file() {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).replace(old, "");
            if text.contains("tskey-") {
                found.push(path);
            }
        }
    }
    found
}

fn key_state(emu: &ThreadServer, id: &str) -> serde_json::Value {
    emulator::state(emu.url())["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no key {id} in the emulator"))
}

/// Issue 11 item 3: a folder on the way to a planned file is swapped for a link to someone
/// else's folder after the plan. The new key must not land there; the rotation stops, and a
/// rollback revokes the minted key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_parent_folder_swapped_for_a_link_after_the_plan_gets_no_key() {
    let emu = emulator::start();
    let client = client(&emu);
    let (old_id, old) = mint_old(&client).await;
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let original = format!("TS_AUTHKEY={old}\n");
    fs::create_dir(tree.path().join("app")).unwrap();
    fs::write(tree.path().join("app/.env"), &original).unwrap();
    // Someone else's file, byte for byte the same: a content check alone cannot tell.
    fs::write(outside.path().join(".env"), &original).unwrap();

    let plan = plan::plan_rotation(
        &client,
        request(&old, vec![tree.path().to_owned()], Vec::new()),
        None,
        client.server_now(),
    )
    .await
    .unwrap();
    assert_eq!(plan.files.len(), 1);
    let dir = StateDir::open(state_dir.path(), tsrotate::journal::JournalKey::generate()).unwrap();
    let mut session = Admission::check(&dir, &old_id, None, Lock::Take)
        .unwrap()
        .begin(plan.started.clone())
        .unwrap();
    let mut world = ApiWorld::new(client.clone(), plan.files.clone());
    let (app, moved) = (tree.path().join("app"), tree.path().join("app.moved"));
    let target = outside.path().to_owned();
    let mut swap = AfterMint(Some(|| {
        fs::rename(&app, &moved).unwrap();
        std::os::unix::fs::symlink(&target, &app).unwrap();
    }));
    let state = session.state().clone();
    let mut executor = Executor::new(state, &mut world, &mut session, &mut swap);
    let stop = executor.run().await.unwrap_err();
    let Stop::Failed { error, .. } = &stop else {
        panic!("{stop}");
    };
    let message = stop.to_string();
    assert!(
        message.contains("replaced (by a symbolic link, or removed) since the plan"),
        "{message}"
    );
    assert!(!error.is_retryable(), "{message}");
    assert!(!message.contains(&old), "{message}");
    let minted = executor.state().minted.clone();
    assert_eq!(minted.len(), 1);
    let stopped = executor.state().clone();
    drop(executor);

    // Nothing reached the other folder, not even a lock or temporary file; the real file
    // was not touched either.
    assert!(fs::read_to_string(outside.path().join(".env")).unwrap() == original);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    assert!(fs::read_to_string(moved.join(".env")).unwrap() == original);
    assert!(other_keys_under(outside.path(), &old).is_empty());
    assert!(other_keys_under(&moved, &old).is_empty());

    // Rollback revokes the minted key; the place it never wrote is left alone.
    let mut world = ApiWorld::new(client.clone(), Vec::new());
    let state = stopped;
    let mut quiet = tsrotate::rotate::Quiet;
    let mut executor = Executor::new(state, &mut world, &mut session, &mut quiet);
    executor.rollback(&Secret::new(old.clone())).await.unwrap();
    assert_eq!(key_state(&emu, minted[0].as_str())["invalid"], true);
    assert_eq!(key_state(&emu, old_id.as_str())["invalid"], false);
    assert!(fs::read_to_string(outside.path().join(".env")).unwrap() == original);

    // No secret in the journal or the audit log.
    let journal = fs::read_to_string(session.journal_path()).unwrap();
    assert!(journal.contains(old_id.as_str()));
    assert!(!journal.contains(&old));
    assert!(!journal.contains("tskey-auth-"), "{journal}");
}

/// Issue 11 item 8: a place whose folder disappears after the plan fails to be written, the
/// other place gets the new key; rollback undoes exactly that one place and revokes the
/// minted key instead of failing on the place it never wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_rollback_undoes_the_places_written_and_revokes_the_minted_key() {
    let emu = emulator::start();
    let client = client(&emu);
    let (old_id, old) = mint_old(&client).await;
    let work = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let original = format!("# app\nTS_AUTHKEY={old}\n");
    let (kept, gone) = (work.path().join("kept"), work.path().join("gone"));
    for dir in [&kept, &gone] {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join(".env"), &original).unwrap();
    }
    let places = vec![
        dotenv_place(&kept.join(".env"), &old),
        dotenv_place(&gone.join(".env"), &old),
    ];
    let plan = plan::plan_rotation(
        &client,
        request(&old, Vec::new(), places),
        None,
        client.server_now(),
    )
    .await
    .unwrap();
    let dir = StateDir::open(state_dir.path(), tsrotate::journal::JournalKey::generate()).unwrap();
    let mut session = Admission::check(&dir, &old_id, None, Lock::Take)
        .unwrap()
        .begin(plan.started.clone())
        .unwrap();
    let mut world = ApiWorld::new(client.clone(), plan.files.clone()).with_configured(
        tsrotate::sink::Logins::default(),
        plan.planned_versions.clone(),
    );
    let doomed = gone.clone();
    let mut remove = AfterMint(Some(|| fs::remove_dir_all(&doomed).unwrap()));
    let state = session.state().clone();
    let mut executor = Executor::new(state, &mut world, &mut session, &mut remove);
    let stop = executor.run().await.unwrap_err();
    assert!(matches!(stop, Stop::Failed { .. }), "{stop}");
    assert!(!stop.to_string().contains(&old), "{stop}");
    let minted = executor.state().minted.clone();
    let stopped = executor.state().clone();
    drop(executor);
    let written = fs::read_to_string(kept.join(".env")).unwrap();
    assert!(!written.contains(&old), "the other place got the new key");
    assert!(written.contains(&format!("-{}-", minted[0])));

    let mut world = ApiWorld::new(client.clone(), Vec::new());
    let state = stopped;
    let mut quiet = tsrotate::rotate::Quiet;
    let mut executor = Executor::new(state, &mut world, &mut session, &mut quiet);
    let end = executor.rollback(&Secret::new(old.clone())).await;
    let end = end.unwrap_or_else(|e| panic!("rollback failed: {e}"));
    assert_eq!(end.end, Some(tsrotate::rotate::End::RolledBack));
    assert!(
        fs::read_to_string(kept.join(".env")).unwrap() == original,
        "the written place holds the old key again"
    );
    assert!(
        !gone.exists(),
        "a place that was never written is not created"
    );
    assert_eq!(key_state(&emu, minted[0].as_str())["invalid"], true);
    assert_eq!(key_state(&emu, old_id.as_str())["invalid"], false);
    let journal = fs::read_to_string(session.journal_path()).unwrap();
    assert!(!journal.contains("tskey-auth-"), "{journal}");
}

/// Issue 11 item 3, for a configured place: its folder swapped for a link to someone else's
/// folder after the plan. The plan resolved the place's path; the write walks it without
/// following links and refuses, so the other file keeps its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_configured_place_whose_folder_became_a_link_gets_no_key() {
    let emu = emulator::start();
    let client = client(&emu);
    let (old_id, old) = mint_old(&client).await;
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let original = format!("TS_AUTHKEY={old}\n");
    fs::create_dir(tree.path().join("app")).unwrap();
    fs::write(tree.path().join("app/.env"), &original).unwrap();
    fs::write(outside.path().join(".env"), &original).unwrap();
    let places = vec![dotenv_place(&tree.path().join("app/.env"), &old)];
    let plan = plan::plan_rotation(
        &client,
        request(&old, Vec::new(), places),
        None,
        client.server_now(),
    )
    .await
    .unwrap();
    // The plan pins the place to the file its path resolves to, and the journal says so.
    assert!(matches!(
        &plan.started.sinks[0],
        tsrotate::journal::SinkPlan::Configured { resolved: Some(path), .. }
            if path == &fs::canonicalize(tree.path().join("app")).unwrap().join(".env")
    ));
    let dir = StateDir::open(state_dir.path(), tsrotate::journal::JournalKey::generate()).unwrap();
    let mut session = Admission::check(&dir, &old_id, None, Lock::Take)
        .unwrap()
        .begin(plan.started.clone())
        .unwrap();
    let mut world = ApiWorld::new(client.clone(), plan.files.clone()).with_configured(
        tsrotate::sink::Logins::default(),
        plan.planned_versions.clone(),
    );
    let (app, moved) = (tree.path().join("app"), tree.path().join("app.moved"));
    let target = outside.path().to_owned();
    let mut swap = AfterMint(Some(|| {
        fs::rename(&app, &moved).unwrap();
        std::os::unix::fs::symlink(&target, &app).unwrap();
    }));
    let state = session.state().clone();
    let mut executor = Executor::new(state, &mut world, &mut session, &mut swap);
    let stop = executor.run().await.unwrap_err();
    let message = stop.to_string();
    assert!(matches!(stop, Stop::Failed { .. }), "{message}");
    assert!(
        message.contains("replaced (by a symbolic link, or removed) since the plan"),
        "{message}"
    );
    assert!(!message.contains(&old), "{message}");
    drop(executor);
    assert!(fs::read_to_string(outside.path().join(".env")).unwrap() == original);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    assert!(fs::read_to_string(moved.join(".env")).unwrap() == original);
    let journal = fs::read_to_string(session.journal_path()).unwrap();
    assert!(!journal.contains("tskey-auth-"), "{journal}");
}
