//! `tsrotate contain` against the emulator: a fleet of 20 legitimate devices and 3 attackers
//! that joined after the leak, with both audit-actor variants.

use assert_cmd::Command;
use serde_json::{Value, json};
use tsrotate_test_support::emulator;

use crate::support::{Run, TestEnv};

/// A new environment with [`fleet`] joined; returns it and the fleet key's ID.
fn with_fleet(actor: &str) -> (TestEnv, String) {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, actor);
    (env, id)
}

/// `contain ID --since 1d --action ACTION --yes` with `cmd` (its credential, its format): the
/// containment of the fleet's attackers most tests start from.
fn contain(env: &TestEnv, mut cmd: Command, id: &str, action: &str) -> Run {
    env.run(cmd.args(["contain", id, "--since", "1d", "--action", action, "--yes"]))
}

/// `tsrotate --format json`.
fn json_cmd(env: &TestEnv) -> Command {
    let mut cmd = env.cmd();
    cmd.args(["--format", "json"]);
    cmd
}

/// Whether the candidates table lists `hostname` at `confidence`.
fn listed(stdout: &str, confidence: &str, hostname: &str) -> bool {
    stdout.lines().any(|line| {
        let mut cells = line.split_whitespace();
        cells.next() == Some(confidence) && cells.next() == Some(hostname)
    })
}

/// Mints the fleet's key (reusable, `tag:server`), joins 20 devices ten days before the leak
/// and 3 an hour ago (one advertising a route). Returns the key's ID and secret.
pub(crate) fn fleet(env: &mut TestEnv, actor: &str) -> (String, String) {
    let (id, secret) = env.mint_default();
    let _ = emulator::advance_clock(env.url(), 20 * 86_400);
    for i in 0..20 {
        join(
            env,
            &json!({"auth_key_id": id, "hostname": format!("web-{i}"),
            "created_offset_seconds": -15 * 86_400 + i * 60, "audit_actor": actor}),
        );
    }
    for (i, routes) in [json!([]), json!([]), json!(["10.9.0.0/16"])]
        .into_iter()
        .enumerate()
    {
        join(
            env,
            &json!({"auth_key_id": id, "hostname": format!("evil-{i}"), "routes": routes,
            "created_offset_seconds": -3600, "audit_actor": actor}),
        );
    }
    // A shared-in device that joined in the window is never a candidate.
    join(env, &json!({"hostname": "guest", "external": true}));
    (id, secret)
}

/// Joins a device; answers its node ID.
fn join(env: &TestEnv, body: &Value) -> String {
    let (status, answer) = emulator::admin(env.url(), "POST", "/_emulator/devices", Some(body));
    assert_eq!(status, 200, "{answer}");
    answer["nodeId"].as_str().unwrap().to_owned()
}

fn hostnames(report: &Value) -> Vec<(String, String)> {
    report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_owned(),
                c["confidence"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_three_attackers_are_exact_when_the_audit_log_names_the_key() {
    let mut env = TestEnv::new();
    let (_id, secret) = fleet(&mut env, "key");
    let run = env
        .run(
            env.cmd()
                .args(["--format", "json", "contain", "-", "--since", "1d"])
                .write_stdin(format!("{secret}\n")),
        )
        .expect(1);
    let report = run.json();
    let found = hostnames(&report);
    assert_eq!(found.len(), 3, "{report}");
    assert!(
        found
            .iter()
            .all(|(h, c)| h.starts_with("evil-") && c == "exact"),
        "{found:?}"
    );
    // The route advertiser differs most from the fleet and comes first.
    assert_eq!(found[0].0, "evil-2");
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["candidates", "key", "window"]);
    let candidate = report["candidates"][0].as_object().unwrap();
    let fields: Vec<&String> = candidate.keys().collect();
    assert_eq!(
        fields,
        [
            "actions_taken",
            "confidence",
            "evidence",
            "hostname",
            "node_id"
        ]
    );
    assert!(report["window"]["start"].is_string() && report["window"]["end"].is_string());
    env.assert_state_clean();
}

#[test]
fn with_the_owner_as_actor_they_are_possible_and_expected_devices_drop_out() {
    let (env, id) = with_fleet("owner");
    // Possible is below the default threshold: reported, exit 0.
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(0);
    for i in 0..3 {
        assert!(
            listed(&run.stdout, "possible", &format!("evil-{i}")),
            "{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("web-"), "{}", run.stdout);
    assert!(!run.stdout.contains("guest"), "{}", run.stdout);
    // evil-0 by node ID leaves it out; evil-1 by hostname alone does not, since it joined
    // after --since (a device chooses its own hostname: red-team finding).
    let evil_0 = hostnames_to_ids(&env, &id)["evil-0"].clone();
    let expected = env.write_aside("fleet.txt", format!("# the fleet\n{evil_0}\nevil-1\n"));
    let run = env
        .run(
            env.cmd()
                .args([
                    "--format",
                    "json",
                    "contain",
                    &id,
                    "--since",
                    "1d",
                    "--min-confidence",
                    "possible",
                ])
                .arg("--expected")
                .arg(&expected),
        )
        .expect(1);
    let report = run.json();
    let found = hostnames(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(h, _)| h == "evil-1" || h == "evil-2"));
    let evil_1 = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hostname"] == "evil-1")
        .unwrap();
    assert!(
        evil_1["evidence"]
            .to_string()
            .contains("chooses its own hostname"),
        "{evil_1}"
    );
}

/// The node ID of each device, by hostname, as the JSON report gives them.
fn hostnames_to_ids(env: &TestEnv, id: &str) -> std::collections::HashMap<String, String> {
    let run = env
        .run(env.cmd().args([
            "--format",
            "json",
            "contain",
            id,
            "--since",
            "1d",
            "--min-confidence",
            "possible",
        ]))
        .expect(1);
    run.json()["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_owned(),
                c["node_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_credential_without_the_audit_log_scope_degrades_and_says_so() {
    let (mut env, id) = with_fleet("key");
    let client = env.mint(json!({"keyType": "client", "scopes": ["devices:core:read", "auth_keys:read"], "tags": ["tag:server"]}));
    let run = env
        .run(env.cmd_as(&client.0, &client.1).args([
            "contain",
            &id,
            "--since",
            "1d",
            "--min-confidence",
            "possible",
        ]))
        .expect(1);
    assert!(
        run.stderr.contains("logs:configuration:read"),
        "{}",
        run.stderr
    );
    assert!(listed(&run.stdout, "possible", "evil-2"), "{}", run.stdout);

    let keys_only = env
        .mint(json!({"keyType": "client", "scopes": ["auth_keys:read"], "tags": ["tag:server"]}));
    let run = env
        .run(
            env.cmd_as(&keys_only.0, &keys_only.1)
                .args(["contain", &id]),
        )
        .expect(2);
    assert!(run.stderr.contains("`devices:core:read`"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("{ "),
        "debug output in a message: {}",
        run.stderr
    );
}

#[test]
fn a_user_owned_keys_devices_in_the_window_are_strong() {
    let mut env = TestEnv::new();
    // The same user's device from before the key existed is not in the window.
    let (earlier, _) =
        env.mint(json!({"capabilities": {"devices": {"create": {"reusable": true}}}}));
    join(
        &env,
        &json!({"auth_key_id": earlier, "hostname": "old-laptop"}),
    );
    let _ = emulator::advance_clock(env.url(), 86_400);
    let (id, _) = env.mint(json!({"capabilities": {"devices": {"create": {"reusable": false}}}}));
    join(&env, &json!({"auth_key_id": id, "hostname": "laptop"}));
    // A tagged server joined with another key in the same window is not the user's.
    let (other, _) = env.mint_default();
    join(&env, &json!({"auth_key_id": other, "hostname": "server"}));
    // Nor is another user's device, joined in the window with that user's own key.
    let (status, bob) = emulator::admin(
        env.url(),
        "POST",
        "/_emulator/api-tokens",
        Some(&json!({"userId": "uBob1CNTRL"})),
    );
    assert_eq!(status, 200, "{bob}");
    let bob_token = bob["key"].as_str().unwrap().to_owned();
    env.canary(&bob_token);
    let minted = tsrotate_test_support::http::send(
        env.url(),
        "POST",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &format!("Bearer {bob_token}"))],
        Some(&json!({"capabilities": {"devices": {"create": {"reusable": false}}}})),
    )
    .unwrap();
    assert_eq!(minted.status, 200);
    let bobs_key = minted.json();
    env.canary(bobs_key["key"].as_str().unwrap());
    assert_eq!(bobs_key["userId"], "uBob1CNTRL", "{}", bobs_key["id"]);
    join(
        &env,
        &json!({"auth_key_id": bobs_key["id"], "hostname": "bobs-laptop"}),
    );
    let all: Vec<String> = devices(&env)
        .iter()
        .map(|d| format!("{} {}", d["hostname"], d["user"]))
        .collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert_ne!(
        device(&env, "bobs-laptop")["user"],
        device(&env, "laptop")["user"],
        "{all:?}"
    );
    assert_eq!(
        device(&env, "old-laptop")["user"],
        device(&env, "laptop")["user"],
        "{all:?}"
    );
    let run = env
        .run(env.cmd().args(["--format", "json", "contain", &id]))
        .expect(1);
    assert_eq!(
        hostnames(&run.json()),
        [("laptop".to_owned(), "strong".to_owned())],
        "{all:?}"
    );
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "bogus"]))
        .expect(2);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    // A key no device joined with since it was made: no candidate, exit 0.
    let _ = emulator::advance_clock(env.url(), 60);
    let (unused, _) =
        env.mint(json!({"capabilities": {"devices": {"create": {"reusable": false}}}}));
    let run = env
        .run(env.cmd().args(["--format", "json", "contain", &unused]))
        .expect(0);
    assert_eq!(run.json()["candidates"], json!([]), "{}", run.stdout);
    env.assert_state_clean();
}

