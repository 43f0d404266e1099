//! In-process harness for unit tests: the router driven with `tower::ServiceExt::oneshot`.

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::{Bootstrap, Options, app, faults::DropConnection, state::EmulatorState};

pub(crate) struct TestApp {
    pub(crate) state: EmulatorState,
    pub(crate) boot: Bootstrap,
    router: Router,
}

pub(crate) struct TestResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    /// The response carried the `drop_connection` marker.
    pub(crate) dropped: bool,
}

impl TestApp {
    pub(crate) fn new() -> Self {
        let state = EmulatorState::new(&Options::default()).expect("in-memory state");
        let boot = state.bootstrap("http://in-process");
        Self {
            router: app(state.clone()),
            state,
            boot,
        }
    }

    /// One request; `body` is sent as JSON. The response body is parsed as JSON (`Null` when
    /// empty).
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() || method == "POST" {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        self.send_request(request).await
    }

    pub(crate) async fn send_request(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let dropped = response.extensions().get::<DropConnection>().is_some();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        TestResponse {
            status,
            headers,
            body,
            dropped,
        }
    }

    /// Checks a response against the spec, for operations the spec has.
    pub(crate) fn assert_per_spec(method: &str, path: &str, response: &TestResponse) {
        // A route the description does not have is a mistake in the test or the emulator,
        // not something to pass over (the emulator's own `/_emulator` routes are not asked).
        let template = tsrotate_test_support::openapi::template_for(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the OpenAPI description"));
        tsrotate_test_support::openapi::validate_response(
            method,
            &template,
            response.status.as_u16(),
            &response.body,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
