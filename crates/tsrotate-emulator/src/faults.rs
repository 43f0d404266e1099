//! Fault injection: rules set through `POST /_emulator/faults` that delay, fail or cut off API
//! requests, so a client's retry, timeout and "response lost after a create" handling can be
//! tested.
//!
//! Rules match in insertion order on method (any if absent) and path prefix (any if absent);
//! the first match is used. A rule with `skip` lets that many matching requests through
//! untouched first (so that a test can fault the second `GET` of a key, not the first); then,
//! if it has a `count`, each use decrements it (removed at zero). Its effect:
//!
//! 1. wait `latency_ms` (a rule with only `latency_ms` just delays the request);
//! 2. if `status` is set, answer that status with `{"message": …}` (plus `Retry-After` when
//!    `retry_after_s` is set) **without** processing the request;
//! 3. else, if `drop_before` is set, close the TCP connection without processing the request
//!    (the client cannot tell this from a drop after processing);
//! 4. else, if `drop_connection` is set, process the request (its side effect happens) and then
//!    close the TCP connection without sending the response;
//! 5. else process the request normally.
//!
//! `/_emulator/` routes are never faulted.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{error::ApiError, state::EmulatorState};

/// Response extension: the connection must be closed instead of sending this response. The
/// server loop in `server.rs` acts on it; in-process (`oneshot`) callers just see the marker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// Response extension: a fault rule chose this response's status (for the request log).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Injected;

/// One fault rule, as posted to `/_emulator/faults`. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    /// Remaining uses; `None` = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<u64>,
    #[serde(default)]
    pub(crate) drop_connection: bool,
    /// Close the connection without processing the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) drop_before: bool,
    /// Matching requests to let through untouched before the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) skip: Option<u32>,
}

impl FaultRule {
    /// Rejects rules that could not do what they say.
    pub(crate) fn validate(mut self) -> Result<Self, ApiError> {
        if let Some(status) = self.status
            && !(400..=599).contains(&status)
        {
            return Err(ApiError::bad_request(format!(
                "fault status must be 400..=599, got {status}"
            )));
        }
        if self.count == Some(0) {
            return Err(ApiError::bad_request(
                "fault count must be at least 1 (omit it for a rule that lasts until cleared)",
            ));
        }
        if let Some(prefix) = &self.path_prefix
            && !prefix.starts_with('/')
        {
            return Err(ApiError::bad_request("fault path_prefix must start with /"));
        }
        if let Some(method) = &mut self.method {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ApiError::bad_request(format!(
                    "fault method {method:?} is not an HTTP method"
                )));
            }
            method.make_ascii_uppercase();
        }
        if self.drop_before && (self.drop_connection || self.status.is_some()) {
            return Err(ApiError::bad_request(
                "drop_before cannot be combined with drop_connection or status",
            ));
        }
        if self.retry_after_s.is_some() && self.status.is_none() {
            return Err(ApiError::bad_request(
                "retry_after_s only applies to rules with a status",
            ));
        }
        Ok(self)
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
    }
}