/// The emulator's answer to an API call made with the bootstrap token.
fn api(env: &TestEnv, method: &str, path: &str, body: Option<&Value>) -> Value {
    api_at(env.url(), &env.emu.bootstrap().api_key, method, path, body)
}

/// The answer of the emulator at `base_url` to an API call made with `token`; it must be 200.
pub(crate) fn api_at(
    base_url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let auth = format!("Bearer {token}");
    let response = tsrotate_test_support::http::send(
        base_url,
        method,
        path,
        &[("Authorization", &auth)],
        body,
    )
    .unwrap();
    assert_eq!(response.status, 200, "{method} {path}");
    response.json()
}

pub(crate) fn devices(env: &TestEnv) -> Vec<Value> {
    api(env, "GET", "/api/v2/tailnet/-/devices?fields=all", None)["devices"]
        .as_array()
        .unwrap()
        .clone()
}

/// The hostnames of the devices whose node key expiry was updated, once per update.
fn expiries(env: &TestEnv) -> Vec<String> {
    let log = api(
        env,
        "GET",
        "/api/v2/tailnet/-/logging/configuration?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
        None,
    );
    let mut names: Vec<String> = log["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "UPDATE"
                && e["target"]["property"] == "KEY_EXPIRY_TIME"
                && e["origin"] == "CONFIG_API"
        })
        .map(|e| e["target"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn short(name: &str) -> String {
    name.split('.').next().unwrap().to_owned()
}

/// The ID of the only containment so far (from its journal).
fn only_containment(env: &TestEnv) -> String {
    containment_journal(env)[0]["event"]["containment_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn containment_journal(env: &TestEnv) -> Vec<Value> {
    let dir = env.state.path().join("containments");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            lines.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
            );
        }
    }
    lines
}

#[test]
fn expire_is_a_dry_run_until_yes_then_expires_exactly_the_attackers_with_either_actor() {
    for (actor, min) in [("key", "strong"), ("owner", "possible")] {
        let (env, id) = with_fleet(actor);
        let args = [
            "contain",
            &id,
            "--since",
            "1d",
            "--min-confidence",
            min,
            "--action",
            "expire",
        ];
        let dry = env.run(env.cmd().args(args)).expect(1);
        assert!(
            dry.stdout.contains("Plan: expire 3 device(s)"),
            "{}",
            dry.stdout
        );
        assert!(
            dry.stdout
                .contains("`tsrotate rollback` cannot undo an expiry")
                && dry.stdout.contains("must log in again"),
            "{}",
            dry.stdout
        );
        assert!(
            dry.stdout.contains("Dry run: nothing was changed"),
            "{}",
            dry.stdout
        );
        assert!(expiries(&env).is_empty(), "a dry run changed something");
        assert!(containment_journal(&env).is_empty());

        let run = env
            .run(env.cmd().args(["--format", "json"]).args(args).arg("--yes"))
            .expect(0);
        let report = run.json();
        let acted: Vec<&Value> = report["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["actions_taken"] == json!(["expire"]))
            .collect();
        assert_eq!(acted.len(), 3, "{report}");
        assert_eq!(report["containment"]["undoable"], false);
        let expired: Vec<String> = expiries(&env).iter().map(|n| short(n)).collect();
        assert_eq!(expired, ["evil-0", "evil-1", "evil-2"], "{actor}");
        // The journal holds a snapshot of each before the change.
        let journal = containment_journal(&env);
        let planned = &journal[0]["event"];
        assert_eq!(planned["type"], "planned");
        assert_eq!(planned["devices"].as_array().unwrap().len(), 3);
        assert!(planned["devices"][0]["expires"].is_string());

        // Expiry cannot be undone through the API: rollback says so for each device, changes
        // nothing, and exits 2.
        let containment = report["containment"]["id"].as_str().unwrap().to_owned();
        let refused = env
            .run(env.cmd().args(["rollback", &containment, "--yes"]))
            .expect(2);
        assert!(
            refused.stderr.contains("cannot undo an expiry"),
            "{}",
            refused.stderr
        );
        for i in 0..3 {
            assert!(
                refused
                    .stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("evil-{i} "))
                        && l.contains("not undone")
                        && l.contains("must log in again")),
                "{}",
                refused.stdout
            );
        }
        assert!(!refused.stdout.contains("web-"), "{}", refused.stdout);
        assert_eq!(expiries(&env).len(), 3);
        assert!(
            !std::fs::read_to_string(env.state.path().join("audit.jsonl"))
                .unwrap()
                .contains("rollback_started"),
            "a refused rollback is not recorded as begun"
        );
        env.assert_state_clean();
    }
}

