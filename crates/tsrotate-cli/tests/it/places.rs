//! The places of a rotation: files it cannot update, files edited in place.

use crate::support::{Run, TestEnv, credentials_in, values_of};

fn rotate(env: &TestEnv, key_id: &str, extra: &[&str]) -> Run {
    env.run(
        env.cmd()
            .args(["rotate", key_id, "--yes", "--in"])
            .arg(env.work.path())
            .args(extra),
    )
}

/// Every value of a key in the work tree is a canary: new keys included.
fn canary_files(env: &mut TestEnv) {
    for (path, id) in credentials_in(env.work.path()) {
        for value in values_of(&std::fs::read(&path).unwrap(), &id) {
            env.canary(&value);
        }
    }
}

#[test]
fn a_binary_file_holding_the_key_stops_the_rotation_unless_skipped_and_is_never_called_updated() {
    let mut env = TestEnv::new();
    let (id, secret) = env.mint_default();
    let dotenv = format!("TS_AUTHKEY={secret}\n");
    env.write("app/.env", &dotenv);
    let mut blob = b"\0\x01\x02ELF".to_vec();
    blob.extend_from_slice(secret.as_bytes());
    blob.extend_from_slice(b"\0tail");
    env.write("app/bin/agent", &blob);
    let keys_before = env.keys().len();

    // By default: stopped before anything changes, exit 1, with the file named.
    let run = rotate(&env, &id, &[]).expect(1);
    assert!(run.stderr.contains("agent"), "{}", run.stderr);
    assert!(run.stderr.contains("binary"), "{}", run.stderr);
    assert!(run.stderr.contains("--skip-unwritable"), "{}", run.stderr);
    assert!(!run.stderr.contains("every place"), "{}", run.stderr);
    assert_eq!(env.read("app/.env"), dotenv.as_bytes());
    assert_eq!(env.keys().len(), keys_before, "nothing minted");
    assert_eq!(env.key(&id)["invalid"], false);

    // The plan shows the flag's effect.
    let run = rotate(&env, &id, &["--skip-unwritable", "--dry-run"]).expect(0);
    assert!(
        run.stdout.contains("--skip-unwritable") && run.stdout.contains("agent"),
        "{}",
        run.stdout
    );

    // With it, the rotation goes on and says what it left behind.
    let run = rotate(&env, &id, &["--skip-unwritable"]);
    canary_files(&mut env);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    let run = run.expect(0);
    assert!(!run.stderr.contains("every place holds"), "{}", run.stderr);
    assert!(run.stderr.contains("NOT updated"), "{}", run.stderr);
    assert!(run.stderr.contains("agent"), "{}", run.stderr);
    assert_eq!(
        env.read("app/bin/agent"),
        blob,
        "binary files are never edited"
    );
    assert_ne!(env.read("app/.env"), dotenv.as_bytes());
    env.assert_state_clean();
}
