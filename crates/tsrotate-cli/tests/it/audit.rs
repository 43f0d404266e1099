//! `tsrotate audit` and `tsrotate keys list` against a seeded tailnet in the emulator: exact
//! findings, exit codes per `--fail-on`, the table's order and markers, and canaries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use tsrotate_test_support::{emulator, http};

use crate::redact::Redactions;
use crate::support::{Run, TestEnv, credentials_in, values_of};

/// A call to the API with `token`; the JSON answer, after checking it is a 200.
fn api(env: &TestEnv, token: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let auth = format!("Bearer {token}");
    let response = http::send(env.url(), method, path, &[("Authorization", &auth)], body).unwrap();
    assert_eq!(
        response.status,
        200,
        "{method} {path}: {}",
        String::from_utf8_lossy(&response.body)
    );
    if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    }
}

/// Create a key of any type with `token`; returns its ID and secret (a canary from now on).
fn create(env: &mut TestEnv, token: &str, body: Value) -> (String, Option<String>) {
    let v = api(env, token, "POST", "/api/v2/tailnet/-/keys", Some(&body));
    let secret = v["key"].as_str().map(str::to_owned);
    if let Some(s) = &secret {
        env.canary(s);
    }
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// An auth key minted with `token`.
fn auth_key(
    env: &mut TestEnv,
    token: &str,
    create_caps: Value,
    expiry: i64,
    desc: &str,
) -> (String, String) {
    let (id, secret) = create(
        env,
        token,
        json!({"capabilities": {"devices": {"create": create_caps}}, "expirySeconds": expiry, "description": desc}),
    );
    (id, secret.unwrap())
}

/// An OAuth client created with `token`.
fn client(env: &mut TestEnv, token: &str, scopes: &[&str], tags: &[&str], desc: &str) -> String {
    create(
        env,
        token,
        json!({"keyType": "client", "scopes": scopes, "tags": tags, "description": desc}),
    )
    .0
}

/// A personal API access token made "in the console"; returns its ID and secret.
fn console_token(env: &mut TestEnv, body: Value) -> (String, String) {
    let v = emulator::create_api_token(env.url(), &body);
    let secret = v["key"].as_str().unwrap().to_owned();
    env.canary(&secret);
    (v["id"].as_str().unwrap().to_owned(), secret)
}

fn emulator_now(env: &TestEnv) -> String {
    let (status, v) = emulator::admin(env.url(), "GET", "/_emulator/clock", None);
    assert_eq!(status, 200);
    v["now"].as_str().unwrap().to_owned()
}

fn rotation_ids(env: &TestEnv) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(env.state.path().join("rotations")) else {
        return BTreeSet::new();
    };
    entries
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.trim_end_matches(".jsonl").to_owned()
        })
        .collect()
}

/// A verification command that fails until `verify-ok` exists beside the work tree.
fn verify_cmd(env: &TestEnv) -> String {
    format!("test -e {}", env.aside.path().join("verify-ok").display())
}

/// Plant `old` in `<work>/<dir>/.env` and rotate it with `token`. Returns the exit code, the
/// rotation's ID and the ID of the key the file now holds (a canary from now on).
fn rotate(
    env: &mut TestEnv,
    token: &str,
    dir: &str,
    (old_id, old): (&str, &str),
    verify_fails: bool,
) -> (i32, String, String) {
    env.write(&format!("{dir}/.env"), format!("TS_AUTHKEY={old}\n"));
    let before = rotation_ids(env);
    let mut cmd = env.cmd();
    cmd.env("TAILSCALE_API_KEY", token)
        .args(["rotate", old_id, "--yes", "--in"])
        .arg(env.work.path().join(dir));
    if verify_fails {
        cmd.args(["--verify-cmd", &verify_cmd(env)]);
    }
    let run = env.run(&mut cmd);
    let rotation = rotation_ids(env)
        .difference(&before)
        .next()
        .cloned()
        .unwrap_or_else(|| panic!("no journal\n{}\n{}", run.stdout, run.stderr));
    let held: BTreeSet<String> = credentials_in(&env.work.path().join(dir))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    let new_id = held.into_iter().next().unwrap();
    assert_ne!(new_id, old_id, "the file still holds the old key");
    let bytes = std::fs::read(env.work.path().join(dir).join(".env")).unwrap();
    for value in values_of(&bytes, &new_id) {
        env.canary(&value);
    }
    (run.code, rotation, new_id)
}

