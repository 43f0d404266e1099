//! Admission: what a run trusts before it begins or continues a rotation: a state directory
//! only its user can change, and no command that a journal alone names.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::support::{Run, TestEnv};

/// A change to the state directory, and its undoing.
type Setup = Box<dyn Fn(&Path)>;

/// Only root can give a file to another user: without it, those cases are skipped.
fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rotate_in_work(env: &TestEnv, key_id: &str) -> Run {
    env.run(
        env.cmd()
            .args(["rotate", key_id, "--yes", "--in"])
            .arg(env.work.path()),
    )
}

/// Issue 11 item 4: a state directory (or a journal, lock or audit log in it) that another
/// user owns or that its group or everyone may write is refused with exit 2 and a way out,
/// before anything changes. Root can give a folder away, so the ownership case is real.
#[test]
fn issue_11_4_a_state_directory_others_can_change_is_refused() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let planted = format!("TS_AUTHKEY={old}\n");
    env.write("app/.env", &planted);
    let state = env.state.path().to_owned();
    std::fs::create_dir_all(state.join("rotations")).unwrap();
    std::fs::create_dir_all(state.join("locks")).unwrap();
    let journal = state.join("rotations/r20261201000000other0.jsonl");
    std::fs::write(&journal, "").unwrap();
    chmod(&journal, 0o600);
    let audit = state.join("audit.jsonl");
    std::fs::write(&audit, "").unwrap();
    chmod(&audit, 0o600);
    let keys = env.keys().len();
    let me = std::fs::metadata(&state).unwrap();
    let (uid, gid) = (
        std::os::unix::fs::MetadataExt::uid(&me),
        std::os::unix::fs::MetadataExt::gid(&me),
    );
    let other = uid + 4242;

    let cases: Vec<(&str, Setup, Setup, &str)> = vec![
        (
            "state dir 0777",
            Box::new(|s: &Path| chmod(s, 0o777)),
            Box::new(|s: &Path| chmod(s, 0o700)),
            "chmod go-w",
        ),
        (
            "state dir 0775",
            Box::new(|s: &Path| chmod(s, 0o775)),
            Box::new(|s: &Path| chmod(s, 0o700)),
            "chmod go-w",
        ),
        (
            "state dir of another user",
            Box::new(move |s: &Path| std::os::unix::fs::chown(s, Some(other), None).unwrap()),
            Box::new(move |s: &Path| std::os::unix::fs::chown(s, Some(uid), Some(gid)).unwrap()),
            "chown",
        ),
        (
            "rotations folder 0777",
            Box::new(|s: &Path| chmod(&s.join("rotations"), 0o777)),
            Box::new(|s: &Path| chmod(&s.join("rotations"), 0o700)),
            "chmod go-w",
        ),
        (
            "a journal of another user",
            Box::new(move |s: &Path| {
                std::os::unix::fs::chown(
                    s.join("rotations/r20261201000000other0.jsonl"),
                    Some(other),
                    None,
                )
                .unwrap();
            }),
            Box::new(move |s: &Path| {
                std::os::unix::fs::chown(
                    s.join("rotations/r20261201000000other0.jsonl"),
                    Some(uid),
                    None,
                )
                .unwrap();
            }),
            "chown",
        ),
        (
            "audit log 0666",
            Box::new(|s: &Path| chmod(&s.join("audit.jsonl"), 0o666)),
            Box::new(|s: &Path| chmod(&s.join("audit.jsonl"), 0o600)),
            "chmod go-w",
        ),
        (
            "locks folder 0770",
            Box::new(|s: &Path| chmod(&s.join("locks"), 0o770)),
            Box::new(|s: &Path| chmod(&s.join("locks"), 0o700)),
            "chmod go-w",
        ),
    ];
    for (what, break_it, mend, fix) in &cases {
        if *fix == "chown" && !is_root() {
            continue;
        }
        break_it(&state);
        let run = rotate_in_work(&env, &old_id).expect(2);
        assert!(
            run.stderr.contains("tsrotate trusts what it finds there") && run.stderr.contains(fix),
            "{what}:\n{}",
            run.stderr
        );
        let resumed = env.run(env.cmd().args(["resume", "--yes"])).expect(2);
        assert!(resumed.stderr.contains(fix), "{what}:\n{}", resumed.stderr);
        mend(&state);
    }
    assert_eq!(env.keys().len(), keys, "nothing was minted");
    assert_eq!(env.key(&old_id)["invalid"], false);
    assert_eq!(
        std::fs::read_to_string(env.work.path().join("app/.env")).unwrap(),
        planted
    );
    // Mended, the same state directory works.
    std::fs::remove_file(&journal).unwrap();
    rotate_in_work(&env, &old_id).expect(0);
    env.assert_state_clean();
}

