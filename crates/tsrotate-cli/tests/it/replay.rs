//! An older copy of a sealed journal put back (issue 11, residual of red team 2): a seal
//! proves that tsrotate wrote a journal, not that it is the latest copy, and a prefix of a
//! sealed journal is itself sealed. Restored from a backup or a CI cache, it reads like a crash
//! at that point, and `resume` used to mint a fresh key for a rotation that had already
//! minted one (a live key nobody holds), or had even finished. Before anything that may lead
//! to a mint, a reopened journal is now checked against the API: live keys with the
//! rotation's marker that it cannot account for, or an old key dead while it says live, stop
//! the run (exit 1) with nothing minted and no key or place changed.

use std::path::{Path, PathBuf};

use crate::support::{Run, TestEnv, credentials_in, values_of};

fn journal_of(env: &TestEnv, id: &str) -> PathBuf {
    env.state
        .path()
        .join("rotations")
        .join(format!("{id}.jsonl"))
}

/// The first records of `journal`, up to (not including) the first of type `kind`: an
/// older copy of it, sealed as it was then.
fn copy_before(journal: &Path, kind: &str) -> String {
    let text = std::fs::read_to_string(journal).unwrap();
    let mut copy = String::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if record["event"]["type"] == kind {
            return copy;
        }
        copy.push_str(line);
        copy.push('\n');
    }
    panic!("no {kind} record in {text}");
}

/// Rotate `old_id`, found in files under the work tree; returns how it ended and the
/// rotation's ID. Every key the files hold then becomes a canary.
fn rotate_in_work(env: &mut TestEnv, old_id: &str, extra: &[&str]) -> (Run, String) {
    let mut cmd = env.cmd();
    cmd.args(["rotate", old_id, "--yes", "--in"])
        .arg(env.work.path())
        .args(extra);
    let run = env.run(&mut cmd);
    for (path, id) in credentials_in(env.work.path()) {
        for secret in values_of(&std::fs::read(path).unwrap(), &id) {
            env.canary(&secret);
        }
    }
    (run, env.only_rotation())
}

/// The keys the emulator calls live.
fn live_keys(env: &TestEnv) -> Vec<String> {
    env.keys()
        .iter()
        .filter(|k| k["invalid"] == false)
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

/// What must hold after a refused replay: the refusal says what happened and what to do,
/// no key was minted or revoked, the file is as it was, and no secret leaked.
#[track_caller]
fn refused_and_unchanged(
    env: &TestEnv,
    run: &Run,
    keys_before: usize,
    live_before: &[String],
    file: &Path,
    held: &[u8],
) {
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert!(all.contains("older copy"), "does not say why:\n{all}");
    assert!(
        all.contains("tsrotate abandon"),
        "does not say what to do:\n{all}"
    );
    assert!(all.contains("nothing was minted"), "{all}");
    assert_eq!(env.keys().len(), keys_before, "a key was minted:\n{all}");
    assert_eq!(live_keys(env), live_before, "a key was revoked:\n{all}");
    assert_eq!(std::fs::read(file).unwrap(), held, "the file changed");
    env.assert_clean(&all);
    env.assert_state_clean();
}

/// A copy from before the mint intent, put back after the rotation finished: the rotation's
/// key is live in the tailnet and unknown to the copy.
#[test]
fn resume_of_a_copy_from_before_the_mint_refuses_to_mint_after_the_rotation_finished() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let file = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let (run, id) = rotate_in_work(&mut env, &old_id, &[]);
    run.expect(0);
    let journal = journal_of(&env, &id);
    let copy = copy_before(&journal, "mint_intent");
    std::fs::write(&journal, copy).unwrap();
    let held = std::fs::read(&file).unwrap();
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));

    let resumed = env.run(env.cmd().args(["resume", &id, "--yes"])).expect(1);
    refused_and_unchanged(&env, &resumed, keys_before, &live_before, &file, &held);
    // The refusal names the key the copy does not know.
    let minted: Vec<(PathBuf, String)> = credentials_in(env.work.path());
    assert_eq!(minted.len(), 1, "{minted:?}");
    assert!(live_before.contains(&minted[0].1), "{live_before:?}");
    assert!(resumed.stderr.contains(&minted[0].1), "{}", resumed.stderr);
    // `resume` of every rotation refuses it too, and so does a second try: nothing the first
    // refusal did made the copy look current.
    let all = env.run(env.cmd().args(["resume", "--yes"])).expect(1);
    refused_and_unchanged(&env, &all, keys_before, &live_before, &file, &held);
    // The advice holds: abandon settles it without touching a key.
    env.run(env.cmd().args(["abandon", &id, "--yes"]));
    assert_eq!(live_keys(&env), live_before);
    env.run(env.cmd().args(["resume", "--yes"])).expect(0);
    assert_eq!(env.keys().len(), keys_before);
    env.assert_state_clean();
}

