//! A strict fake of GitHub's REST API for Actions secrets, on `127.0.0.1:0` in its own thread.
//!
//! It is written from GitHub's REST reference (<https://docs.github.com/en/rest/actions/secrets>),
//! not from tsrotate's client, so that a misunderstanding of the API does not end up on both
//! sides. It holds the private key of every public key it hands out and *decrypts* what it
//! receives, so a test can check the value that arrived, not just that something did.
//!
//! # Routes
//!
//! `{scope}` is `repos/{owner}/{repo}/actions`, `repos/{owner}/{repo}/environments/{environment}`
//! or `orgs/{org}/actions`. Owner, repository, organization and environment names compare
//! case-insensitively, as on GitHub.
//!
//! | Method and path | Behaviour |
//! |---|---|
//! | `GET /{scope}/secrets/public-key` | 200 `{"key_id", "key"}`: a real X25519 public key, base64 |
//! | `GET /{scope}/secrets/{name}` | 200 metadata `{"name", "created_at", "updated_at"}` (+ `visibility` for organizations), never the value; 404 if absent |
//! | `PUT /{scope}/secrets/{name}` | `{"encrypted_value", "key_id"}` (+ `visibility`, `selected_repository_ids` for organizations): 201 `{}` on create, 204 on update |
//! | `DELETE /{scope}/secrets/{name}` | 204 with no body; 404 if the secret (or scope) does not exist |
//! | anything else | 404 `{"message": "Not Found", …}` |
//!
//! # What it enforces
//!
//! - `Authorization: Bearer <token>` (or `token <token>`) with the configured token: else 401
//!   `Bad credentials`.
//! - A `User-Agent` header: else 403, as GitHub does.
//! - `X-GitHub-Api-Version` of `2022-11-28` or `2026-03-10`: else 400. Stricter than
//!   GitHub, which defaults to `2022-11-28` when the header is missing.
//! - `PUT`: `Content-Type: application/json` (else 415, stricter than GitHub), a JSON
//!   object (else 400 `Problems parsing JSON`), `encrypted_value` and `key_id` strings (else
//!   422), `key_id` the scope's *current* key (else 422), `encrypted_value` valid base64 and a
//!   sealed box that opens with that key to UTF-8 text of at most 48 KB (else 422).
//!   Organization secrets: `visibility` required and one of `all`, `private`, `selected`,
//!   `selected_repository_ids` only with `selected` (else 422).
//! - Secret names: letters, digits and `_`, not starting with a digit or `GITHUB_` (else 422).
//! - Unknown repositories, environments and organizations: 404.
//!
//! # What it does not
//!
//! - Permissions per token, fine-grained scopes, SSO, IP allow lists: a token is right or
//!   wrong. Rate limits happen only when injected with [`GithubFake::fail_next_with`].
//! - The `Accept` header is not checked (GitHub only recommends it); it is recorded in
//!   [`GithubFake::requests`] so tests can assert on it.
//! - Listing secrets, selected repositories of organization secrets, Dependabot
//!   and Codespaces secrets, the older `/repositories/{repository_id}/environments/…` routes.
//! - Whether GitHub checks that a sealed box opens is not documented; the fake does, so a
//!   test can tell a correct encryption from garbage.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

/// The token the fake accepts unless told otherwise. A canary: it must never appear in
/// anything tsrotate shows.
pub const TOKEN: &str = "ghp_CANARYgithubFAKEtoken0123456789abcdef";

/// API versions the fake accepts in `X-GitHub-Api-Version`.
pub const API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];

/// Where secrets live.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A repository's Actions secrets.
    Repository {
        /// The owner.
        owner: String,
        /// The repository.
        repo: String,
    },
    /// A deployment environment's secrets.
    Environment {
        /// The owner.
        owner: String,
        /// The repository.
        repo: String,
        /// The environment.
        environment: String,
    },
    /// An organization's Actions secrets.
    Organization {
        /// The organization.
        org: String,
    },
}

