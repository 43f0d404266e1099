//! tsrotate authenticated by a federated identity (issue 14): `TAILSCALE_OAUTH_CLIENT_ID` with
//! `TAILSCALE_IDENTITY_TOKEN_FILE`, or `TAILSCALE_AUDIENCE` and GitHub Actions' ID-token
//! endpoint (the test issuer's fake), against the emulator over loopback. The identity
//! tokens, the Actions request token, the API access tokens and the keys are canaries.

use serde_json::json;
use tsrotate_test_support::emulator;
use tsrotate_test_support::oidc_issuer::{
    ACTIONS_REQUEST_TOKEN, DEFAULT_ACTIONS_SUBJECT, TestIssuer,
};

use crate::support::{Run, TestEnv, credentials_in, values_of};

/// A federated identity that may do everything, for keys tagged `tag:server`.
fn identity(env: &TestEnv, issuer: &TestIssuer, subject: &str) -> (String, String) {
    let key = emulator::create_federated_identity(
        &env.emu,
        &json!({"scopes": ["all"], "tags": ["tag:server"], "issuer": issuer.url(),
            "subject": subject, "description": "tsrotate in CI"}),
    );
    (
        key["id"].as_str().unwrap().to_owned(),
        key["audience"].as_str().unwrap().to_owned(),
    )
}

/// `tsrotate` with no credential but the federated identity's ID.
fn cmd_federated(env: &TestEnv, client_id: &str) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env_remove("TAILSCALE_API_KEY")
        .env("TAILSCALE_OAUTH_CLIENT_ID", client_id);
    cmd
}

/// The IDs of the API access tokens the emulator issued to `identity`.
fn access_tokens(env: &TestEnv, identity: &str) -> Vec<String> {
    env.keys()
        .into_iter()
        .filter(|k| k["issuedBy"] == identity)
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

/// No access token of `ids` appears as a value (its redacted form, `tskey-api-ID-…`, may).
#[track_caller]
fn assert_no_access_token(ids: &[String], texts: &[&str]) {
    for id in ids {
        let prefix = format!("tskey-api-{id}-");
        for text in texts {
            for (at, _) in text.match_indices(&prefix) {
                let next = text[at + prefix.len()..].chars().next();
                assert!(
                    !next.is_some_and(|c| c.is_ascii_alphanumeric()),
                    "an access token leaked:\n{text}"
                );
            }
        }
    }
}

fn plant(env: &TestEnv, key: &str) {
    env.write("app/.env", format!("APP=1\nTS_AUTHKEY={key}\n"));
    env.write(
        "deploy/values.yaml",
        format!("tailscale:\n  authKey: \"{key}\"\n"),
    );
}

/// The one key the files hold now, not `old_id`.
fn new_value(env: &TestEnv, old_id: &str) -> String {
    let found = credentials_in(env.work.path());
    let ids: std::collections::BTreeSet<&String> = found.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 1, "files hold different keys: {ids:?}");
    let (path, id) = &found[0];
    assert_ne!(id, old_id, "files still hold the old key");
    values_of(&std::fs::read(path).unwrap(), id).pop().unwrap()
}

fn accepted_exchanges(env: &TestEnv) -> usize {
    emulator::token_exchanges(env.url())
        .iter()
        .filter(|e| e["accepted"] == true)
        .count()
}

/// A command line that moves the emulator's clock forward by `seconds`, for a `--verify-cmd`
/// (a point in the middle of a rotation). CI guarantees Python; the interpreter is named by
/// its full path because children get a clean environment.
fn advance_clock_command(env: &TestEnv, seconds: u64) -> String {
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    format!(
        "{python} -c \"import urllib.request as u; u.urlopen(u.Request('{}/_emulator/clock', data=b'{{\\\"advance_seconds\\\": {seconds}}}', headers={{'Content-Type': 'application/json'}}, method='POST')).read()\"",
        env.url()
    )
}

#[test]
fn rotation_authenticated_by_an_identity_token_file() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    let subject = "system:serviceaccount:ops:tsrotate";
    let (identity_id, audience) = identity(&env, &issuer, subject);
    let token = issuer.token(subject, &audience, 600);
    env.canary(&token);
    let token_file = env.write_aside("identity-token", format!("{token}\n"));
    let (old_id, old) = env.mint_default();
    plant(&env, &old);

    let run = env
        .run(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_IDENTITY_TOKEN_FILE", &token_file)
                .args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path()),
        )
        .expect(0);
    let new = new_value(&env, &old_id);
    env.canary(&new);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_eq!(env.key(&old_id)["invalid"], true, "the old key is revoked");
    let new_id = new.split('-').nth(2).unwrap();
    assert_eq!(
        env.key(new_id)["userId"],
        "",
        "keys minted by a federated identity are tailnet-owned"
    );
    assert_eq!(
        accepted_exchanges(&env),
        1,
        "one exchange for the whole run"
    );
    let tokens = access_tokens(&env, &identity_id);
    assert_eq!(tokens.len(), 1);
    assert_no_access_token(&tokens, &[&run.stdout, &run.stderr]);
    env.assert_state_clean();
}

