//! `tsrotate contain` against the findings of the third red team (issue 13): each test names
//! its finding and fails without its fix.

use serde_json::{Value, json};
use tsrotate_test_support::emulator;

use crate::contain::fleet;
use crate::support::{Run, TestEnv};

/// Joins a device; answers its node ID.
fn join(env: &TestEnv, body: &Value) -> String {
    let (status, answer) = emulator::admin(env.url(), "POST", "/_emulator/devices", Some(body));
    assert_eq!(status, 200, "{answer}");
    answer["nodeId"].as_str().unwrap().to_owned()
}

/// The candidate with node ID `node` in a JSON report.
fn candidate<'a>(report: &'a Value, node: &str) -> Option<&'a Value> {
    report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node_id"] == node)
}

/// `tsrotate --format json contain ID ARGS…`.
fn contain_json(env: &TestEnv, id: &str, args: &[&str]) -> Run {
    env.run(
        env.cmd()
            .args(["--format", "json", "contain", id])
            .args(args),
    )
}

/// F13: a join the audit log names under an actor of a type `contain` did not expect (a
/// node, an automated worker) removed the device from every ranking; it is ranked as the
/// device list alone ranks it, saying the actor was not recognised.
#[test]
fn issue_13_a_join_logged_under_an_unexpected_actor_type_is_still_a_candidate() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "owner");
    let node = join(
        &env,
        &json!({"auth_key_id": id, "hostname": "kali", "os": "windows",
                "created_offset_seconds": -1800, "audit_actor": {"type": "NODE"}}),
    );
    let worker = join(
        &env,
        &json!({"auth_key_id": id, "hostname": "kali-2", "created_offset_seconds": -1800,
                "audit_actor": {"type": "AUTOMATED_WORKER", "id": "wrk-123"}}),
    );
    let report = contain_json(
        &env,
        &id,
        &["--since", "1d", "--min-confidence", "possible"],
    )
    .expect(1)
    .json();
    for node_id in [&node, &worker] {
        let found = candidate(&report, node_id).unwrap_or_else(|| panic!("{report}"));
        assert_eq!(found["confidence"], "possible", "{found}");
        assert!(
            found["evidence"].to_string().contains("not recognised"),
            "{found}"
        );
    }
    // The fleet's attackers logged under the owner are there too, and the fleet is not.
    assert_eq!(
        report["candidates"].as_array().unwrap().len(),
        5,
        "{report}"
    );
    env.assert_state_clean();
}

/// F7: an audit log that answers 404 ("Logging is not supported on this deployment of
/// Tailscale", in the `OpenAPI` description) stopped `contain` (exit 3); it falls back to the
/// device list, as for a 403, and says so.
#[test]
fn issue_13_an_audit_log_answering_404_falls_back_to_the_device_list() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    emulator::add_fault(
        env.url(),
        &json!({"method": "GET", "path_prefix": "/api/v2/tailnet/-/logging", "status": 404}),
    );
    let run = env
        .run(env.cmd().args([
            "contain",
            &id,
            "--since",
            "1d",
            "--min-confidence",
            "possible",
        ]))
        .expect(1);
    assert!(
        run.stderr
            .contains("audit log is not available on this deployment")
            && run.stderr.contains("device list alone"),
        "{}",
        run.stderr
    );
    for i in 0..3 {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with("possible") && l.contains(&format!("evil-{i}"))),
            "{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("web-"), "{}", run.stdout);
}