impl Scope {
    /// `owner/repo`'s secrets.
    #[must_use]
    pub fn repository(owner: &str, repo: &str) -> Self {
        Self::Repository {
            owner: owner.to_lowercase(),
            repo: repo.to_lowercase(),
        }
    }

    /// The secrets of `environment` of `owner/repo`.
    #[must_use]
    pub fn environment(owner: &str, repo: &str, environment: &str) -> Self {
        Self::Environment {
            owner: owner.to_lowercase(),
            repo: repo.to_lowercase(),
            environment: environment.to_lowercase(),
        }
    }

    /// `org`'s secrets.
    #[must_use]
    pub fn organization(org: &str) -> Self {
        Self::Organization {
            org: org.to_lowercase(),
        }
    }

    fn normalized(&self) -> Self {
        match self {
            Self::Repository { owner, repo } => Self::repository(owner, repo),
            Self::Environment {
                owner,
                repo,
                environment,
            } => Self::environment(owner, repo, environment),
            Self::Organization { org } => Self::organization(org),
        }
    }
}

/// A request as the fake saw it: no bodies, no credentials.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The `X-GitHub-Api-Version` header.
    pub api_version: Option<String>,
}

/// An injected failure.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The status to answer.
    pub status: u16,
    /// How many requests get it.
    pub count: usize,
    /// Extra headers, e.g. `("x-ratelimit-remaining", "0")` or `("retry-after", "30")`.
    pub headers: Vec<(String, String)>,
    /// Only requests with this method (`"PUT"`); any when `None`.
    pub method: Option<String>,
}

/// When an injected dropped connection closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Before the fake acts on the request.
    Before,
    /// After the fake acted (the secret is stored), instead of the answer.
    After,
}

/// An injected delay before the fake acts (it acts, then answers).
#[derive(Debug, Clone)]
struct Delay {
    wait: std::time::Duration,
    count: usize,
    method: Option<String>,
}

/// An injected dropped connection.
#[derive(Debug, Clone)]
struct Cutoff {
    cut: Cut,
    count: usize,
    method: Option<String>,
}

struct KeyPair {
    id: String,
    secret: crypto_box::SecretKey,
}

struct Stored {
    value: String,
    visibility: Option<String>,
    version: u64,
}

struct ScopeState {
    key: KeyPair,
    secrets: BTreeMap<String, Stored>,
    rotate_after_fetches: usize,
}

struct Inner {
    token: String,
    scopes: BTreeMap<Scope, ScopeState>,
    failures: VecDeque<Failure>,
    drops: VecDeque<Cutoff>,
    delays: VecDeque<Delay>,
    requests: Vec<RecordedRequest>,
    next_key_id: u64,
    clock: u64,
}

impl Inner {
    fn new_key(&mut self) -> KeyPair {
        self.next_key_id += 1;
        KeyPair {
            // GitHub's key IDs are long decimal strings.
            id: format!("{}", 568_250_167_242_549_000_u64 + self.next_key_id),
            secret: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
        }
    }

    fn add_scope(&mut self, scope: Scope) {
        if !self.scopes.contains_key(&scope) {
            let key = self.new_key();
            self.scopes.insert(
                scope,
                ScopeState {
                    key,
                    secrets: BTreeMap::new(),
                    rotate_after_fetches: 0,
                },
            );
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fake. Stops when dropped.
pub struct GithubFake {
    state: Shared,
    server: crate::github_fake::ThreadServer,
}

impl std::fmt::Debug for GithubFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubFake")
            .field("url", &self.server.url)
            .finish_non_exhaustive()
    }
}

impl GithubFake {
    /// Starts a fake that accepts [`TOKEN`], with no repositories yet.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_token(TOKEN)
    }

