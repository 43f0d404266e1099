//! What tsrotate's children (`--verify-cmd`, `verify`, `after`, command places) get and what
//! becomes of their output.

#![allow(clippy::format_collect, reason = "test fixtures")]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::support::{TestEnv, walk};

/// Every way a program may print `value`: as it is, lower- and upper-cased, base64 (standard
/// and URL-safe, with and without padding), percent-encoded, hex.
fn encodings(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    vec![
        value.to_owned(),
        value.to_lowercase(),
        value.to_uppercase(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bytes.iter().map(|b| format!("%{b:02X}")).collect(),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
    ]
}

/// The key and its secret part (after the key ID), each in every encoding.
fn forms_of(key: &str) -> Vec<String> {
    let secret = key.rsplit('-').next().unwrap();
    assert!(secret.len() >= 16, "{key}");
    let mut forms = encodings(key);
    forms.extend(encodings(secret));
    forms
}

#[track_caller]
fn assert_none_in(forms: &[String], text: &str, what: &str) {
    for form in forms {
        assert!(
            !text.contains(form.as_str()),
            "{form} leaked into {what}:\n{text}"
        );
    }
}

/// Issue 11 item 5: a verification command that prints the new key in several encodings on
/// stdout and stderr. None of them reaches tsrotate's output, the journal or the audit log,
/// and the journal and audit log keep none of the command's output at all.
#[test]
fn issue_11_5_no_encoding_of_the_new_key_leaks_through_a_childs_output() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let seen = env.aside.path().join("new-key");
    let script = format!(
        r#"K="$TSROTATE_NEW_KEY"; printf %s "$K" > {seen}
S="${{K##*-}}"
for out in 1 2; do
  echo "CHILD-OUTPUT-$((6*7)) secret part: $S" >&$out
  echo "b64: $(printf %s "$K" | base64 -w0) b64 part: $(printf %s "$S" | base64 -w0)" >&$out
  echo "url: $(printf %s "$K" | base64 -w0 | tr '+/' '-_' | tr -d =)" >&$out
  echo "pct: $(printf %s "$K" | od -An -tx1 | tr -d ' \n' | sed 's/../%&/g')" >&$out
  echo "lower: $(printf %s "$K" | tr A-Z a-z) upper: $(printf %s "$S" | tr a-z A-Z)" >&$out
done
exit 1"#,
        seen = seen.display()
    );
    let run = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--yes", "--verify-cmd", &script, "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    let new = std::fs::read_to_string(&seen).unwrap();
    assert!(new.starts_with("tskey-auth-"), "{new}");
    env.canary(&new);
    let forms = forms_of(&new);
    assert_none_in(&forms, &run.stdout, "stdout");
    assert_none_in(&forms, &run.stderr, "stderr");
    assert!(
        run.stderr.contains("CHILD-OUTPUT-42"),
        "a redacted excerpt is shown on stderr:\n{}",
        run.stderr
    );
    assert!(!run.stdout.contains("CHILD-OUTPUT-42"), "{}", run.stdout);
    for path in walk(env.state.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert_none_in(&forms, &text, &path.display().to_string());
        assert!(
            !text.contains("CHILD-OUTPUT-42"),
            "child output kept in {}",
            path.display()
        );
    }
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");
    env.assert_state_clean();
}