/// A token file that is a pipe (`TAILSCALE_IDENTITY_TOKEN_FILE=<(vault read …)`, here
/// `/dev/stdin`) can be read once. tsrotate read it to check it at start-up and then again at
/// the exchange, which found the pipe empty, so such a run always failed before its first call.
#[test]
fn an_identity_token_given_through_a_pipe_is_read_once_and_used() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    let subject = "system:serviceaccount:ops:tsrotate";
    let (identity_id, audience) = identity(&env, &issuer, subject);
    let token = issuer.token(subject, &audience, 600);
    env.canary(&token);
    let (old_id, old) = env.mint_default();
    plant(&env, &old);

    let run = env
        .run(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_IDENTITY_TOKEN_FILE", "/dev/stdin")
                .write_stdin(format!("{token}\n"))
                .args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path()),
        )
        .expect(0);
    let new = new_value(&env, &old_id);
    env.canary(&new);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_eq!(env.key(&old_id)["invalid"], true, "the old key is revoked");
    assert_eq!(accepted_exchanges(&env), 1, "the piped token was exchanged");
    env.assert_state_clean();
}

#[test]
fn rotation_through_github_actions_exchanges_again_when_its_token_expires_mid_run() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    env.canary(ACTIONS_REQUEST_TOKEN);
    // Identity tokens outlive the clock jump below (the issuer's clock does not jump).
    issuer.set_actions_lifetime(86_400);
    let (identity_id, audience) = identity(&env, &issuer, DEFAULT_ACTIONS_SUBJECT);
    let (old_id, old) = env.mint_default();
    plant(&env, &old);

    // Verification runs between distribution and revocation: two hours pass there on the
    // control plane, so the hour-long access token dies in the middle of the run.
    let run = env
        .run(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_AUDIENCE", &audience)
                .env("ACTIONS_ID_TOKEN_REQUEST_URL", issuer.actions_request_url())
                .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ACTIONS_REQUEST_TOKEN)
                .args(["rotate", &old_id, "--yes", "--verify-cmd"])
                .arg(advance_clock_command(&env, 2 * 3600))
                .arg("--in")
                .arg(env.work.path()),
        )
        .expect(0);
    let new = new_value(&env, &old_id);
    env.canary(&new);
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_eq!(env.key(&old_id)["invalid"], true, "the old key is revoked");
    assert_eq!(
        accepted_exchanges(&env),
        2,
        "exchanged at the start and again after the token expired"
    );
    assert_eq!(
        issuer.actions_requests(),
        2,
        "a fresh identity token from GitHub Actions for each exchange"
    );
    let tokens = access_tokens(&env, &identity_id);
    assert_eq!(tokens.len(), 2);
    assert_no_access_token(&tokens, &[&run.stdout, &run.stderr]);
    env.assert_state_clean();
}

#[test]
fn federated_settings_that_cannot_work_are_explained_and_change_nothing() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    let (identity_id, audience) = identity(&env, &issuer, DEFAULT_ACTIONS_SUBJECT);
    let token = issuer.token(DEFAULT_ACTIONS_SUBJECT, &audience, 600);
    env.canary(&token);
    let wrong = issuer.token("repo:acme/infra:pull_request", &audience, 600);
    env.canary(&wrong);
    let (old_id, old) = env.mint_default();
    plant(&env, &old);
    let before = env.keys().len();

    let check = |run: Run, says: &[&str]| {
        let run = run.expect(2);
        for words in says {
            assert!(run.stderr.contains(words), "{words:?} in:\n{}", run.stderr);
        }
    };
    let rotate = |cmd: &mut assert_cmd::Command| {
        cmd.args(["rotate", &old_id, "--yes", "--in"])
            .arg(env.work.path());
        env.run(cmd)
    };
    // An identity token without the identity's ID.
    check(
        rotate(
            env.cmd()
                .env_remove("TAILSCALE_API_KEY")
                .env("TAILSCALE_IDENTITY_TOKEN", &token),
        ),
        &["TAILSCALE_IDENTITY_TOKEN is set but TAILSCALE_OAUTH_CLIENT_ID is not"],
    );
    // Two credentials at once.
    check(
        rotate(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_IDENTITY_TOKEN", &token)
                .env("TAILSCALE_API_KEY", &env.emu.bootstrap().api_key),
        ),
        &["TAILSCALE_IDENTITY_TOKEN and TAILSCALE_API_KEY are both set"],
    );
    check(
        rotate(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_IDENTITY_TOKEN", &token)
                .env("TAILSCALE_AUDIENCE", &audience),
        ),
        &["TAILSCALE_IDENTITY_TOKEN and TAILSCALE_AUDIENCE are both set"],
    );
    // GitHub Actions without `permissions: id-token: write`.
    check(
        rotate(cmd_federated(&env, &identity_id).env("TAILSCALE_AUDIENCE", &audience)),
        &["ACTIONS_ID_TOKEN_REQUEST_URL is not set", "id-token: write"],
    );
    check(
        rotate(cmd_federated(&env, &identity_id).env(
            "TAILSCALE_IDENTITY_TOKEN_FILE",
            env.aside.path().join("missing"),
        )),
        &["TAILSCALE_IDENTITY_TOKEN_FILE", "missing"],
    );
    // A token the identity does not accept: the exchange's refusal, in words.
    let run =
        rotate(cmd_federated(&env, &identity_id).env("TAILSCALE_IDENTITY_TOKEN", &wrong)).expect(2);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains("sub `repo:acme/infra:pull_request`"),
        "{}",
        run.stderr
    );
    assert_eq!(env.keys().len(), before, "nothing was minted");
    assert_eq!(env.key(&old_id)["invalid"], false);
    assert!(
        env.read("app/.env")
            .windows(old.len())
            .any(|w| w == old.as_bytes())
    );
    env.assert_state_clean();
}

