//! Black-box crash safety: SIGKILL `tsrotate rotate` at many moments of a rotation slowed by
//! emulator latency, then `resume`, and check the end state every time.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use tsrotate_test_support::emulator;

use crate::support::{Run, TestEnv, credentials_in};

/// How many journal records a clean rotation of three files writes.
const RECORDS: usize = 12;

enum KillAt {
    /// Once the journal holds this many records.
    Records(usize),
    /// After this long.
    After(Duration),
}

fn journal_lines(env: &TestEnv) -> usize {
    let dir = env.state.path().join("rotations");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    std::fs::read(e.path()).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Returns whether the rotation was killed before it finished by itself.
fn kill_and_resume(kill_at: &KillAt) -> bool {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    for rel in ["a/.env", "b/config.yaml", "c/settings.json"] {
        env.write(rel, format!("# {rel}\nkey: {old}\n"));
    }
    // Every API call takes a while, so that the kill lands mid-rotation.
    emulator::add_fault(
        env.url(),
        &json!({"path_prefix": "/api/", "latency_ms": 40}),
    );

    let mut child = env.process();
    let out = env.aside.path().join("killed.out");
    let err = env.aside.path().join("killed.err");
    let mut child = child
        .args(["rotate", &old_id, "--yes", "--in"])
        .arg(env.work.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let due = match kill_at {
            KillAt::Records(n) => journal_lines(&env) >= *n,
            KillAt::After(d) => started.elapsed() >= *d,
        };
        if due || child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        std::thread::yield_now();
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    env.assert_clean(&std::fs::read_to_string(&out).unwrap());
    env.assert_clean(&std::fs::read_to_string(&err).unwrap());

    emulator::clear_faults(env.url());
    let run: Run = env.run(env.cmd().args(["resume", "--yes"]));
    assert_eq!(
        run.code, 0,
        "resume failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );

    // Every file holds the same live key; the old key is dead; no minted key is live that no
    // file holds.
    let held: BTreeSet<String> = credentials_in(env.work.path())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let keys = env.keys();
    if held.contains(&old_id) {
        // Killed before anything was journaled: nothing may have changed.
        assert_eq!(held.len(), 1, "files disagree: {held:?}");
        assert_eq!(env.key(&old_id)["invalid"], false);
        assert!(
            keys.iter()
                .filter(|k| k["id"] != old_id.as_str())
                .all(|k| k["invalid"] == true
                    || !k["description"].as_str().unwrap_or("").contains("tsrotate"))
        );
        return killed;
    }
    assert_eq!(held.len(), 1, "files disagree: {held:?}");
    let new_id = held.into_iter().next().unwrap();
    assert_eq!(
        env.key(&new_id)["invalid"],
        false,
        "the files hold a dead key"
    );
    assert_eq!(env.key(&old_id)["invalid"], true, "the old key survived");
    for k in &keys {
        let minted_by_us = k["description"]
            .as_str()
            .is_some_and(|d| d.contains("tsrotate r"));
        if minted_by_us && k["id"] != new_id.as_str() {
            assert_eq!(k["invalid"], true, "orphaned key {} left live", k["id"]);
        }
    }
    env.assert_state_clean();
    killed
}

#[test]
fn sigkill_after_each_journal_record_then_resume_is_safe() {
    let killed = (1..=RECORDS)
        .filter(|&records| kill_and_resume(&KillAt::Records(records)))
        .count();
    // Most kill points must land mid-rotation, or this test proves little.
    assert!(
        killed >= RECORDS / 2,
        "only {killed} of {RECORDS} runs were killed before finishing"
    );
}

#[test]
fn sigkill_at_random_moments_then_resume_is_safe() {
    let mut rng = rand::rng();
    for _ in 0..6 {
        kill_and_resume(&KillAt::After(Duration::from_millis(
            rng.random_range(0..500),
        )));
    }
}
