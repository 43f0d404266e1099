//! The synchronous path: `spawn_on_thread` plus the test-support admin helpers, as CLI tests
//! (`assert_cmd`) will use them.

use serde_json::json;
use tsrotate_test_support::{emulator, http};

#[test]
fn a_thread_server_serves_until_dropped() {
    let server = emulator::start();
    let url = server.url().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let boot = server.bootstrap().clone();
    assert_eq!(boot.url, url);
    assert!(boot.api_key.starts_with("tskey-api-k"));
    assert!(
        boot.oauth_client_secret
            .starts_with(&format!("tskey-client-{}-", boot.oauth_client_id))
    );
    assert!(
        !format!("{boot:?}").contains(&boot.api_key),
        "Debug redacts"
    );

    let auth = format!("Bearer {}", boot.api_key);
    let listed = http::send(
        &url,
        "GET",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["keys"].as_array().unwrap().len(), 2);

    emulator::add_fault(
        &url,
        &json!({"method": "GET", "status": 503, "count": 1, "retry_after_s": 2}),
    );
    let faulted = http::send(
        &url,
        "GET",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(
        (faulted.status, faulted.header("retry-after")),
        (503, Some("2"))
    );
    emulator::clear_faults(&url);

    let created = http::send(
        &url,
        "POST",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &auth)],
        Some(&json!({"capabilities": {"devices": {}}})),
    )
    .unwrap()
    .json();
    let id = created["id"].as_str().unwrap();
    let used = emulator::use_key(&url, id);
    assert_eq!(used["invalid"], true);
    let now = emulator::advance_clock(&url, 60);
    assert_eq!(emulator::state(&url)["now"], now.as_str());
    assert_eq!(emulator::requests(&url).len(), 3);
    emulator::clear_requests(&url);
    assert!(emulator::requests(&url).is_empty());
    emulator::set_config(&url, &json!({"deleted_keys": "not_found"}));
    let token = emulator::create_api_token(&url, &json!({"expirySeconds": 86400}));
    assert!(token["key"].as_str().unwrap().starts_with("tskey-api-"));

    drop(server);
    assert!(
        http::send(&url, "GET", "/_emulator/state", &[], None).is_err(),
        "the server is gone after drop"
    );
}
