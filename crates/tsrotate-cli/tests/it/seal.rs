//! Sealed journals (issue 11, item 4, red-team finding): a journal that tsrotate did not write
//! with this journal key (planted, edited, reordered, or written with another key, as when it
//! comes from another state directory or a CI cache) is never acted on by `resume`,
//! `rollback`, `rotate --due` or a containment's `resume`/`rollback`, and no new rotation of its
//! key begins beside it; `status` shows it and `abandon` settles it. The key file itself must
//! be private and kept outside the state directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::json;

use crate::admission::unfinished_configured_rotation;
use crate::support::{Run, TestEnv};

/// Another journal key, as another machine or CI run would have made.
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Put back the journal key file as it was (`None`: there was none).
fn restore_key(path: &Path, key: Option<&str>) {
    match key {
        Some(key) => write_private(path, key),
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The journal's lines without their seals, as a person (or tsrotate 1) would write them.
pub(crate) fn without_seals(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().remove("mac");
            record.to_string() + "\n"
        })
        .collect()
}

fn refused_in_words(run: &Run, what: &str) {
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        all.contains("not sealed") || all.contains("changed after tsrotate wrote it"),
        "{what}: the refusal does not say what happened:\n{all}"
    );
    assert!(
        all.contains("tsrotate abandon"),
        "{what}: the refusal does not say what to do:\n{all}"
    );
}

/// Planted, edited, reordered, and sealed with another key: each refused by `resume`,
/// `rollback`, `rotate --due` and a new rotation of its key, with nothing changed.
#[test]
fn a_journal_tsrotate_did_not_seal_with_this_key_is_never_acted_on() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, old_id, id, journal) = unfinished_configured_rotation(&mut env, &ok);
    // Verification would pass now: only the seal stands between the journal and the world.
    std::fs::write(&ok, "").unwrap();
    let original = std::fs::read_to_string(&journal).unwrap();
    let own_key = std::fs::read_to_string(env.journal_key_file()).ok();
    let dotenv = env.work.path().join("app/.env");
    let held = std::fs::read_to_string(&dotenv).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 3, "{original}");
    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    let edited = original.replacen("\"at\":\"20", "\"at\":\"19", 2);
    let variants: Vec<(&str, String, Option<&str>)> = vec![
        ("planted without seals", without_seals(&original), None),
        ("an edited record", edited, None),
        ("records reordered", reordered.join("\n") + "\n", None),
        (
            "copied from a state directory with another key",
            original.clone(),
            Some(OTHER_KEY),
        ),
    ];
    let keys = env.keys().len();
    for (what, text, key) in &variants {
        assert_ne!(
            (text, key),
            (&original, &None),
            "{what}: the fixture changed nothing"
        );
        std::fs::write(&journal, text).unwrap();
        if let Some(key) = key {
            write_private(&env.journal_key_file(), key);
        }
        let with_config = |args: &[&str]| {
            let mut cmd = env.cmd();
            cmd.arg("--config").arg(&config).args(args);
            env.run(&mut cmd)
        };
        let resumed = with_config(&["resume", &id, "--yes"]).expect(2);
        refused_in_words(&resumed, what);
        let rolled = with_config(&["rollback", &id, "--yes"]).expect(2);
        refused_in_words(&rolled, what);
        let due = with_config(&["rotate", "--due", "--yes"]);
        assert_ne!(due.code, 0, "{what}: rotate --due:\n{}", due.stdout);
        refused_in_words(&due, what);
        let again = with_config(&["rotate", &old_id, "--yes"]).expect(2);
        refused_in_words(&again, what);
        // `resume` of every rotation skips it and says why.
        let all = with_config(&["resume", "--yes"]);
        refused_in_words(&all, what);

        assert_eq!(env.keys().len(), keys, "{what}: a key was minted");
        assert_eq!(env.key(&old_id)["invalid"], false, "{what}: revoked");
        assert_eq!(std::fs::read_to_string(&dotenv).unwrap(), held, "{what}");
        std::fs::write(&journal, &original).unwrap();
        restore_key(&env.journal_key_file(), own_key.as_deref());
        env.assert_state_clean();
    }
    // The journal as tsrotate wrote it, with its own key: resume finishes it.
    env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["resume", &id, "--yes"]),
    )
    .expect(0);
    assert_eq!(env.key(&old_id)["invalid"], true);
}