/// `(rule, key ID) -> severity` of every finding in an audit report.
fn findings(report: &Value) -> BTreeMap<(String, String), String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            for field in ["summary", "fix", "kind"] {
                assert!(
                    f[field]
                        .as_str()
                        .is_some_and(|s| !s.is_empty() && !s.contains('\n')),
                    "{field} of {f}"
                );
            }
            (
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["key_id"].as_str().unwrap().to_owned(),
                ),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(list: &[(&str, &str, &str)]) -> BTreeMap<(String, String), String> {
    list.iter()
        .map(|(rule, id, severity)| ((rule.to_string(), id.to_string()), severity.to_string()))
        .collect()
}

/// The seeded tailnet, by role.
struct Seeded {
    now: String,
    personal: String,
    bootstrap_client: String,
    old_client: String,
    admin_token: String,
    bob_token: String,
    bob_key: String,
    shared_key: String,
    ci_key: String,
    soon_key: String,
    stranger_key: String,
    interrupted: (String, String),
    finished: (String, String),
    rolled_back: String,
    mixed_client: String,
    reader_client: String,
    all_client: String,
    rotator_client: String,
    federated: String,
}

/// A tailnet with one example of every rule and a clean twin of most:
///
/// - created, then 181 days pass: the bootstrap OAuth client (`all`), a narrow old client; the
///   bootstrap API token expires on the way;
/// - API tokens of the admin and of Bob, and an untagged single-use key of Bob's;
/// - auth keys: reusable untagged lasting; reusable ephemeral tagged (clean); tagged expiring
///   in 3 days; one carrying the marker of a rotation nobody here ran;
/// - rotations: one stopped by a failing verification (unfinished), one done, one rolled back;
/// - trust credentials: mixed, `all:read`, `all`, a narrow rotator, a federated identity.
fn seed(env: &mut TestEnv) -> Seeded {
    let boot = env.emu.bootstrap().clone();
    let old_client = client(
        env,
        &boot.api_key,
        &["auth_keys"],
        &["tag:ci"],
        "old ci client",
    );
    let _ = emulator::advance_clock(env.url(), 181 * 86_400);

    let (admin_token, personal) = console_token(
        env,
        json!({"description": "laptop", "expirySeconds": 90 * 86_400}),
    );
    let (bob_token, bob_secret) = console_token(
        env,
        json!({"userId": "uBob1CNTRL", "description": "bob scripts", "expirySeconds": 30 * 86_400}),
    );
    let (bob_key, _) = auth_key(env, &bob_secret, json!({}), 30 * 86_400, "bobs laptop");

    let day = 86_400;
    let (shared_key, _) = auth_key(
        env,
        &personal,
        json!({"reusable": true, "ephemeral": false}),
        60 * day,
        "shared office key",
    );
    let (ci_key, _) = auth_key(
        env,
        &personal,
        json!({"reusable": true, "ephemeral": true, "preauthorized": true, "tags": ["tag:ci"]}),
        60 * day,
        "ci runners",
    );
    let (soon_key, _) = auth_key(
        env,
        &personal,
        json!({"tags": ["tag:server"]}),
        3 * day + 3600,
        "expires soon",
    );
    let (stranger_key, _) = auth_key(
        env,
        &personal,
        json!({"tags": ["tag:server"]}),
        60 * day,
        "restored tsrotate r20250101000000qqqqqq",
    );

    let web = json!({"reusable": true, "preauthorized": true, "tags": ["tag:server"]});
    let (web_id, web_secret) = auth_key(env, &personal, web.clone(), 30 * day, "web servers");
    let (code, interrupted, interrupted_key) =
        rotate(env, &personal, "web", (&web_id, &web_secret), true);
    assert_eq!(
        code, 1,
        "a failing verification leaves the rotation unfinished"
    );
    let (db_id, db_secret) = auth_key(env, &personal, web.clone(), 30 * day, "db servers");
    let (code, finished, finished_key) = rotate(env, &personal, "db", (&db_id, &db_secret), false);
    assert_eq!(code, 0);
    let (cache_id, cache_secret) = auth_key(env, &personal, web, 30 * day, "cache servers");
    let (code, rolled_back, _) = rotate(env, &personal, "cache", (&cache_id, &cache_secret), true);
    assert_eq!(code, 1);
    // The file holds the new key now: the old one comes from standard input.
    env.run(
        env.cmd()
            .env("TAILSCALE_API_KEY", &personal)
            .args(["rollback", &rolled_back, "--yes", "--old-key-file", "-"])
            .write_stdin(format!("{cache_secret}\n")),
    )
    .expect(0);

    let mixed_client = client(
        env,
        &personal,
        &["auth_keys", "policy_file"],
        &["tag:ci"],
        "keys and gitops",
    );
    let reader_client = client(env, &personal, &["all:read"], &[], "inventory");
    let all_client = client(env, &personal, &["all"], &["tag:ci"], "everything");
    let rotator_client = client(
        env,
        &personal,
        &["auth_keys", "oauth_keys"],
        &["tag:ci"],
        "rotator",
    );
    let (federated, _) = create(
        env,
        &personal,
        json!({"keyType": "federated", "scopes": ["auth_keys"], "tags": ["tag:ci"],
               "issuer": "https://token.actions.githubusercontent.com",
               "subject": "repo:org/repo:ref:refs/heads/main", "description": "gha deploy"}),
    );

    Seeded {
        now: emulator_now(env),
        personal,
        bootstrap_client: boot.oauth_client_id,
        old_client,
        admin_token,
        bob_token,
        bob_key,
        shared_key,
        ci_key,
        soon_key,
        stranger_key,
        interrupted: (interrupted, interrupted_key),
        finished: (finished, finished_key),
        rolled_back,
        mixed_client,
        reader_client,
        all_client,
        rotator_client,
        federated,
    }
}

