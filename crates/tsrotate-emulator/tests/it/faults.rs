//! Fault injection through `/_emulator/faults`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::common::Emu;

const KEYS: &str = "/api/v2/tailnet/-/keys";

fn key_count(state: &serde_json::Value) -> usize {
    state["keys"].as_array().unwrap().len()
}

#[tokio::test]
async fn status_faults_answer_without_processing_and_run_out() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    emu.fault(json!({"method": "POST", "path_prefix": "/api/v2/tailnet/", "status": 429, "count": 2, "retry_after_s": 7}))
        .await;
    let before = key_count(&emu.state().await);
    let body = json!({"capabilities": {"devices": {}}});

    for _ in 0..2 {
        let reply = emu.post(&admin, KEYS, body.clone()).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.message(), "too many requests");
        assert_eq!(reply.headers.get("retry-after").unwrap(), "7");
    }
    assert_eq!(
        key_count(&emu.state().await),
        before,
        "faulted requests are not processed"
    );

    // The rule is used up: the third call goes through.
    emu.post(&admin, KEYS, body).await.expect(200);
    assert_eq!(key_count(&emu.state().await), before + 1);
    let listed = emu
        .admin(Method::GET, "/_emulator/faults", None)
        .await
        .expect(200);
    assert_eq!(listed, json!({"faults": []}));

    let log = emu.requests().await;
    let injected: Vec<bool> = log
        .iter()
        .map(|r| r["injected"].as_bool().unwrap())
        .collect();
    assert_eq!(injected, [true, true, false]);
}

#[tokio::test]
async fn faults_match_method_and_prefix_and_last_until_cleared() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    emu.fault(json!({"method": "DELETE", "status": 503})).await;
    emu.get(&admin, KEYS).await.expect(200);
    let key = emu.auth_key(&admin, json!({})).await;
    let path = format!("{KEYS}/{}", key["id"].as_str().unwrap());
    for _ in 0..3 {
        let reply = emu.delete(&admin, &path).await;
        assert_eq!(reply.status, 503);
        assert!(reply.headers.get("retry-after").is_none());
    }
    emu.admin(Method::DELETE, "/_emulator/faults", None)
        .await
        .expect(200);
    emu.delete(&admin, &path).await.expect(200);

    emu.fault(json!({"path_prefix": "/api/v2/oauth/", "status": 500, "count": 1}))
        .await;
    emu.get(&admin, KEYS).await.expect(200);
    let secret = emu.boot().oauth_client_secret.clone();
    let reply = emu
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(
        (reply.status, reply.message()),
        (500, "internal server error")
    );
}

#[tokio::test]
async fn admin_routes_are_never_faulted() {
    let emu = Emu::start().await;
    emu.fault(json!({"status": 500})).await;
    emu.state().await;
    emu.admin(Method::GET, "/_emulator/faults", None)
        .await
        .expect(200);
    assert_eq!(emu.get(&emu.admin_token(), KEYS).await.status, 500);
}

#[tokio::test]
async fn latency_alone_only_delays() {
    let emu = Emu::start().await;
    emu.fault(json!({"latency_ms": 300, "count": 1})).await;
    let started = Instant::now();
    emu.get(&emu.admin_token(), KEYS).await.expect(200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Used up: no delay requirement for the next one, and it succeeds.
    emu.get(&emu.admin_token(), KEYS).await.expect(200);
}

#[tokio::test]
async fn drop_connection_processes_the_request_then_drops_the_response() {
    let emu = Emu::start().await;
    emu.fault(json!({"method": "POST", "path_prefix": KEYS, "drop_connection": true, "count": 1}))
        .await;
    let before = key_count(&emu.state().await);

    let result = emu
        .http
        .post(emu.url(KEYS))
        .bearer_auth(emu.admin_token())
        .json(&json!({"capabilities": {"devices": {}}, "description": "lost response"}))
        .send()
        .await;
    let error = result.expect_err("the client must see a connection error, not a response");
    assert!(!error.is_status(), "{error:?}");

    // The key was created even though its secret never reached the client.
    let state = emu.state().await;
    assert_eq!(key_count(&state), before + 1);
    let created = state["keys"].as_array().unwrap().last().unwrap();
    assert_eq!(created["description"], "lost response");
    assert_eq!(created["invalid"], false);
    let log = emu.requests().await;
    assert_eq!(log.last().unwrap()["dropped"], true);
    assert_eq!(log.last().unwrap()["status"], 200);

    // The rule is used up; the server keeps serving.
    emu.auth_key(&emu.admin_token(), json!({})).await;
}

#[tokio::test]
async fn nonsensical_rules_are_rejected() {
    let emu = Emu::start().await;
    for rule in [
        json!({"status": 302}),
        json!({"count": 0}),
        json!({"path_prefix": "api"}),
        json!({"retry_after_s": 1}),
        json!({"statuscode": 500}),
    ] {
        assert_eq!(
            emu.admin(Method::POST, "/_emulator/faults", Some(rule.clone()))
                .await
                .status,
            400,
            "{rule}"
        );
    }
}
