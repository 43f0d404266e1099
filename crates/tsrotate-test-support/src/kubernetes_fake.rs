//! A strict fake of the Kubernetes API server for core `v1` Secrets, on `127.0.0.1:0` in its
//! own thread.
//!
//! Written from the Kubernetes API reference
//! (<https://kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/secret-v1/>
//! and the API concepts page on `resourceVersion`), not from tsrotate's client.
//!
//! # Routes
//!
//! | Method and path | Behaviour |
//! |---|---|
//! | `GET /api/v1/namespaces/{ns}/secrets/{name}` | 200 the Secret (`kind: Secret`, base64 `data`, `metadata.resourceVersion`); 404 `Status` |
//! | `POST /api/v1/namespaces/{ns}/secrets` | 201 the created Secret; 409 `AlreadyExists`; 404 for a namespace that does not exist |
//! | `PUT /api/v1/namespaces/{ns}/secrets/{name}` | 200 the replaced Secret; 409 `Conflict` on a stale `resourceVersion`; 404 if absent |
//! | anything else | 404 `Status` (`the server could not find the requested resource`) |
//!
//! Every error is a `Status` object: `{"kind":"Status","apiVersion":"v1","metadata":{},
//! "status":"Failure","message","reason","details","code"}`.
//!
//! # What it enforces
//!
//! - `Authorization: Bearer <token>` with the configured token: else 401 `Unauthorized`.
//! - Namespaces marked with [`KubernetesFake::forbid_namespace`]: 403 `Forbidden`, with the
//!   message the RBAC authorizer writes (user, verb, resource, namespace).
//! - `resourceVersion` is one counter for the whole store, as etcd's revision is, and moves on
//!   every write that changes something; a `PUT` that changes nothing keeps it, as the real
//!   API server does.
//! - `PUT` with a `metadata.resourceVersion` other than the current one: 409 `Conflict`.
//!   Without one, the update is unconditional (Secrets allow that upstream too).
//! - `POST` of an existing name: 409 `AlreadyExists`; with `metadata.resourceVersion` set: 400;
//!   into a namespace that does not exist: 404.
//! - Bodies: `Content-Type: application/json` (else 415; upstream also takes YAML and
//!   protobuf), a JSON object (else 400), `kind`/`apiVersion` if given `Secret`/`v1` (else
//!   400), name and namespace matching the URL (else 400), a valid DNS-1123 subdomain as name
//!   (else 422 `Invalid`), `data` values valid base64 (else 400) under valid keys (else 422),
//!   `stringData` merged into `data`, `type` defaulted to `Opaque` and immutable afterwards,
//!   `immutable: true` Secrets refused any data change (422).
//!
//! # What it does not
//!
//! - Other resources, `PATCH`, `DELETE`, list and watch, `generateName`, server-side apply,
//!   field managers, dry runs, admission, size limits, finalizers, and type-specific checks
//!   (e.g. `kubernetes.io/tls` needing `tls.crt`).
//! - TLS and client certificates: it speaks plain http on loopback; certificate handling is
//!   tested in the client with its own unit tests.
//! - RBAC beyond "this token may or may not touch this namespace".

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::github_fake::{ThreadServer, spawn};

/// The bearer token the fake accepts. A canary: it must never appear in anything tsrotate
/// shows.
pub const TOKEN: &str = "CANARYk8sFAKEtoken.eyJhbGciOiJSUzI1NiJ9.0123456789";

/// The service account the 403 messages name.
pub const USER: &str = "system:serviceaccount:tsrotate:rotator";

/// A request as the fake saw it: no bodies, no credentials.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, `POST`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

struct Inner {
    token: String,
    namespaces: BTreeSet<String>,
    forbidden: BTreeSet<String>,
    secrets: BTreeMap<(String, String), Value>,
    revision: u64,
    failures: VecDeque<(u16, usize)>,
    requests: Vec<RecordedRequest>,
    /// A change to make right after the next successful `GET` of a Secret.
    after_get: Option<(String, String, String, String)>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fake API server. Stops when dropped.
pub struct KubernetesFake {
    state: Shared,
    server: ThreadServer,
}

impl std::fmt::Debug for KubernetesFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesFake")
            .field("url", &self.server.url)
            .finish_non_exhaustive()
    }
}