/// Issue 11 item 4: `resume` and `rotate --due` run no command that only a journal names: an
/// injected `--verify-cmd`, a command place, an `after` or a credential's `verify` that the
/// configuration does not say are refused (exit 2, nothing run); the rotation's own
/// `--verify-cmd` runs only when given again, matched by digest.
#[test]
fn issue_11_4_a_journal_never_chooses_a_command() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let w = env.work.path().display().to_string();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"{w}/app/.env\"\nfield = \"TS_AUTHKEY\"\n"
        ),
    );
    let ok = env.aside.path().join("consumer-ok");
    let verify = format!("test -e {}", ok.display());
    env.run(env.cmd().arg("--config").arg(&config).args([
        "rotate",
        "--credential",
        "web",
        "--yes",
        "--verify-cmd",
        &verify,
    ]))
    .expect(1);
    let id = env.only_rotation();
    let journal = env
        .state
        .path()
        .join("rotations")
        .join(format!("{id}.jsonl"));
    let original = std::fs::read_to_string(&journal).unwrap();
    let pwned = env.aside.path().join("pwned");
    let touch = format!("touch {}", pwned.display());
    let first_line_end = original.find('\n').unwrap();
    let with_first = |first: String| format!("{first}{}", &original[first_line_end..]);
    let first = original[..first_line_end].to_owned();
    let digest_start = first.find("\"verify_cmd\":\"").unwrap() + "\"verify_cmd\":\"".len();
    let digest_end = digest_start + first[digest_start..].find('"').unwrap();
    let tampered = [
        (
            "an injected --verify-cmd",
            with_first(format!("{}{touch}{}", &first[..digest_start], &first[digest_end..])),
        ),
        (
            "an injected command place",
            with_first(first.replacen(
                "\"sinks\":[",
                &format!("\"sinks\":[{{\"type\":\"configured\",\"spec\":{{\"type\":\"command\",\"run\":[\"sh\",\"-c\",\"{touch}\"]}},\"credential\":\"web\"}},"),
                1,
            )),
        ),
        (
            "an injected after",
            with_first(first.replacen(
                "\"after\":[]",
                &format!("\"after\":[\"sh\",\"-c\",\"{touch}\"]"),
                1,
            )),
        ),
        (
            "an injected credential verify",
            with_first(first.replacen(
                "\"verify_cmd\":",
                &format!("\"credential_verify\":[{{\"credential\":\"web\",\"run\":[\"sh\",\"-c\",\"{touch}\"]}}],\"verify_cmd\":"),
                1,
            )),
        ),
    ];
    std::fs::write(&ok, "").unwrap();
    for (what, text) in &tampered {
        assert_ne!(text, &original, "{what}: the fixture changed nothing");
        std::fs::write(&journal, text).unwrap();
        // Sealed with the test's key: the journal reaches the check this test is about.
        env.seal_journal(&journal);
        for given in [None, Some(verify.as_str())] {
            let mut cmd = env.cmd();
            cmd.arg("--config")
                .arg(&config)
                .args(["resume", &id, "--yes"]);
            if let Some(given) = given {
                cmd.args(["--verify-cmd", given]);
            }
            let run = env.run(&mut cmd);
            assert!(!pwned.exists(), "{what}: the journal's command ran");
            let run = run.expect(2);
            assert!(
                run.stderr.contains(&format!("rotation {id}")),
                "{what}:\n{}",
                run.stderr
            );
        }
    }
    assert!(
        !original.contains(&verify),
        "the journal keeps a digest, not the command"
    );
    assert!(original.contains("\"verify_cmd\":\"sha256:"), "{original}");
    // The untouched journal: without its --verify-cmd, or with another, it is refused too.
    std::fs::write(&journal, &original).unwrap();
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["resume", &id, "--yes"]),
        )
        .expect(2);
    assert!(run.stderr.contains("--verify-cmd"), "{}", run.stderr);
    env.run(env.cmd().arg("--config").arg(&config).args([
        "resume",
        &id,
        "--yes",
        "--verify-cmd",
        &touch,
    ]))
    .expect(2);
    assert!(!pwned.exists());
    // `rotate --due` has no command line to vouch for it: it leaves the rotation to a person.
    let due = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["rotate", "--due", "--yes"]),
        )
        .expect(1);
    assert!(due.stdout.contains("--verify-cmd"), "{}", due.stdout);
    // Given again, it runs and the rotation finishes.
    env.run(env.cmd().arg("--config").arg(&config).args([
        "resume",
        &id,
        "--yes",
        "--verify-cmd",
        &verify,
    ]))
    .expect(0);
    assert_eq!(env.key(&old_id)["invalid"], true);
    assert!(!pwned.exists());
    env.assert_state_clean();
}

