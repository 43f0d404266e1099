//! A test OIDC identity provider on `127.0.0.1:0` in its own thread, with its own ES256 key
//! ([`tsrotate_emulator::issuer::SigningKey`]: `ring` + `jsonwebtoken`), plus a fake of GitHub
//! Actions' ID-token endpoint that hands out tokens of this issuer.
//!
//! | Method and path | Behaviour |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | `{"issuer": <url>, "jwks_uri": <url>/jwks, …}` |
//! | `GET /jwks` | `{"keys": [<the ES256 public key>]}` |
//! | `GET /actions/token?audience=A` | GitHub Actions' ID-token request (`ACTIONS_ID_TOKEN_REQUEST_URL`): needs `Authorization: Bearer` [`ACTIONS_REQUEST_TOKEN`], answers `{"value": <jwt>}` with `sub` [`TestIssuer::set_actions_subject`], `aud` A (or the default audience), GitHub's `repository_owner`/`repository`/`ref` claims |
//!
//! Time is the wall clock plus an offset ([`TestIssuer::advance`]) so that tokens can follow an
//! emulator whose clock was moved. Identity tokens are bearer credentials: tests treat them as
//! canaries.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::oneshot;
pub use tsrotate_emulator::issuer::SigningKey;

/// The request token GitHub puts in `ACTIONS_ID_TOKEN_REQUEST_TOKEN`. A canary.
pub const ACTIONS_REQUEST_TOKEN: &str = "ghs_CANARYactionsREQUESTtoken0123456789";

/// The subject the Actions endpoint uses unless told otherwise.
pub const DEFAULT_ACTIONS_SUBJECT: &str = "repo:acme/infra:ref:refs/heads/main";

struct Inner {
    url: String,
    key: SigningKey,
    offset: AtomicI64,
    lifetime: AtomicI64,
    actions_subject: Mutex<String>,
    actions_requests: AtomicUsize,
}

impl Inner {
    fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + self.offset.load(Ordering::SeqCst)
    }
}

/// A running test issuer; stops when dropped.
pub struct TestIssuer {
    inner: Arc<Inner>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestIssuer {
    /// Starts an issuer with a fresh key named `test-key-1`.
    ///
    /// # Panics
    ///
    /// If the listener, runtime or thread cannot be set up.
    #[must_use]
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let inner = Arc::new(Inner {
            url,
            key: SigningKey::generate("test-key-1"),
            offset: AtomicI64::new(0),
            lifetime: AtomicI64::new(300),
            actions_subject: Mutex::new(DEFAULT_ACTIONS_SUBJECT.to_owned()),
            actions_requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/actions/token", get(actions_token))
            .with_state(Arc::clone(&inner));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-oidc-issuer".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .expect("thread");
        Self {
            inner,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The issuer URL (`iss`), e.g. `http://127.0.0.1:41234`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The URL to put in `ACTIONS_ID_TOKEN_REQUEST_URL` (it already has a query, as GitHub's
    /// does, so clients append `&audience=…`).
    #[must_use]
    pub fn actions_request_url(&self) -> String {
        format!("{}/actions/token?api-version=2.0", self.inner.url)
    }

    /// The signing key (to sign odd tokens, e.g. with an unknown `kid`).
    #[must_use]
    pub fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// The issuer's current time (Unix seconds).
    #[must_use]
    pub fn now(&self) -> i64 {
        self.inner.now()
    }

    /// Moves the issuer's time forward, e.g. by as much as the emulator's.
    pub fn advance(&self, seconds: i64) {
        self.inner.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    /// The lifetime of tokens from the Actions endpoint (default 300 seconds).
    pub fn set_actions_lifetime(&self, seconds: i64) {
        self.inner.lifetime.store(seconds, Ordering::SeqCst);
    }

    /// The `sub` of tokens from the Actions endpoint.
    pub fn set_actions_subject(&self, subject: &str) {
        subject.clone_into(
            &mut self
                .inner
                .actions_subject
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// How many tokens the Actions endpoint handed out.
    #[must_use]
    pub fn actions_requests(&self) -> usize {
        self.inner.actions_requests.load(Ordering::SeqCst)
    }

    /// A token for `sub` and `aud`, valid from now for `lifetime` seconds.
    #[must_use]
    pub fn token(&self, subject: &str, audience: &str, lifetime: i64) -> String {
        self.token_with(subject, audience, lifetime, &serde_json::Map::new())
    }

    /// Like [`Self::token`] with more claims (which may override the standard ones).
    #[must_use]
    pub fn token_with(
        &self,
        subject: &str,
        audience: &str,
        lifetime: i64,
        extra: &serde_json::Map<String, Value>,
    ) -> String {
        let claims = tsrotate_emulator::issuer::claims(
            self.url(),
            subject,
            audience,
            self.now(),
            lifetime,
            extra,
        );
        self.inner.key.sign(&claims)
    }
}

async fn discovery(State(inner): State<Arc<Inner>>) -> axum::Json<Value> {
    axum::Json(tsrotate_emulator::issuer::discovery_document(&inner.url))
}

async fn jwks(State(inner): State<Arc<Inner>>) -> axum::Json<Value> {
    axum::Json(inner.key.jwks())
}

#[derive(serde::Deserialize)]
struct ActionsQuery {
    audience: Option<String>,
}

async fn actions_token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<ActionsQuery>,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {ACTIONS_REQUEST_TOKEN}"));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    inner.actions_requests.fetch_add(1, Ordering::SeqCst);
    let subject = inner
        .actions_subject
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let audience = query
        .audience
        .unwrap_or_else(|| "https://github.com/acme".to_owned());
    let mut extra = serde_json::Map::new();
    extra.insert("repository_owner".into(), json!("acme"));
    extra.insert("repository".into(), json!("acme/infra"));
    extra.insert("ref".into(), json!("refs/heads/main"));
    let claims = tsrotate_emulator::issuer::claims(
        &inner.url,
        &subject,
        &audience,
        inner.now(),
        inner.lifetime.load(Ordering::SeqCst),
        &extra,
    );
    axum::Json(json!({ "count": 1, "value": inner.key.sign(&claims) })).into_response()
}
