//! Webhook rules beyond the spec shapes checked in `fidelity`.

use reqwest::Method;
use serde_json::json;

use crate::common::Emu;

const HOOKS: &str = "/api/v2/tailnet/-/webhooks";

#[tokio::test]
async fn webhook_bodies_are_checked() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    for body in [
        json!({"subscriptions": ["nodeCreated"]}),
        json!({"endpointUrl": "http://example.com", "subscriptions": ["nodeCreated"]}),
        json!({"endpointUrl": "https://example.com"}),
        json!({"endpointUrl": "https://example.com", "subscriptions": ["nodeExploded"]}),
        json!({"endpointUrl": "https://example.com", "subscriptions": [], "providerType": "teams"}),
    ] {
        let reply = emu
            .call_lenient(&admin, Method::POST, HOOKS, Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{body}");
    }
    assert!(emu.state().await["webhooks"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn webhooks_need_the_webhooks_scope_and_oauth_creators_are_blank() {
    let emu = Emu::start().await;
    let reader = emu.scoped_token(&["webhooks:read"], &[]).await;
    let reply = emu
        .post(
            &reader,
            HOOKS,
            json!({"endpointUrl": "https://example.com", "subscriptions": []}),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.message().contains("\"webhooks\""));

    let writer = emu.scoped_token(&["webhooks"], &[]).await;
    let created = emu
        .post(
            &writer,
            HOOKS,
            json!({"endpointUrl": "https://example.com", "subscriptions": ["nodeCreated"]}),
        )
        .await
        .expect(200);
    assert_eq!(created["creatorLoginName"], "");
    let id = created["endpointId"].as_str().unwrap();
    emu.get(&reader, &format!("/api/v2/webhooks/{id}"))
        .await
        .expect(200);
    for (method, path) in [
        (Method::POST, format!("/api/v2/webhooks/{id}/rotate")),
        (Method::DELETE, format!("/api/v2/webhooks/{id}")),
    ] {
        assert_eq!(emu.call(&reader, method, &path, None).await.status, 403);
    }
    emu.call(
        &writer,
        Method::POST,
        &format!("/api/v2/webhooks/{id}/rotate"),
        None,
    )
    .await
    .expect(200);
    let state = emu.state().await;
    assert_eq!(state["webhooks"][0]["rotations"], 1);
}