#[test]
fn keys_list_shows_federated_identities_and_scan_leaves_their_ids_alone() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    let key = emulator::create_federated_identity(
        &env.emu,
        &json!({"scopes": ["auth_keys"], "tags": ["tag:ci"], "issuer": issuer.url(),
            "subject": "repo:acme/infra:ref:refs/heads/main",
            "customClaimRules": {"repository_owner": "acme"}, "description": "deploy"}),
    );
    let id = key["id"].as_str().unwrap();
    let audience = key["audience"].as_str().unwrap();

    let human = env.run(env.cmd().args(["keys", "list", "--all"])).expect(0);
    let line = human
        .stdout
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{}", human.stdout));
    for shown in [
        issuer.url(),
        "repo:acme/infra:ref:refs/heads/main",
        audience,
        "repository_owner=acme",
    ] {
        assert!(line.contains(shown), "{shown:?} in {line:?}");
    }
    let json = env
        .run(
            env.cmd()
                .args(["--format", "json", "keys", "list", "--all"]),
        )
        .expect(0)
        .json();
    let row = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(row["kind"], "federated-identity");
    assert_eq!(row["federation"]["issuer"], issuer.url());
    assert_eq!(
        row["federation"]["subject"],
        "repo:acme/infra:ref:refs/heads/main"
    );

    // A migrated workflow names the identity and its audience: nothing to report.
    let workflow = format!(
        "jobs:\n  deploy:\n    permissions:\n      id-token: write\n    steps:\n      - uses: tailscale/github-action@v4\n        with:\n          oauth-client-id: {id}\n          audience: {audience}\n          tags: tag:ci\n    env:\n      TAILSCALE_OAUTH_CLIENT_ID: {id}\n      TAILSCALE_AUDIENCE: {audience}\n"
    );
    env.write(".github/workflows/deploy.yml", &workflow);
    let clean = env
        .run(
            env.cmd()
                .args(["--format", "json", "scan"])
                .arg(env.work.path()),
        )
        .expect(0);
    assert_eq!(clean.json(), json!([]));
    // The same workflow still passing a client secret is reported, and only the secret.
    let (_, secret) =
        env.mint(json!({"keyType": "client", "scopes": ["auth_keys"], "tags": ["tag:ci"]}));
    env.write(
        ".github/workflows/deploy.yml",
        format!("{workflow}      TS_OAUTH_SECRET: {secret}\n"),
    );
    let found = env
        .run(
            env.cmd()
                .args(["--format", "json", "scan"])
                .arg(env.work.path()),
        )
        .expect(1)
        .json();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["type"], "client");
}