impl KubernetesFake {
    /// Starts a fake accepting [`TOKEN`], with namespace `default`.
    #[must_use]
    pub fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: TOKEN.to_owned(),
            namespaces: BTreeSet::from(["default".to_owned()]),
            forbidden: BTreeSet::new(),
            secrets: BTreeMap::new(),
            revision: 1000,
            failures: VecDeque::new(),
            requests: Vec::new(),
            after_get: None,
        }));
        let server = spawn("kubernetes-fake", app(state.clone()));
        Self { state, server }
    }

    /// The server URL, e.g. `http://127.0.0.1:41234`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Creates a namespace.
    pub fn add_namespace(&self, namespace: &str) {
        lock(&self.state).namespaces.insert(namespace.to_owned());
    }

    /// Makes every request into `namespace` answer 403 (the namespace exists).
    pub fn forbid_namespace(&self, namespace: &str) {
        let mut inner = lock(&self.state);
        inner.namespaces.insert(namespace.to_owned());
        inner.forbidden.insert(namespace.to_owned());
    }

    /// The Secret object as stored.
    #[must_use]
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every key of the Secret, decoded (lossily, as UTF-8).
    #[must_use]
    pub fn secret_data(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let object = self.secret(namespace, name)?;
        let data = object
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Some(
            data.into_iter()
                .map(|(k, v)| {
                    let bytes = BASE64
                        .decode(v.as_str().unwrap_or_default())
                        .unwrap_or_default();
                    (k, String::from_utf8_lossy(&bytes).into_owned())
                })
                .collect(),
        )
    }

    /// One key of the Secret, decoded.
    #[must_use]
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        self.secret_data(namespace, name)?.remove(key)
    }

    /// The Secret's `metadata.resourceVersion`.
    #[must_use]
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        self.secret(namespace, name)?
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Sets `key` of a Secret behind the client's back, creating the Secret (and namespace)
    /// if needed; the resourceVersion moves as for any write.
    pub fn set_key(&self, namespace: &str, name: &str, key: &str, value: &str) {
        set_key(&mut lock(&self.state), namespace, name, key, value);
    }

    /// Sets `key` of Secret `namespace/name` right after the next successful `GET` of a
    /// Secret has been answered: another writer slipping in between a client's read and its
    /// write.
    pub fn set_key_after_next_get(&self, namespace: &str, name: &str, key: &str, value: &str) {
        lock(&self.state).after_get = Some((
            namespace.to_owned(),
            name.to_owned(),
            key.to_owned(),
            value.to_owned(),
        ));
    }

    /// Deletes a Secret behind the client's back.
    pub fn delete_secret(&self, namespace: &str, name: &str) {
        lock(&self.state)
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// The next `count` requests are answered `status` with a `Status` body.
    pub fn fail_next(&self, count: usize, status: u16) {
        lock(&self.state).failures.push_back((status, count));
    }

    /// Every request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// A kubeconfig whose current context (`fake`) points at this server with `token`.
    #[must_use]
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: rotator\n    namespace: default\nusers:\n- name: rotator\n  user:\n    token: {token}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] with [`TOKEN`] to `dir/kubeconfig` and returns its path.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    #[must_use]
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let mut file = std::fs::File::create(&path).expect("create kubeconfig");
        file.write_all(self.kubeconfig_yaml(TOKEN).as_bytes())
            .expect("write kubeconfig");
        path
    }
}

fn set_key(inner: &mut Inner, namespace: &str, name: &str, key: &str, value: &str) {
    inner.namespaces.insert(namespace.to_owned());
    inner.revision += 1;
    let revision = inner.revision.to_string();
    let uid = format!("00000000-0000-4000-8000-{:012}", inner.revision);
    let object = inner
        .secrets
        .entry((namespace.to_owned(), name.to_owned()))
        .or_insert_with(|| {
            json!({
                "kind": "Secret",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": uid,
                    "creationTimestamp": "2025-01-01T00:00:00Z",
                    "labels": { "app.kubernetes.io/managed-by": "someone-else" },
                },
                "type": "Opaque",
                "data": {},
            })
        });
    object["data"][key] = Value::String(BASE64.encode(value));
    object["metadata"]["resourceVersion"] = Value::String(revision);
}