/// Issue 11 item 11: `--verify-cmd`, a place's `verify` and `after`, and a command place each
/// get the new key and nothing of tsrotate's own credentials, nor those it uses for places.
#[test]
fn issue_11_11_children_inherit_none_of_tsrotates_credentials() {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let aside = env.aside.path().to_owned();
    let dump = |role: &str| format!("env > {}", aside.join(format!("env-{role}")).display());
    let w = env.work.path().display().to_string();
    let config = format!(
        r#"
[[credential]]
name = "web"
kind = "auth-key"

[[credential.sink]]
type = "dotenv"
path = "{w}/app/.env"
field = "TS_AUTHKEY"
after = ["sh", "-c", "{after}"]
verify = ["sh", "-c", "{verify}"]

[[credential.sink]]
type = "command"
run = ["sh", "-c", "cat > /dev/null; {command}"]
"#,
        after = dump("after"),
        verify = dump("verify"),
        command = dump("command"),
    );
    let config = env.write("tsrotate.toml", config);
    let place_secrets = [
        ("VAULT_TOKEN", "hvs.canary-vault-token-0123456789"),
        ("GITHUB_TOKEN", "ghp_canaryGithubToken0123456789abcdef"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "canary/aws/secret/0123456789abcdefgh",
        ),
    ];
    for (_, value) in place_secrets {
        env.canary(value);
    }
    let mut cmd = env.cmd_oauth();
    for (name, value) in place_secrets {
        cmd.env(name, value);
    }
    cmd.env("TSROTATE_PASS_ENV", "KEEP_ME,TAILSCALE_OAUTH_CLIENT_SECRET")
        .env("KEEP_ME", "on purpose")
        .arg("--config")
        .arg(&config)
        .args(["rotate", "--credential", "web", "--yes", "--verify-cmd"])
        .arg(dump("verify-cmd"));
    let run = env.run(&mut cmd).expect(0);
    assert!(
        run.stderr.contains("TAILSCALE_OAUTH_CLIENT_SECRET"),
        "refusing to pass our own secret is said:\n{}",
        run.stderr
    );
    for role in ["after", "verify", "command", "verify-cmd"] {
        let text = std::fs::read_to_string(env.aside.path().join(format!("env-{role}")))
            .unwrap_or_else(|e| panic!("{role} did not run: {e}"));
        let names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        for name in &names {
            assert!(
                !name.starts_with("TAILSCALE_") && !name.starts_with("AWS_"),
                "{role} got {name}"
            );
            assert!(
                *name == "TSROTATE_NEW_KEY" || !name.starts_with("TSROTATE_"),
                "{role} got {name}"
            );
        }
        for (name, _) in place_secrets {
            assert!(!names.contains(&name), "{role} got {name}");
        }
        for wanted in ["TSROTATE_NEW_KEY", "PATH", "HOME", "KEEP_ME"] {
            assert!(names.contains(&wanted), "{role} lacks {wanted}: {names:?}");
        }
        assert!(!text.contains(&env.emu.bootstrap().oauth_client_secret));
        for (_, value) in place_secrets {
            assert!(!text.contains(value), "{role}");
        }
    }
    env.assert_state_clean();
}

