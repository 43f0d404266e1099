//! `contain` against the emulator: the device and audit-log calls, and an investigation of a
//! fleet with attackers, with both audit-actor variants and without the audit log.

use std::time::Duration;

use serde_json::{Value, json};
use tsrotate::api::{
    Auth, Client, ClientBuilder, CreateAuthKey, DeviceCreateCapabilities, RetryPolicy,
};
use tsrotate::contain::{self, Confidence, Expected};
use tsrotate::key::{KeyId, Secret};
use tsrotate_test_support::emulator::{self, ThreadServer};
use tsrotate_test_support::openapi;

fn client(emu: &ThreadServer, scopes: Option<&[&str]>) -> Client {
    let auth = match scopes {
        None => Auth::ApiAccessToken(Secret::new(emu.bootstrap().api_key.clone())),
        Some(scopes) => Auth::OAuthClient {
            client_id: emu.bootstrap().oauth_client_id.clone(),
            client_secret: Secret::new(emu.bootstrap().oauth_client_secret.clone()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        },
    };
    ClientBuilder::new(auth)
        .base_url(emu.url())
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        })
        .build()
        .unwrap()
}

fn join(emu: &ThreadServer, body: &Value) -> Value {
    let (status, device) = emulator::admin(emu.url(), "POST", "/_emulator/devices", Some(body));
    assert_eq!(status, 200, "{device}");
    device
}

/// A reusable `tag:ci` key made by the OAuth client; 20 devices join with it ten days before
/// the leak, 3 after it (one advertising a route, one on another OS). Returns the key ID and
/// the leak time.
async fn fleet(emu: &ThreadServer, actor: &str) -> (KeyId, time::OffsetDateTime) {
    let admin = client(emu, Some(&["all"]));
    let mut request = CreateAuthKey::new(DeviceCreateCapabilities {
        reusable: true,
        ephemeral: false,
        preauthorized: true,
        tags: vec!["tag:ci".into()],
    });
    request.description = Some("fleet".into());
    let key = admin.create_auth_key(&request).await.unwrap().key.id;
    let _ = emulator::advance_clock(emu.url(), 30 * 86_400);
    for i in 0..20 {
        join(
            emu,
            &json!({"auth_key_id": key.as_str(), "hostname": format!("web-{i}"),
                    "created_offset_seconds": -20 * 86_400 + i * 60, "audit_actor": actor}),
        );
    }
    for (i, (os, routes)) in [
        ("linux", json!([])),
        ("windows", json!([])),
        ("linux", json!(["10.9.0.0/16"])),
    ]
    .into_iter()
    .enumerate()
    {
        join(
            emu,
            &json!({"auth_key_id": key.as_str(), "hostname": format!("evil-{i}"), "os": os,
                    "routes": routes, "created_offset_seconds": -3600, "audit_actor": actor}),
        );
    }
    let now = time::OffsetDateTime::parse(
        emulator::state(emu.url())["now"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (key, now - time::Duration::days(1))
}

fn hostnames(report: &contain::Report) -> Vec<(String, Confidence)> {
    report
        .analysis
        .candidates
        .iter()
        .map(|c| (c.hostname.clone(), c.confidence))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attackers_rank_exact_when_the_audit_log_names_the_key() {
    let emu = emulator::start();
    let (key, since) = fleet(&emu, "key").await;
    let api = client(&emu, None);
    let report = contain::investigate(&api, None, &key, Some(since.into()), &Expected::default())
        .await
        .unwrap();
    let found = hostnames(&report);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .all(|(h, c)| h.starts_with("evil-") && *c == Confidence::Exact)
    );
    // The one advertising a route and the one on Windows are outliers and come first.
    assert_eq!(found[2].0, "evil-0");
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_as_actor_or_the_audit_log_they_are_possible() {
    let emu = emulator::start();
    let (key, since) = fleet(&emu, "owner").await;
    let report = contain::investigate(
        &client(&emu, None),
        None,
        &key,
        Some(since.into()),
        &Expected::default(),
    )
    .await
    .unwrap();
    let found = hostnames(&report);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .all(|(h, c)| h.starts_with("evil-") && *c == Confidence::Possible)
    );
    assert!(
        report.analysis.candidates[0]
            .evidence
            .iter()
            .any(|e| e.contains("OAuth client") || e.contains("oauth client"))
    );

    // A credential without logs:configuration:read degrades to the device list, saying so.
    let blind = client(&emu, Some(&["devices:core:read", "auth_keys:read"]));
    let report = contain::investigate(&blind, None, &key, Some(since.into()), &Expected::default())
        .await
        .unwrap();
    assert_eq!(report.analysis.candidates.len(), 3);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("logs:configuration:read"))
    );

    // Without devices:core:read, the error names the scope.
    let keys_only = client(&emu, Some(&["auth_keys:read"]));
    let error = contain::investigate(
        &keys_only,
        None,
        &key,
        Some(since.into()),
        &Expected::default(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("`devices:core:read`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_actions_round_trip_and_match_the_spec() {
    let emu = emulator::start();
    let api = client(&emu, None);
    let mut request = CreateAuthKey::new(DeviceCreateCapabilities::default());
    request.description = Some("laptop".into());
    let key = api.create_auth_key(&request).await.unwrap().key.id;
    let device = join(
        &emu,
        &json!({"auth_key_id": key.as_str(), "hostname": "laptop", "routes": ["10.0.0.0/24"]}),
    );
    let id = device["nodeId"].as_str().unwrap();
    let routes = api
        .set_device_routes(id, &["10.0.0.0/24".to_owned()])
        .await
        .unwrap();
    assert_eq!(routes.enabled_routes, ["10.0.0.0/24"]);
    api.set_device_authorized(id, false).await.unwrap();
    api.set_device_authorized(id, false).await.unwrap();
    api.expire_device(id).await.unwrap();
    let fetched = api.get_device(id).await.unwrap();
    assert!(!fetched.authorized);
    assert_eq!(fetched.advertised_routes, ["10.0.0.0/24"]);
    let listed = api.list_devices(&[("hostname", "laptop")]).await.unwrap();
    assert_eq!(listed, [fetched]);
    let body = serde_json::to_value(json!({"routes": []})).unwrap();
    openapi::validate_request("POST", "/device/{deviceId}/routes", &body).unwrap();
    openapi::validate_request(
        "POST",
        "/device/{deviceId}/authorized",
        &json!({"authorized": true}),
    )
    .unwrap();

    // A user-owned key: the user's device in the window is strong.
    let report = contain::investigate(&api, None, &key, None, &Expected::default())
        .await
        .unwrap();
    assert_eq!(report.analysis.candidates.len(), 1);
    assert_eq!(report.analysis.candidates[0].confidence, Confidence::Strong);

    api.delete_device(id).await.unwrap();
    assert!(api.get_device(id).await.unwrap_err().is_not_found());
}
