//! The state file: survives restarts, holds no plaintext of created secrets.

use reqwest::Method;
use serde_json::json;
use tsrotate_emulator::{EmulatorState, Error, Options};

use crate::common::{Emu, key_id_of};

const KEYS: &str = "/api/v2/tailnet/-/keys";

#[tokio::test]
async fn state_survives_a_restart_without_plaintext_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emulator.json");
    let options = Options {
        state_file: Some(file.clone()),
        ..Options::default()
    };

    let emu = Emu::start_with(options.clone()).await;
    let boot = emu.boot().clone();
    let admin = emu.admin_token();
    let auth_key = emu
        .auth_key(&admin, json!({"reusable": true, "tags": ["tag:ci"]}))
        .await;
    let revoked = emu.auth_key(&admin, json!({})).await;
    emu.delete(
        &admin,
        &format!("{KEYS}/{}", revoked["id"].as_str().unwrap()),
    )
    .await
    .expect(200);
    let (client_id, client_secret) = emu.client(&["auth_keys"], &["tag:ci"]).await;
    let access_token = emu.oauth_token(&client_secret, None).await;
    let hook = emu
        .post(
            &admin,
            "/api/v2/tailnet/-/webhooks",
            json!({"endpointUrl": "https://example.com", "subscriptions": []}),
        )
        .await
        .expect(200);
    let rotated = emu
        .call(
            &admin,
            Method::POST,
            &format!(
                "/api/v2/webhooks/{}/rotate",
                hook["endpointId"].as_str().unwrap()
            ),
            None,
        )
        .await
        .expect(200);
    emu.advance(600).await;
    emu.server.shutdown().await;

    let bytes = std::fs::read(&file).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    for secret in [
        auth_key["key"].as_str().unwrap(),
        revoked["key"].as_str().unwrap(),
        client_secret.as_str(),
        access_token.as_str(),
        hook["secret"].as_str().unwrap(),
        rotated["secret"].as_str().unwrap(),
    ] {
        let (_, random_part) = secret.rsplit_once('-').unwrap();
        assert!(
            !text.contains(random_part),
            "state file holds a created secret in plaintext"
        );
    }
    assert!(
        text.contains(&key_id_of(auth_key["key"].as_str().unwrap())),
        "keys are stored by ID"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");

    // Restart: same bootstrap credentials, same keys, same clock offset.
    let emu = Emu::start_with(options).await;
    let again = emu.boot();
    assert_eq!(
        (
            &again.api_key,
            &again.oauth_client_id,
            &again.oauth_client_secret,
            &again.tailnet
        ),
        (
            &boot.api_key,
            &boot.oauth_client_id,
            &boot.oauth_client_secret,
            &boot.tailnet
        )
    );
    assert_ne!(again.url, boot.url, "a new port");
    emu.get(&boot.api_key, KEYS).await.expect(200);
    emu.oauth_token(&boot.oauth_client_secret, None).await;

    let live = emu
        .get(
            &admin,
            &format!("{KEYS}/{}", auth_key["id"].as_str().unwrap()),
        )
        .await
        .expect(200);
    assert_eq!(live["invalid"], false);
    assert_eq!(live["capabilities"], auth_key["capabilities"]);
    assert_eq!(live["created"], auth_key["created"]);
    let dead = emu
        .get(
            &admin,
            &format!("{KEYS}/{}", revoked["id"].as_str().unwrap()),
        )
        .await
        .expect(200);
    assert_eq!(dead["invalid"], true);
    let own_token = format!("{KEYS}/{}", key_id_of(&access_token));
    emu.get(&access_token, &own_token).await.expect(200);
    let issued = emu
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &client_secret),
        ])
        .await
        .expect(200);
    assert!(issued["access_token"].is_string());
    let verify = emu
        .http
        .post(emu.url("/api/v2/secret-scanning/verify"))
        .form(&[("key", rotated["secret"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        verify.status().as_u16(),
        204,
        "the rotated webhook secret survives"
    );

    // The clock offset persisted: the access token expires 3600 s after issue, 600 s are gone.
    emu.advance(3001).await;
    assert_eq!(emu.get(&access_token, &own_token).await.status, 401);
    assert_eq!(emu.state_key(&client_id).await["invalid"], false);
}

#[test]
fn a_fresh_state_file_is_written_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested-name.json");
    let state = EmulatorState::new(&Options {
        state_file: Some(file.clone()),
        ..Options::default()
    })
    .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["version"], 1);
    assert_eq!(parsed["tailnet"], "example.com");
    // The bootstrap credentials are the documented plaintext exception.
    assert_eq!(
        parsed["bootstrap"]["apiKey"],
        state.bootstrap("").api_key.as_str()
    );
}

#[test]
fn mismatched_or_corrupt_state_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    EmulatorState::new(&Options {
        state_file: Some(file.clone()),
        ..Options::default()
    })
    .unwrap();
    let other = EmulatorState::new(&Options {
        tailnet: "other.example".to_owned(),
        state_file: Some(file.clone()),
        ..Options::default()
    });
    assert!(
        matches!(other, Err(Error::TailnetMismatch { .. })),
        "{other:?}"
    );

    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    value["version"] = json!(99);
    std::fs::write(&file, value.to_string()).unwrap();
    let future = EmulatorState::new(&Options {
        state_file: Some(file.clone()),
        ..Options::default()
    });
    assert!(
        matches!(future, Err(Error::StateVersion { found: 99, .. })),
        "{future:?}"
    );

    std::fs::write(&file, "{ not json").unwrap();
    let corrupt = EmulatorState::new(&Options {
        state_file: Some(file),
        ..Options::default()
    });
    assert!(
        matches!(corrupt, Err(Error::ParseState { .. })),
        "{corrupt:?}"
    );
}
