//! The request log behind `GET /_emulator/requests`: one entry per API request, so tests can
//! count calls and retries.
//!
//! Entries hold the method, path, query string, status and the *kind* of authentication
//! (bearer, basic, none), never headers or bodies. Query parameters whose names suggest a
//! credential (`client_secret=…`, `key=…`) are redacted, since a misbehaving client could send
//! them there; no Tailscale endpoint takes one in the query.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};
use serde::Serialize;

use crate::{
    faults::{DropConnection, Injected, is_admin_path},
    state::EmulatorState,
};

/// Oldest entries are dropped beyond this many, to bound memory in long demo runs.
const CAPACITY: usize = 10_000;

/// The kind of `Authorization` header a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthScheme {
    Bearer,
    Basic,
    None,
    Other,
}

impl AuthScheme {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Self::None;
        };
        let scheme = value
            .to_str()
            .ok()
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_default();
        if scheme.eq_ignore_ascii_case("bearer") {
            Self::Bearer
        } else if scheme.eq_ignore_ascii_case("basic") {
            Self::Basic
        } else {
            Self::Other
        }
    }
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestRecord {
    method: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    status: u16,
    auth: AuthScheme,
    /// The status came from a fault rule; the request was not processed.
    injected: bool,
    /// The request was processed but the connection was closed instead of answering.
    dropped: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<VecDeque<RequestRecord>>,
}

impl RequestLog {
    fn push(&self, record: RequestRecord) {
        let mut entries = self.lock();
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(record);
    }

    pub(crate) fn list(&self) -> Vec<RequestRecord> {
        self.lock().iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RequestRecord>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parameter names whose values are never logged.
const CREDENTIAL_PARAMETERS: [&str; 6] = ["secret", "token", "key", "password", "jwt", "assertion"];

/// The query string with the values of credential-like parameters replaced by `[redacted]`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let lower = name.to_ascii_lowercase();
            if !value.is_empty() && CREDENTIAL_PARAMETERS.iter().any(|c| lower.contains(c)) {
                format!("{name}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Middleware recording every non-admin request with its final status.
pub(crate) async fn record(
    State(state): State<EmulatorState>,
    request: Request,
    next: Next,
) -> Response {
    if is_admin_path(request.uri().path()) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(redact_query);
    let auth = AuthScheme::of(request.headers());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::info!(%method, %path, status, "api request");
    state.requests().push(RequestRecord {
        method,
        path,
        query,
        status,
        auth,
        injected: response.extensions().get::<Injected>().is_some(),
        dropped: response.extensions().get::<DropConnection>().is_some(),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestApp;

    #[test]
    fn credential_like_query_parameters_are_redacted() {
        assert_eq!(redact_query("all=true"), "all=true");
        assert_eq!(
            redact_query("client_secret=tskey-client-k-s&scope=all&access_token=x&flag"),
            "client_secret=[redacted]&scope=all&access_token=[redacted]&flag"
        );
    }

    #[tokio::test]
    async fn logged_requests_carry_no_credentials() {
        let app = TestApp::new();
        let secret = app.boot.oauth_client_secret.clone();
        let token = app.boot.api_key.clone();
        app.send("GET", "/api/v2/tailnet/-/keys?all=true", Some(&token), None)
            .await;
        app.send(
            "POST",
            &format!("/api/v2/oauth/token?client_secret={secret}"),
            None,
            None,
        )
        .await;
        app.send("GET", "/_emulator/state", None, None).await;
        let log = serde_json::to_string(&app.state.requests().list()).expect("json");
        assert!(!log.contains(&secret) && !log.contains(&token), "{log}");
        let entries = app.state.requests().list();
        assert_eq!(entries.len(), 2, "admin calls are not logged: {log}");
        assert_eq!(entries[0].auth, AuthScheme::Bearer);
        assert_eq!(
            entries[1].query.as_deref(),
            Some("client_secret=[redacted]")
        );
    }
}