/// `status` shows an unsealed journal, marked; `abandon` settles it, after which the key can
/// be rotated again.
#[test]
fn an_unsealed_journal_is_shown_by_status_and_settled_by_abandon() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, _old_id, id, journal) = unfinished_configured_rotation(&mut env, &ok);
    std::fs::write(&ok, "").unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, without_seals(&text)).unwrap();
    let with_config = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.arg("--config").arg(&config).args(args);
        env.run(&mut cmd)
    };
    let status = with_config(&["--format", "json", "status"]).expect(1);
    assert!(
        status.stdout.contains(&id) && status.stdout.contains("not sealed"),
        "{}",
        status.stdout
    );
    let abandoned = with_config(&["abandon", &id, "--yes"]).expect(0);
    assert!(
        abandoned.stderr.contains("not sealed"),
        "{}",
        abandoned.stderr
    );
    let after = std::fs::read_to_string(&journal).unwrap();
    assert!(after.contains("\"abandoned\""), "{after}");
    with_config(&["rotate", "--credential", "web", "--yes"]).expect(0);
    env.assert_state_clean();
}

/// A containment journal whose snapshot was edited, or that was sealed with another key, is
/// neither rolled back (which would authorize devices again) nor resumed.
#[test]
fn a_containment_journal_not_sealed_with_this_key_is_not_rolled_back() {
    let mut env = TestEnv::new();
    let (id, _secret) = crate::contain::fleet(&mut env, "key");
    let run = env
        .run(env.cmd().args([
            "--format",
            "json",
            "contain",
            &id,
            "--since",
            "1d",
            "--action",
            "deauthorize",
            "--yes",
        ]))
        .expect(0);
    let containment = run.json()["containment"]["id"].as_str().unwrap().to_owned();
    let journal = env
        .state
        .path()
        .join("containments")
        .join(format!("{containment}.jsonl"));
    let original = std::fs::read_to_string(&journal).unwrap();
    let own_key = std::fs::read_to_string(env.journal_key_file()).ok();
    let authorized = |env: &TestEnv| -> Vec<(String, bool)> {
        let mut all: Vec<_> = crate::contain::devices(env)
            .into_iter()
            .map(|d| {
                (
                    d["hostname"].as_str().unwrap().to_owned(),
                    d["authorized"].as_bool().unwrap(),
                )
            })
            .collect();
        all.sort();
        all
    };
    let during = authorized(&env);
    assert!(during.iter().any(|(h, a)| h.starts_with("evil-") && !a));
    let variants = [
        (
            "an edited record",
            original.replacen("\"at\":\"20", "\"at\":\"19", 1),
            None,
        ),
        ("planted without seals", without_seals(&original), None),
        ("sealed with another key", original.clone(), Some(OTHER_KEY)),
    ];
    for (what, text, key) in &variants {
        std::fs::write(&journal, text).unwrap();
        if let Some(key) = key {
            write_private(&env.journal_key_file(), key);
        }
        let rolled = env
            .run(env.cmd().args(["rollback", &containment, "--yes"]))
            .expect(2);
        assert!(
            rolled.stderr.contains("not sealed")
                || rolled.stderr.contains("changed after tsrotate wrote it"),
            "{what}:\n{}",
            rolled.stderr
        );
        env.run(env.cmd().args(["resume", &containment, "--yes"]))
            .expect(2);
        assert_eq!(authorized(&env), during, "{what}: devices changed");
        std::fs::write(&journal, &original).unwrap();
        restore_key(&env.journal_key_file(), own_key.as_deref());
    }
    // As tsrotate wrote it: rolled back.
    env.run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(0);
    assert!(authorized(&env).iter().all(|(_, a)| *a));
    env.assert_state_clean();
}

