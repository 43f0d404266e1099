//! Issue 11 item 9: who may drive the emulator. A web page in a local browser must not be able
//! to (DNS rebinding through `Host`, cross-origin form posts), and serving the network needs
//! the admin token on `/_emulator/` routes.

use reqwest::Method;
use serde_json::json;
use tsrotate_emulator::{Exposure, Options};

use crate::common::{Emu, read};

#[tokio::test]
async fn emulator_refuses_requests_addressed_to_another_host() {
    let emu = Emu::start().await;
    let before = emu.state().await["now"].clone();
    for (method, path) in [
        (Method::GET, "/_emulator/state"),
        (Method::POST, "/_emulator/clock"),
        (Method::GET, "/api/v2/tailnet/-/keys"),
    ] {
        let reply = read(
            emu.http
                .request(method.clone(), emu.url(path))
                .header("host", "rebound.attacker.example")
                .header("content-type", "application/json")
                .bearer_auth(&emu.boot().api_key)
                .body(r#"{"advance_seconds": 86400}"#)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 421, "{method} {path}: {}", reply.body);
        assert!(reply.message().contains("loopback"), "{}", reply.body);
    }
    assert_clock_unmoved(&before, &emu.state().await["now"]);
    // The loopback under any of its names is fine.
    for host in ["localhost", "127.0.0.1", "[::1]:1234"] {
        let reply = read(
            emu.http
                .get(emu.url("/_emulator/clock"))
                .header("host", host)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.body);
    }
}

#[tokio::test]
async fn emulator_admin_posts_must_be_json() {
    let emu = Emu::start().await;
    let before = emu.state().await["now"].clone();
    // What a cross-origin page can send without a preflight: text/plain, a form, nothing.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = emu
            .http
            .post(emu.url("/_emulator/clock"))
            .body(r#"{"advance_seconds": 86400}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = read(request.send().await.unwrap()).await;
        assert_eq!(reply.status, 415, "{content_type:?}: {}", reply.body);
    }
    assert_clock_unmoved(&before, &emu.state().await["now"]);
    let moved = read(
        emu.http
            .post(emu.url("/_emulator/clock"))
            .header("content-type", "application/json; charset=utf-8")
            .body(r#"{"advance_seconds": 60}"#)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200);
    assert!(seconds_between(&before, &moved["now"]) >= 60);
}

/// Emulator time runs with the real clock; a refused `advance_seconds: 86400` must not show.
#[track_caller]
fn assert_clock_unmoved(before: &serde_json::Value, after: &serde_json::Value) {
    assert!(
        seconds_between(before, after) < 3600,
        "the clock moved from {before} to {after}"
    );
}

fn seconds_between(before: &serde_json::Value, after: &serde_json::Value) -> i64 {
    let parse = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    (parse(after) - parse(before)).whole_seconds()
}

#[tokio::test]
async fn emulator_on_the_network_needs_the_admin_token_on_admin_routes() {
    let emu = Emu::start_with(Options {
        exposure: Exposure::Network,
        ..Options::default()
    })
    .await;
    let token = emu.boot().admin_token.clone().expect("an admin token");
    assert!(token.len() >= 32);
    // Printed in the ready line, hidden from Debug.
    let ready = serde_json::to_value(emu.boot()).unwrap();
    assert_eq!(ready["admin_token"], json!(token));
    assert!(!format!("{:?}", emu.boot()).contains(&token));

    for given in [None, Some("wrong"), Some(emu.boot().api_key.as_str())] {
        let mut request = emu
            .http
            .get(emu.url("/_emulator/state"))
            .header("host", "emulator.internal.example:8088");
        if let Some(given) = given {
            request = request.bearer_auth(given);
        }
        let reply = read(request.send().await.unwrap()).await;
        assert_eq!(reply.status, 401, "{given:?}: {}", reply.body);
    }
    let state = read(
        emu.http
            .get(emu.url("/_emulator/state"))
            .header("host", "emulator.internal.example:8088")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200);
    assert_eq!(state["tailnet"], "example.com");
    // The API itself answers any Host on the network, with its own authentication.
    let keys = read(
        emu.http
            .get(emu.url("/api/v2/tailnet/-/keys"))
            .header("host", "emulator.internal.example:8088")
            .bearer_auth(&emu.boot().api_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(keys.status, 200, "{}", keys.body);
}

#[tokio::test]
async fn emulator_on_the_loopback_prints_no_admin_token() {
    let emu = Emu::start().await;
    assert_eq!(emu.boot().admin_token, None);
    let ready = serde_json::to_value(emu.boot()).unwrap();
    assert!(ready.get("admin_token").is_none(), "{ready}");
}
