//! The device, configuration audit log and user routes through the harness the key routes go
//! through ([`Emu::call`]): each request body that succeeded and each response body, refusals
//! too, checked against the `OpenAPI` description (issue 13: "validated like the key routes").

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Emu;

/// `POST` without a body (`/device/{id}/expire`).
async fn post_empty(emu: &Emu, token: &str, path: &str) -> crate::common::Reply {
    emu.call(token, Method::POST, path, None).await
}

#[tokio::test]
async fn device_audit_log_and_user_routes_match_the_spec_both_ways() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let tagged = emu
        .post(
            &admin,
            "/api/v2/tailnet/-/keys",
            json!({"capabilities": {"devices": {"create": {"reusable": true, "tags": ["tag:server"]}}}}),
        )
        .await
        .expect(200);
    let owned = emu
        .post(
            &admin,
            "/api/v2/tailnet/-/keys",
            json!({"capabilities": {"devices": {"create": {"reusable": false}}}}),
        )
        .await
        .expect(200);
    let join = |body: Value| {
        let emu = &emu;
        async move {
            emu.admin(Method::POST, "/_emulator/devices", Some(body))
                .await
                .expect(200)
        }
    };
    let server = join(json!({"auth_key_id": tagged["id"], "hostname": "server",
        "routes": ["10.0.0.0/24"], "audit_actor": "key"}))
    .await;
    let laptop = join(json!({"auth_key_id": owned["id"], "hostname": "laptop"})).await;
    join(json!({"hostname": "guest", "external": true})).await;
    assert_eq!(server["keyExpiryDisabled"], true, "tagged: expiry disabled");
    assert_eq!(laptop["keyExpiryDisabled"], false);

    for query in [
        "",
        "?fields=all",
        "?fields=default",
        "?tags=tag:server&fields=all",
    ] {
        let listed = emu
            .get(&admin, &format!("/api/v2/tailnet/-/devices{query}"))
            .await
            .expect(200);
        assert!(listed["devices"].is_array(), "{query}");
    }
    let base = format!("/api/v2/device/{}", server["nodeId"].as_str().unwrap());
    emu.get(&admin, &format!("{base}?fields=all"))
        .await
        .expect(200);
    emu.get(&admin, &format!("{base}/routes")).await.expect(200);
    emu.post(
        &admin,
        &format!("{base}/routes"),
        json!({"routes": ["10.0.0.0/24"]}),
    )
    .await
    .expect(200);
    emu.post(
        &admin,
        &format!("{base}/authorized"),
        json!({"authorized": false}),
    )
    .await
    .expect(200);
    emu.post(
        &admin,
        &format!("{base}/key"),
        json!({"keyExpiryDisabled": false}),
    )
    .await
    .expect(200);
    post_empty(&emu, &admin, &format!("{base}/expire"))
        .await
        .expect(200);
    emu.post(&admin, &format!("{base}/routes"), json!({"routes": []}))
        .await
        .expect(200);

    // Refusals are per spec too: a bad body, a missing scope, an unknown device.
    emu.call_lenient(
        &admin,
        Method::POST,
        &format!("{base}/authorized"),
        Some(json!({"authorized": "no"})),
    )
    .await
    .expect(400);
    let reader = emu
        .oauth_token(
            &emu.boot().oauth_client_secret.clone(),
            Some("devices:core:read"),
        )
        .await;
    post_empty(&emu, &reader, &format!("{base}/expire"))
        .await
        .expect(403);
    emu.get(
        &reader,
        "/api/v2/tailnet/-/logging/configuration?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
    )
    .await
    .expect(403);
    emu.get(&admin, "/api/v2/device/nNoSuchCNTRL")
        .await
        .expect(404);

    let now = emu.state().await["now"].as_str().unwrap().to_owned();
    let logs = emu
        .get(
            &admin,
            &format!(
                "/api/v2/tailnet/-/logging/configuration?start=2000-01-01T00:00:00Z&end={now}"
            ),
        )
        .await
        .expect(200);
    assert!(
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "CREATE" && e["target"]["name"].as_str().is_some()),
        "{logs}"
    );
    emu.get(
        &admin,
        &format!("/api/v2/users/{}", owned["userId"].as_str().unwrap()),
    )
    .await
    .expect(200);
    emu.delete(
        &admin,
        &format!("/api/v2/device/{}", laptop["nodeId"].as_str().unwrap()),
    )
    .await
    .expect(200);
}
