//! The rules Tailscale applies to key creation and changes.

use reqwest::Method;
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::common::Emu;

const KEYS: &str = "/api/v2/tailnet/-/keys";

fn seconds_between(from: &serde_json::Value, to: &serde_json::Value) -> i64 {
    let parse =
        |v: &serde_json::Value| OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap();
    (parse(to) - parse(from)).whole_seconds()
}

#[tokio::test]
async fn expiry_defaults_to_90_days() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    for body in [
        json!({"capabilities": {"devices": {}}}),
        // Go clients without omitempty send 0 for "unset".
        json!({"capabilities": {"devices": {}}, "expirySeconds": 0}),
    ] {
        let key = emu.post(&admin, KEYS, body).await.expect(200);
        assert_eq!(key["expirySeconds"], 7_776_000);
        assert_eq!(seconds_between(&key["created"], &key["expires"]), 7_776_000);
    }
    // The 2025 spec typed expirySeconds as `number`.
    let key = emu
        .call_lenient(
            &admin,
            Method::POST,
            KEYS,
            Some(json!({"capabilities": {"devices": {}}, "expirySeconds": 3600.0})),
        )
        .await
        .expect(200);
    assert_eq!(seconds_between(&key["created"], &key["expires"]), 3600);
}

#[tokio::test]
async fn expiry_beyond_90_days_or_negative_is_rejected() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    emu.post(
        &admin,
        KEYS,
        json!({"capabilities": {"devices": {}}, "expirySeconds": 7_776_000}),
    )
    .await
    .expect(200);
    for expiry in [7_776_001, -1] {
        let reply = emu
            .post(
                &admin,
                KEYS,
                json!({"capabilities": {"devices": {}}, "expirySeconds": expiry}),
            )
            .await;
        assert_eq!(reply.status, 400, "{expiry}");
        assert!(
            reply.message().contains("expirySeconds"),
            "{}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn descriptions_are_limited() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let ok = "a".repeat(50);
    emu.post(
        &admin,
        KEYS,
        json!({"capabilities": {"devices": {}}, "description": ok}),
    )
    .await
    .expect(200);
    for bad in [
        "a".repeat(51),
        "no_underscores".to_owned(),
        "no.dots".to_owned(),
    ] {
        let reply = emu
            .post(
                &admin,
                KEYS,
                json!({"capabilities": {"devices": {}}, "description": bad}),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(reply.message().contains("description"));
    }
    let client = emu
        .post(
            &admin,
            KEYS,
            json!({"keyType": "client", "scopes": ["users:read"], "description": "x".repeat(51)}),
        )
        .await;
    assert_eq!(client.status, 400);
}

#[tokio::test]
async fn api_access_tokens_cannot_be_created_through_the_api() {
    let emu = Emu::start().await;
    let reply = emu
        .call_lenient(
            &emu.admin_token(),
            Method::POST,
            KEYS,
            Some(json!({"keyType": "api", "scopes": ["all"]})),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .message()
            .contains("API access tokens cannot be created"),
        "{}",
        reply.message()
    );
    let unknown = emu
        .call_lenient(
            &emu.admin_token(),
            Method::POST,
            KEYS,
            Some(json!({"keyType": "scim"})),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        emu.state().await["keys"].as_array().unwrap().len(),
        2,
        "nothing was created"
    );
}

#[tokio::test]
async fn bodies_are_parsed_leniently_but_must_be_json() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    // Unknown fields and nulls are ignored, as Tailscale's Go server does.
    emu.call_lenient(
        &admin,
        Method::POST,
        KEYS,
        Some(json!({"capabilities": {"devices": {"create": {"tags": null}}}, "futureField": 1, "scopes": null})),
    )
    .await
    .expect(200);
    // No Content-Type header is needed either.
    let raw = emu
        .http
        .post(emu.url(KEYS))
        .bearer_auth(&admin)
        .body(r#"{"capabilities":{"devices":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);

    for body in [
        "{not json",
        "",
        "[]",
        r#"{"expirySeconds": "soon", "capabilities": {"devices": {}}}"#,
    ] {
        let reply = crate::common::read(
            emu.http
                .post(emu.url(KEYS))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 400, "{body:?}");
        assert!(
            reply.message().starts_with("invalid JSON body"),
            "{}",
            reply.message()
        );
    }
    // The spec's minimum for an auth key is `capabilities.devices`.
    let reply = emu
        .call_lenient(&admin, Method::POST, KEYS, Some(json!({})))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.message().contains("capabilities"));
}

#[tokio::test]
async fn missing_scopes_are_403_naming_the_scope() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let auth_key = emu.auth_key(&admin, json!({})).await;
    let auth_key_path = format!("{KEYS}/{}", auth_key["id"].as_str().unwrap());

    let clients_only = emu.scoped_token(&["oauth_keys"], &[]).await;
    let reply = emu
        .post(
            &clients_only,
            KEYS,
            json!({"capabilities": {"devices": {"create": {"tags": ["tag:ci"]}}}}),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.message().contains("\"auth_keys\""),
        "{}",
        reply.message()
    );
    let reply = emu.get(&clients_only, &auth_key_path).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.message().contains("\"auth_keys:read\""),
        "{}",
        reply.message()
    );

    // `auth_keys:read` reads but cannot delete.
    let reader = emu.scoped_token(&["auth_keys:read"], &[]).await;
    emu.get(&reader, &auth_key_path).await.expect(200);
    let reply = emu.delete(&reader, &auth_key_path).await;
    assert_eq!(reply.status, 403);
    assert!(reply.message().contains("\"auth_keys\""));

    // `all:read` reads every type, writes none.
    let all_read = emu.scoped_token(&["all:read"], &[]).await;
    emu.get(&all_read, &auth_key_path).await.expect(200);
    emu.get(&all_read, &format!("{KEYS}/{}", emu.boot().oauth_client_id))
        .await
        .expect(200);
    let reply = emu.delete(&all_read, &auth_key_path).await;
    assert_eq!(reply.status, 403);
    let reply = emu
        .post(
            &all_read,
            KEYS,
            json!({"keyType": "client", "scopes": ["users:read"]}),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.message().contains("\"oauth_keys\""));

    // Personal API tokens need `api_access_tokens`.
    let personal = emu
        .admin(
            Method::POST,
            "/_emulator/api-tokens",
            Some(json!({"description": "laptop"})),
        )
        .await
        .expect(200);
    let personal_path = format!("{KEYS}/{}", personal["id"].as_str().unwrap());
    let reply = emu.delete(&clients_only, &personal_path).await;
    assert_eq!(reply.status, 403);
    assert!(reply.message().contains("\"api_access_tokens\""));
    let revoker = emu.scoped_token(&["api_access_tokens"], &[]).await;
    assert_eq!(emu.delete(&revoker, &personal_path).await.status, 200);

    // `auth_keys` can delete any auth key, including user-owned ones.
    let writer = emu.scoped_token(&["auth_keys"], &["tag:ci"]).await;
    assert_eq!(emu.delete(&writer, &auth_key_path).await.status, 200);
}

