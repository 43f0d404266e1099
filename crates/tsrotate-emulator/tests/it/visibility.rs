//! Who sees which keys: list visibility with and without `all`, and self-GET.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Emu, key_id_of};

const KEYS: &str = "/api/v2/tailnet/-/keys";

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_users_token_sees_that_users_keys_unless_all_is_set() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let admin_key = emu.auth_key(&admin, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let other = emu
        .admin(
            Method::POST,
            "/_emulator/api-tokens",
            Some(json!({"userId": "uOther1CNTRL", "expirySeconds": 86400})),
        )
        .await
        .expect(200);
    assert_eq!(other["userId"], "uOther1CNTRL");
    let other_token = other["key"].as_str().unwrap();
    let other_key = emu.auth_key(other_token, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mine = ids(&emu.get(&admin, KEYS).await.expect(200));
    assert!(
        mine.contains(&admin_key) && !mine.contains(&other_key),
        "{mine:?}"
    );
    assert!(
        mine.contains(&key_id_of(&admin)),
        "a user sees their own API token"
    );

    let theirs = ids(&emu.get(other_token, KEYS).await.expect(200));
    assert_eq!(theirs.len(), 2, "their token and their key: {theirs:?}");
    assert!(theirs.contains(&other_key) && theirs.contains(&key_id_of(other_token)));

    let all = ids(&emu
        .get(&admin, &format!("{KEYS}?all=true"))
        .await
        .expect(200));
    assert!(all.contains(&admin_key) && all.contains(&other_key));

    // Invalid keys are never listed.
    emu.delete(&admin, &format!("{KEYS}/{other_key}"))
        .await
        .expect(200);
    let all = ids(&emu.get(&admin, &format!("{KEYS}?all=1")).await.expect(200));
    assert!(!all.contains(&other_key));
    let bad = emu.get(&admin, &format!("{KEYS}?all=maybe")).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn an_oauth_token_sees_the_tailnets_clients_unless_all_is_set() {
    let emu = Emu::start().await;
    let admin = emu.admin_token();
    let auth_key = emu.auth_key(&admin, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (client_id, _) = emu.client(&["users:read"], &[]).await;

    let token = emu
        .scoped_token(&["oauth_keys:read", "auth_keys:read"], &[])
        .await;
    let listed = emu.get(&token, KEYS).await.expect(200);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["keyType"] == "client"),
        "{listed}"
    );
    let listed = ids(&listed);
    assert!(listed.contains(&client_id) && listed.contains(&emu.boot().oauth_client_id));

    // `all=true` widens to every type the token may read: auth keys, clients and OAuth
    // tokens, but not personal API tokens (no `api_access_tokens:read`).
    let all = emu
        .get(&token, &format!("{KEYS}?all=true"))
        .await
        .expect(200);
    let all_ids = ids(&all);
    assert!(all_ids.contains(&auth_key) && all_ids.contains(&client_id));
    assert!(
        all_ids.contains(&key_id_of(&token)),
        "OAuth tokens are oauth_keys"
    );
    assert!(
        !all_ids.contains(&key_id_of(&admin)),
        "no personal tokens: {all}"
    );

    // Without a key-reading scope, listing is forbidden.
    let blind = emu.scoped_token(&["users:read"], &[]).await;
    let reply = emu.get(&blind, KEYS).await;
    assert_eq!(reply.status, 403);
    assert!(reply.message().contains("oauth_keys:read"));
    assert_eq!(
        emu.get(&blind, &format!("{KEYS}?all=true")).await.status,
        403
    );
}

#[tokio::test]
async fn every_token_may_get_its_own_key_and_its_client() {
    let emu = Emu::start().await;
    let (client_id, secret) = emu.client(&["dns:read"], &[]).await;
    let token = emu.oauth_token(&secret, None).await;
    let own = emu
        .get(&token, &format!("{KEYS}/{}", key_id_of(&token)))
        .await
        .expect(200);
    assert_eq!(own["scopes"], json!(["dns:read"]));
    let client = emu
        .get(&token, &format!("{KEYS}/{client_id}"))
        .await
        .expect(200);
    assert_eq!(client["keyType"], "client");
    let other = emu
        .get(&token, &format!("{KEYS}/{}", emu.boot().oauth_client_id))
        .await;
    assert_eq!(other.status, 403);
}