/// A sibling of issue 11 item 4: the configuration names programs that run and servers that
/// receive tokens, so one that another user owns or that others may write is refused like
/// an untrusted state directory (exit 2, nothing run); root's own is fine.
#[test]
fn a_configuration_others_can_change_is_refused() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let ran = env.aside.path().join("after-ran");
    let w = env.work.path().display().to_string();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"{w}/app/.env\"\nfield = \"TS_AUTHKEY\"\nafter = [\"touch\", \"{}\"]\n",
            ran.display()
        ),
    );
    let rotate = |env: &TestEnv| {
        env.run(env.cmd().arg("--config").arg(&config).args([
            "rotate",
            "--credential",
            "web",
            "--yes",
        ]))
    };
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&config).unwrap());
    for (mode, owner, fix) in [
        (0o666, uid, "chmod go-w"),
        (0o664, uid, "chmod go-w"),
        (0o644, uid + 4242, "chown"),
    ] {
        if owner != uid && !is_root() {
            continue;
        }
        chmod(&config, mode);
        std::os::unix::fs::chown(&config, Some(owner), None).unwrap();
        let run = rotate(&env).expect(2);
        assert!(
            run.stderr.contains(fix),
            "{mode:o} {owner}:\n{}",
            run.stderr
        );
        assert!(!ran.exists(), "nothing ran");
    }
    chmod(&config, 0o644);
    std::os::unix::fs::chown(&config, Some(uid), None).unwrap();
    rotate(&env).expect(0);
    assert!(ran.exists());
    assert_eq!(env.key(&old_id)["invalid"], true);
    env.assert_state_clean();
}

/// A rotation whose configured credential has a `verify` that fails until `ok` exists: it
/// stops before revocation, leaving an unfinished journal. Returns (config, old key ID,
/// rotation ID, journal path).
pub(crate) fn unfinished_configured_rotation(
    env: &mut TestEnv,
    ok: &Path,
) -> (PathBuf, String, String, PathBuf) {
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let w = env.work.path().display().to_string();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\nrotate_before = \"30d\"\nverify = [\"test\", \"-e\", \"{}\"]\n\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"{w}/app/.env\"\nfield = \"TS_AUTHKEY\"\n",
            ok.display()
        ),
    );
    env.run(env.cmd().arg("--config").arg(&config).args([
        "rotate",
        "--credential",
        "web",
        "--yes",
    ]))
    .expect(1);
    let id = env.only_rotation();
    let journal = env
        .state
        .path()
        .join("rotations")
        .join(format!("{id}.jsonl"));
    (config, old_id, id, journal)
}