fn audit(env: &TestEnv, s: &Seeded, oauth: bool, extra: &[&str]) -> Run {
    let mut cmd = if oauth { env.cmd_oauth() } else { env.cmd() };
    if !oauth {
        cmd.env("TAILSCALE_API_KEY", &s.personal);
    }
    // No --as-of: expiry and age are judged by the emulator's (advanced) clock, from its `Date`.
    cmd.args(["--format", "json", "audit"]).args(extra);
    env.run(&mut cmd)
}

#[test]
fn audit_on_a_seeded_tailnet_gives_exactly_the_expected_findings() {
    let mut env = TestEnv::new();
    let s = seed(&mut env);
    let want = expected(&[
        ("broad-scopes", &s.bootstrap_client, "high"),
        ("broad-scopes", &s.all_client, "high"),
        ("reusable-untagged-auth-key", &s.shared_key, "high"),
        ("old-key", &s.bootstrap_client, "medium"),
        ("old-key", &s.old_client, "medium"),
        ("personal-api-token", &s.admin_token, "medium"),
        ("personal-api-token", &s.bob_token, "medium"),
        ("expiring-soon", &s.soon_key, "medium"),
        ("unfinished-rotation", &s.interrupted.1, "medium"),
        ("broad-scopes", &s.mixed_client, "medium"),
        ("broad-scopes", &s.reader_client, "low"),
        ("user-owned-auth-key", &s.bob_key, "low"),
        ("unknown-rotation", &s.stranger_key, "low"),
    ]);
    // Keys that must stay clean, each a near miss of some rule.
    for clean in [&s.ci_key, &s.finished.1, &s.rotator_client, &s.federated] {
        assert!(!want.keys().any(|(_, id)| id == clean));
    }

    // As a person, and as the bootstrap OAuth client (whose own access token is listed too and
    // must not count): the same findings.
    for oauth in [false, true] {
        let run = audit(&env, &s, oauth, &[]).expect(1);
        let report = run.json();
        assert_eq!(findings(&report), want, "oauth: {oauth}\n{}", run.stdout);
        assert_eq!(report["failed"], true);
        assert_eq!(report["settings"]["fail_on"], "high");
        assert_eq!(report["settings"]["max_age_seconds"], 180 * 86_400);
        assert_eq!(report["settings"]["expiring_within_seconds"], 14 * 86_400);
        assert_eq!(
            report["counts"],
            json!({"critical": 0, "high": 3, "medium": 7, "low": 3, "info": 0})
        );
        let severities: Vec<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["severity"].as_str().unwrap())
            .collect();
        let rank = |s: &str| {
            ["info", "low", "medium", "high", "critical"]
                .iter()
                .position(|x| *x == s)
        };
        assert!(
            severities.windows(2).all(|w| rank(w[0]) >= rank(w[1])),
            "highest first: {severities:?}"
        );
        let by_key = |id: &str, rule: &str| {
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["key_id"] == id && f["rule"] == rule)
                .cloned()
                .unwrap()
        };
        let unfinished = by_key(&s.interrupted.1, "unfinished-rotation");
        assert_eq!(unfinished["kind"], "auth-key");
        assert!(
            unfinished["fix"]
                .as_str()
                .unwrap()
                .contains(&format!("tsrotate resume {}", s.interrupted.0)),
            "{unfinished}"
        );
        assert_eq!(
            by_key(&s.admin_token, "personal-api-token")["kind"],
            "api-token"
        );
        assert_eq!(
            by_key(&s.bootstrap_client, "old-key")["kind"],
            "oauth-client"
        );
    }

    // The OAuth run asked for the `:read` scopes it needs and nothing more.
    let state = emulator::state(env.url());
    let tokens: Vec<&Value> = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["issuedBy"] == s.bootstrap_client.as_str())
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let mut scopes: Vec<&str> = tokens[0]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(
        scopes,
        [
            "api_access_tokens:read",
            "auth_keys:read",
            "federated_keys:read",
            "oauth_keys:read"
        ]
    );

    // The rolled-back rotation left no live key behind, so it has no finding; its journal is
    // there all the same.
    assert!(rotation_ids(&env).contains(&s.rolled_back));
    env.assert_state_clean();
}