#[test]
fn deauthorize_and_drop_routes_are_rolled_back_from_the_snapshot() {
    let (env, id) = with_fleet("key");
    // An admin had approved the attacker's route: dropping it is the containment.
    let router = devices(&env)
        .into_iter()
        .find(|d| d["hostname"] == "evil-2")
        .unwrap();
    let router_id = router["nodeId"].as_str().unwrap().to_owned();
    api(
        &env,
        "POST",
        &format!("/api/v2/device/{router_id}/routes"),
        Some(&json!({"routes": ["10.9.0.0/16"]})),
    );
    let state = |env: &TestEnv| -> Vec<(String, bool, Value)> {
        let mut all: Vec<_> = devices(env)
            .into_iter()
            .map(|d| {
                (
                    d["hostname"].as_str().unwrap().to_owned(),
                    d["authorized"].as_bool().unwrap(),
                    d["enabledRoutes"].clone(),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let before = state(&env);
    for action in ["deauthorize", "drop-routes"] {
        let run = contain(&env, json_cmd(&env), &id, action).expect(0);
        let containment = run.json()["containment"]["id"].as_str().unwrap().to_owned();
        let during = state(&env);
        for (host, authorized, routes) in &during {
            let was = before.iter().find(|b| &b.0 == host).unwrap();
            if host.starts_with("evil-") {
                match action {
                    "deauthorize" => assert!(!authorized, "{host} still authorized"),
                    _ => assert_eq!(routes, &json!([]), "{host} still routes"),
                }
            } else {
                assert_eq!(
                    &(host.clone(), *authorized, routes.clone()),
                    was,
                    "{host} changed"
                );
            }
        }
        let undone = env
            .run(env.cmd().args(["rollback", &containment, "--yes"]))
            .expect(0);
        assert!(undone.stdout.contains("rolled back"), "{}", undone.stdout);
        assert_eq!(state(&env), before, "after rolling back {action}");
        // A second rollback has nothing left to do and says so.
        let again = env
            .run(env.cmd().args(["rollback", &containment, "--yes"]))
            .expect(2);
        assert!(again.stderr.contains("nothing to undo"), "{}", again.stderr);
    }
    env.assert_state_clean();
}

#[test]
fn an_expiry_whose_answer_was_lost_is_not_repeated_by_resume() {
    let (env, id) = with_fleet("key");
    // The second expiry happens, but its answer never arrives.
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/device/", "drop_connection": true,
                "skip": 1, "count": 1}),
    );
    let run = contain(&env, json_cmd(&env), &id, "expire").expect(1);
    let containment = run.json()["containment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        expiries(&env).len(),
        3,
        "the lost one happened all the same"
    );
    emulator::clear_faults(env.url());
    let resumed = env
        .run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    assert!(
        resumed.stdout.contains("done (by an interrupted run)"),
        "{}",
        resumed.stdout
    );
    let expired: Vec<String> = expiries(&env).iter().map(|n| short(n)).collect();
    assert_eq!(
        expired,
        ["evil-0", "evil-1", "evil-2"],
        "an expiry was repeated"
    );
    env.assert_state_clean();
}

/// SIGKILL `contain --action expire --yes` once its journal holds `records` lines (calls slowed
/// by emulator latency so that the kill lands between them), then `resume`.
fn kill_then_resume(records: usize) -> bool {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let (env, id) = with_fleet("key");
    emulator::add_fault(
        env.url(),
        &json!({"path_prefix": "/api/v2/device/", "latency_ms": 60}),
    );
    let mut child = env.process();
    let out = env.aside.path().join("killed.out");
    let err = env.aside.path().join("killed.err");
    let mut child = child
        .args([
            "contain", &id, "--since", "1d", "--action", "expire", "--yes",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while containment_journal(&env).len() < records
        && child.try_wait().unwrap().is_none()
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::yield_now();
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    env.assert_clean(&std::fs::read_to_string(&out).unwrap());
    env.assert_clean(&std::fs::read_to_string(&err).unwrap());
    emulator::clear_faults(env.url());

    let containment = only_containment(&env);
    let resumed = env.run(env.cmd().args(["resume", &containment, "--yes"]));
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let expired: Vec<String> = expiries(&env).iter().map(|n| short(n)).collect();
    assert_eq!(
        expired,
        ["evil-0", "evil-1", "evil-2"],
        "killed at {records} records"
    );
    // Finished: resuming again does nothing.
    env.run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    assert_eq!(expiries(&env).len(), 3);
    env.assert_state_clean();
    killed
}

#[test]
fn sigkill_during_the_actions_then_resume_does_nothing_twice() {
    // planned, then intent/done per device: 2..=7 lands before, between and after calls.
    let killed = (2..=7).filter(|&n| kill_then_resume(n)).count();
    assert!(killed >= 4, "only {killed} kills landed mid-containment");
}

#[test]
fn rotate_with_contain_rotates_then_reports_the_devices_the_old_key_joined() {
    let mut env = TestEnv::new();
    let (id, secret) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
    join(
        &env,
        &json!({"auth_key_id": id, "hostname": "intruder", "audit_actor": "key"}),
    );
    let refused = env
        .run(
            env.cmd()
                .args([
                    "--format",
                    "json",
                    "rotate",
                    &id,
                    "--yes",
                    "--contain",
                    "--in",
                ])
                .arg(env.work.path()),
        )
        .expect(2);
    assert!(refused.stderr.contains("--contain"), "{}", refused.stderr);
    assert_eq!(
        env.key(&id)["invalid"],
        false,
        "a refusal changed something"
    );

    let run = env
        .run(
            env.cmd()
                .args(["rotate", &id, "--yes", "--contain", "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    assert_eq!(env.key(&id)["invalid"], true, "the rotation did not finish");
    assert!(listed(&run.stdout, "exact", "intruder"), "{}", run.stdout);
    env.assert_state_clean();
}

#[test]
fn an_action_the_credential_may_not_take_names_the_scope_and_resume_finishes_it() {
    let (mut env, id) = with_fleet("key");
    let read_only = env.mint(json!({"keyType": "client", "tags": ["tag:server"],
        "scopes": ["devices:core:read", "auth_keys:read", "logs:configuration:read"]}));
    let run = contain(
        &env,
        env.cmd_as(&read_only.0, &read_only.1),
        &id,
        "deauthorize",
    )
    .expect(2);
    assert!(
        run.stderr.contains("`devices:core` scope"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tsrotate resume"), "{}", run.stderr);
    assert!(!run.stderr.contains("{ "), "debug output: {}", run.stderr);
    assert!(devices(&env).iter().all(|d| d["authorized"] == true));
    let containment = only_containment(&env);
    // With a credential that may, resume finishes it.
    env.run(env.cmd().args(["resume", &containment])).expect(0);
    let deauthorized: Vec<String> = devices(&env)
        .iter()
        .filter(|d| d["authorized"] == false)
        .map(|d| d["hostname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deauthorized.len(), 3, "{deauthorized:?}");
    assert!(deauthorized.iter().all(|h| h.starts_with("evil-")));
    env.assert_state_clean();
}

/// The containment entries of tsrotate's audit log (`audit.jsonl`), as JSON.
fn audited(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.state.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            e["event"]["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("containment_"))
        })
        .collect()
}

/// The device called `hostname`, as the API describes it.
fn device(env: &TestEnv, hostname: &str) -> Value {
    devices(env)
        .into_iter()
        .find(|d| d["hostname"] == hostname)
        .unwrap_or_else(|| panic!("no device {hostname}"))
}

#[test]
fn every_containment_step_goes_to_the_audit_log_with_ids_and_hostnames_only() {
    let (env, id) = with_fleet("key");
    contain(&env, env.cmd(), &id, "deauthorize").expect(0);
    let containment = only_containment(&env);
    env.run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(0);

    let entries = audited(&env);
    assert!(
        entries
            .iter()
            .all(|e| e["event"]["containment_id"] == containment
                && e["user"].is_string()
                && e["at"].is_string())
    );
    let steps: Vec<String> = entries
        .iter()
        .map(|e| {
            let event = &e["event"];
            match event["outcome"].as_str() {
                Some(outcome) => format!("{} {outcome}", event["hostname"].as_str().unwrap()),
                None => event["type"].as_str().unwrap().to_owned(),
            }
        })
        .collect();
    // Devices are acted on, and restored, in the plan's order.
    let evil: Vec<&str> = entries[0]["event"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    let mut sorted = evil.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["evil-0", "evil-1", "evil-2"]);
    let mut expected = vec!["containment_planned".to_owned()];
    for host in &evil {
        expected.extend([format!("{host} intent"), format!("{host} done")]);
    }
    expected.extend([
        "containment_finished".to_owned(),
        "containment_rollback_started".to_owned(),
    ]);
    for host in &evil {
        expected.extend([format!("{host} restore_intent"), format!("{host} restored")]);
    }
    expected.push("containment_rolled_back".to_owned());
    assert_eq!(steps, expected);

    // The plan names the key, the action and each device by node ID and hostname: no snapshot.
    let plan = &entries[0]["event"];
    assert_eq!(plan["key_id"], id.as_str());
    assert_eq!(plan["action"], "deauthorize");
    for named in plan["devices"].as_array().unwrap() {
        let fields: Vec<&String> = named.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["hostname", "node_id"], "{named}");
        assert_eq!(
            device(&env, named["hostname"].as_str().unwrap())["nodeId"],
            named["node_id"]
        );
    }
    let text = std::fs::read_to_string(env.state.path().join("audit.jsonl")).unwrap();
    for snapshot_field in [
        "addresses",
        "advertised_routes",
        "enabled_routes",
        "client_version",
    ] {
        assert!(
            !text.contains(snapshot_field),
            "{snapshot_field} in the audit log"
        );
    }
    env.assert_state_clean();
}

#[test]
fn rollback_leaves_devices_changed_since_alone_and_enables_only_routes_still_advertised() {
    let (env, id) = with_fleet("key");
    let admin_routes = |host: &str, routes: &[&str]| {
        let node = device(&env, host)["nodeId"].as_str().unwrap().to_owned();
        api(
            &env,
            "POST",
            &format!("/api/v2/device/{node}/routes"),
            Some(&json!({ "routes": routes })),
        );
    };
    let advertise = |host: &str, routes: &[&str]| {
        let node = device(&env, host)["nodeId"].as_str().unwrap().to_owned();
        let (status, answer) = emulator::admin(
            env.url(),
            "POST",
            &format!("/_emulator/devices/{node}/advertise"),
            Some(&json!({ "routes": routes })),
        );
        assert_eq!(status, 200, "{answer}");
    };
    // Two attackers' routes were approved before anyone noticed.
    advertise("evil-2", &["10.9.0.0/16", "10.8.0.0/16"]);
    admin_routes("evil-2", &["10.9.0.0/16", "10.8.0.0/16"]);
    advertise("evil-1", &["10.7.0.0/16", "10.6.0.0/16"]);
    admin_routes("evil-1", &["10.7.0.0/16"]);
    contain(&env, env.cmd(), &id, "drop-routes").expect(0);
    let routes = |host: &str| device(&env, host)["enabledRoutes"].clone();
    for host in ["evil-0", "evil-1", "evil-2"] {
        assert_eq!(routes(host), json!([]), "{host}");
    }
    // Since then: evil-2 stopped advertising one of its routes, and an admin enabled another
    // route on evil-1 by hand.
    advertise("evil-2", &["10.9.0.0/16"]);
    admin_routes("evil-1", &["10.6.0.0/16"]);

    let containment = only_containment(&env);
    let run = env
        .run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(1);
    assert_eq!(
        routes("evil-2"),
        json!(["10.9.0.0/16"]),
        "only what it still advertises"
    );
    assert_eq!(
        routes("evil-1"),
        json!(["10.6.0.0/16"]),
        "the admin's change stays"
    );
    assert_eq!(
        routes("evil-0"),
        json!([]),
        "it had none: nothing is enabled"
    );
    let line = |host: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host} not named:\n{}", run.stdout))
            .to_owned()
    };
    assert!(line("evil-1").contains("left alone"), "{}", run.stdout);
    assert!(line("evil-1").contains("10.6.0.0/16"), "{}", run.stdout);
    assert!(
        line("evil-2").contains("except routes 10.8.0.0/16"),
        "{}",
        run.stdout
    );
    assert!(
        line("evil-0").contains("nothing to restore"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("changed since"), "{}", run.stdout);

    // Deauthorized, then one authorized again by an admin: rollback leaves that one alone.
    let (env, id) = with_fleet("key");
    contain(&env, env.cmd(), &id, "deauthorize").expect(0);
    let node = device(&env, "evil-0")["nodeId"]
        .as_str()
        .unwrap()
        .to_owned();
    api(
        &env,
        "POST",
        &format!("/api/v2/device/{node}/authorized"),
        Some(&json!({"authorized": true})),
    );
    let containment = only_containment(&env);
    let run = env
        .run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(1);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("evil-0 ") && l.contains("left alone")),
        "{}",
        run.stdout
    );
    assert!(devices(&env).iter().all(|d| d["authorized"] == true));
    let left: Vec<Value> = audited(&env)
        .into_iter()
        .filter(|e| e["event"]["outcome"] == "left_alone")
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["event"]["hostname"], "evil-0");
    env.assert_state_clean();
}

#[test]
fn rotate_with_contain_takes_the_containment_options_and_acts_with_yes() {
    let mut env = TestEnv::new();
    let (id, secret) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
    // The leaked key joined a fleet long ago, and three devices in the last hour.
    let _ = emulator::advance_clock(env.url(), 20 * 86_400);
    for i in 0..4 {
        join(
            &env,
            &json!({"auth_key_id": id, "hostname": format!("app-{i}"), "audit_actor": "owner",
                "created_offset_seconds": -10 * 86_400}),
        );
    }
    let late: Vec<String> = ["late-0", "late-1", "late-2"]
        .into_iter()
        .map(|host| {
            join(
                &env,
                &json!({"auth_key_id": id, "hostname": host, "audit_actor": "owner",
                "created_offset_seconds": -3600}),
            )
        })
        .collect();
    // late-0 is ours: listed by node ID (a hostname is the device's own choice).
    let expected = env.write_aside("fleet.txt", format!("{}\n", late[0]));
    let rotate = |options: &[&str]| {
        env.run(
            env.cmd()
                .args(["rotate", &id, "--yes"])
                .args(options)
                .arg("--expected")
                .arg(&expected)
                .arg("--in")
                .arg(env.work.path()),
        )
    };

    // The options need --contain, and a bad one stops everything before the rotation.
    let alone = rotate(&["--action", "deauthorize"]).expect(2);
    assert!(alone.stderr.contains("--contain"), "{}", alone.stderr);
    let bad = rotate(&["--contain", "--since", "soon"]).expect(2);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
    assert_eq!(env.key(&id)["invalid"], false, "a refusal rotated the key");

    let run = rotate(&[
        "--contain",
        "--since",
        "1d",
        "--min-confidence",
        "possible",
        "--action",
        "deauthorize",
    ])
    .expect(0);
    assert_eq!(env.key(&id)["invalid"], true, "the rotation did not finish");
    let deauthorized: Vec<String> = devices(&env)
        .iter()
        .filter(|d| d["authorized"] == false)
        .map(|d| d["hostname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deauthorized, ["late-1", "late-2"], "{}", run.stdout);
    assert!(run.stdout.contains("tsrotate rollback"), "{}", run.stdout);
    env.assert_state_clean();
}

#[test]
fn status_lists_unfinished_containments_first_and_exits_1_until_they_are_resumed() {
    let mut env = TestEnv::new();
    let (id, secret) = fleet(&mut env, "key");
    env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
    let work = env.work.path().display().to_string();
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"fleet\"\nkind = \"auth-key\"\nrotate_before = \"1d\"\n\n\
             [[credential.sink]]\ntype = \"dotenv\"\npath = \"{work}/app/.env\"\nfield = \"TS_AUTHKEY\"\n"
        ),
    );
    let status = |env: &TestEnv| env.run(env.cmd().arg("--config").arg(&config).arg("status"));
    assert!(!status(&env).expect(0).stdout.contains("CONTAINMENT"));

    // The fleet key's containment stops on a credential that may not change devices...
    let read_only = env.mint(json!({"keyType": "client", "tags": ["tag:server"],
        "scopes": ["devices:core:read", "auth_keys:read", "logs:configuration:read"]}));
    contain(
        &env,
        env.cmd_as(&read_only.0, &read_only.1),
        &id,
        "deauthorize",
    )
    .expect(2);
    let unfinished = only_containment(&env);
    // ... and a later one, of another key, finishes.
    let (other, _) = env.mint_default();
    join(
        &env,
        &json!({"auth_key_id": other, "hostname": "stray", "audit_actor": "key"}),
    );
    let finished = env
        .run(env.cmd().args([
            "--format",
            "json",
            "contain",
            &other,
            "--action",
            "drop-routes",
            "--yes",
        ]))
        .expect(0)
        .json()["containment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let run = status(&env).expect(1);
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("CONTAINMENT"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{}", run.stdout);
    assert!(rows[0].starts_with(&unfinished), "{}", run.stdout);
    assert!(
        rows[0].contains(&format!("tsrotate resume {unfinished}"))
            && rows[0].contains(&format!("rollback {unfinished}")),
        "{}",
        run.stdout
    );
    assert!(
        rows[1].starts_with(&finished) && rows[1].contains("finished"),
        "{}",
        run.stdout
    );

    env.run(env.cmd().args(["resume", &unfinished])).expect(0);
    let run = status(&env).expect(0);
    assert!(!run.stdout.contains("UNFINISHED"), "{}", run.stdout);

    // A containment journal that cannot be read hides nothing else, and is not "all well".
    let broken = env
        .state
        .path()
        .join("containments/c20000101000000zzzzzz.jsonl");
    std::fs::write(&broken, "not a journal\n").unwrap();
    let run = status(&env).expect(1);
    assert!(run.stdout.starts_with("CREDENTIAL"), "{}", run.stdout);
    assert!(
        run.stderr.contains("containment journals"),
        "{}",
        run.stderr
    );
    env.assert_state_clean();
}

/// Red-team finding: `--since 99999999d` overflowed the clock and panicked (exit 101). A
/// `--since` further back than 100 years is a usage error, said in words.
#[test]
fn a_since_too_far_back_is_a_usage_error_not_a_panic() {
    let (env, id) = with_fleet("key");
    for since in ["99999999d", "36500000d"] {
        let run = env
            .run(env.cmd().args(["contain", &id, "--since", since]))
            .expect(2);
        assert!(run.stderr.contains("at most 100 years"), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    env.run(env.cmd().args(["contain", &id, "--since", "36500d"]))
        .expect(1);
}

/// The fleet's containment stopped by a credential that may read devices but not change them:
/// the first device's call failed (403), the others were not tried. Returns its ID.
fn stopped_containment(env: &mut TestEnv, id: &str) -> String {
    let read_only = env.mint(json!({"keyType": "client", "tags": ["tag:server"],
        "scopes": ["devices:core:read", "auth_keys:read", "logs:configuration:read"]}));
    contain(
        env,
        env.cmd_as(&read_only.0, &read_only.1),
        id,
        "deauthorize",
    )
    .expect(2);
    only_containment(env)
}

/// A configuration naming one credential (a dotenv file holding `secret`), for `status`.
fn status_config(env: &TestEnv, secret: &str) -> std::path::PathBuf {
    env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
    let work = env.work.path().display().to_string();
    env.write_aside(
        "tsrotate.toml",
        format!(
            "[[credential]]\nname = \"fleet\"\nkind = \"auth-key\"\nrotate_before = \"1d\"\n\n\
             [[credential.sink]]\ntype = \"dotenv\"\npath = \"{work}/app/.env\"\nfield = \"TS_AUTHKEY\"\n"
        ),
    )
}

/// A containment journal whose seal does not verify can be neither resumed nor rolled back,
/// and held back every new containment of its key: `abandon` settles it (no `--force`
/// needed), naming each device with what the containment did and what the API says now,
/// records that a person took over (journal and audit log), and changes no device.
#[test]
fn abandon_settles_an_unsealed_containment_naming_each_device() {
    let mut env = TestEnv::new();
    let (id, secret) = fleet(&mut env, "key");
    let config = status_config(&env, &secret);
    let containment = stopped_containment(&mut env, &id);
    let journal = env
        .state
        .path()
        .join("containments")
        .join(format!("{containment}.jsonl"));
    let original = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, crate::seal::without_seals(&original)).unwrap();
    let before = devices(&env);

    // status says what to do, and a new containment of the key waits for a person.
    let status = env
        .run(env.cmd().arg("--config").arg(&config).arg("status"))
        .expect(1);
    assert!(
        status
            .stderr
            .contains(&format!("tsrotate abandon {containment}")),
        "{}",
        status.stderr
    );
    let blocked = contain(&env, env.cmd(), &id, "deauthorize").expect(2);
    assert!(
        blocked
            .stderr
            .contains(&format!("tsrotate abandon {containment}")),
        "{}",
        blocked.stderr
    );

    let run = env
        .run(env.cmd().args(["abandon", &containment, "--yes"]))
        .expect(0);
    assert!(run.stderr.contains("not sealed"), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("Abandoned containment {containment}")),
        "{}",
        run.stdout
    );
    for d in before
        .iter()
        .filter(|d| d["hostname"].as_str().unwrap().starts_with("evil-"))
    {
        let host = d["hostname"].as_str().unwrap();
        let node = d["nodeId"].as_str().unwrap();
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host} not named:\n{}", run.stdout));
        assert!(line.contains(node), "{line}");
        assert!(
            line.contains("authorized, no routes enabled, key expiry disabled"),
            "{line}"
        );
        assert!(
            line.contains("deauthorize failed") || line.contains("not done yet"),
            "{line}"
        );
    }
    assert!(!run.stdout.contains("web-"), "{}", run.stdout);
    assert!(run.stdout.contains("check by hand"), "{}", run.stdout);
    assert_eq!(devices(&env), before, "abandon changed a device");

    // Recorded: the journal ends with it, the audit log names each device and its state.
    let last = std::fs::read_to_string(&journal).unwrap();
    let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["type"], "abandoned", "{last}");
    let entry = audited(&env)
        .into_iter()
        .find(|e| e["event"]["type"] == "containment_abandoned")
        .expect("abandon is audited");
    assert_eq!(entry["event"]["containment_id"], containment.as_str());
    assert_eq!(entry["event"]["sealed"], false);
    let left: Vec<&str> = entry["event"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["failed", "pending", "pending"], "{entry}");

    // Settled: status is quiet about it, and the key can be contained again.
    let status = env
        .run(env.cmd().arg("--config").arg(&config).arg("status"))
        .expect(0);
    assert!(!status.stderr.contains("not sealed"), "{}", status.stderr);
    contain(&env, env.cmd(), &id, "deauthorize").expect(0);
    env.assert_state_clean();
}

/// A sealed containment that `resume` can still finish is abandoned only with `--force`
/// (JSON: each device with its state and what the API says now); after that `resume` and
/// `rollback` refuse it. One that ended is refused: nothing to abandon.
#[test]
fn abandon_needs_force_while_resume_could_finish_and_refuses_a_finished_containment() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let containment = stopped_containment(&mut env, &id);
    let journal = env
        .state
        .path()
        .join("containments")
        .join(format!("{containment}.jsonl"));
    let original = std::fs::read_to_string(&journal).unwrap();
    let refused = env
        .run(env.cmd().args(["abandon", &containment, "--yes"]))
        .expect(2);
    assert!(
        refused
            .stderr
            .contains(&format!("tsrotate resume {containment}"))
            && refused
                .stderr
                .contains(&format!("tsrotate rollback {containment}"))
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), original);

    let run = env
        .run(json_cmd(&env).args(["abandon", &containment, "--yes", "--force"]))
        .expect(0);
    let report = run.json();
    assert_eq!(report["containment_id"], containment.as_str());
    assert_eq!(report["outcome"], "abandoned");
    assert_eq!(report["key_id"], id.as_str());
    assert_eq!(report["action"], "deauthorize");
    assert_eq!(report["sealed"], true);
    let listed = report["devices"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{report}");
    for d in listed {
        assert!(d["hostname"].as_str().unwrap().starts_with("evil-"), "{d}");
        assert_eq!(
            device(&env, d["hostname"].as_str().unwrap())["nodeId"],
            d["node_id"]
        );
        assert_eq!(d["now"]["authorized"], true, "{d}");
        assert!(d["now"]["expires"].is_string(), "{d}");
    }
    assert_eq!(listed[0]["state"], "failed", "{report}");
    assert!(report["next"].as_str().unwrap().contains("check by hand"));

    for command in ["resume", "rollback"] {
        let run = env
            .run(env.cmd().args([command, &containment, "--yes"]))
            .expect(2);
        assert!(
            run.stderr.contains("was abandoned"),
            "{command}: {}",
            run.stderr
        );
    }
    assert!(devices(&env).iter().all(|d| d["authorized"] == true));
    let again = env
        .run(
            env.cmd()
                .args(["abandon", &containment, "--yes", "--force"]),
        )
        .expect(2);
    assert!(
        again.stderr.contains("already ended (abandoned)")
            && again.stderr.contains("nothing to abandon"),
        "{}",
        again.stderr
    );

    // A finished containment: nothing to abandon, nothing recorded.
    let finished = contain(&env, json_cmd(&env), &id, "deauthorize")
        .expect(0)
        .json()["containment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = env
        .state
        .path()
        .join("containments")
        .join(format!("{finished}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let run = env
        .run(env.cmd().args(["abandon", &finished, "--yes", "--force"]))
        .expect(2);
    assert!(
        run.stderr.contains("already ended (finished)")
            && run.stderr.contains("nothing to abandon"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    env.assert_state_clean();
}

/// An ID is letters, digits and dashes, and names a journal in its folder: nothing is made
/// into a path from anything else (a containment reached through `../containments/`, a
/// rotation's folder, a file name).
#[test]
fn abandon_takes_ids_only_never_paths() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let containment = stopped_containment(&mut env, &id);
    let journal = env
        .state
        .path()
        .join("containments")
        .join(format!("{containment}.jsonl"));
    let original = std::fs::read_to_string(&journal).unwrap();
    for bad in [
        format!("../containments/{containment}"),
        format!("{containment}/../{containment}"),
        format!("{containment}.jsonl"),
        format!("./{containment}"),
        String::new(),
        "c\u{1b}[2J".to_owned(),
    ] {
        let run = env
            .run(env.cmd().args(["abandon", &bad, "--yes", "--force"]))
            .expect(2);
        assert!(
            run.stderr.contains("not a rotation or containment ID"),
            "{bad}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains('\u{1b}'), "{bad}: unescaped");
    }
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), original);
    env.assert_state_clean();
}

/// `status --format json`: the credential rows as before, then one element per containment
/// journal (`"type": "containment"`), unfinished first, each with its key, action, devices
/// (done or failed) and the command that goes on with it; journals whose seal does not verify
/// or that cannot be read are reported too.
#[test]
fn status_json_lists_containments_after_the_credentials() {
    let mut env = TestEnv::new();
    let (id, secret) = fleet(&mut env, "key");
    let config = status_config(&env, &secret);
    let status = |env: &TestEnv| env.run(json_cmd(env).arg("--config").arg(&config).arg("status"));
    let quiet = status(&env).expect(0).json();
    let rows = quiet.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{quiet}");
    assert_eq!(rows[0]["name"], "fleet");
    assert!(rows[0].get("type").is_none(), "{quiet}");

    let stopped = stopped_containment(&mut env, &id);
    let (other, _) = env.mint_default();
    join(
        &env,
        &json!({"auth_key_id": other, "hostname": "stray", "audit_actor": "key"}),
    );
    let finished = env
        .run(json_cmd(&env).args(["contain", &other, "--action", "drop-routes", "--yes"]))
        .expect(0)
        .json()["containment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let folder = env.state.path().join("containments");
    // A copy under another name does not verify (the seal covers the name); and a file that is
    // not a journal at all.
    let forged = "c20000101000000forged";
    std::fs::copy(
        folder.join(format!("{stopped}.jsonl")),
        folder.join(format!("{forged}.jsonl")),
    )
    .unwrap();
    std::fs::write(
        folder.join("c20000101000000zzzzzz.jsonl"),
        "not a journal\n",
    )
    .unwrap();

    let report = status(&env).expect(1).json();
    let all = report.as_array().unwrap();
    assert_eq!(all[0], rows[0], "the credential row changed");
    let containments: Vec<&Value> = all.iter().filter(|e| e["type"] == "containment").collect();
    assert_eq!(containments.len(), 4, "{report}");
    assert_eq!(all.len(), 5, "{report}");
    let by_id = |wanted: &str| -> &Value {
        containments
            .iter()
            .find(|c| c["id"] == wanted)
            .unwrap_or_else(|| panic!("{wanted} missing: {report}"))
    };
    // Unfinished ones (sealed or not, and the unreadable one) before the finished one.
    assert_eq!(containments[3]["id"], finished.as_str(), "{report}");

    let c = by_id(&stopped);
    assert_eq!(c["state"], "unfinished");
    assert_eq!(c["finished"], false);
    assert_eq!(c["sealed"], true);
    assert_eq!(c["key_id"], id.as_str());
    assert_eq!(c["action"], "deauthorize");
    assert_eq!(c["next"], format!("tsrotate resume {stopped}"));
    let listed = c["devices"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for d in listed {
        assert!(d["hostname"].as_str().unwrap().starts_with("evil-"), "{d}");
        assert_eq!(
            device(&env, d["hostname"].as_str().unwrap())["nodeId"],
            d["node_id"]
        );
        assert_eq!(d["done"], false, "{d}");
    }
    assert_eq!(listed[0]["failed"], true, "{c}");
    assert!(listed[0]["error"].as_str().unwrap().contains("403"), "{c}");
    assert_eq!(listed[1]["failed"], false, "{c}");

    let c = by_id(&finished);
    assert_eq!(
        (&c["state"], &c["finished"]),
        (&json!("finished"), &json!(true))
    );
    assert_eq!(c["next"], Value::Null);
    assert_eq!(c["devices"][0]["hostname"], "stray");
    assert_eq!(c["devices"][0]["done"], true);

    let c = by_id(forged);
    assert_eq!(c["sealed"], false, "{c}");
    assert_eq!(c["finished"], false, "{c}");
    assert_eq!(c["next"], format!("tsrotate abandon {forged}"));
    assert!(c["problem"].as_str().unwrap().contains("not sealed"), "{c}");

    let c = by_id("c20000101000000zzzzzz");
    assert_eq!(c["state"], "unreadable", "{c}");
    assert!(c["problem"].is_string(), "{c}");
    assert_eq!(c["next"], Value::Null);
    env.assert_state_clean();
}

/// Tagged devices join with key expiry disabled (Tailscale's default, and the emulator's), and
/// whether an expiry takes effect on such a device is not documented: the plan of
/// `--action expire` (dry run, and the JSON of a run with `--yes`) says so for each of them and
/// names deauthorize as the sure quarantine; a device whose key expiry is enabled, another
/// action, or a report without an action says nothing of it.
#[test]
fn expire_on_devices_whose_key_expiry_is_disabled_says_it_may_not_take_effect() {
    const CAVEAT: &str = "its key expiry is disabled";
    let (env, id) = with_fleet("key");
    assert!(
        devices(&env)
            .iter()
            .filter(|d| d["isExternal"] == false)
            .all(|d| d["keyExpiryDisabled"] == true),
        "tagged devices join with key expiry disabled"
    );
    // An admin turned key expiry back on for evil-0.
    let evil_0 = device(&env, "evil-0")["nodeId"]
        .as_str()
        .unwrap()
        .to_owned();
    api(
        &env,
        "POST",
        &format!("/api/v2/device/{evil_0}/key"),
        Some(&json!({"keyExpiryDisabled": false})),
    );
    let args = ["contain", &id, "--since", "1d", "--action", "expire"];

    let dry = env.run(env.cmd().args(args)).expect(1);
    let caveats: Vec<&str> = dry.stdout.lines().filter(|l| l.contains(CAVEAT)).collect();
    assert_eq!(caveats.len(), 2, "{}", dry.stdout);
    for host in ["evil-1", "evil-2"] {
        let node = device(&env, host)["nodeId"].as_str().unwrap().to_owned();
        assert!(
            caveats
                .iter()
                .any(|l| l.contains(&format!("{host} ({node})"))
                    && l.contains("does not document whether an expiry takes effect")
                    && l.contains("`--action deauthorize` is the sure quarantine")),
            "{host}:\n{}",
            dry.stdout
        );
    }
    assert!(
        !caveats.iter().any(|l| l.contains("evil-0")),
        "{}",
        dry.stdout
    );
    assert!(expiries(&env).is_empty(), "a dry run changed something");

    let noted = |report: &Value| -> Vec<String> {
        let mut hosts: Vec<String> = report["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["evidence"].to_string().contains(CAVEAT))
            .map(|c| c["hostname"].as_str().unwrap().to_owned())
            .collect();
        hosts.sort();
        hosts
    };
    let noted_devices = |report: &Value| -> Vec<String> {
        let mut hosts: Vec<String> = report["containment"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["note"].as_str().is_some_and(|n| n.contains(CAVEAT)))
            .map(|d| d["hostname"].as_str().unwrap().to_owned())
            .collect();
        hosts.sort();
        hosts
    };
    let dry = env.run(json_cmd(&env).args(args)).expect(1).json();
    assert_eq!(noted(&dry), ["evil-1", "evil-2"], "{dry}");
    assert_eq!(noted_devices(&dry), ["evil-1", "evil-2"], "{dry}");

    // Another action, or no action: nothing said of it.
    let other = env
        .run(json_cmd(&env).args(["contain", &id, "--since", "1d", "--action", "deauthorize"]))
        .expect(1)
        .json();
    assert!(
        noted(&other).is_empty() && noted_devices(&other).is_empty(),
        "{other}"
    );
    let report = env
        .run(json_cmd(&env).args(["contain", &id, "--since", "1d"]))
        .expect(1)
        .json();
    assert!(noted(&report).is_empty(), "{report}");

    // Carried out: the emulator records the three expiries (it models no effect of key
    // expiry on connectivity), and the report still says which may not have taken effect.
    let done = env
        .run(json_cmd(&env).args(args).arg("--yes"))
        .expect(0)
        .json();
    assert_eq!(noted_devices(&done), ["evil-1", "evil-2"], "{done}");
    assert_eq!(expiries(&env).len(), 3);

    // Rollback of an expiry stays refused (exit 2, nothing changed), each device named with
    // what it needs; those whose key expiry is disabled may not be cut off at all.
    let containment = done["containment"]["id"].as_str().unwrap();
    let refused = env
        .run(env.cmd().args(["rollback", containment, "--yes"]))
        .expect(2);
    let line = |host: &str| {
        refused
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host} not named:\n{}", refused.stdout))
            .to_owned()
    };
    assert!(
        line("evil-0").contains("stays expired") && line("evil-0").contains("must log in again"),
        "{}",
        refused.stdout
    );
    for host in ["evil-1", "evil-2"] {
        assert!(
            line(host).contains("whether the expiry took effect is not documented")
                && line(host).contains("must log in again"),
            "{}",
            refused.stdout
        );
    }
    assert!(
        refused.stderr.contains("cannot undo an expiry"),
        "{}",
        refused.stderr
    );
    assert_eq!(expiries(&env).len(), 3);
    env.assert_state_clean();
}

/// A containment stopped part way (a 403 on its third device), then a rollback stopped part
/// way (a 403 on the second restore): `resume` must not act again on the device the rollback
/// restored (it deauthorized it again, turning the rollback around), and `abandon` points to
/// `rollback`, the one command that goes on.
#[test]
fn resume_refuses_a_containment_whose_rollback_began() {
    let (env, id) = with_fleet("key");
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/device/", "status": 403,
                "skip": 2, "count": 1}),
    );
    contain(&env, env.cmd(), &id, "deauthorize").expect(2);
    emulator::clear_faults(env.url());
    let containment = only_containment(&env);
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/device/", "status": 403,
                "skip": 1, "count": 1}),
    );
    env.run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(2);
    emulator::clear_faults(env.url());
    let authorized = |env: &TestEnv| -> Vec<String> {
        let mut hosts: Vec<String> = devices(env)
            .iter()
            .filter(|d| {
                d["authorized"] == true && d["hostname"].as_str().unwrap().starts_with("evil-")
            })
            .map(|d| d["hostname"].as_str().unwrap().to_owned())
            .collect();
        hosts.sort();
        hosts
    };
    let restored = authorized(&env);
    assert_eq!(
        restored.len(),
        2,
        "one device restored before the 403, one never deauthorized"
    );

    let run = env
        .run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(2);
    assert!(run.stderr.contains("being rolled back"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("tsrotate rollback {containment}")),
        "{}",
        run.stderr
    );
    assert_eq!(authorized(&env), restored, "resume acted again");
    let refused = env
        .run(env.cmd().args(["abandon", &containment, "--yes"]))
        .expect(2);
    assert!(
        refused.stderr.contains(&format!(
            "can still be rolled back with `tsrotate rollback {containment}`"
        )),
        "{}",
        refused.stderr
    );
    // The rollback, run again, finishes.
    env.run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(0);
    assert_eq!(authorized(&env).len(), 3);
    env.assert_state_clean();
}
