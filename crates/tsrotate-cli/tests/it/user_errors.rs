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

/// Whether the tests run as root (who may write anything, so a folder's mode stops nobody).
fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// `tsrotate` as an unprivileged user when the tests run as root (uid 65534, whom a folder's
/// mode does stop), else as the user running the tests; with the emulator's URL and token.
fn unprivileged(env: &TestEnv) -> (assert_cmd::Command, u32) {
    use std::os::unix::process::CommandExt as _;
    #[allow(
        deprecated,
        reason = "the std Command is needed to run it as another user"
    )]
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tsrotate"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .env("TAILSCALE_BASE_URL", env.url())
        .env("TAILSCALE_API_KEY", &env.emu.bootstrap().api_key);
    let uid = if is_root() {
        cmd.uid(65534).gid(65534);
        65534
    } else {
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap())
    };
    // That user's own journal key file, in a private folder of theirs.
    let keys = env.aside.path().join(format!("keys-{uid}"));
    std::fs::create_dir_all(&keys).unwrap();
    std::os::unix::fs::chown(&keys, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(
        env.aside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    cmd.env("TSROTATE_JOURNAL_KEY_FILE", keys.join("journal.key"));
    (assert_cmd::Command::from_std(cmd), uid)
}

/// Issue 11 item 14: a state directory that cannot be written (a folder of mode 0500, one
/// whose parent is a file) exited 3 with "could not create directory …" and nothing to do.
/// It is the person's to fix: exit 2, the system's reason, and what to do; before anything
/// changes.
#[test]
fn issue_11_14_a_state_directory_that_cannot_be_written_is_a_usage_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let place = env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let keys_before = env.keys().len();
    let (mut cmd, uid) = unprivileged(&env);
    // Everything but the state directory is in order for that user.
    let top = env.aside.path().join("top");
    std::fs::create_dir(&top).unwrap();
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = top.join("state");
    std::fs::create_dir(&state).unwrap();
    for path in [env.aside.path(), env.work.path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for path in [
        env.work.path(),
        &env.work.path().join("app"),
        &place,
        &state,
    ] {
        std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o500)).unwrap();
    let run = env
        .run(
            cmd.args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path())
                .env("TSROTATE_STATE_DIR", &state),
        )
        .expect(2);
    assert!(
        run.stderr.contains("cannot use the state directory")
            && run.stderr.contains("Permission denied")
            && run.stderr.contains("hint:")
            && run.stderr.contains("--state-dir"),
        "{}",
        run.stderr
    );

    // A parent that cannot hold a folder: the same, whoever runs it.
    let file = env.write_aside("a-file", "not a folder\n");
    let run = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path())
                .arg("--state-dir")
                .arg(file.join("state")),
        )
        .expect(2);
    assert!(
        run.stderr.contains("cannot use the state directory")
            && run.stderr.contains("Not a directory")
            && run.stderr.contains("hint:"),
        "{}",
        run.stderr
    );

    // Nothing changed.
    assert_eq!(env.keys().len(), keys_before, "no key was minted");
    assert_eq!(env.key(&old_id)["invalid"], false);
    assert_eq!(
        env.read("app/.env"),
        format!("TS_AUTHKEY={old}\n").as_bytes()
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Red team 3 (F9): the secret part of a credential (what follows its ID) is letters and
/// digits like an ID, and was taken for one: `contain` and `inspect` sent it in a URL path and
/// showed it in "key … not found". Only the shape of a stable ID (`…CNTRL`) is a key ID now.
#[test]
fn the_secret_part_of_a_credential_is_not_taken_for_a_key_id() {
    let mut env = TestEnv::new();
    let (id, secret) = env.mint_default();
    env.canary(&secret);
    let part = secret.rsplit('-').next().unwrap().to_owned();
    assert!(part.len() >= 20 && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    env.canary(&part);
    tsrotate_test_support::emulator::clear_requests(env.url());
    for args in [
        vec!["contain", part.as_str(), "--since", "1d"],
        vec!["inspect", part.as_str()],
        vec!["revoke", part.as_str(), "--yes"],
    ] {
        let run = env.run(env.cmd().args(&args)).expect(2);
        assert!(
            run.stderr.contains("not a key ID") && run.stderr.contains("CNTRL"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let requests = tsrotate_test_support::emulator::requests(env.url());
    assert!(
        requests.iter().all(|r| !r.to_string().contains(&part)),
        "the secret part was sent: {requests:?}"
    );
    // The ID itself still works.
    env.run(env.cmd().args(["inspect", &id])).expect(0);
}