fn app(state: Shared) -> Router {
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(
                |State(s): State<Shared>, UrlPath((ns, name)): UrlPath<(String, String)>| async move {
                    get_secret(&s, &ns, &name)
                },
            )
            .put(
                |State(s): State<Shared>,
                 UrlPath((ns, name)): UrlPath<(String, String)>,
                 headers: HeaderMap,
                 body: Bytes| async move { write(&s, &ns, Some(&name), &headers, &body) },
            ),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            post(
                |State(s): State<Shared>,
                 UrlPath(ns): UrlPath<String>,
                 headers: HeaderMap,
                 body: Bytes| async move { write(&s, &ns, None, &headers, &body) },
            ),
        )
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// A `Status` object.
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, axum::Json(body)).into_response()
}

fn secret_details(name: &str) -> Value {
    json!({ "name": name, "kind": "secrets" })
}

/// Injected failures, authentication and per-namespace authorization; records requests.
async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let refused = check(&state, &method, &path, request.headers());
    let response = match refused {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    lock(&state).requests.push(RecordedRequest {
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

fn check(state: &Shared, method: &str, path: &str, headers: &HeaderMap) -> Option<Response> {
    let mut inner = lock(state);
    if let Some((code, count)) = inner.failures.front_mut() {
        *count = count.saturating_sub(1);
        let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if *count == 0 {
            inner.failures.pop_front();
        }
        let reason = match code.as_u16() {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            _ => "Unknown",
        };
        return Some(status(code, reason, "injected failure", None));
    }
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "));
    if presented != Some(inner.token.as_str()) {
        return Some(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    }
    let mut parts = path.trim_start_matches('/').split('/');
    if let (Some("api"), Some("v1"), Some("namespaces"), Some(ns)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
        && inner.forbidden.contains(ns)
    {
        let name = parts.nth(1).unwrap_or("");
        let verb = match method {
            "GET" => "get",
            "PUT" => "update",
            "POST" => "create",
            _ => "unknown",
        };
        return Some(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "secrets \"{name}\" is forbidden: User \"{USER}\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
            ),
            Some(secret_details(name)),
        ));
    }
    None
}

fn get_secret(state: &Shared, ns: &str, name: &str) -> Response {
    let mut inner = lock(state);
    match inner
        .secrets
        .get(&(ns.to_owned(), name.to_owned()))
        .cloned()
    {
        Some(object) => {
            if let Some((ns, name, key, value)) = inner.after_get.take() {
                set_key(&mut inner, &ns, &name, &key, &value);
            }
            (StatusCode::OK, axum::Json(object)).into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            Some(secret_details(name)),
        ),
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_data_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && !s.starts_with("..")
}

/// `POST` (`url_name` is `None`) or `PUT`.
fn write(
    state: &Shared,
    ns: &str,
    url_name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Parsed {
        name,
        expected_version,
        object,
    } = match parse(ns, url_name, headers, body) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    if url_name.is_some() {
        replace(state, ns, &name, expected_version.as_deref(), object)
    } else {
        create(state, ns, &name, expected_version.as_deref(), object)
    }
}

fn bad(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// A write body that passed the checks.
struct Parsed {
    name: String,
    /// The `metadata.resourceVersion` it carries.
    expected_version: Option<String>,
    /// The object, with `data` normalized.
    object: Map<String, Value>,
}

/// The checks every write body gets.
#[allow(
    clippy::result_large_err,
    reason = "the error is the response to send; this is a test fake"
)]
fn parse(
    ns: &str,
    url_name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, Response> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(|c| c.starts_with("application/json")) {
        return Err(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {content_type:?})"
            ),
            None,
        ));
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad(
            "the body of the request could not be decoded as a JSON object",
        ));
    };
    if object.get("kind").is_some_and(|k| k != "Secret")
        || object.get("apiVersion").is_some_and(|v| v != "v1")
    {
        return Err(bad("the object is not a v1 Secret"));
    }
    let Some(Value::Object(metadata)) = object.get_mut("metadata") else {
        return Err(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "Secret \"\" is invalid: metadata.name: Required value: name or generateName is required",
            None,
        ));
    };
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(url_name) = url_name
        && name != url_name
    {
        return Err(bad(&format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(n) if n != ns => {
            return Err(bad(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        _ => {}
    }
    metadata.insert("namespace".to_owned(), Value::String(ns.to_owned()));
    if !is_dns_subdomain(&name) {
        return Err(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Secret \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
            Some(secret_details(&name)),
        ));
    }
    let expected_version = metadata
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);

    let data = normalize_data(&mut object, &name)?;
    object.insert("data".to_owned(), Value::Object(data));
    object.insert("kind".to_owned(), json!("Secret"));
    object.insert("apiVersion".to_owned(), json!("v1"));
    if !object.get("type").is_some_and(Value::is_string) {
        object.insert("type".to_owned(), json!("Opaque"));
    }

    Ok(Parsed {
        name,
        expected_version,
        object,
    })
}

/// `data`: base64 values under valid keys; `stringData` merged in and dropped.
#[allow(
    clippy::result_large_err,
    reason = "the error is the response to send; this is a test fake"
)]
fn normalize_data(
    object: &mut Map<String, Value>,
    name: &str,
) -> Result<Map<String, Value>, Response> {
    let mut data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(bad("data must be an object")),
    };
    for (key, value) in &data {
        let Some(text) = value.as_str() else {
            return Err(bad(&format!("data[{key}] must be a base64 string")));
        };
        if BASE64.decode(text).is_err() {
            return Err(bad(&format!("illegal base64 data in data[{key}]")));
        }
    }
    match object.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(strings)) => {
            for (key, value) in strings {
                let Some(text) = value.as_str() else {
                    return Err(bad(&format!("stringData[{key}] must be a string")));
                };
                data.insert(key, Value::String(BASE64.encode(text)));
            }
        }
        Some(_) => return Err(bad("stringData must be an object")),
    }
    if let Some(key) = data.keys().find(|k| !is_data_key(k)) {
        return Err(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Secret \"{name}\" is invalid: data[{key}]: Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
            ),
            Some(secret_details(name)),
        ));
    }
    Ok(data)
}

