//! Issue 11 item 3 in every path: a place in a file is pinned to the file its plan resolved,
//! and every later run (`resume`, `rollback`, `rotate --due` finishing a scheduled rotation)
//! reaches it without following any link. A folder on the way swapped for a symbolic link
//! between the plan and the write, across a kill, is refused and never written through; a
//! configured path whose link was repointed since the rotation began is refused too.
//!
//! Each test fails on a build where later runs resolve the configured path again (links
//! followed), as they did before the journal recorded the resolved path.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tsrotate_test_support::emulator;

use crate::support::{Run, TestEnv, credentials_in, values_of};

/// The journals, without the temporary file of a journal being created (a kill can leave
/// one behind, as a crash would).
fn journals(env: &TestEnv) -> Vec<PathBuf> {
    std::fs::read_dir(env.state.path().join("rotations"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default()
}

fn journal_lines(env: &TestEnv) -> usize {
    journals(env)
        .iter()
        .map(|p| std::fs::read(p).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()))
        .sum()
}

/// The ID of the one rotation.
fn rotation_id(env: &TestEnv) -> String {
    let journals = journals(env);
    assert_eq!(journals.len(), 1, "{journals:?}");
    journals[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Run `tsrotate` with `args` (and the environment of `env.cmd()`) and SIGKILL it once the
/// journal holds `records` records: while the mint, slowed by the emulator, is on its way,
/// so before any place is written.
fn kill_after_records(env: &TestEnv, args: &[&str], records: usize) {
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/tailnet/-/keys", "latency_ms": 3000}),
    );
    let mut child = env.process();
    let mut child = child
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while journal_lines(env) < records
        && child.try_wait().unwrap().is_none()
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::yield_now();
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        journal_lines(env) >= records,
        "the rotation ended before it was killed"
    );
    emulator::clear_faults(env.url());
}

/// Move `folder` aside and put a link to `target` in its place: what another local user who
/// owns a folder in the tree can do between two runs.
fn swap_for_link(folder: &Path, target: &Path) -> PathBuf {
    let moved = folder.with_extension("moved");
    std::fs::rename(folder, &moved).unwrap();
    std::os::unix::fs::symlink(target, folder).unwrap();
    moved
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = crate::support::walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Every key value in the tree is a canary, the new ones included.
fn canary_tree(env: &mut TestEnv, dir: &Path) {
    for (path, id) in credentials_in(dir) {
        for value in values_of(&std::fs::read(&path).unwrap(), &id) {
            env.canary(&value);
        }
    }
}

fn resume(env: &TestEnv, config: &Path) -> Run {
    let id = rotation_id(env);
    env.run(
        env.cmd()
            .arg("--config")
            .arg(config)
            .args(["resume", &id, "--yes"]),
    )
}

/// The places of `etc/` in a configuration: a dotenv field, a file that holds the key among
/// other text, and a file that is the key.
fn etc_places(etc: &Path) -> String {
    let e = etc.display();
    format!(
        "[[credential.sink]]\ntype = \"dotenv\"\npath = \"{e}/.env\"\nfield = \"TS_AUTHKEY\"\n\n\
         [[credential.sink]]\ntype = \"file\"\npath = \"{e}/tailscale.conf\"\n\n\
         [[credential.sink]]\ntype = \"file\"\npath = \"{e}/authkey\"\n\n"
    )
}

fn write_etc(dir: &Path, key: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(".env"), format!("# web\nTS_AUTHKEY={key}\n")).unwrap();
    std::fs::write(
        dir.join("tailscale.conf"),
        format!("# tailscale\nauthkey = {key}\nhostname = web\n"),
    )
    .unwrap();
    std::fs::write(dir.join("authkey"), format!("{key}\n")).unwrap();
}

/// Plan, kill, swap, resume: the folders of a file found with `--in` and of three
/// configured places are swapped for links to someone else's copies after the kill. The
/// resume refuses, nothing outside the tree changes, and a rollback then revokes the minted
/// key without putting anything back through the links.
#[test]
fn a_folder_swapped_for_a_link_after_a_kill_is_refused_by_resume_and_rollback() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let work = env.work.path().to_owned();
    env.write("app/.env", format!("# app\nTS_AUTHKEY={old}\n"));
    write_etc(&work.join("etc"), &old);
    let outside = env.aside.path().join("outside");
    std::fs::create_dir_all(outside.join("app")).unwrap();
    std::fs::write(
        outside.join("app/.env"),
        format!("# app\nTS_AUTHKEY={old}\n"),
    )
    .unwrap();
    // Someone else's files, byte for byte the same as ours: a content check cannot tell.
    write_etc(&outside.join("etc"), &old);
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n{}",
            etc_places(&work.join("etc"))
        ),
    );
    let app = work.join("app").display().to_string();
    let config_arg = config.display().to_string();
    kill_after_records(
        &env,
        &[
            "--config",
            &config_arg,
            "rotate",
            &old_id,
            "--yes",
            "--in",
            &app,
        ],
        2,
    );
    let before = snapshot(&outside);
    let moved_app = swap_for_link(&work.join("app"), &outside.join("app"));
    let moved_etc = swap_for_link(&work.join("etc"), &outside.join("etc"));

    let run = resume(&env, &config);
    canary_tree(&mut env, &work);
    canary_tree(&mut env, &outside);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("since the plan"),
        "the refusal says why:\n{}",
        run.stderr
    );
    assert_eq!(
        snapshot(&outside),
        before,
        "nothing outside the tree changed"
    );
    for file in crate::support::walk(&moved_etc)
        .into_iter()
        .chain(crate::support::walk(&moved_app))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(&old), "{} changed", file.display());
    }
    assert_eq!(
        env.key(&old_id)["invalid"],
        false,
        "the old key still works"
    );

    // Rollback revokes what was minted; it puts nothing back through the links.
    let run = env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args([
                "rollback",
                &rotation_id(&env),
                "--yes",
                "--old-key-file",
                "-",
            ])
            .write_stdin(format!("{old}\n")),
    );
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    let run = run.expect(0);
    assert!(run.stderr.contains("not put back"), "{}", run.stderr);
    assert_eq!(
        snapshot(&outside),
        before,
        "nothing outside the tree changed"
    );
    let minted: Vec<_> = env
        .keys()
        .into_iter()
        .filter(|k| {
            k["id"] != old_id.as_str()
                && k["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("tsrotate"))
        })
        .collect();
    assert!(!minted.is_empty(), "a key was minted");
    assert!(minted.iter().all(|k| k["invalid"] == true), "{minted:?}");
    assert_eq!(env.key(&old_id)["invalid"], false);
    env.assert_state_clean();
}