    /// Starts a fake that accepts `token`.
    #[must_use]
    pub fn start_with_token(token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            scopes: BTreeMap::new(),
            failures: VecDeque::new(),
            drops: VecDeque::new(),
            delays: VecDeque::new(),
            requests: Vec::new(),
            next_key_id: 0,
            clock: 0,
        }));
        let server = spawn("github-fake", app(state.clone()));
        Self { state, server }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (paths start at `/repos`, `/orgs`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Creates repository `owner/repo`.
    pub fn add_repository(&self, owner: &str, repo: &str) {
        lock(&self.state).add_scope(Scope::repository(owner, repo));
    }

    /// Creates environment `environment` of `owner/repo` (and the repository).
    pub fn add_environment(&self, owner: &str, repo: &str, environment: &str) {
        let mut inner = lock(&self.state);
        inner.add_scope(Scope::repository(owner, repo));
        inner.add_scope(Scope::environment(owner, repo, environment));
    }

    /// Creates organization `org`.
    pub fn add_organization(&self, org: &str) {
        lock(&self.state).add_scope(Scope::organization(org));
    }

    /// The decrypted value of secret `name`, if it was written.
    #[must_use]
    pub fn secret_value(&self, scope: &Scope, name: &str) -> Option<String> {
        let inner = lock(&self.state);
        let stored = inner.scopes.get(&scope.normalized())?.secrets.get(name)?;
        Some(stored.value.clone())
    }

    /// Stores secret `name` directly, as if a person had set it in GitHub's settings.
    ///
    /// # Panics
    ///
    /// If the scope does not exist.
    pub fn set_secret(&self, scope: &Scope, name: &str, value: &str) {
        let mut inner = lock(&self.state);
        let state = inner
            .scopes
            .get_mut(&scope.normalized())
            .unwrap_or_else(|| panic!("no such scope {scope:?}"));
        state.secrets.insert(
            name.to_owned(),
            Stored {
                value: value.to_owned(),
                visibility: None,
                version: 1,
            },
        );
    }

    /// The visibility an organization secret was written with.
    #[must_use]
    pub fn secret_visibility(&self, scope: &Scope, name: &str) -> Option<String> {
        let inner = lock(&self.state);
        let stored = inner.scopes.get(&scope.normalized())?.secrets.get(name)?;
        stored.visibility.clone()
    }

    /// How many times secret `name` was written (0 if never).
    #[must_use]
    pub fn write_count(&self, scope: &Scope, name: &str) -> u64 {
        let inner = lock(&self.state);
        inner
            .scopes
            .get(&scope.normalized())
            .and_then(|s| s.secrets.get(name))
            .map_or(0, |s| s.version)
    }

    /// The current public key ID of a scope.
    #[must_use]
    pub fn key_id(&self, scope: &Scope) -> Option<String> {
        let inner = lock(&self.state);
        inner
            .scopes
            .get(&scope.normalized())
            .map(|s| s.key.id.clone())
    }

    /// Replaces a scope's key pair now; values sealed under the old key are refused.
    ///
    /// # Panics
    ///
    /// If the scope does not exist.
    pub fn rotate_public_key(&self, scope: &Scope) {
        let mut inner = lock(&self.state);
        let key = inner.new_key();
        let state = inner
            .scopes
            .get_mut(&scope.normalized())
            .unwrap_or_else(|| panic!("no such scope {scope:?}"));
        state.key = key;
    }

    /// Rotates the scope's key right after each of the next `times` public-key fetches: the
    /// client gets a key that is already retired when it writes.
    ///
    /// # Panics
    ///
    /// If the scope does not exist.
    pub fn rotate_key_after_fetches(&self, scope: &Scope, times: usize) {
        let mut inner = lock(&self.state);
        let state = inner
            .scopes
            .get_mut(&scope.normalized())
            .unwrap_or_else(|| panic!("no such scope {scope:?}"));
        state.rotate_after_fetches = times;
    }

    /// The next `count` requests are answered `status` with a GitHub-shaped error body.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.fail_next_with(Failure {
            status,
            count,
            headers: Vec::new(),
            method: None,
        });
    }

    /// Queues a failure with extra headers.
    pub fn fail_next_with(&self, failure: Failure) {
        lock(&self.state).failures.push_back(failure);
    }

    /// The next `count` requests with `method` (any when `None`) lose their connection
    /// before or after the fake acts: the client sees the connection close, no answer.
    pub fn drop_next(&self, cut: Cut, count: usize, method: Option<&str>) {
        lock(&self.state).drops.push_back(Cutoff {
            cut,
            count,
            method: method.map(str::to_owned),
        });
    }

    /// The next `count` requests with `method` (any when `None`) wait `wait` before the
    /// fake acts on them, and then are answered as usual: a client whose timeout is shorter
    /// gives up though the fake did what was asked.
    pub fn delay_next(&self, wait: std::time::Duration, count: usize, method: Option<&str>) {
        lock(&self.state).delays.push_back(Delay {
            wait,
            count,
            method: method.map(str::to_owned),
        });
    }

    /// Drops every queued failure, delay and dropped connection (the outage is over).
    pub fn clear_failures(&self) {
        let mut inner = lock(&self.state);
        inner.failures.clear();
        inner.drops.clear();
        inner.delays.clear();
    }

    /// Every request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