#[tokio::test]
async fn legacy_devices_scope_can_mint_auth_keys() {
    let emu = Emu::start().await;
    let token = emu.scoped_token(&["devices"], &["tag:ci"]).await;
    let key = emu.auth_key(&token, json!({"tags": ["tag:ci"]})).await;
    assert_eq!(key["userId"], "");
}

#[tokio::test]
async fn tailnet_owned_auth_keys_need_the_clients_tags() {
    let emu = Emu::start().await;
    let token = emu.bootstrap_oauth_token().await; // scope all, tags ci/server/k8s

    let untagged = emu
        .post(&token, KEYS, json!({"capabilities": {"devices": {}}}))
        .await;
    assert_eq!(untagged.status, 400);
    assert!(
        untagged.message().contains("tags are required"),
        "{}",
        untagged.message()
    );

    // `all` does not lift the rule in the emulator.
    let foreign = emu
        .post(
            &token,
            KEYS,
            json!({"capabilities": {"devices": {"create": {"tags": ["tag:ci", "tag:prod"]}}}}),
        )
        .await;
    assert_eq!(foreign.status, 400);
    assert_eq!(
        foreign.message(),
        "requested tags [tag:prod] are invalid or not permitted"
    );

    let malformed = emu
        .post(
            &token,
            KEYS,
            json!({"capabilities": {"devices": {"create": {"tags": ["ci"]}}}}),
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(
        malformed.message(),
        "requested tags [ci] are invalid or not permitted"
    );

    let key = emu
        .auth_key(
            &token,
            json!({"tags": ["tag:server", "tag:ci"], "reusable": true}),
        )
        .await;
    assert_eq!(
        key["userId"], "",
        "OAuth-created keys belong to the tailnet"
    );
    assert_eq!(
        key["capabilities"]["devices"]["create"]["tags"],
        json!(["tag:server", "tag:ci"])
    );

    // A personal token's keys belong to its user and may be untagged or carry any tag.
    let admin_key = emu
        .auth_key(&emu.admin_token(), json!({"tags": ["tag:anything"]}))
        .await;
    assert_eq!(admin_key["userId"], tsrotate_emulator::ADMIN_USER_ID);
    let plain = emu.auth_key(&emu.admin_token(), json!({})).await;
    assert_eq!(
        plain["capabilities"]["devices"]["create"]["tags"],
        json!([])
    );
}

#[tokio::test]
async fn oauth_clients_need_scopes_tags_and_a_creator_who_holds_the_scopes() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let client = |scopes: serde_json::Value, tags: serde_json::Value| json!({"keyType": "client", "scopes": scopes, "tags": tags});

    for (body, needle) in [
        (client(json!([]), json!([])), "scope"),
        (
            client(json!(["not_a_scope"]), json!([])),
            "invalid scope \"not_a_scope\"",
        ),
        (client(json!(["auth_keys"]), json!([])), "tags are required"),
        (
            client(json!(["devices:core"]), json!(null)),
            "tags are required",
        ),
        (client(json!(["devices"]), json!([])), "tags are required"),
        (client(json!(["all"]), json!([])), "tags are required"),
    ] {
        let reply = emu.post(&admin, KEYS, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(
            reply.message().contains(needle),
            "{body}: {}",
            reply.message()
        );
    }
    emu.post(
        &admin,
        KEYS,
        client(json!(["oauth_keys", "users:read"]), json!([])),
    )
    .await
    .expect(200);

    // A client created by an OAuth token cannot get scopes its creator lacks.
    let creator = emu
        .scoped_token(&["oauth_keys", "auth_keys"], &["tag:ci"])
        .await;
    let reply = emu
        .post(
            &creator,
            KEYS,
            client(json!(["auth_keys", "users:read"]), json!(["tag:ci"])),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.message().contains("users:read"),
        "{}",
        reply.message()
    );
    assert!(
        !reply.message().contains("auth_keys"),
        "{}",
        reply.message()
    );
    let child = emu
        .post(&creator, KEYS, client(json!(["auth_keys:read"]), json!([])))
        .await
        .expect(200);
    assert_eq!(
        child["userId"], "",
        "clients created by OAuth tokens belong to the tailnet"
    );
}

#[tokio::test]
async fn put_replaces_trust_credentials_wholesale_and_keeps_the_secret() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let (id, secret) = emu.client(&["auth_keys"], &["tag:ci"]).await;
    let path = format!("{KEYS}/{id}");

    let updated = emu
        .call(
            &admin,
            Method::PUT,
            &path,
            Some(json!({"keyType": "client", "scopes": ["oauth_keys:read"]})),
        )
        .await
        .expect(200);
    assert_eq!(updated["scopes"], json!(["oauth_keys:read"]));
    assert_eq!(
        updated["tags"],
        json!([]),
        "omitted tags are replaced, not kept"
    );
    assert_eq!(
        updated["description"], "",
        "omitted description is replaced"
    );
    assert!(updated.get("key").is_none());

    // The same secret still works and now yields the new scopes.
    let token = emu
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ])
        .await
        .expect(200);
    assert_eq!(token["scope"], "oauth_keys:read");

    // Invalid replacements change nothing.
    for body in [
        json!({"scopes": []}),
        json!({"scopes": ["auth_keys"]}),
        json!({"keyType": "federated", "scopes": ["users:read"]}),
    ] {
        assert_eq!(
            emu.call(&admin, Method::PUT, &path, Some(body.clone()))
                .await
                .status,
            400,
            "{body}"
        );
    }
    assert_eq!(
        emu.get(&admin, &path).await.expect(200)["scopes"],
        json!(["oauth_keys:read"])
    );

    // Auth keys and API tokens cannot be PUT.
    let auth_key = emu.auth_key(&admin, json!({})).await;
    for key_id in [
        auth_key["id"].as_str().unwrap(),
        crate::common::key_id_of(&admin).as_str(),
    ] {
        let reply = emu
            .call(
                &admin,
                Method::PUT,
                &format!("{KEYS}/{key_id}"),
                Some(json!({"scopes": ["all"], "tags": ["tag:ci"]})),
            )
            .await;
        assert_eq!(reply.status, 400);
        assert!(
            reply
                .message()
                .contains("only OAuth clients and federated identities")
        );
    }

    // A deleted client cannot be PUT either.
    emu.delete(&admin, &path).await.expect(200);
    let reply = emu
        .call(
            &admin,
            Method::PUT,
            &path,
            Some(json!({"scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn deleting_twice_is_404_and_deleting_a_client_revokes_its_tokens() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let (client_id, secret) = emu.client(&["oauth_keys:read"], &[]).await;
    let token = emu.oauth_token(&secret, None).await;
    let token_id = crate::common::key_id_of(&token);
    emu.get(&token, KEYS).await.expect(200);

    let path = format!("{KEYS}/{client_id}");
    emu.delete(&admin, &path).await.expect(200);
    assert_eq!(emu.delete(&admin, &path).await.status, 404);
    assert_eq!(
        emu.delete(&admin, &format!("{KEYS}/kNeverCNTRL"))
            .await
            .status,
        404
    );

    assert_eq!(emu.get(&token, KEYS).await.status, 401);
    let token_state = emu.state_key(&token_id).await;
    assert_eq!(token_state["invalid"], true);
    assert!(token_state["revoked"].is_string());
    let secret_reply = emu
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(secret_reply.status, 401);
}

#[tokio::test]
async fn invalid_keys_answer_invalid_or_404_as_configured() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let key = emu.auth_key(&admin, json!({})).await;
    let path = format!("{KEYS}/{}", key["id"].as_str().unwrap());
    emu.delete(&admin, &path).await.expect(200);
    assert_eq!(emu.get(&admin, &path).await.expect(200)["invalid"], true);

    let config = emu
        .admin(
            Method::POST,
            "/_emulator/config",
            Some(json!({"deleted_keys": "not_found"})),
        )
        .await
        .expect(200);
    assert_eq!(config, json!({"deleted_keys": "not_found"}));
    assert_eq!(emu.get(&admin, &path).await.status, 404);

    // Expired keys too.
    let short = emu
        .post(
            &admin,
            KEYS,
            json!({"capabilities": {"devices": {}}, "expirySeconds": 60}),
        )
        .await
        .expect(200);
    let short_path = format!("{KEYS}/{}", short["id"].as_str().unwrap());
    emu.advance(61).await;
    assert_eq!(emu.get(&admin, &short_path).await.status, 404);
    emu.admin(
        Method::POST,
        "/_emulator/config",
        Some(json!({"deleted_keys": "invalid"})),
    )
    .await
    .expect(200);
    let expired = emu.get(&admin, &short_path).await.expect(200);
    assert_eq!(expired["invalid"], true);
    assert!(
        expired.get("revoked").is_none(),
        "expired, not revoked: {expired}"
    );
}

#[tokio::test]
async fn the_tailnet_is_dash_or_its_name() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    emu.get(&admin, "/api/v2/tailnet/-/keys").await.expect(200);
    emu.get(&admin, "/api/v2/tailnet/example.com/keys")
        .await
        .expect(200);
    let other = emu.get(&admin, "/api/v2/tailnet/example.org/keys").await;
    assert_eq!((other.status, other.message()), (404, "tailnet not found"));
    let other = emu
        .post(
            &admin,
            "/api/v2/tailnet/example.org/webhooks",
            json!({"endpointUrl": "https://x.example", "subscriptions": []}),
        )
        .await;
    assert_eq!(other.status, 404);
}