/// Issue 11 item 2: a credential's `verify` runs with the new key before the old key is
/// revoked, whichever way the rotation is asked for (`rotate --credential`, `rotate KEY`
/// finding configured places, `rotate --due`, `resume`), and a failing one holds revocation
/// back (exit 1, the old key live).
#[test]
fn issue_11_2_a_credentials_verify_runs_before_revocation_in_every_path() {
    let mut env = TestEnv::new();
    let (first_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let log = env.aside.path().join("verified");
    let ok = env.aside.path().join("consumer-ok");
    let w = env.work.path().display().to_string();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            r#"[[credential]]
name = "web"
kind = "auth-key"
verify = ["sh", "-c", "printf '%s\n' \"$TSROTATE_NEW_KEY\" >> {log}; test -e {ok}"]

[[credential.sink]]
type = "dotenv"
path = "{w}/app/.env"
field = "TS_AUTHKEY"
"#,
            log = log.display(),
            ok = ok.display()
        ),
    );
    let held = |env: &TestEnv| -> String {
        let text = std::fs::read_to_string(env.work.path().join("app/.env")).unwrap();
        text.trim()
            .trim_start_matches("TS_AUTHKEY=")
            .split('-')
            .nth(2)
            .unwrap()
            .to_owned()
    };
    let verified = |env: &mut TestEnv| -> Vec<String> {
        let lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        for line in &lines {
            env.canary(line);
        }
        lines
    };
    let with_config = |env: &TestEnv| {
        let mut cmd = env.cmd();
        cmd.arg("--config").arg(&config);
        cmd
    };

    // `rotate --credential`: verify fails, so the old key stays live.
    env.run(with_config(&env).args(["rotate", "--credential", "web", "--yes"]))
        .expect(1);
    let seen = verified(&mut env);
    assert_eq!(seen.len(), 1, "verify ran once: {seen:?}");
    assert!(seen[0].starts_with("tskey-auth-") && !seen[0].contains(&first_id));
    assert_eq!(
        env.key(&first_id)["invalid"],
        false,
        "verify failed: no revocation"
    );

    // `resume`: it runs again, passes, and only then is the old key revoked.
    std::fs::write(&ok, "").unwrap();
    let id = env.only_rotation();
    env.run(with_config(&env).args(["resume", &id, "--yes"]))
        .expect(0);
    assert!(verified(&mut env).len() >= 2, "verify ran on resume");
    assert_eq!(env.key(&first_id)["invalid"], true);

    // `rotate KEY` that finds the credential's places through the configuration.
    std::fs::remove_file(&ok).unwrap();
    let second = held(&env);
    let before = verified(&mut env).len();
    env.run(with_config(&env).args(["rotate", &second, "--yes"]))
        .expect(1);
    assert!(
        verified(&mut env).len() > before,
        "verify ran for rotate KEY"
    );
    assert_eq!(env.key(&second)["invalid"], false);
    std::fs::write(&ok, "").unwrap();
    let ids: Vec<String> = std::fs::read_dir(env.state.path().join("rotations"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".jsonl")
                .to_owned()
        })
        .collect();
    for id in &ids {
        env.run(with_config(&env).args(["resume", id, "--yes"]))
            .expect(0);
    }
    assert_eq!(env.key(&second)["invalid"], true);

    // `rotate --due`, once the key (30 days) is within `rotate_before` (14 days) of expiry.
    std::fs::remove_file(&ok).unwrap();
    let third = held(&env);
    let before = verified(&mut env).len();
    let _ = tsrotate_test_support::emulator::advance_clock(env.url(), 20 * 86_400);
    let run = env
        .run(with_config(&env).args(["rotate", "--due", "--yes"]))
        .expect(1);
    assert!(run.stdout.contains("failed"), "{}", run.stdout);
    assert!(verified(&mut env).len() > before, "verify ran for --due");
    assert_eq!(env.key(&third)["invalid"], false);
    env.assert_state_clean();
}

/// The secret parts of `keys` are in no eight-character piece in `text`, as they are or in
/// hex, once the whitespace that a dump puts between its pieces is gone.
#[track_caller]
fn assert_no_piece_in(keys: &[&str], text: &str) {
    let joined: String = text.split_whitespace().collect();
    for key in keys {
        let secret = key.rsplit('-').next().unwrap();
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for n in 0..=secret.len() - 8 {
            assert!(!joined.contains(&secret[n..n + 8]), "{text}");
            assert!(!joined.contains(&hex[2 * n..2 * n + 16]), "{text}");
        }
        assert_none_in(&forms_of(key), text, "output");
    }
}

/// Red-team finding: dump tools print a key cut over lines (`od` with its text column,
/// `base64` wrapped at 76 columns), which no whole-value pattern matches. The excerpt is
/// withheld instead of shown in pieces.
#[test]
fn a_new_key_cut_over_lines_by_a_dump_tool_is_never_shown() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let seen = env.aside.path().join("new-key");
    let script = format!(
        r#"printf %s "$TSROTATE_NEW_KEY" > {seen}
echo CHILD-SAYS-HELLO >&2
printf %s "$TSROTATE_NEW_KEY" | od -A x -t x1z >&2
printf 'padding to move the key off the 76-column lines: %s' "$TSROTATE_NEW_KEY" | base64 >&2
exit 1"#,
        seen = seen.display(),
    );
    let run = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--yes", "--verify-cmd", &script, "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    let new = std::fs::read_to_string(&seen).unwrap();
    env.canary(&new);
    assert_no_piece_in(&[&new], &run.stderr);
    assert_no_piece_in(&[&new], &run.stdout);
    assert!(
        run.stderr.contains("output withheld"),
        "the excerpt says why it is not shown:\n{}",
        run.stderr
    );
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");
    env.assert_state_clean();
}