fn app(state: Shared) -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/actions/secrets/public-key",
            get(|State(s): State<Shared>, Path((o, r)): Path<(String, String)>| async move {
                public_key(&s, &Scope::repository(&o, &r))
            }),
        )
        .route(
            "/repos/{owner}/{repo}/actions/secrets/{name}",
            get(
                |State(s): State<Shared>, Path((o, r, n)): Path<(String, String, String)>| async move {
                    metadata(&s, &Scope::repository(&o, &r), &n)
                },
            )
            .put(
                |State(s): State<Shared>,
                 Path((o, r, n)): Path<(String, String, String)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    put_secret(&s, &Scope::repository(&o, &r), &n, &headers, &body)
                },
            )
            .delete(
                |State(s): State<Shared>, Path((o, r, n)): Path<(String, String, String)>| async move {
                    delete_secret(&s, &Scope::repository(&o, &r), &n)
                },
            ),
        )
        .route(
            "/repos/{owner}/{repo}/environments/{environment}/secrets/public-key",
            get(
                |State(s): State<Shared>, Path((o, r, e)): Path<(String, String, String)>| async move {
                    public_key(&s, &Scope::environment(&o, &r, &e))
                },
            ),
        )
        .route(
            "/repos/{owner}/{repo}/environments/{environment}/secrets/{name}",
            get(
                |State(s): State<Shared>,
                 Path((o, r, e, n)): Path<(String, String, String, String)>| async move {
                    metadata(&s, &Scope::environment(&o, &r, &e), &n)
                },
            )
            .put(
                |State(s): State<Shared>,
                 Path((o, r, e, n)): Path<(String, String, String, String)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    put_secret(&s, &Scope::environment(&o, &r, &e), &n, &headers, &body)
                },
            )
            .delete(
                |State(s): State<Shared>,
                 Path((o, r, e, n)): Path<(String, String, String, String)>| async move {
                    delete_secret(&s, &Scope::environment(&o, &r, &e), &n)
                },
            ),
        )
        .route(
            "/orgs/{org}/actions/secrets/public-key",
            get(|State(s): State<Shared>, Path(o): Path<String>| async move {
                public_key(&s, &Scope::organization(&o))
            }),
        )
        .route(
            "/orgs/{org}/actions/secrets/{name}",
            get(
                |State(s): State<Shared>, Path((o, n)): Path<(String, String)>| async move {
                    metadata(&s, &Scope::organization(&o), &n)
                },
            )
            .put(
                |State(s): State<Shared>,
                 Path((o, n)): Path<(String, String)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    put_secret(&s, &Scope::organization(&o), &n, &headers, &body)
                },
            )
            .delete(
                |State(s): State<Shared>, Path((o, n)): Path<(String, String)>| async move {
                    delete_secret(&s, &Scope::organization(&o), &n)
                },
            ),
        )
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest/actions/secrets",
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Injected failures, authentication, `User-Agent` and API version; records every request.
async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let delay = take_delay(&state, &method);
    if let Some(wait) = delay {
        tokio::time::sleep(wait).await;
    }
    let cut = take_drop(&state, &method);
    if cut == Some(Cut::Before) {
        close_connection();
    }
    let response = match check(&state, &method, &headers) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    if cut == Some(Cut::After) {
        close_connection();
    }
    let mut inner = lock(&state);
    inner.requests.push(RecordedRequest {
        method,
        path,
        status: response.status().as_u16(),
        accept: header(&headers, "accept").map(str::to_owned),
        api_version: header(&headers, "x-github-api-version").map(str::to_owned),
    });
    response
}