/// A copy of a finished rotation's earlier state (after its mint intent, before the answer
/// was journaled): it reads like a lost mint answer, whose key a sweep would adopt and then
/// revoke as nobody's, though every place holds it, before minting one more.
#[test]
fn resume_of_an_earlier_copy_of_a_finished_rotation_refuses_and_keeps_its_key() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let file = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let (run, id) = rotate_in_work(&mut env, &old_id, &[]);
    run.expect(0);
    assert_eq!(env.key(&old_id)["invalid"], true);
    let journal = journal_of(&env, &id);
    let copy = copy_before(&journal, "minted");
    std::fs::write(&journal, copy).unwrap();
    let held = std::fs::read(&file).unwrap();
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));

    let resumed = env.run(env.cmd().args(["resume", &id, "--yes"])).expect(1);
    refused_and_unchanged(&env, &resumed, keys_before, &live_before, &file, &held);
    assert!(
        resumed.stderr.contains(&format!("old key {old_id}")),
        "{}",
        resumed.stderr
    );
    // The same through JSON output.
    let json = env
        .run(env.cmd().args(["--format", "json", "resume", &id, "--yes"]))
        .expect(1);
    refused_and_unchanged(&env, &json, keys_before, &live_before, &file, &held);
}

/// A copy from before the mint intent of a rotation that minted and then stopped (its
/// verification failed): the old key is live, and the minted key sits in the file.
#[test]
fn resume_of_a_copy_from_before_the_mint_refuses_when_the_rotation_already_minted() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let file = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let ok = env.aside.path().join("consumer-ok");
    let verify = format!("test -e '{}'", ok.display());
    let (run, id) = rotate_in_work(&mut env, &old_id, &["--verify-cmd", &verify]);
    run.expect(1);
    // Verification would pass now: only the check stands between the copy and a mint.
    std::fs::write(&ok, "").unwrap();
    assert_eq!(env.key(&old_id)["invalid"], false);
    let journal = journal_of(&env, &id);
    let copy = copy_before(&journal, "mint_intent");
    std::fs::write(&journal, copy).unwrap();
    let held = std::fs::read(&file).unwrap();
    assert!(
        !String::from_utf8_lossy(&held).contains(&old),
        "the file still holds the old key"
    );
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));
    assert!(live_before.contains(&old_id), "{live_before:?}");

    let resumed = env
        .run(
            env.cmd()
                .args(["resume", &id, "--yes", "--verify-cmd", &verify]),
        )
        .expect(1);
    refused_and_unchanged(&env, &resumed, keys_before, &live_before, &file, &held);
}

/// `rotate --due` finishes unfinished scheduled rotations from their journals: a copy from
/// before the mint intent of one that minted and stopped is refused there too, with nothing
/// minted.
#[test]
fn rotate_due_refuses_to_mint_from_an_older_copy_of_a_journal() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, old_id, _id, journal) =
        crate::admission::unfinished_configured_rotation(&mut env, &ok);
    let file = env.work.path().join("app/.env");
    for (path, id) in credentials_in(env.work.path()) {
        for secret in values_of(&std::fs::read(path).unwrap(), &id) {
            env.canary(&secret);
        }
    }
    let copy = copy_before(&journal, "mint_intent");
    std::fs::write(&journal, copy).unwrap();
    // Verification would pass now: only the check stands between the copy and a mint.
    std::fs::write(&ok, "").unwrap();
    let held = std::fs::read(&file).unwrap();
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));
    assert!(live_before.contains(&old_id), "{live_before:?}");

    let due = env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["rotate", "--due", "--yes"]),
    );
    assert_ne!(due.code, 0, "{}\n{}", due.stdout, due.stderr);
    refused_and_unchanged(&env, &due, keys_before, &live_before, &file, &held);
}

/// `rollback` from a copy from before the mint intent of a rotation that minted and wrote
/// its places: the copy knows of no write, so nothing would be put back, and the rollback
/// would still say it finished while every place holds a key the journal does not know. It
/// is refused, with nothing changed.
#[test]
fn rollback_refuses_an_older_copy_that_knows_nothing_of_the_written_key() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let file = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let ok = env.aside.path().join("consumer-ok");
    let verify = format!("test -e '{}'", ok.display());
    let (run, id) = rotate_in_work(&mut env, &old_id, &["--verify-cmd", &verify]);
    run.expect(1);
    let journal = journal_of(&env, &id);
    let copy = copy_before(&journal, "mint_intent");
    std::fs::write(&journal, copy).unwrap();
    let held = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&held).contains(&old));
    let old_file = env.write_aside("old-key", format!("{old}\n"));
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));
    assert!(live_before.contains(&old_id), "{live_before:?}");

    let rolled = env
        .run(
            env.cmd()
                .args(["rollback", &id, "--yes", "--old-key-file"])
                .arg(&old_file),
        )
        .expect(1);
    refused_and_unchanged(&env, &rolled, keys_before, &live_before, &file, &held);
}