#[test]
fn fail_on_and_thresholds_decide_the_exit_code() {
    let mut env = TestEnv::new();
    let s = seed(&mut env);
    let count = |run: &Run| run.json()["findings"].as_array().unwrap().len();
    let all = audit(&env, &s, false, &["--fail-on", "critical"]).expect(0);
    assert_eq!(all.json()["failed"], false);
    assert_eq!(
        count(&all),
        13,
        "--fail-on changes the exit code, not the report"
    );
    for (fail_on, code) in [("info", 1), ("low", 1), ("medium", 1), ("high", 1)] {
        audit(&env, &s, false, &["--fail-on", fail_on]).expect(code);
    }

    // Thresholds move what is reported: a 2-day window drops the key expiring in 3 days; a
    // 400-day maximum age drops the old clients.
    let narrow = audit(
        &env,
        &s,
        false,
        &[
            "--expiring-within",
            "2d",
            "--max-age",
            "400d",
            "--fail-on",
            "critical",
        ],
    )
    .expect(0);
    let got = findings(&narrow.json());
    assert!(
        !got.keys()
            .any(|(rule, _)| rule == "expiring-soon" || rule == "old-key"),
        "{got:?}"
    );
    assert_eq!(got.len(), 10);

    // --as-of judges another day: 50 days on, the 60-day keys expire within the window and
    // everything with 30 days or less is dead, so no longer reported at all.
    let later = time::OffsetDateTime::parse(&s.now, &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::days(50);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let run = audit(
        &env,
        &s,
        false,
        &["--as-of", &later, "--fail-on", "critical"],
    )
    .expect(0);
    let report = run.json();
    assert_eq!(report["as_of"], later.as_str());
    let soon: BTreeSet<String> = findings(&report)
        .into_keys()
        .filter(|(rule, _)| rule == "expiring-soon")
        .map(|(_, id)| id)
        .collect();
    let want: BTreeSet<String> = [&s.shared_key, &s.ci_key, &s.stranger_key]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(soon, want);
    let reported: BTreeSet<String> = findings(&report).into_keys().map(|(_, id)| id).collect();
    for dead in [&s.soon_key, &s.bob_key, &s.bob_token, &s.interrupted.1] {
        assert!(!reported.contains(dead), "{dead} is dead by then");
    }

    // A clean tailnet passes the default gate: only the personal token (medium) remains once
    // the broad, the untagged and the unfinished are gone.
    for id in [
        &s.bootstrap_client,
        &s.all_client,
        &s.shared_key,
        &s.interrupted.1,
    ] {
        api(
            &env,
            &s.personal,
            "DELETE",
            &format!("/api/v2/tailnet/-/keys/{id}"),
            None,
        );
    }
    let passing = audit(&env, &s, false, &[]).expect(0);
    let report = passing.json();
    assert_eq!(report["failed"], false);
    assert_eq!(report["counts"]["high"], 0);
    audit(&env, &s, false, &["--fail-on", "medium"]).expect(1);

    // Usage errors are exit 2 and name the flag.
    for bad in [
        &["--fail-on", "severe"][..],
        &["--max-age", "forever"],
        &["--as-of", "tomorrow"],
    ] {
        let run = env.run(env.cmd().arg("audit").args(bad)).expect(2);
        assert!(run.stderr.contains(bad[0]), "{}", run.stderr);
    }
}

/// The seeded tailnet's keys and rotations, by role, for snapshots.
fn seeded_names(env: &TestEnv, s: &Seeded) -> Redactions {
    let boot = env.emu.bootstrap();
    let bootstrap_token = tsrotate::key::KeyRef::parse(&boot.api_key)
        .unwrap()
        .key_id()
        .to_string();
    Redactions::new()
        .path(env.work.path(), "WORK")
        .path(env.state.path(), "STATE")
        .name(env.url(), "EMULATOR")
        .name(bootstrap_token, "BOOTSTRAP-TOKEN")
        .name(&s.bootstrap_client, "BOOTSTRAP-CLIENT")
        .name(&s.old_client, "OLD-CLIENT")
        .name(&s.admin_token, "ADMIN-TOKEN")
        .name(&s.bob_token, "BOB-TOKEN")
        .name(&s.bob_key, "BOB-KEY")
        .name(&s.shared_key, "SHARED-KEY")
        .name(&s.ci_key, "CI-KEY")
        .name(&s.soon_key, "SOON-KEY")
        .name(&s.stranger_key, "STRANGER-KEY")
        .name(&s.interrupted.0, "INTERRUPTED-ROTATION")
        .name(&s.interrupted.1, "INTERRUPTED-MINTED-KEY")
        .name(&s.finished.0, "FINISHED-ROTATION")
        .name(&s.finished.1, "FINISHED-MINTED-KEY")
        .name(&s.rolled_back, "ROLLED-BACK-ROTATION")
        .name(&s.mixed_client, "MIXED-CLIENT")
        .name(&s.reader_client, "READER-CLIENT")
        .name(&s.all_client, "ALL-CLIENT")
        .name(&s.rotator_client, "ROTATOR-CLIENT")
        .name(&s.federated, "FEDERATED")
}

/// What a person reads: severity spelled out (no colour), rule, key, summary and fix, highest
/// first, then the totals and the verdict. The exact findings are checked above on the JSON.
#[test]
fn audit_human_output_names_severity_rule_key_and_fix_without_colour() {
    let mut env = TestEnv::new();
    let s = seed(&mut env);
    let run = env
        .run(
            env.cmd()
                .env("TAILSCALE_API_KEY", &s.personal)
                .args(["audit"]),
        )
        .expect(1);
    assert!(
        !run.stdout.contains('\u{1b}'),
        "no colour codes: {}",
        run.stdout
    );
    // Findings of one severity and rule are in key ID order: random IDs, so sorted by name.
    seeded_names(&env, &s)
        .paragraphs_by(": ")
        .assert_run("audit_seeded_tailnet", &run);
}

/// The rows of a `keys list --format json`.
fn rows(run: &Run) -> Vec<Value> {
    run.json()["keys"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["key_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
}

#[test]
fn keys_list_sorts_by_expiry_marks_soon_and_tells_what_tsrotate_minted() {
    let mut env = TestEnv::new();
    let boot = env.emu.bootstrap().clone();
    // An hour on, the bootstrap token (made when the emulator started, for 90 days) has 89
    // whole days left however long the test takes to get here.
    let _ = emulator::advance_clock(env.url(), 3600);
    let day = 86_400;
    let tagged = |tag: &str| json!({"reusable": true, "tags": [tag]});
    let (soon, _) = auth_key(
        &mut env,
        &boot.api_key,
        tagged("tag:ci"),
        2 * day + 3600,
        "soon",
    );
    let (month, _) = auth_key(
        &mut env,
        &boot.api_key,
        tagged("tag:ci"),
        30 * day + 3600,
        "month",
    );
    let (old, old_secret) = auth_key(
        &mut env,
        &boot.api_key,
        tagged("tag:server"),
        10 * day + 3600,
        "web servers",
    );
    let (code, rotation, minted) =
        rotate(&mut env, &boot.api_key, "web", (&old, &old_secret), false);
    assert_eq!(code, 0);
    let (bob_token, bob_secret) = console_token(
        &mut env,
        json!({"userId": "uBob1CNTRL", "expirySeconds": 20 * day + 3600}),
    );
    let (bob_key, _) = auth_key(&mut env, &bob_secret, json!({}), 5 * day + 3600, "bob");

    let run = env
        .run(
            env.cmd()
                .args(["--format", "json", "keys", "list", "--all"]),
        )
        .expect(0);
    let all = rows(&run);
    let ids: Vec<&str> = all.iter().map(|r| r["key_id"].as_str().unwrap()).collect();
    // Soonest first; the minted twin kept the old key's 10-day lifetime; the client never
    // expires. The rotated-away key is gone.
    let bootstrap_token = tsrotate::key::KeyRef::parse(&boot.api_key)
        .unwrap()
        .key_id()
        .to_string();
    assert_eq!(
        ids,
        [
            soon.as_str(),
            bob_key.as_str(),
            minted.as_str(),
            bob_token.as_str(),
            month.as_str(),
            bootstrap_token.as_str(),
            boot.oauth_client_id.as_str(),
        ]
    );
    assert!(!ids.contains(&old.as_str()));
    let r = row(&all, &soon);
    assert_eq!(
        (
            r["kind"].as_str(),
            r["days_left"].as_i64(),
            r["expiring_soon"].as_bool()
        ),
        (Some("auth-key"), Some(2), Some(true))
    );
    assert_eq!(r["tags"], json!(["tag:ci"]));
    assert_eq!(r["reusable"], true);
    assert_eq!(r["minted_by_tsrotate"], false);
    assert_eq!(r["rotation_id"], Value::Null);
    let r = row(&all, &minted);
    assert_eq!(r["minted_by_tsrotate"], true);
    assert_eq!(r["rotation_id"], rotation.as_str());
    assert_eq!(r["days_left"], 10);
    assert_eq!(r["expiring_soon"], true);
    assert_eq!(r["owner"], "uAdmin1CNTRL");
    let r = row(&all, &bob_key);
    assert_eq!(r["owner"], "uBob1CNTRL");
    assert_eq!(r["tags"], json!([]));
    let r = row(&all, &bob_token);
    assert_eq!(
        (r["kind"].as_str(), r["expiring_soon"].as_bool()),
        (Some("api-token"), Some(false))
    );
    let r = row(&all, &boot.oauth_client_id);
    assert_eq!(r["kind"], "oauth-client");
    assert_eq!(
        (r["expires"].clone(), r["days_left"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(r["scopes"], json!(["all"]));
    assert_eq!(run.json()["expiring_within_days"], 14);

    // Without --all, the API's default view: the admin's own keys, not Bob's.
    let mine = rows(
        &env.run(env.cmd().args(["--format", "json", "keys", "list"]))
            .expect(0),
    );
    let mine: Vec<&str> = mine.iter().map(|r| r["key_id"].as_str().unwrap()).collect();
    assert!(
        mine.contains(&soon.as_str()) && !mine.contains(&bob_key.as_str()),
        "{mine:?}"
    );

    // The table: same order, `!` beside soon ones, `never` for the client, the rotation ID.
    let human = env.run(env.cmd().args(["keys", "list", "--all"])).expect(0);
    assert!(!human.stdout.contains('\u{1b}'));
    Redactions::new()
        .name(bootstrap_token, "BOOT-TOKEN")
        .name(&boot.oauth_client_id, "BOOT-CLIENT")
        .name(&soon, "SOON")
        .name(&month, "MONTH")
        .name(&minted, "MINTED")
        .name(&rotation, "ROTATION-ID")
        .name(&bob_token, "BOB-TOKEN")
        .name(&bob_key, "BOB-KEY")
        .assert_run("keys_list_all", &human);
}

#[test]
fn keys_list_as_an_oauth_client_shows_its_own_token_as_tailnet_owned() {
    let env = TestEnv::new();
    let boot = env.emu.bootstrap().clone();
    // The API's default view for an OAuth client: the OAuth clients.
    let clients = rows(
        &env.run(env.cmd_oauth().args(["--format", "json", "keys", "list"]))
            .expect(0),
    );
    assert!(
        clients.iter().all(|r| r["kind"] == "oauth-client"),
        "{clients:?}"
    );
    let all = rows(
        &env.run(
            env.cmd_oauth()
                .args(["--format", "json", "keys", "list", "--all"]),
        )
        .expect(0),
    );
    let tokens: Vec<&Value> = all
        .iter()
        .filter(|r| r["kind"] == "oauth-access-token")
        .collect();
    assert_eq!(tokens.len(), 2, "one per run: {all:?}");
    assert!(tokens.iter().all(|t| t["owner"] == "tailnet"));
    // `inspect` names it the same way.
    let token_id = tokens[0]["key_id"].as_str().unwrap();
    let inspected = env
        .run(
            env.cmd_oauth()
                .args(["--format", "json", "inspect", token_id]),
        )
        .expect(0)
        .json();
    assert_eq!(inspected["kind"], "oauth-access-token", "{inspected}");
    assert!(
        all.iter()
            .any(|r| r["key_id"] == boot.oauth_client_id.as_str())
    );
}

#[test]
fn missing_credentials_and_refused_scopes_are_usage_errors_with_hints() {
    let mut env = TestEnv::new();
    let boot = env.emu.bootstrap().clone();
    let run = env
        .run(env.cmd().env_remove("TAILSCALE_API_KEY").args(["audit"]))
        .expect(2);
    assert!(
        run.stderr.contains("no Tailscale API credentials"),
        "{}",
        run.stderr
    );

    // A client that cannot read every kind of key is told which scopes it needs.
    let (narrow, narrow_secret) = create(
        &mut env,
        &boot.api_key,
        json!({"keyType": "client", "scopes": ["auth_keys:read"], "description": "narrow"}),
    );
    let run = env
        .run(
            env.cmd_oauth()
                .env("TAILSCALE_OAUTH_CLIENT_ID", &narrow)
                .env("TAILSCALE_OAUTH_CLIENT_SECRET", narrow_secret.unwrap())
                .args(["keys", "list", "--all"]),
        )
        .expect(2);
    assert!(
        run.stderr.contains("hint:") && run.stderr.contains("all:read"),
        "{}",
        run.stderr
    );
}

/// The state directory's journals are what make a minted key "unfinished" rather than
/// "unknown": the same tailnet audited with another state directory says so.
#[test]
fn without_the_journal_an_interrupted_rotation_is_unknown() {
    let mut env = TestEnv::new();
    let boot = env.emu.bootstrap().clone();
    let (old, secret) = auth_key(
        &mut env,
        &boot.api_key,
        json!({"tags": ["tag:ci"]}),
        30 * 86_400,
        "svc",
    );
    let (code, rotation, minted) = rotate(&mut env, &boot.api_key, "svc", (&old, &secret), true);
    assert_eq!(code, 1);
    let rule_of = |state: &Path| {
        let run = env
            .run(env.cmd().env("TSROTATE_STATE_DIR", state).args([
                "--format",
                "json",
                "audit",
                "--fail-on",
                "critical",
            ]))
            .expect(0);
        run.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key_id"] == minted.as_str())
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["severity"].as_str().unwrap().to_owned(),
                )
            })
    };
    assert_eq!(
        rule_of(env.state.path()),
        Some(("unfinished-rotation".to_owned(), "medium".to_owned()))
    );
    let elsewhere = tempfile::TempDir::new().unwrap();
    assert_eq!(
        rule_of(elsewhere.path()),
        Some(("unknown-rotation".to_owned(), "low".to_owned()))
    );
    // Finishing it turns the finding off.
    std::fs::write(env.aside.path().join("verify-ok"), "").unwrap();
    env.run(env.cmd().args([
        "resume",
        &rotation,
        "--yes",
        "--verify-cmd",
        &verify_cmd(&env),
    ]))
    .expect(0);
    let fresh: BTreeSet<String> = credentials_in(&env.work.path().join("svc"))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let bytes = std::fs::read(env.work.path().join("svc/.env")).unwrap();
    for id in &fresh {
        for value in values_of(&bytes, id) {
            env.canary(&value);
        }
    }
    let run = env
        .run(
            env.cmd()
                .args(["--format", "json", "audit", "--fail-on", "critical"]),
        )
        .expect(0);
    let report = run.json();
    let rotation_findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"].as_str().unwrap().contains("rotation"))
        .count();
    assert_eq!(rotation_findings, 0, "{report}");
    env.assert_state_clean();
}