/// The old key is live while verification runs: a child that prints it (here, from a copy
/// the rotation does not know of, whole in base64 and its secret part alone) has it redacted
/// too, whenever the run knows its value: given as `-` on standard input, or read from the
/// files it replaces when rotating by key ID (a red-team finding).
#[test]
fn the_old_key_is_redacted_from_a_childs_output_too() {
    for by_id in [false, true] {
        let mut env = TestEnv::new();
        let (old_id, old) = env.mint_default();
        env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
        let copy = env.write_aside("forgotten-copy", &old);
        let script = format!(
            "printf 'old: %s\\n' \"$(base64 -w0 < {copy})\" >&2; printf 'part: %s\\n' \"$(sed 's/.*-//' {copy})\" >&2; exit 1",
            copy = copy.display()
        );
        let mut cmd = env.cmd();
        cmd.args(["rotate", if by_id { &old_id } else { "-" }])
            .args(["--yes", "--verify-cmd", &script, "--in"])
            .arg(env.work.path());
        if !by_id {
            cmd.write_stdin(format!("{old}\n"));
        }
        let run = env.run(&mut cmd).expect(1);
        assert!(run.stderr.contains("old: "), "{}", run.stderr);
        assert_no_piece_in(&[&old], &run.stderr);
        assert_eq!(env.key(&old_id)["invalid"], false);
        env.assert_state_clean();
    }
}

/// Red-team findings: UTF-16 (a NUL after each character), base32, one separator after each
/// character and a reversed key slipped past the redactor; so did a token a person passes to
/// children with `TSROTATE_PASS_ENV` (`GH_TOKEN` for `gh`). None may show.
#[test]
fn odd_encodings_and_passed_tokens_never_show_in_a_childs_output() {
    const PASSED: &str = "ghp_PASSEDthroughTOKEN0123456789abcdef";
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={old}\n"));
    let seen = env.aside.path().join("new-key");
    let script = format!(
        r#"printf %s "$TSROTATE_NEW_KEY" > {seen}
echo CHILD-SAYS-HELLO >&2
printf %s "$TSROTATE_NEW_KEY" | iconv -t UTF-16LE >&2; echo >&2
printf %s "$TSROTATE_NEW_KEY" | base32 -w0 >&2; echo >&2
printf '%s\n' "$TSROTATE_NEW_KEY" | sed 's/./&,/g' >&2
printf '%s\n' "$TSROTATE_NEW_KEY" | rev >&2
echo "gh: token=$GH_TOKEN" >&2
exit 1"#,
        seen = seen.display(),
    );
    let run = env
        .run(
            env.cmd()
                .env("GH_TOKEN", PASSED)
                .env("TSROTATE_PASS_ENV", "GH_TOKEN")
                .args(["rotate", &old_id, "--yes", "--verify-cmd", &script, "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    let new = std::fs::read_to_string(&seen).unwrap();
    env.canary(&new);
    for out in [&run.stderr, &run.stdout] {
        assert_no_piece_in(&[&new], out);
        let reversed: String = new.chars().rev().collect();
        assert!(!out.contains(&reversed[..20]), "{out}");
        assert!(!out.contains(PASSED), "{out}");
        let letters: String = out.chars().filter(char::is_ascii_alphanumeric).collect();
        let secret = new.rsplit('-').next().unwrap();
        assert!(!letters.contains(&secret[..16]), "{out}");
    }
    assert!(
        run.stderr.contains("output withheld") || run.stderr.contains("CHILD-SAYS-HELLO"),
        "the excerpt is shown or says why not:\n{}",
        run.stderr
    );
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");
    env.assert_state_clean();
}