/// A configured path that legitimately goes through a link (`current -> v1`) is pinned to
/// what it resolved to at the plan. Repointed to `v2` (which holds a copy of the key) after
/// a kill, the resume refuses as redirected since the rotation began, and neither release
/// is written.
#[test]
fn a_configured_link_repointed_after_a_kill_is_refused_by_resume() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let work = env.work.path().to_owned();
    write_etc(&work.join("v1"), &old);
    write_etc(&work.join("v2"), &old);
    std::os::unix::fs::symlink(work.join("v1"), work.join("current")).unwrap();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n{}",
            etc_places(&work.join("current"))
        ),
    );
    let config_arg = config.display().to_string();
    kill_after_records(
        &env,
        &["--config", &config_arg, "rotate", &old_id, "--yes"],
        2,
    );
    let before = snapshot(&work);
    std::fs::remove_file(work.join("current")).unwrap();
    std::os::unix::fs::symlink(work.join("v2"), work.join("current")).unwrap();

    let run = resume(&env, &config);
    canary_tree(&mut env, &work);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("redirected since the rotation began"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&work), before, "neither release was written");
    env.assert_state_clean();
}

/// `rotate --due` finishes a scheduled rotation that stopped (here: the mint failed); the
/// places' folders were swapped for links in between. The scheduled resume refuses them.
#[test]
fn a_scheduled_rotation_finished_by_rotate_due_refuses_a_folder_swapped_for_a_link() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint(json!({
        "capabilities": {"devices": {"create": {"reusable": true, "ephemeral": false, "preauthorized": true, "tags": ["tag:server"]}}},
        "expirySeconds": 90 * 86400,
        "description": "web"
    }));
    let work = env.work.path().to_owned();
    write_etc(&work.join("etc"), &old);
    let outside = env.aside.path().join("outside");
    write_etc(&outside, &old);
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\nrotate_before = \"14d\"\n\n{}",
            etc_places(&work.join("etc"))
        ),
    );
    let _ = emulator::advance_clock(env.url(), 80 * 86_400);
    let due = |env: &TestEnv| {
        env.run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["rotate", "--due", "--yes"]),
        )
    };
    // The mint's connection is cut every time: the rotation is left unfinished.
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/tailnet/-/keys", "drop_before": true}),
    );
    let run = due(&env);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    emulator::clear_faults(env.url());
    let before = snapshot(&outside);
    let moved = swap_for_link(&work.join("etc"), &outside);

    let run = due(&env);
    canary_tree(&mut env, &work);
    canary_tree(&mut env, &outside);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        snapshot(&outside),
        before,
        "nothing outside the tree changed"
    );
    for file in crate::support::walk(&moved) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(&old), "{} changed", file.display());
    }
    assert_eq!(
        env.key(&old_id)["invalid"],
        false,
        "the old key still works"
    );
    env.assert_state_clean();
}