/// `resume` of every unfinished rotation: one whose journal is an older copy stops, and
/// must not keep the others from finishing (it used to end the whole run at the first one).
/// The copy is made of the rotation resumed first (the first by ID).
#[test]
fn resume_of_every_rotation_finishes_the_others_when_one_is_an_older_copy() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let verify = format!("test -e '{}'", ok.display());
    let mut rotations = Vec::new();
    for folder in ["one", "two"] {
        let (old_id, old) = env.mint_default();
        let file = env.write(&format!("{folder}/.env"), format!("TS_AUTHKEY={old}\n"));
        env.run(
            env.cmd()
                .args(["rotate", &old_id, "--yes", "--verify-cmd", &verify, "--in"])
                .arg(file.parent().unwrap()),
        )
        .expect(1);
        rotations.push((old_id, old, file));
    }
    for (path, id) in credentials_in(env.work.path()) {
        for secret in values_of(&std::fs::read(path).unwrap(), &id) {
            env.canary(&secret);
        }
    }
    let mut ids: Vec<String> = std::fs::read_dir(env.state.path().join("rotations"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".jsonl")
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let stale_journal = journal_of(&env, &ids[0]);
    let text = std::fs::read_to_string(&stale_journal).unwrap();
    if !text.contains(&rotations[0].0) {
        rotations.swap(0, 1);
    }
    let [
        (stale_old, _, stale_file),
        (fine_old, fine_value, fine_file),
    ] = &rotations[..]
    else {
        unreachable!()
    };
    let copy = copy_before(&stale_journal, "mint_intent");
    std::fs::write(&stale_journal, copy).unwrap();
    std::fs::write(&ok, "").unwrap();
    let stale_held = std::fs::read(stale_file).unwrap();
    let keys_before = env.keys().len();

    let resumed = env
        .run(env.cmd().args(["resume", "--yes", "--verify-cmd", &verify]))
        .expect(1);
    let all = format!("{}\n{}", resumed.stdout, resumed.stderr);
    assert!(all.contains("older copy"), "{all}");
    assert!(
        all.contains(&format!("tsrotate abandon {}", ids[0])),
        "{all}"
    );
    // The other one finished.
    assert_eq!(env.key(fine_old)["invalid"], true, "{all}");
    let fine_now = String::from_utf8(std::fs::read(fine_file).unwrap()).unwrap();
    assert!(!fine_now.contains(fine_value.as_str()), "{fine_now}");
    // The stale one changed nothing.
    assert_eq!(env.key(stale_old)["invalid"], false);
    assert_eq!(std::fs::read(stale_file).unwrap(), stale_held);
    assert_eq!(env.keys().len(), keys_before, "a key was minted");
    env.assert_clean(&all);
    env.assert_state_clean();
}

/// Red team 4: a copy from before the mint intent of rotation R1 (K0 -> K1), put back after
/// K0 expired and a later rotation replaced K1 with K2. K0's death is no sign of an older copy
/// once it passed its expiry, and no live key carries R1's marker (K1 was revoked by R2), so
/// `resume` minted one more key and then found the file holding K2. Places that all hold some
/// other key are a sign too: refused before the mint.
#[test]
fn resume_of_a_copy_after_the_old_key_expired_and_the_places_moved_on_refuses_to_mint() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let file = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let (run, first) = rotate_in_work(&mut env, &old_id, &[]);
    run.expect(0);
    let journal = journal_of(&env, &first);
    let copy = copy_before(&journal, "mint_intent");
    // The next rotation replaces the key R1 minted.
    let (_, k1) = credentials_in(env.work.path()).pop().unwrap();
    let mut cmd = env.cmd();
    env.run(
        cmd.args(["rotate", &k1, "--yes", "--in"])
            .arg(env.work.path()),
    )
    .expect(0);
    for (path, id) in credentials_in(env.work.path()) {
        for secret in values_of(&std::fs::read(path).unwrap(), &id) {
            env.canary(&secret);
        }
    }
    // The copy is put back once K0 has passed the expiry its plan recorded.
    let aged: Vec<String> = copy
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["event"]["type"] == "started" {
                record["event"]["old"]["metadata"]["expires"] = "2020-01-01T00:00:00Z".into();
            }
            serde_json::to_string(&record).unwrap()
        })
        .collect();
    std::fs::write(&journal, aged.join("\n") + "\n").unwrap();
    env.seal_journal(&journal);
    let held = std::fs::read(&file).unwrap();
    let (keys_before, live_before) = (env.keys().len(), live_keys(&env));

    let resumed = env
        .run(env.cmd().args(["resume", &first, "--yes"]))
        .expect(1);
    refused_and_unchanged(&env, &resumed, keys_before, &live_before, &file, &held);
    assert!(resumed.stderr.contains("has expired"), "{}", resumed.stderr);
}