/// The rule list.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub(crate) fn add(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn list(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// The first rule matching the request, with its use counted.
    fn take(&self, method: &str, path: &str) -> Option<FaultRule> {
        let mut rules = self.lock();
        let index = rules.iter().position(|r| r.matches(method, path))?;
        if let Some(skip) = &mut rules[index].skip
            && *skip > 0
        {
            *skip -= 1;
            return None;
        }
        let rule = rules[index].clone();
        match &mut rules[index].count {
            Some(1) => {
                rules.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(rule)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a path belongs to the admin surface, which is never faulted or logged.
pub(crate) fn is_admin_path(path: &str) -> bool {
    path == "/_emulator" || path.starts_with("/_emulator/")
}

/// Middleware applying the first matching rule.
pub(crate) async fn apply(
    State(state): State<EmulatorState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_admin_path(path) {
        return next.run(request).await;
    }
    let Some(rule) = state.faults().take(request.method().as_str(), path) else {
        return next.run(request).await;
    };
    tracing::debug!(?rule, method = %request.method(), path, "applying fault rule");
    if let Some(ms) = rule.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = rule.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = ApiError::Injected {
            status,
            retry_after_seconds: rule.retry_after_s,
        }
        .into_response();
        response.extensions_mut().insert(Injected);
        return response;
    }
    if rule.drop_before {
        let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
        response.extensions_mut().insert(DropConnection);
        return response;
    }
    let mut response = next.run(request).await;
    if rule.drop_connection {
        response.extensions_mut().insert(DropConnection);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> FaultRule {
        serde_json::from_value::<FaultRule>(json)
            .expect("rule parses")
            .validate()
            .expect("rule is valid")
    }

    #[test]
    fn counted_rules_are_removed_after_their_last_use() {
        let faults = Faults::default();
        faults.add(rule(serde_json::json!({"status": 503, "count": 2})));
        assert!(faults.take("GET", "/api/v2/x").is_some());
        assert!(faults.take("GET", "/api/v2/x").is_some());
        assert!(faults.take("GET", "/api/v2/x").is_none());
    }

    #[test]
    fn rules_match_method_and_prefix_in_insertion_order() {
        let faults = Faults::default();
        faults.add(rule(
            serde_json::json!({"method": "delete", "path_prefix": "/api/v2/tailnet/", "status": 500}),
        ));
        faults.add(rule(serde_json::json!({"status": 429})));
        assert_eq!(
            faults
                .take("DELETE", "/api/v2/tailnet/-/keys/k")
                .and_then(|r| r.status),
            Some(500)
        );
        assert_eq!(
            faults
                .take("GET", "/api/v2/tailnet/-/keys")
                .and_then(|r| r.status),
            Some(429)
        );
        assert_eq!(
            faults
                .take("DELETE", "/api/v2/oauth/token")
                .and_then(|r| r.status),
            Some(429)
        );
    }

    #[tokio::test]
    async fn drop_connection_marks_a_processed_response() {
        let app = crate::test_util::TestApp::new();
        app.state.faults().add(rule(
            serde_json::json!({"method": "POST", "drop_connection": true, "count": 1}),
        ));
        let token = app.boot.api_key.clone();
        let body = serde_json::json!({"capabilities": {"devices": {}}});
        let response = app
            .send("POST", "/api/v2/tailnet/-/keys", Some(&token), Some(&body))
            .await;
        assert!(response.dropped, "the server loop must drop this response");
        assert_eq!(response.status, 200, "the request was processed");
        let id = response.body["id"].as_str().expect("id");
        assert!(app.state.read(|store, _| store.key(id).is_some()));
        let next = app
            .send("POST", "/api/v2/tailnet/-/keys", Some(&token), Some(&body))
            .await;
        assert!(!next.dropped);
    }

    #[tokio::test]
    async fn drop_before_cuts_off_a_request_that_was_never_processed() {
        let app = crate::test_util::TestApp::new();
        app.state.faults().add(rule(
            serde_json::json!({"method": "POST", "drop_before": true, "count": 1}),
        ));
        let before = app.state.read(|store, _| store.keys.len());
        let token = app.boot.api_key.clone();
        let body = serde_json::json!({"capabilities": {"devices": {}}});
        let response = app
            .send("POST", "/api/v2/tailnet/-/keys", Some(&token), Some(&body))
            .await;
        assert!(response.dropped, "the server loop must drop this response");
        assert_eq!(app.state.read(|store, _| store.keys.len()), before);
    }

    #[test]
    fn skip_lets_the_first_matching_requests_through() {
        let faults = Faults::default();
        faults.add(rule(
            serde_json::json!({"status": 503, "skip": 2, "count": 1}),
        ));
        assert!(faults.take("GET", "/api/v2/x").is_none());
        assert!(faults.take("GET", "/api/v2/x").is_none());
        assert!(faults.take("GET", "/api/v2/x").is_some());
        assert!(faults.take("GET", "/api/v2/x").is_none());
    }

    #[tokio::test]
    async fn status_rules_answer_without_reaching_the_handler() {
        let app = crate::test_util::TestApp::new();
        app.state.faults().add(rule(
            serde_json::json!({"status": 504, "retry_after_s": 9, "count": 1}),
        ));
        let before = app.state.read(|store, _| store.keys.len());
        let token = app.boot.api_key.clone();
        let body = serde_json::json!({"capabilities": {"devices": {}}});
        let response = app
            .send("POST", "/api/v2/tailnet/-/keys", Some(&token), Some(&body))
            .await;
        assert_eq!(response.status, 504);
        assert_eq!(
            response.body["message"],
            "request took too long to process, please try again later"
        );
        assert_eq!(response.headers["retry-after"], "9");
        assert_eq!(app.state.read(|store, _| store.keys.len()), before);
    }

    #[test]
    fn nonsensical_rules_are_rejected() {
        for bad in [
            serde_json::json!({"status": 200}),
            serde_json::json!({"count": 0}),
            serde_json::json!({"path_prefix": "api/"}),
            serde_json::json!({"method": "GE T"}),
            serde_json::json!({"retry_after_s": 3}),
            serde_json::json!({"drop_before": true, "status": 503}),
        ] {
            let parsed: FaultRule = serde_json::from_value(bad.clone()).expect("parses");
            assert!(parsed.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<FaultRule>(serde_json::json!({"retry_after": 1})).is_err()
        );
    }
}