/// The journal key file: made private in a private folder on first need (at
/// `$XDG_CONFIG_HOME/tsrotate/journal.key` by default), and refused (exit 2, in words, the key
/// never shown) inside the state directory, through a link into it, open to others, or not
/// a key.
#[test]
fn the_journal_key_file_is_private_and_outside_the_state_directory() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let keys = env.keys().len();
    let rotate = |env: &TestEnv, key_file: &Path| {
        env.run(
            env.cmd()
                .env("TSROTATE_JOURNAL_KEY_FILE", key_file)
                .args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path()),
        )
    };
    let state = env.state.path().to_owned();
    let inside = state.join("journal.key");
    let run = rotate(&env, &inside).expect(2);
    assert!(
        run.stderr.contains("inside the state directory"),
        "{}",
        run.stderr
    );
    assert!(!inside.exists(), "no key was made there");
    write_private(&inside, OTHER_KEY);
    let link = env.keys.path().join("link.key");
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    let run = rotate(&env, &link).expect(2);
    assert!(
        run.stderr.contains("inside the state directory") && !run.stderr.contains(OTHER_KEY),
        "{}",
        run.stderr
    );
    std::fs::remove_file(&inside).unwrap();
    let open = env.keys.path().join("open.key");
    std::fs::write(&open, OTHER_KEY).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = rotate(&env, &open).expect(2);
    assert!(
        run.stderr
            .contains("read or written by its group or by others")
            && run.stderr.contains("chmod 600")
            && !run.stderr.contains(OTHER_KEY),
        "{}",
        run.stderr
    );
    let bad = env.keys.path().join("bad.key");
    write_private(&bad, &format!("{old}\n"));
    let run = rotate(&env, &bad).expect(2);
    assert!(
        run.stderr.contains("does not hold a journal key"),
        "{}",
        run.stderr
    );
    assert_eq!(env.keys().len(), keys, "nothing was minted");
    assert_eq!(env.key(&old_id)["invalid"], false);
    // The default place, made on first need: 0600 in a 0700 folder.
    let config_home = env.keys.path().join("xdg");
    env.run(
        env.cmd()
            .env_remove("TSROTATE_JOURNAL_KEY_FILE")
            .env("XDG_CONFIG_HOME", &config_home)
            .args(["rotate", &old_id, "--yes", "--in"])
            .arg(env.work.path()),
    )
    .expect(0);
    let made = config_home.join("tsrotate/journal.key");
    let bits = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(bits(&made), 0o600);
    assert_eq!(bits(made.parent().unwrap()), 0o700);
    let key = std::fs::read_to_string(&made).unwrap();
    assert_eq!(key.trim().len(), 64);
    for file in crate::support::walk(&state) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(key.trim()),
            "the key is in {}",
            file.display()
        );
    }
    assert_eq!(json!(env.key(&old_id)["invalid"]), json!(true));
}

/// `resume`, `rollback` and `abandon` take a rotation ID, never a path: `../rotations/ID`, or
/// a path to a sealed copy of the journal kept outside the state directory (a backup), is an
/// unknown rotation (exit 2) and nothing is done from it.
#[test]
fn a_rotation_is_named_by_its_id_never_by_a_path() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, old_id, id, journal) = unfinished_configured_rotation(&mut env, &ok);
    std::fs::write(&ok, "").unwrap();
    let original = std::fs::read_to_string(&journal).unwrap();
    // A sealed copy outside the state directory, reached from the journal folder.
    let backup = env.aside.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::copy(&journal, backup.join(format!("{id}.jsonl"))).unwrap();
    let outside = format!(
        "../../{}/backup/{id}",
        env.aside.path().file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(
        env.state.path().parent(),
        env.aside.path().parent(),
        "the fixture needs both under one folder"
    );
    let keys = env.keys().len();
    for named in [format!("../rotations/{id}"), outside] {
        for command in ["resume", "rollback", "abandon"] {
            let run = env
                .run(
                    env.cmd()
                        .arg("--config")
                        .arg(&config)
                        .args([command, &named, "--yes"]),
                )
                .expect(2);
            let all = format!("{}{}", run.stdout, run.stderr);
            assert!(
                all.contains("no rotation") || all.contains("not a rotation or containment ID"),
                "{command} {named}: {all}"
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), original);
    assert_eq!(env.keys().len(), keys, "a key was minted");
    assert_eq!(env.key(&old_id)["invalid"], false);
    env.assert_state_clean();
}