fn create(
    state: &Shared,
    ns: &str,
    name: &str,
    expected_version: Option<&str>,
    mut object: Map<String, Value>,
) -> Response {
    if expected_version.is_some() {
        return bad("resourceVersion should not be set on objects to be created");
    }
    let mut inner = lock(state);
    let key = (ns.to_owned(), name.to_owned());
    if !inner.namespaces.contains(ns) {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
            Some(json!({ "name": ns, "kind": "namespaces" })),
        );
    }
    if inner.secrets.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
            Some(secret_details(name)),
        );
    }
    inner.revision += 1;
    let revision = inner.revision;
    let metadata = object.get_mut("metadata").and_then(Value::as_object_mut);
    if let Some(metadata) = metadata {
        metadata.insert("resourceVersion".to_owned(), json!(revision.to_string()));
        metadata.insert(
            "uid".to_owned(),
            json!(format!("00000000-0000-4000-8000-{revision:012}")),
        );
        metadata.insert(
            "creationTimestamp".to_owned(),
            json!("2025-01-01T00:00:00Z"),
        );
    }
    let object = Value::Object(object);
    inner.secrets.insert(key, object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

fn replace(
    state: &Shared,
    ns: &str,
    name: &str,
    expected_version: Option<&str>,
    object: Map<String, Value>,
) -> Response {
    let mut inner = lock(state);
    let key = (ns.to_owned(), name.to_owned());
    let Some(current) = inner.secrets.get(&key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            Some(secret_details(name)),
        );
    };
    let current_version = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if expected_version.is_some_and(|v| v != current_version) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(secret_details(name)),
        );
    }
    if current.get("type") != object.get("type") {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("Secret \"{name}\" is invalid: type: Invalid value: field is immutable"),
            Some(secret_details(name)),
        );
    }
    if current.get("immutable") == Some(&json!(true))
        && (current.get("data") != object.get("data")
            || object.get("immutable") != Some(&json!(true)))
    {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Secret \"{name}\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
            ),
            Some(secret_details(name)),
        );
    }
    // Server-managed fields come from the stored object.
    let mut object = Value::Object(object);
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        object["metadata"][field] = current["metadata"][field].clone();
    }
    if object == current {
        // A no-op update keeps the resourceVersion.
        return (StatusCode::OK, axum::Json(current)).into_response();
    }
    inner.revision += 1;
    object["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
    inner.secrets.insert(key, object.clone());
    (StatusCode::OK, axum::Json(object)).into_response()
}
