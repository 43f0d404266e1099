//! Issue 11 item 14 (and 9's CLI side): errors a user can cause exit 2 and say, in words, what
//! is wrong and what to do; no Rust debug formatting reaches human output.

use crate::support::TestEnv;

#[test]
fn emulator_refuses_a_network_address_without_allow_remote() {
    let env = TestEnv::new();
    // Refused before binding: nothing listens on the network, even for a moment.
    let run = env
        .run(env.cmd().args(["emulator", "--listen", "0.0.0.0:0"]))
        .expect(2);
    assert!(
        run.stdout.is_empty(),
        "printed a ready line: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("not a loopback address") && run.stderr.contains("--allow-remote"),
        "{}",
        run.stderr
    );
}

#[test]
fn emulator_state_file_that_is_not_emulator_state_is_a_usage_error() {
    let env = TestEnv::new();
    let state = env.write_aside("emulator-state.json", "{ not json");
    let run = env
        .run(env.cmd().args(["emulator", "--state"]).arg(&state))
        .expect(2);
    assert!(
        run.stderr.contains("is not valid emulator state") && run.stderr.contains("hint:"),
        "{}",
        run.stderr
    );
    // A state file in a folder that does not exist says the system's reason.
    let missing = env.aside.path().join("no-such-folder").join("state.json");
    let run = env
        .run(env.cmd().args(["emulator", "--state"]).arg(&missing))
        .expect(2);
    assert!(
        run.stderr.contains("No such file or directory"),
        "{}",
        run.stderr
    );
}

fn with_stdin(env: &TestEnv, args: &[&str], stdin: &[u8]) -> crate::support::Run {
    env.run(env.cmd().args(args).write_stdin(stdin.to_vec()))
}

#[test]
fn bytes_that_are_not_utf8_on_stdin_are_a_usage_error() {
    let env = TestEnv::new();
    for args in [
        &["inspect", "-"][..],
        &["revoke", "-"][..],
        &["rotate", "-", "--dry-run"][..],
        &["rotate", "--from-scan", "-", "--dry-run"][..],
    ] {
        let run = with_stdin(&env, args, b"\xff\xfetskey-auth-\xc3");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("not UTF-8"), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn skipped_and_unreadable_paths_are_explained_in_words() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    // Outside the tree and holding nothing of the key: a note, not a problem.
    let outside = env.write_aside("outside.env", "TS_AUTHKEY=unrelated\n");
    std::os::unix::fs::symlink(&outside, env.work.path().join("app/linked.env")).unwrap();
    std::os::unix::fs::symlink(
        env.work.path().join("app/gone.env"),
        env.work.path().join("app/dangling.env"),
    )
    .unwrap();
    let run = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--dry-run", "--in"])
                .arg(env.work.path()),
        )
        .expect(0);
    let shown = format!("{}{}", run.stdout, run.stderr);
    for debug in [
        "OutsideRoots",
        "Unreadable {",
        "error_kind",
        "NotFound",
        "{ ",
    ] {
        assert!(!shown.contains(debug), "debug output `{debug}`:\n{shown}");
    }
    assert!(shown.contains("outside the folders searched"), "{shown}");
    assert!(shown.contains("No such file or directory"), "{shown}");
}