/// `rollback` looks for the old key's value in the places before asking for it. A rotation
/// by key ID has no fingerprint of the old value to check it against, so a place read
/// through a folder swapped for a link could hand it a forged value with the old key's ID,
/// which it would then write back everywhere. Read without following links, that place
/// offers nothing, and the rollback asks for the old key instead.
#[test]
fn rollback_takes_no_old_value_through_a_folder_swapped_for_a_link() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let work = env.work.path().to_owned();
    write_etc(&work.join("etc"), &old);
    env.write("keep/.env", format!("TS_AUTHKEY={old}\n"));
    let forged = format!("tskey-auth-{old_id}-forgedforgedforgedforged");
    env.canary(&forged);
    let outside = env.aside.path().join("outside");
    write_etc(&outside, &forged);
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n{}",
            etc_places(&work.join("etc"))
        ),
    );
    // Every place gets the new key; the verification fails, so the old key stays live.
    let run = env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["rotate", &old_id, "--yes", "--verify-cmd", "exit 1", "--in"])
            .arg(work.join("keep")),
    );
    canary_tree(&mut env, &work);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    run.expect(1);
    let before = snapshot(&outside);
    swap_for_link(&work.join("etc"), &outside);

    let run = env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["rollback", &rotation_id(&env), "--yes"])
            .write_stdin(""),
    );
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--old-key-file"), "{}", run.stderr);
    let kept = String::from_utf8(env.read("keep/.env")).unwrap();
    assert!(
        !kept.contains("forged"),
        "a forged value was put back: {kept}"
    );
    assert_eq!(
        snapshot(&outside),
        before,
        "nothing outside the tree changed"
    );
    env.assert_state_clean();
}

/// Red-team findings: after a kill, `resume` searched the `--in` tree again and wrote the new
/// key into a file someone planted there since (it needs only the key ID to be found), and it
/// passed over a new hard link out of the tree, then said every place held the new key. A
/// resume writes only what the confirmed plan named: places found since stop it, with the
/// old key live and nothing more done, until a person decides.
#[test]
fn resume_never_writes_a_file_that_appeared_after_the_plan() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let work = env.work.path().to_path_buf();
    let outside = env.aside.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    kill_after_records(
        &env,
        &["rotate", &old_id, "--yes", "--in", work.to_str().unwrap()],
        2,
    );
    // Planted with the key ID only: enough to be found by the search.
    let planted = env.write(
        "uploads/evil.env",
        format!("TS_AUTHKEY=tskey-auth-{old_id}-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
    );
    let before = std::fs::read(&planted).unwrap();
    let id = rotation_id(&env);
    let run = env.run(env.cmd().args(["resume", &id, "--yes"])).expect(1);
    assert!(run.stderr.contains("uploads/evil.env"), "{}", run.stderr);
    assert!(run.stderr.contains("not in the plan"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(&planted).unwrap(),
        before,
        "the planted file was written"
    );
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");

    // The planted file gone, a hard link out of the tree appears instead: it stops too.
    std::fs::remove_file(&planted).unwrap();
    std::fs::write(outside.join("copy.env"), format!("TS_AUTHKEY={old}\n")).unwrap();
    std::fs::hard_link(outside.join("copy.env"), work.join("app/linked.env")).unwrap();
    let run = env.run(env.cmd().args(["resume", &id, "--yes"])).expect(1);
    assert!(run.stderr.contains("linked.env"), "{}", run.stderr);
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");

    // Once the tree holds only what was planned, the resume finishes.
    std::fs::remove_file(work.join("app/linked.env")).unwrap();
    env.run(env.cmd().args(["resume", &id, "--yes"])).expect(0);
    assert_eq!(env.key(&old_id)["invalid"], true);
    env.assert_state_clean();
}