/// Red-team finding: a `minted` record appended to a journal named a key the rotation never
/// minted (here another live production key), and `resume` revoked it as a leftover of an
/// earlier attempt. A journal's word that a key was minted here is now checked against the
/// API's description of the key: the rotation stops and the key stays live.
#[test]
fn a_journal_cannot_make_resume_revoke_a_key_the_rotation_did_not_mint() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, old_id, id, journal) = unfinished_configured_rotation(&mut env, &ok);
    let (victim_id, victim) = env.mint_default();
    env.canary(&victim);
    let mut text = std::fs::read_to_string(&journal).unwrap();
    let seq = text.lines().count();
    text.push_str(&format!(
        "{{\"v\":1,\"seq\":{seq},\"at\":\"2026-12-04T00:00:00Z\",\"event\":{{\"type\":\"mint_intent\",\"attempt\":9,\"description\":\"tsrotate {id}\"}}}}\n{{\"v\":1,\"seq\":{},\"at\":\"2026-12-04T00:00:00Z\",\"event\":{{\"type\":\"minted\",\"attempt\":9,\"key_id\":\"{victim_id}\",\"fingerprint\":\"111111111111\",\"metadata\":null}}}}\n",
        seq + 1
    ));
    std::fs::write(&journal, text).unwrap();
    // Sealed with the test's key: the journal reaches the check this test is about.
    env.seal_journal(&journal);
    std::fs::write(&ok, "").unwrap();
    let run = env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["resume", &id, "--yes"]),
    );
    assert_eq!(
        env.key(&victim_id)["invalid"],
        false,
        "the victim key stays live"
    );
    let run = run.expect(1);
    assert!(
        run.stderr.contains("does not name rotation")
            || run.stdout.contains("does not name rotation"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // The rotation's own work (verified now) went on: the old key is replaced, not lost.
    let held = std::fs::read_to_string(env.work.path().join("app/.env")).unwrap();
    assert!(!held.contains(&old_id), "{held}");
    env.assert_state_clean();
}

/// Red-team finding: `rotate --due` (unattended, in cron or CI) finished a journal that named
/// a file outside the configuration, writing a fresh key there. An unattended run now writes
/// only configured places and leaves such a journal to a person.
#[test]
fn rotate_due_never_writes_a_place_only_a_journal_names() {
    let mut env = TestEnv::new();
    let ok = env.aside.path().join("consumer-ok");
    let (config, old_id, _, journal) = unfinished_configured_rotation(&mut env, &ok);
    let loot = env.write_aside(
        "loot.env",
        format!("X=tskey-auth-{old_id}-AAAAAAAAAAAAAAAAAAAAAAAA\n"),
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    let end = text.find('\n').unwrap();
    let first = text[..end].replacen(
        "\"sinks\":[",
        &format!(
            "\"sinks\":[{{\"type\":\"file\",\"path\":\"{}\",\"display\":\"loot.env\"}},",
            loot.display()
        ),
        1,
    );
    assert_ne!(first, text[..end], "the fixture changed nothing");
    // The file place goes first: every later record's place index moves by one.
    let rest: Vec<String> = text[end + 1..]
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().remove("mac");
            for field in ["sink", "index"] {
                if let Some(n) = record["event"][field].as_u64() {
                    record["event"][field] = serde_json::json!(n + 1);
                }
            }
            if let Some(sinks) = record["event"]["sinks"].as_array_mut() {
                for n in sinks.iter_mut() {
                    *n = serde_json::json!(n.as_u64().unwrap() + 1);
                }
            }
            record.to_string()
        })
        .collect();
    std::fs::write(&journal, format!("{first}\n{}\n", rest.join("\n"))).unwrap();
    // Sealed with the test's key: the journal reaches the check this test is about.
    env.seal_journal(&journal);
    std::fs::write(&ok, "").unwrap();
    let before = std::fs::read_to_string(&loot).unwrap();
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["rotate", "--due", "--yes"]),
        )
        .expect(1);
    assert_eq!(
        std::fs::read_to_string(&loot).unwrap(),
        before,
        "the journal's file was not written"
    );
    assert!(
        run.stdout.contains("configured places") || run.stderr.contains("configured places"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(env.key(&old_id)["invalid"], false, "nothing was revoked");
    env.assert_state_clean();
}
