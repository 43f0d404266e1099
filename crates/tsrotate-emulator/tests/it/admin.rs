//! The `/_emulator/` admin routes: device use, console tokens, state, request log, clock.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Emu, key_id_of};

const KEYS: &str = "/api/v2/tailnet/-/keys";

#[tokio::test]
async fn using_a_single_use_key_makes_it_invalid() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let single = emu.auth_key(&admin, json!({})).await;
    let id = single["id"].as_str().unwrap();
    let path = format!("/_emulator/keys/{id}/use");

    let used = emu.admin(Method::POST, &path, None).await.expect(200);
    assert_eq!(
        (used["uses"].clone(), used["invalid"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(used["invalidReason"], "used");
    let fetched = emu.get(&admin, &format!("{KEYS}/{id}")).await.expect(200);
    assert_eq!(fetched["invalid"], true);
    assert!(fetched.get("revoked").is_none());
    let listed = emu
        .get(&admin, &format!("{KEYS}?all=true"))
        .await
        .expect(200);
    assert!(!listed.to_string().contains(id), "used keys are not listed");

    let again = emu.admin(Method::POST, &path, None).await;
    assert_eq!(again.status, 400);
    assert!(again.message().contains("used"));

    let reusable = emu.auth_key(&admin, json!({"reusable": true})).await;
    let reusable_path = format!("/_emulator/keys/{}/use", reusable["id"].as_str().unwrap());
    for uses in 1..=3 {
        let view = emu
            .admin(Method::POST, &reusable_path, None)
            .await
            .expect(200);
        assert_eq!(
            (view["uses"].clone(), view["invalid"].clone()),
            (json!(uses), json!(false))
        );
    }

    assert_eq!(
        emu.admin(Method::POST, "/_emulator/keys/kNope12CNTRL/use", None)
            .await
            .status,
        404
    );
    let not_auth = format!("/_emulator/keys/{}/use", emu.boot().oauth_client_id);
    assert_eq!(emu.admin(Method::POST, &not_auth, None).await.status, 400);
}

#[tokio::test]
async fn console_api_tokens_last_one_to_ninety_days() {
    let emu = Emu::start().await;
    for expiry in [0, 86_399, 7_776_001] {
        let reply = emu
            .admin(
                Method::POST,
                "/_emulator/api-tokens",
                Some(json!({"expirySeconds": expiry})),
            )
            .await;
        assert_eq!(reply.status, 400, "{expiry}");
    }
    let typo = emu
        .admin(
            Method::POST,
            "/_emulator/api-tokens",
            Some(json!({"expiry_seconds": 86400})),
        )
        .await;
    assert_eq!(typo.status, 400, "admin bodies reject unknown fields");

    let token = emu
        .admin(
            Method::POST,
            "/_emulator/api-tokens",
            Some(json!({"description": "ci laptop"})),
        )
        .await
        .expect(200);
    tsrotate_test_support::openapi::validate_response(
        "GET",
        "/tailnet/{tailnet}/keys/{keyId}",
        200,
        &token,
    )
    .unwrap();
    let secret = token["key"].as_str().unwrap();
    assert!(secret.starts_with(&format!("tskey-api-{}-", token["id"].as_str().unwrap())));
    assert_eq!(token["keyType"], "api");
    assert_eq!(token["expirySeconds"], 7_776_000);
    assert_eq!(token["userId"], tsrotate_emulator::ADMIN_USER_ID);
    assert_eq!(token["scopes"], json!(["all"]));
    emu.get(secret, KEYS).await.expect(200);
}

#[tokio::test]
async fn state_shows_every_key_and_no_secret() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let key = emu.auth_key(&admin, json!({"tags": ["tag:ci"]})).await;
    let (client_id, client_secret) = emu.client(&["users:read"], &[]).await;
    let token = emu.oauth_token(&client_secret, None).await;
    emu.delete(&admin, &format!("{KEYS}/{}", key["id"].as_str().unwrap()))
        .await
        .expect(200);
    let hook = emu
        .post(
            &admin,
            "/api/v2/tailnet/-/webhooks",
            json!({"endpointUrl": "https://example.com", "subscriptions": []}),
        )
        .await
        .expect(200);

    let state = emu.state().await;
    assert_eq!(state["tailnet"], "example.com");
    assert!(state["now"].is_string());
    assert_eq!(state["config"], json!({"deleted_keys": "invalid"}));
    let keys = state["keys"].as_array().unwrap();
    assert_eq!(
        keys.len(),
        5,
        "bootstrap token + client, auth key, client, access token"
    );
    let revoked = keys.iter().find(|k| k["id"] == key["id"]).unwrap();
    assert_eq!(
        (revoked["invalid"].clone(), revoked["invalidReason"].clone()),
        (json!(true), json!("revoked"))
    );
    let issued = keys
        .iter()
        .find(|k| k["id"] == key_id_of(&token).as_str())
        .unwrap();
    assert_eq!(issued["issuedBy"], client_id.as_str());

    let text = state.to_string();
    for secret in [
        key["key"].as_str().unwrap(),
        client_secret.as_str(),
        token.as_str(),
        hook["secret"].as_str().unwrap(),
        admin.as_str(),
    ] {
        assert!(!text.contains(secret), "state leaks a secret");
    }
    assert!(!text.contains("sha256") && !text.contains("Sha256"));
    assert_eq!(state["webhooks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_request_log_records_calls_without_credentials() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    emu.get(&admin, &format!("{KEYS}?all=true"))
        .await
        .expect(200);
    emu.post(
        &admin,
        KEYS,
        json!({"capabilities": {"devices": {}}, "description": "logged"}),
    )
    .await
    .expect(200);
    emu.get("", KEYS).await;
    let secret = emu.boot().oauth_client_secret.clone();
    emu.oauth_token(&secret, None).await;
    emu.state().await; // admin calls are not logged

    let log = emu.requests().await;
    let summary: Vec<(String, String, u64, String)> = log
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
                r["auth"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |m: &str, p: &str, st: u64, a: &str| (m.to_owned(), p.to_owned(), st, a.to_owned());
    assert_eq!(
        summary,
        [
            s("GET", KEYS, 200, "bearer"),
            s("POST", KEYS, 200, "bearer"),
            s("GET", KEYS, 401, "none"),
            s("POST", "/api/v2/oauth/token", 200, "none"),
        ]
    );
    assert_eq!(log[0]["query"], "all=true");
    assert!(log[1].get("query").is_none());
    assert_eq!(log[0]["injected"], false);
    assert_eq!(log[0]["dropped"], false);
    let text = Value::from(log.clone()).to_string();
    assert!(!text.contains(&admin) && !text.contains(&secret) && !text.contains("logged"));

    emu.admin(Method::DELETE, "/_emulator/requests", None)
        .await
        .expect(200);
    assert!(emu.requests().await.is_empty());
}

#[tokio::test]
async fn the_clock_only_moves_forward_on_request() {
    let emu = Emu::start().await;
    let before = emu
        .admin(Method::GET, "/_emulator/clock", None)
        .await
        .expect(200);
    let after = emu
        .admin(
            Method::POST,
            "/_emulator/clock",
            Some(json!({"advance_seconds": 86_400})),
        )
        .await
        .expect(200);
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v["now"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let moved = (parse(&after) - parse(&before)).whole_seconds();
    assert!((86_400..=86_402).contains(&moved), "{moved}");
    for body in [
        json!({"advance_seconds": -1}),
        json!({"seconds": 5}),
        json!({"advance_seconds": u64::MAX}),
    ] {
        assert_eq!(
            emu.admin(Method::POST, "/_emulator/clock", Some(body.clone()))
                .await
                .status,
            400,
            "{body}"
        );
    }
    // Keys created now are stamped with emulator time.
    let key = emu.auth_key(&emu.admin_token(), json!({})).await;
    let created = time::OffsetDateTime::parse(
        key["created"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((created - parse(&after)).whole_seconds().abs() <= 2);
}

#[tokio::test]
async fn config_rejects_unknown_switches() {
    let emu = Emu::start().await;
    for body in [
        json!({"deleted": "not_found"}),
        json!({"deleted_keys": "gone"}),
    ] {
        assert_eq!(
            emu.admin(Method::POST, "/_emulator/config", Some(body.clone()))
                .await
                .status,
            400,
            "{body}"
        );
    }
    assert_eq!(
        emu.admin(Method::GET, "/_emulator/config", None)
            .await
            .expect(200),
        json!({"deleted_keys": "invalid"})
    );
}
