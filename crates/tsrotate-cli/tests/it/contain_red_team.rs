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