/// The next queued delay for `method`, counted down.
fn take_delay(state: &Shared, method: &str) -> Option<std::time::Duration> {
    let mut inner = lock(state);
    let at = inner
        .delays
        .iter()
        .position(|d| d.method.as_deref().is_none_or(|m| m == method))?;
    let delay = &mut inner.delays[at];
    delay.count = delay.count.saturating_sub(1);
    let wait = delay.wait;
    if delay.count == 0 {
        inner.delays.remove(at);
    }
    Some(wait)
}

/// The next queued dropped connection for `method`, counted down.
fn take_drop(state: &Shared, method: &str) -> Option<Cut> {
    let mut inner = lock(state);
    let at = inner
        .drops
        .iter()
        .position(|d| d.method.as_deref().is_none_or(|m| m == method))?;
    let drop = &mut inner.drops[at];
    drop.count = drop.count.saturating_sub(1);
    let cut = drop.cut;
    if drop.count == 0 {
        inner.drops.remove(at);
    }
    Some(cut)
}

/// Close the connection without an answer: unwinding out of the request ends the connection's
/// task, and hyper closes the socket. `resume_unwind` skips the panic hook, so nothing is
/// printed; the runtime keeps serving other connections.
fn close_connection() -> ! {
    std::panic::resume_unwind(Box::new("dropped connection (injected)"))
}

fn check(state: &Shared, method: &str, headers: &HeaderMap) -> Option<Response> {
    let mut inner = lock(state);
    let matching = inner
        .failures
        .iter()
        .position(|f| f.method.as_deref().is_none_or(|m| m == method));
    if let Some(at) = matching {
        let failure = &mut inner.failures[at];
        failure.count = failure.count.saturating_sub(1);
        let failure = failure.clone();
        if failure.count == 0 {
            inner.failures.remove(at);
        }
        let status =
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(status, "injected failure");
        for (name, value) in &failure.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        return Some(response);
    }
    let presented = header(headers, "authorization").and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
            .or_else(|| a.strip_prefix("token "))
    });
    if presented != Some(inner.token.as_str()) {
        return Some(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    if header(headers, "user-agent").is_none_or(str::is_empty) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        ));
    }
    match header(headers, "x-github-api-version") {
        Some(v) if API_VERSIONS.contains(&v) => None,
        Some(v) => Some(error(
            StatusCode::BAD_REQUEST,
            &format!("Unsupported 'X-GitHub-Api-Version' header: {v}"),
        )),
        None => Some(error(
            StatusCode::BAD_REQUEST,
            "the fake requires an X-GitHub-Api-Version header",
        )),
    }
}