/// F11: a `--since` after the server's now gave an empty window and exit 0 (every device
/// left out); it is a usage error.
#[test]
fn issue_13_a_leak_time_in_the_future_is_a_usage_error() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let run = env
        .run(
            env.cmd()
                .args(["contain", &id, "--since", "9999-12-31T23:59:59Z"]),
        )
        .expect(2);
    assert!(
        run.stderr.contains("--since")
            && run.stderr.contains("after the API server's current time"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

/// F10: `--expected /dev/zero` was read until memory ran out, and `--expected FIFO` (no
/// writer) hung in `open`. The file is read bounded and without blocking; a FIFO without a
/// writer lists nothing, which is refused. The timeout is only a safety net, so that a
/// regression fails instead of stalling the suite.
#[test]
fn issue_13_expected_is_read_bounded_and_never_waits_on_a_fifo() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let run = env
        .run(
            env.cmd()
                .args(["contain", &id, "--expected", "/dev/zero"])
                .timeout(std::time::Duration::from_secs(60)),
        )
        .expect(2);
    assert!(run.stderr.contains("larger than 16 MiB"), "{}", run.stderr);
    let fifo = env.aside.path().join("fleet-fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let run = env
        .run(
            env.cmd()
                .args(["contain", &id, "--expected"])
                .arg(&fifo)
                .timeout(std::time::Duration::from_secs(60)),
        )
        .expect(2);
    assert!(
        run.stderr.contains("lists no hostname or node ID"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

/// F2: `--action X --yes` with every candidate below `--min-confidence` acted on nothing,
/// said nothing about it, and its JSON said `"dry_run": true`. It says how many candidates
/// are below the threshold and the option that includes them; exit 0 (nothing at or above).
#[test]
fn issue_13_an_action_that_acts_on_nothing_says_why_and_is_no_dry_run() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "owner");
    let args = [
        "contain",
        &id,
        "--since",
        "1d",
        "--action",
        "deauthorize",
        "--yes",
    ];
    let run = env.run(env.cmd().args(args)).expect(0);
    assert!(
        run.stdout
            .contains("Nothing to deauthorize: no candidate ranks at or above strong"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("3 candidate(s) rank below strong (3 of them with outlier marks)")
            && run
                .stdout
                .contains("--min-confidence possible includes them"),
        "{}",
        run.stdout
    );
    let report = env
        .run(env.cmd().args(["--format", "json"]).args(args))
        .expect(0)
        .json();
    let containment = &report["containment"];
    assert_eq!(containment["dry_run"], false, "{containment}");
    assert_eq!(containment["id"], Value::Null, "{containment}");
    assert_eq!(containment["devices"], json!([]), "{containment}");
    assert_eq!(
        containment["below_threshold"],
        json!({"candidates": 3, "outliers": 3, "include_with": "--min-confidence possible"})
    );
    // Without --yes it is a dry run, and says so.
    let dry = env
        .run(
            env.cmd()
                .args(["--format", "json"])
                .args(&args[..args.len() - 1]),
        )
        .expect(0)
        .json();
    assert_eq!(dry["containment"]["dry_run"], true);
    assert!(!env.state.path().join("containments").exists());
    let devices = crate::contain::devices(&env);
    assert!(devices.iter().all(|d| d["authorized"] == true));
    env.assert_state_clean();
}

/// F5: `contain` never said that the key was still live (the attacker joins again with it).
/// While the API's record shows it neither revoked nor expired, the report and the JSON
/// (`key.live`, `key.revoke_with`) say so and name the command that revokes it.
#[test]
fn issue_13_contain_says_when_the_key_is_still_live() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(1);
    assert!(
        run.stdout
            .contains("The key is still live: it can join more devices")
            && run.stdout.contains(&format!("`tsrotate revoke {id}`")),
        "{}",
        run.stdout
    );
    let report = contain_json(&env, &id, &["--since", "1d"]).expect(1).json();
    assert_eq!(report["key"]["live"], true, "{}", report["key"]);
    assert_eq!(
        report["key"]["revoke_with"],
        format!("tsrotate revoke {id}")
    );

    env.run(env.cmd().args(["revoke", &id, "--yes"])).expect(0);
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(1);
    assert!(!run.stdout.contains("still live"), "{}", run.stdout);
    let report = contain_json(&env, &id, &["--since", "1d"]).expect(1).json();
    assert_eq!(report["key"]["live"], false, "{}", report["key"]);
    assert_eq!(report["key"]["revoke_with"], Value::Null);
    env.assert_state_clean();
}

/// F3: an attacker's node that took a fleet member's hostname was left out by `--expected`
/// (with the fleet member), and the summary did not say that hostnames alone left devices
/// out. A hostname two devices share leaves out neither and counts against both; the summary
/// says how many were left out by node ID and how many by hostname alone.
#[test]
fn issue_13_a_copied_fleet_hostname_is_not_hidden_by_expected() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "owner");
    let copy = join(
        &env,
        &json!({"auth_key_id": id, "hostname": "web-7", "created_offset_seconds": -600}),
    );
    let names = (0..20)
        .map(|i| format!("web-{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let expected = env.write_aside("fleet.txt", names);
    let args = |format: &str| {
        let mut cmd = env.cmd();
        cmd.args([
            "--format",
            format,
            "contain",
            &id,
            "--min-confidence",
            "possible",
        ])
        .arg("--expected")
        .arg(&expected);
        cmd
    };
    let report = env.run(&mut args("json")).expect(1).json();
    let sevens: Vec<&Value> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["hostname"] == "web-7")
        .collect();
    assert_eq!(sevens.len(), 2, "{report}");
    assert!(candidate(&report, &copy).is_some(), "{report}");
    for c in &sevens {
        let evidence = c["evidence"].to_string();
        assert!(
            evidence.contains("2 devices of the tailnet go by hostname web-7")
                && evidence.contains("cannot tell which is the fleet's"),
            "{c}"
        );
    }
    let run = env.run(&mut args("human")).expect(1);
    assert!(
        run.stdout.contains(
            "19 device(s) left out because --expected lists them: 0 by node ID, 19 by hostname alone"
        ) && run.stdout.contains("list node IDs to be sure"),
        "{}",
        run.stdout
    );
}

/// Plants `text` as journal `name` in the state directory's `folder` (made private as
/// tsrotate makes it).
fn plant(env: &TestEnv, folder: &str, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = env.state.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// F6 (rotations): one damaged rotation journal stopped `contain` of a key the API forgot
/// (exit 3). A journal that does not name the key is skipped with a note naming it; one that
/// names it may hold the key's newest record, and is refused (exit 2) with what to do.
#[test]
fn issue_13_a_damaged_rotation_journal_is_skipped_unless_it_names_the_key() {
    let mut env = TestEnv::new();
    let (id, secret) = fleet(&mut env, "key");
    env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
    env.run(
        env.cmd()
            .args(["rotate", &id, "--yes", "--in"])
            .arg(env.work.path()),
    )
    .expect(0);
    emulator::set_config(env.url(), &json!({"deleted_keys": "not_found"}));
    let other = plant(
        &env,
        "rotations",
        "r20200101000000zzzzgarbage.jsonl",
        "not json\n",
    );
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(1);
    assert!(
        run.stdout.contains("from the journal of rotation"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("r20200101000000zzzzgarbage.jsonl")
            && run
                .stderr
                .contains(&format!("skipped: it does not name key {id}")),
        "{}",
        run.stderr
    );
    std::fs::remove_file(other).unwrap();
    plant(
        &env,
        "rotations",
        "r20200101000000zzzzmentions.jsonl",
        &format!(
            "{{\"v\":2,\"seq\":1,\"event\":{{\"type\":\"started\",\"old\":{{\"key_id\":\"{id}\"\n"
        ),
    );
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(2);
    assert!(
        run.stderr.contains("r20200101000000zzzzmentions.jsonl")
            && run.stderr.contains(&format!("names key {id}"))
            && run.stderr.contains(".damaged"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // A folder named like a journal makes the state directory untrusted: contain says so
    // instead of "unknown to every journal" (exit 2, as every command that refuses it).
    std::fs::remove_file(
        env.state
            .path()
            .join("rotations/r20200101000000zzzzmentions.jsonl"),
    )
    .unwrap();
    std::fs::create_dir(
        env.state
            .path()
            .join("rotations/r20200101000000zzzzfolder.jsonl"),
    )
    .unwrap();
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(2);
    assert!(
        run.stderr
            .contains("the journals that may record it cannot be read")
            && run.stderr.contains("r20200101000000zzzzfolder.jsonl"),
        "{}",
        run.stderr
    );
}

/// F6 (containments): one damaged containment journal, of any key, stopped every
/// `contain --action … --yes` (exit 3). One that does not name the key is skipped with a
/// warning naming it; one that names it may be an unfinished containment of the key, and is
/// refused (exit 2) with what to do.
#[test]
fn issue_13_a_damaged_containment_journal_blocks_only_its_own_key() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    plant(
        &env,
        "containments",
        "c20200101000000zzzzzz.jsonl",
        "not json\n",
    );
    let args = [
        "contain",
        &id,
        "--since",
        "1d",
        "--action",
        "deauthorize",
        "--yes",
    ];
    let run = env.run(env.cmd().args(args)).expect(0);
    assert!(
        run.stderr.contains("c20200101000000zzzzzz.jsonl")
            && run
                .stderr
                .contains(&format!("skipped: it does not name key {id}")),
        "{}",
        run.stderr
    );
    let deauthorized = crate::contain::devices(&env)
        .iter()
        .filter(|d| d["authorized"] == false)
        .count();
    assert_eq!(deauthorized, 3);

    plant(
        &env,
        "containments",
        "c20200101000000yyyyyy.jsonl",
        &format!("{{\"v\":2,\"seq\":1,\"event\":{{\"type\":\"planned\",\"key_id\":\"{id}\"\n"),
    );
    let run = env.run(env.cmd().args(args)).expect(2);
    assert!(
        run.stderr.contains("c20200101000000yyyyyy")
            && run
                .stderr
                .contains("may be an unfinished containment of this key")
            && run.stderr.contains(".damaged"),
        "{}",
        run.stderr
    );
    env.assert_state_clean();
}
