//! The test harness: an emulator on `127.0.0.1:0`, a reqwest client, and a `call` that
//! validates every response body of a spec'd operation against the `OpenAPI` spec.

use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};
use tsrotate_emulator::{Bootstrap, Options, Server, serve};
use tsrotate_test_support::openapi;

/// API paths Tailscale serves that its spec does not describe.
const NOT_IN_SPEC: [&str; 2] = ["/api/v2/oauth/token", "/api/v2/secret-scanning/verify"];

pub(crate) struct Emu {
    pub(crate) server: Server,
    pub(crate) http: reqwest::Client,
}

/// One answer: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn message(&self) -> &str {
        self.body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error body, got {} {}", self.status, self.body))
    }

    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self.body
    }
}

/// The key-ID part of `tskey-<type>-<id>-<secret>`.
pub(crate) fn key_id_of(credential: &str) -> String {
    credential.split('-').nth(2).unwrap().to_owned()
}

impl Emu {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = serve(listener, options).await.unwrap();
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn boot(&self) -> &Bootstrap {
        self.server.bootstrap()
    }

    pub(crate) fn admin_token(&self) -> String {
        self.boot().api_key.clone()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// An API call with a bearer token. The response body is validated against the spec when
    /// the operation is in it; the request body too when the call succeeded.
    pub(crate) async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let reply = self
            .call_lenient(token, method.clone(), path, body.clone())
            .await;
        if reply.status == 200
            && let Some(body) = &body
            && let Some(template) = openapi::template_for(method.as_str(), path)
        {
            openapi::validate_request(method.as_str(), &template, body)
                .unwrap_or_else(|e| panic!("request body not per spec: {e}"));
        }
        reply
    }

    /// Like [`Self::call`] but without validating the request body (for deliberately odd
    /// requests).
    pub(crate) async fn call_lenient(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method.clone(), self.url(path));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let reply = read(response).await;
        match openapi::template_for(method.as_str(), path) {
            Some(template) => {
                openapi::validate_response(method.as_str(), &template, reply.status, &reply.body)
                    .unwrap_or_else(|e| panic!("response not per spec: {e}"));
            }
            // Only the endpoints the spec lacks, and deliberate 404/405 probes, may go
            // unvalidated; anything else is a typo in the test that would skip validation.
            None => assert!(
                NOT_IN_SPEC.iter().any(|p| path.starts_with(p))
                    || [404, 405].contains(&reply.status),
                "{method} {path} is not a spec operation; the response cannot be validated"
            ),
        }
        reply
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> Reply {
        self.call(token, Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: Value) -> Reply {
        self.call(token, Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, token: &str, path: &str) -> Reply {
        self.call(token, Method::DELETE, path, None).await
    }

    /// `POST /_emulator/...` or another admin call.
    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        } else {
            request = request.header("content-type", "application/json");
        }
        read(request.send().await.unwrap()).await
    }

    pub(crate) async fn state(&self) -> Value {
        self.admin(Method::GET, "/_emulator/state", None)
            .await
            .expect(200)
    }

    pub(crate) async fn requests(&self) -> Vec<Value> {
        let body = self
            .admin(Method::GET, "/_emulator/requests", None)
            .await
            .expect(200);
        body["requests"].as_array().unwrap().clone()
    }

    pub(crate) async fn advance(&self, seconds: u64) {
        self.admin(
            Method::POST,
            "/_emulator/clock",
            Some(json!({ "advance_seconds": seconds })),
        )
        .await
        .expect(200);
    }

    pub(crate) async fn fault(&self, rule: Value) {
        self.admin(Method::POST, "/_emulator/faults", Some(rule))
            .await
            .expect(200);
    }

    /// `POST /api/v2/oauth/token` with form credentials.
    pub(crate) async fn token_request(&self, form: &[(&str, &str)]) -> Reply {
        let response = self
            .http
            .post(self.url("/api/v2/oauth/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// An access token for `client_secret`, optionally down-scoped.
    pub(crate) async fn oauth_token(&self, client_secret: &str, scope: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", "some-client-id"),
            ("client_secret", client_secret),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let body = self.token_request(&form).await.expect(200);
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An access token from the bootstrap client (scope `all`, tags ci/server/k8s).
    pub(crate) async fn bootstrap_oauth_token(&self) -> String {
        let secret = self.boot().oauth_client_secret.clone();
        self.oauth_token(&secret, None).await
    }

    /// Creates an OAuth client with the admin token; returns `(id, secret)`.
    pub(crate) async fn client(&self, scopes: &[&str], tags: &[&str]) -> (String, String) {
        let body = self
            .post(
                &self.admin_token(),
                "/api/v2/tailnet/-/keys",
                json!({"keyType": "client", "scopes": scopes, "tags": tags, "description": "test client"}),
            )
            .await
            .expect(200);
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// An access token of a fresh client with exactly these scopes and tags.
    pub(crate) async fn scoped_token(&self, scopes: &[&str], tags: &[&str]) -> String {
        let (_id, secret) = self.client(scopes, tags).await;
        self.oauth_token(&secret, None).await
    }

    /// Creates an auth key with `token`; returns the whole Key body.
    pub(crate) async fn auth_key(&self, token: &str, create: Value) -> Value {
        self.post(
            token,
            "/api/v2/tailnet/-/keys",
            json!({"capabilities": {"devices": {"create": create}}}),
        )
        .await
        .expect(200)
    }

    /// The key with this ID as `/_emulator/state` shows it.
    pub(crate) async fn state_key(&self, id: &str) -> Value {
        let state = self.state().await;
        state["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} not in state"))
    }
}

pub(crate) async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}