fn public_key(state: &Shared, scope: &Scope) -> Response {
    let mut inner = lock(state);
    let next = inner.new_key();
    let Some(s) = inner.scopes.get_mut(scope) else {
        return not_found();
    };
    let body = json!({
        "key_id": s.key.id,
        "key": BASE64.encode(s.key.secret.public_key().as_bytes()),
    });
    if s.rotate_after_fetches > 0 {
        s.rotate_after_fetches -= 1;
        s.key = next;
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn metadata(state: &Shared, scope: &Scope, name: &str) -> Response {
    let inner = lock(state);
    let Some(s) = inner.scopes.get(scope) else {
        return not_found();
    };
    let Some(stored) = s.secrets.get(name) else {
        return not_found();
    };
    let mut body = json!({
        "name": name,
        "created_at": "2024-01-10T14:59:22Z",
        "updated_at": "2024-01-10T14:59:22Z",
    });
    if let Some(v) = &stored.visibility {
        body["visibility"] = json!(v);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `DELETE …/secrets/{name}`: 204 without a body, 404 when there is no such secret.
fn delete_secret(state: &Shared, scope: &Scope, name: &str) -> Response {
    let mut inner = lock(state);
    let Some(s) = inner.scopes.get_mut(scope) else {
        return not_found();
    };
    if s.secrets.remove(name).is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

fn put_secret(
    state: &Shared,
    scope: &Scope,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let unprocessable = |m: &str| error(StatusCode::UNPROCESSABLE_ENTITY, m);
    let mut inner = lock(state);
    inner.clock += 1;
    let Some(s) = inner.scopes.get_mut(scope) else {
        return not_found();
    };
    if !header(headers, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the fake requires Content-Type: application/json",
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    if !valid_secret_name(name) {
        return unprocessable(
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_), must not start with a number or GITHUB_",
        );
    }
    let (Some(Value::String(encrypted)), Some(Value::String(key_id))) =
        (fields.get("encrypted_value"), fields.get("key_id"))
    else {
        return unprocessable(
            "Invalid request: `encrypted_value` and `key_id` are required strings",
        );
    };
    let visibility = if matches!(scope, Scope::Organization { .. }) {
        match fields.get("visibility") {
            Some(Value::String(v)) if matches!(v.as_str(), "all" | "private" | "selected") => {
                if fields.contains_key("selected_repository_ids") && v != "selected" {
                    return unprocessable(
                        "selected_repository_ids can only be set when visibility is `selected`",
                    );
                }
                Some(v.clone())
            }
            Some(_) => {
                return unprocessable(
                    "Invalid request: `visibility` must be one of all, private, selected",
                );
            }
            None => {
                return unprocessable(
                    "Invalid request: `visibility` is required for organization secrets",
                );
            }
        }
    } else {
        None
    };
    if *key_id != s.key.id {
        return unprocessable("Invalid request: key_id does not match the current public key");
    }
    let Ok(sealed) = BASE64.decode(encrypted) else {
        return unprocessable("Invalid request: encrypted_value is not valid base64");
    };
    let Ok(plain) = s.key.secret.unseal(&sealed) else {
        return unprocessable("Invalid request: encrypted_value does not open with the key");
    };
    let Ok(value) = String::from_utf8(plain) else {
        return unprocessable("the fake stores UTF-8 text only");
    };
    if value.len() > 48 * 1024 {
        return unprocessable("Secret value is too large (48 KB maximum)");
    }
    if let Some(stored) = s.secrets.get_mut(name) {
        stored.value = value;
        stored.visibility = visibility;
        stored.version += 1;
        StatusCode::NO_CONTENT.into_response()
    } else {
        s.secrets.insert(
            name.to_owned(),
            Stored {
                value,
                visibility,
                version: 1,
            },
        );
        (StatusCode::CREATED, axum::Json(json!({}))).into_response()
    }
}

/// A router served on `127.0.0.1:0` by its own thread and current-thread runtime, so that
/// both sync and async tests can use it. Dropping it stops the server and joins the thread.
pub(crate) struct ThreadServer {
    pub(crate) url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `router` on its own thread.
///
/// # Panics
///
/// If the listener, runtime or thread cannot be set up: in a test that is the failure to see.
pub(crate) fn spawn(name: &str, router: Router) -> ThreadServer {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })
        .expect("server thread");
    ThreadServer {
        url,
        stop: Some(stop),
        thread: Some(thread),
    }
}
