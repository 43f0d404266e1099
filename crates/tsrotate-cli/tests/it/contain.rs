//! `tsrotate contain` against the emulator: a fleet of 20 legitimate devices and 3 attackers
//! that joined after the leak, with both audit-actor variants.

use serde_json::{Value, json};
use tsrotate_test_support::emulator;

use crate::support::TestEnv;

/// Mints the fleet's key (reusable, `tag:server`), joins 20 devices ten days before the leak
/// and 3 an hour ago (one advertising a route). Returns the key's ID and secret.
fn fleet(env: &mut TestEnv, actor: &str) -> (String, String) {
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

fn join(env: &TestEnv, body: &Value) {
    let (status, answer) = emulator::admin(env.url(), "POST", "/_emulator/devices", Some(body));
    assert_eq!(status, 200, "{answer}");
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
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "owner");
    // Possible is below the default threshold: reported, exit 0.
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "1d"]))
        .expect(0);
    for i in 0..3 {
        assert!(
            run.stdout.contains(&format!("possible evil-{i}")),
            "{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("web-"), "{}", run.stdout);
    assert!(!run.stdout.contains("guest"), "{}", run.stdout);
    let expected = env.write_aside("fleet.txt", "# the fleet\nevil-0\n");
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
    let found = hostnames(&run.json());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(h, _)| h == "evil-1" || h == "evil-2"));
}

#[test]
fn a_credential_without_the_audit_log_scope_degrades_and_says_so() {
    let mut env = TestEnv::new();
    let (id, _secret) = fleet(&mut env, "key");
    let client = env.mint(json!({"keyType": "client", "scopes": ["devices:core:read", "auth_keys:read"], "tags": ["tag:server"]}));
    let run = env
        .run(
            env.cmd()
                .env_remove("TAILSCALE_API_KEY")
                .env("TAILSCALE_OAUTH_CLIENT_ID", &client.0)
                .env("TAILSCALE_OAUTH_CLIENT_SECRET", &client.1)
                .args([
                    "contain",
                    &id,
                    "--since",
                    "1d",
                    "--min-confidence",
                    "possible",
                ]),
        )
        .expect(1);
    assert!(
        run.stderr.contains("logs:configuration:read"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("possible evil-2"), "{}", run.stdout);

    let keys_only = env
        .mint(json!({"keyType": "client", "scopes": ["auth_keys:read"], "tags": ["tag:server"]}));
    let run = env
        .run(
            env.cmd()
                .env_remove("TAILSCALE_API_KEY")
                .env("TAILSCALE_OAUTH_CLIENT_ID", &keys_only.0)
                .env("TAILSCALE_OAUTH_CLIENT_SECRET", &keys_only.1)
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
    let (id, _) = env.mint(json!({"capabilities": {"devices": {"create": {"reusable": false}}}}));
    join(&env, &json!({"auth_key_id": id, "hostname": "laptop"}));
    let run = env
        .run(env.cmd().args(["--format", "json", "contain", &id]))
        .expect(1);
    assert_eq!(
        hostnames(&run.json()),
        [("laptop".to_owned(), "strong".to_owned())]
    );
    let run = env
        .run(env.cmd().args(["contain", &id, "--since", "bogus"]))
        .expect(2);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
}
