//! A running emulator for synchronous tests, plus blocking calls to its `/_emulator/` admin
//! routes (see the `tsrotate-emulator` crate docs for their semantics).
//!
//! ```no_run
//! let server = tsrotate_test_support::emulator::start();
//! let api_key = &server.bootstrap().api_key;
//! tsrotate_test_support::emulator::add_fault(
//!     server.url(),
//!     &serde_json::json!({"method": "DELETE", "status": 503, "count": 1, "retry_after_s": 1}),
//! );
//! // ... run the CLI against server.url() with api_key ...
//! let requests = tsrotate_test_support::emulator::requests(server.url());
//! # let _ = (api_key, requests);
//! ```
//!
//! Every helper panics on an unexpected answer: in a test that is the failure you want.

use serde_json::{Value, json};
pub use tsrotate_emulator::{Bootstrap, Options, ThreadServer};

use crate::http;

/// Starts an emulator with default [`Options`] (tailnet `example.com`, in memory) on
/// `127.0.0.1:0`. It stops when dropped.
#[must_use]
pub fn start() -> ThreadServer {
    start_with(Options::default())
}

/// Starts an emulator with the given options on `127.0.0.1:0`.
#[must_use]
pub fn start_with(options: Options) -> ThreadServer {
    tsrotate_emulator::spawn_on_thread(options)
}

/// Calls an admin route and returns `(status, JSON body)` (`Value::Null` for an empty body).
///
/// # Panics
///
/// If the emulator cannot be reached.
#[must_use]
pub fn admin(base_url: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    // The emulator takes admin POSTs only as JSON, even without a body (a browser cannot
    // send that cross-origin without a preflight).
    let json_type: &[(&str, &str)] = if body.is_none() && method == "POST" {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    let response = http::send(base_url, method, path, json_type, body)
        .unwrap_or_else(|e| panic!("{method} {path} on the emulator failed: {e}"));
    (response.status, response.json())
}

fn expect_ok(base_url: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, value) = admin(base_url, method, path, body);
    assert_eq!(status, 200, "{method} {path} answered {status}: {value}");
    value
}

/// Moves emulator time forward; returns the new `now` (RFC 3339).
#[must_use = "the new time is often worth asserting on"]
pub fn advance_clock(base_url: &str, seconds: u64) -> String {
    let value = expect_ok(
        base_url,
        "POST",
        "/_emulator/clock",
        Some(&json!({ "advance_seconds": seconds })),
    );
    value["now"].as_str().unwrap_or_default().to_owned()
}

/// Appends a fault rule, e.g. `{"method": "POST", "status": 429, "count": 1, "retry_after_s": 2}`.
pub fn add_fault(base_url: &str, rule: &Value) {
    expect_ok(base_url, "POST", "/_emulator/faults", Some(rule));
}

/// Removes every fault rule.
pub fn clear_faults(base_url: &str) {
    expect_ok(base_url, "DELETE", "/_emulator/faults", None);
}

/// `GET /_emulator/state`: tailnet, `now`, config, every key and webhook (no secrets).
#[must_use]
pub fn state(base_url: &str) -> Value {
    expect_ok(base_url, "GET", "/_emulator/state", None)
}

/// The API requests received so far (method, path, query, status, auth, injected, dropped).
#[must_use]
pub fn requests(base_url: &str) -> Vec<Value> {
    let value = expect_ok(base_url, "GET", "/_emulator/requests", None);
    value["requests"].as_array().cloned().unwrap_or_default()
}

/// Empties the request log.
pub fn clear_requests(base_url: &str) {
    expect_ok(base_url, "DELETE", "/_emulator/requests", None);
}

/// Changes emulator behaviour, e.g. `{"deleted_keys": "not_found"}`.
pub fn set_config(base_url: &str, config: &Value) {
    expect_ok(base_url, "POST", "/_emulator/config", Some(config));
}

/// Simulates a device registering with an auth key; returns the key as `/_emulator/state`
/// shows it.
#[must_use = "the key view shows whether the key is now invalid"]
pub fn use_key(base_url: &str, key_id: &str) -> Value {
    expect_ok(
        base_url,
        "POST",
        &format!("/_emulator/keys/{key_id}/use"),
        None,
    )
}

/// Simulates a person creating a personal API access token in the admin console, e.g.
/// `{"expirySeconds": 86400, "description": "laptop"}`. Returns the Key JSON including `key`.
#[must_use]
pub fn create_api_token(base_url: &str, body: &Value) -> Value {
    expect_ok(base_url, "POST", "/_emulator/api-tokens", Some(body))
}

/// Creates a federated identity through the API with the bootstrap API key, e.g.
/// `{"scopes": ["all"], "tags": ["tag:ci"], "issuer": issuer.url(), "subject": "repo:acme/infra:*"}`
/// (`keyType` is added; an absent `audience` is generated). Returns the key JSON.
///
/// # Panics
///
/// If the emulator refuses it.
#[must_use]
pub fn create_federated_identity(server: &ThreadServer, body: &Value) -> Value {
    let mut body = body.clone();
    body["keyType"] = json!("federated");
    let auth = format!("Bearer {}", server.bootstrap().api_key);
    let response = http::send(
        server.url(),
        "POST",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &auth)],
        Some(&body),
    )
    .unwrap_or_else(|e| panic!("creating a federated identity failed: {e}"));
    let value = response.json();
    assert_eq!(
        response.status, 200,
        "creating a federated identity: {value}"
    );
    value
}

/// `GET /_emulator/token-exchanges`: every identity token exchange (client ID, accepted,
/// why refused), never tokens.
#[must_use]
pub fn token_exchanges(base_url: &str) -> Vec<Value> {
    let value = expect_ok(base_url, "GET", "/_emulator/token-exchanges", None);
    value["exchanges"].as_array().cloned().unwrap_or_default()
}