#[test]
fn audit_reports_broad_subjects_shared_audiences_and_secrets_that_could_federate() {
    let env = TestEnv::new();
    let issuer = TestIssuer::start();
    let create = |subject: &str, audience: Option<&str>| {
        let mut body = json!({"scopes": ["auth_keys"], "tags": ["tag:ci"], "issuer": issuer.url(),
            "subject": subject});
        if let Some(audience) = audience {
            body["audience"] = json!(audience);
        }
        emulator::create_federated_identity(&env.emu, &body)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let org = create("repo:acme/*", None);
    let any_ref = create("repo:acme/infra:*", None);
    let first = create("repo:acme/a:ref:refs/heads/main", Some("shared-audience"));
    let second = create("repo:acme/b:ref:refs/heads/main", Some("shared-audience"));
    let narrow = create("repo:acme/c:environment:prod", None);
    let config = env.write_aside(
        "tsrotate.toml",
        "[[credential]]\nname = \"ci\"\nkind = \"oauth-client\"\n\n[[credential.sink]]\ntype = \"github-actions\"\nrepository = \"acme/deploy\"\nsecret = \"TS_OAUTH_SECRET\"\n",
    );

    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["--format", "json", "audit"]),
        )
        .expect(1);
    let report = run.json();
    let findings: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            [
                org.as_str(),
                any_ref.as_str(),
                first.as_str(),
                second.as_str(),
                narrow.as_str(),
            ]
            .contains(&f["key_id"].as_str().unwrap())
        })
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["key_id"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |rule: &str, id: &str, severity: &str| {
        assert!(
            findings.contains(&(rule.to_owned(), id.to_owned(), severity.to_owned())),
            "{rule} {id} {severity} in {findings:?}"
        );
    };
    expect("broad-subject", &org, "high");
    expect("broad-subject", &any_ref, "medium");
    expect("reused-audience", &first, "medium");
    expect("reused-audience", &second, "medium");
    assert!(
        !findings.iter().any(|(_, id, _)| *id == narrow),
        "{findings:?}"
    );
    let place = &report["place_findings"][0];
    assert_eq!(place["rule"], "could-federate");
    assert_eq!(place["credential"], "ci");
    assert_eq!(
        place["place"],
        "github-actions acme/deploy secret TS_OAUTH_SECRET"
    );

    let human = env
        .run(env.cmd().arg("--config").arg(&config).arg("audit"))
        .expect(1);
    assert!(
        human
            .stdout
            .contains("[LOW] could-federate: credential ci in github-actions acme/deploy secret TS_OAUTH_SECRET"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains(&format!("broad-subject: federated identity {org}")),
        "{}",
        human.stdout
    );
}

/// Red-team finding: the identity token in `TAILSCALE_IDENTITY_TOKEN_FILE` was not among the
/// secrets redacted from a child's output, and a verify command that showed the file (folded,
/// as logs wrap lines) put the live token on stderr.
#[test]
fn the_identity_token_file_is_redacted_from_a_childs_output() {
    let mut env = TestEnv::new();
    let issuer = TestIssuer::start();
    let subject = "system:serviceaccount:ops:tsrotate";
    let (identity_id, audience) = identity(&env, &issuer, subject);
    let token = issuer.token(subject, &audience, 600);
    env.canary(&token);
    let token_file = env.write_aside("identity-token", format!("{token}\n"));
    let (old_id, old) = env.mint_default();
    plant(&env, &old);
    let script = format!("fold -w 70 {} >&2; exit 1", token_file.display());
    let run = env
        .run(
            cmd_federated(&env, &identity_id)
                .env("TAILSCALE_IDENTITY_TOKEN_FILE", &token_file)
                .args(["rotate", &old_id, "--yes", "--verify-cmd", &script, "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    let joined: String = run.stderr.split_whitespace().collect();
    let signature = token.rsplit('.').next().unwrap();
    for n in 0..=signature.len() - 16 {
        assert!(
            !joined.contains(&signature[n..n + 16]),
            "a piece of the identity token is shown:\n{}",
            run.stderr
        );
    }
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_eq!(env.key(&old_id)["invalid"], false, "the old key stays live");
    env.assert_state_clean();
}

/// Red-team finding 7: a secret file (`TAILSCALE_IDENTITY_TOKEN_FILE`, and any other `*_FILE`)
/// naming a FIFO that nothing writes to is an empty file, refused with exit 2, not a command
/// that waits forever in `open`. The timeout is only a safety net, so that a regression fails
/// instead of stalling the suite; the test does not depend on timing.
#[test]
fn a_secret_file_that_is_a_fifo_without_a_writer_is_empty_not_a_hang() {
    let env = TestEnv::new();
    let fifo = env.aside.path().join("token-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    for (variable, mut cmd) in [
        (
            "TAILSCALE_IDENTITY_TOKEN_FILE",
            cmd_federated(&env, "kC1CNTRL"),
        ),
        ("TAILSCALE_API_KEY_FILE", {
            let mut cmd = env.cmd();
            cmd.env_remove("TAILSCALE_API_KEY");
            cmd
        }),
    ] {
        let run = env
            .run(
                cmd.env(variable, &fifo)
                    .args(["keys", "list"])
                    .timeout(std::time::Duration::from_secs(60)),
            )
            .expect(2);
        assert!(
            run.stderr.contains(variable) || run.stderr.contains("token-fifo"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("` is empty"), "{}", run.stderr);
    }
}
