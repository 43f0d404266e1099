//! One key of a Kubernetes Secret, over the Kubernetes REST API (core `v1`).
//!
//! | Operation | Request | Notes |
//! |---|---|---|
//! | read | `GET /api/v1/namespaces/{ns}/secrets/{name}` | `data[key]` is base64; `metadata.resourceVersion` is the [`Version`] |
//! | write, [`Expect::Version`] | `GET` the object, then `PUT` it whole with `data[key]` replaced | `metadata.resourceVersion` stays the expected one, so the API server refuses (409) a Secret changed since |
//! | write, [`Expect::Absent`] | `POST /api/v1/namespaces/{ns}/secrets` | type `Opaque`; 409 `AlreadyExists` if someone created it first |
//! | write, [`Expect::Unchecked`] | `GET`, then `PUT` at the version just read, or `POST` when there is no Secret | still never overwrites a change made between the two calls |
//!
//! Why `PUT` of the whole object and not a patch: a merge patch cannot carry a precondition
//! on `resourceVersion` that the API server checks in the same step, and optimistic
//! concurrency is the whole point (a controller or a person may rotate the same Secret).
//! Every other key, label, annotation and field of the object is sent back as it was read.
//!
//! Reading: no Secret is `Snapshot { value: None, version: None }`; a Secret without the key
//! is `Snapshot { value: None, version: Some(resourceVersion) }`, and writing against that
//! version adds the key.
//!
//! Errors: 401 and 403 are [`ErrorKind::Denied`] with the API server's `Status.message` (which
//! names the missing verb and resource), 409 and a 404 on `PUT` (deleted since read) are
//! [`ErrorKind::Conflict`], a 404 on `POST` (no such namespace) is [`ErrorKind::Config`], 429,
//! 5xx and transport failures are [`ErrorKind::Unavailable`], anything else is
//! [`ErrorKind::Other`].
//!
//! Connection settings come from a kubeconfig ([`Cluster::from_kubeconfig`]) or from a pod's
//! service account ([`Cluster::in_cluster`]). Supported authentication: a bearer token
//! (`token`, `tokenFile`) and client certificates. Credential plugins (`exec`),
//! `auth-provider`, basic auth, impersonation and proxies are refused with a
//! [`ErrorKind::Config`] that names them, rather than silently connecting as someone else or
//! around the proxy.
//!
//! # Security
//!
//! - The new value is exposed in one place (`SecretSink::encode`); it travels base64 in a
//!   request body that is never logged or echoed in an error.
//! - A `GET` answer holds every key of the Secret, other credentials included. It is kept
//!   only as long as the write needs it, never logged and never put in an error; serde's
//!   buffers are not zeroed.
//! - The bearer token is sent only to the cluster's server, over TLS verified against the
//!   kubeconfig's CA (only that CA when one is given, as kubectl does), and redirects are never
//!   followed. Plain http is refused except to a loopback address (tests, `kubectl proxy`).
//!   `insecure-skip-tls-verify: true` in a kubeconfig is honoured, as kubectl honours it, and
//!   then anyone on the path can read the token and the value.
//! - `Debug` of [`Cluster`] and [`SecretSink`] shows no token and no key.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::http::{client_builder, error_chain, message_field, parse_endpoint, scrub};
use super::{BoxFuture, Error, ErrorKind, Expect, Sink, Snapshot, Version};
use crate::key::Secret;

/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach and authenticate to a cluster's API server.
#[derive(Clone)]
pub struct Cluster {
    /// The API server, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// A bearer token.
    pub token: Option<Secret>,
    /// PEM certificates to trust instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM client certificate (with `client_key`).
    pub client_cert: Option<Vec<u8>>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<Secret>,
    /// Accept any server certificate (kubeconfig `insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            server,
            token,
            ca_pem,
            client_cert,
            client_key,
            insecure_skip_tls_verify,
        } = self;
        f.debug_struct("Cluster")
            .field("server", server)
            .field("token", &token.as_ref().map(|_| "[redacted]"))
            .field(
                "ca_pem",
                &ca_pem.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .field(
                "client_cert",
                &client_cert.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .field("client_key", &client_key.as_ref().map(|_| "[redacted]"))
            .field("insecure_skip_tls_verify", insecure_skip_tls_verify)
            .finish()
    }
}

/// The parts of a kubeconfig we read. Unknown fields are ignored (kubeconfigs carry
/// `preferences`, `extensions` and more); the ones that change how to connect are listed so
/// that they can be refused.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    contexts: Option<Vec<NamedContext>>,
    clusters: Option<Vec<NamedCluster>>,
    users: Option<Vec<NamedUser>>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextEntry,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterEntry,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClusterEntry {
    server: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: UserEntry,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<PathBuf>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<PathBuf>,
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
    username: Option<String>,
    password: Option<serde_yaml_ng::Value>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
    #[serde(rename = "as-groups")]
    impersonate_groups: Option<serde_yaml_ng::Value>,
    #[serde(rename = "as-uid")]
    impersonate_uid: Option<String>,
}

impl Cluster {
    /// Read `context` (or the `current-context`) of the kubeconfig at `path`.
    ///
    /// Relative file paths inside it are relative to the kubeconfig's folder, as for kubectl.
    /// When both `token` and `tokenFile` are set, the file wins (kubectl re-reads it and
    /// prefers what it read).
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Cluster, Error> {
        let loader = Loader {
            sink: format!("kubeconfig `{}`", path.display()),
            base: path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .to_path_buf(),
        };
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                // The loader's name says which file; the error says why.
                .map_err(|e| loader.fail(format!("could not read the file: {e}")))?,
        );
        let config: Kubeconfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| loader.fail(format!("not a valid kubeconfig: {e}")))?;

        let context_name = match context {
            Some(name) => name.to_owned(),
            None => config
                .current_context
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    loader
                        .fail("no `current-context` is set".to_owned())
                        .with_hint("name a context in the sink's configuration")
                })?,
        };
        let ctx = config
            .contexts
            .iter()
            .flatten()
            .find(|c| c.name == context_name)
            .ok_or_else(|| loader.fail(format!("no context named `{context_name}`")))?;
        let cluster = config
            .clusters
            .iter()
            .flatten()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                loader.fail(format!(
                    "context `{context_name}` names cluster `{}`, which is not defined",
                    ctx.context.cluster
                ))
            })?;
        let mut out = loader.cluster(cluster)?;
        match &ctx.context.user {
            Some(name) if !name.is_empty() => {
                let user = config
                    .users
                    .iter()
                    .flatten()
                    .find(|u| &u.name == name)
                    .ok_or_else(|| {
                        loader.fail(format!(
                            "context `{context_name}` names user `{name}`, which is not defined"
                        ))
                    })?;
                loader.user(user, &mut out)?;
            }
            _ => {}
        }
        Ok(out)
    }

    /// The pod's own service account: `https://{host}:{port}` (from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, which the caller reads) with
    /// the token and CA mounted in [`SERVICE_ACCOUNT_DIR`].
    ///
    /// The token is read once: kubelet refreshes the file, and a rotation takes minutes, far
    /// less than a projected token's lifetime.
    pub fn in_cluster(host: &str, port: &str) -> Result<Cluster, Error> {
        Self::in_cluster_at(Path::new(SERVICE_ACCOUNT_DIR), host, port)
    }

    fn in_cluster_at(dir: &Path, host: &str, port: &str) -> Result<Cluster, Error> {
        let fail = |message: String| Error::config("kubernetes in-cluster configuration", message);
        if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(format!("invalid service address `{host}:{port}`"))
                .with_hint("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are set in pods"));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let token = Zeroizing::new(std::fs::read_to_string(dir.join("token")).map_err(|e| {
            fail(format!(
                "could not read the service account token `{}`: {e}",
                dir.join("token").display()
            ))
        })?);
        let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| {
            fail(format!(
                "could not read the service account CA `{}`: {e}",
                dir.join("ca.crt").display()
            ))
        })?;
        Ok(Cluster {
            server: format!("https://{host}:{port}"),
            token: Some(Secret::new(token.trim().to_owned())),
            ca_pem: Some(ca),
            client_cert: None,
            client_key: None,
            insecure_skip_tls_verify: false,
        })
    }

    /// An HTTP client for this cluster, and its server URL.
    fn client(&self) -> Result<(Url, reqwest::Client), String> {
        let server = parse_endpoint(&self.server, "the Kubernetes API server address")?;
        let mut builder = client_builder();
        if let Some(ca) = &self.ca_pem {
            if self.insecure_skip_tls_verify {
                // kubectl refuses this combination too: it is almost always a mistake.
                return Err(
                    "both a certificate authority and `insecure-skip-tls-verify` are set; keep one"
                        .to_owned(),
                );
            }
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| format!("the certificate authority is not valid PEM: {e}"))?;
            if certs.is_empty() {
                return Err("the certificate authority holds no certificate".to_owned());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
            builder = builder.tls_built_in_root_certs(false);
        }
        if self.insecure_skip_tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = Zeroizing::new(cert.clone());
                pem.push(b'\n');
                pem.extend_from_slice(key.expose_secret().as_bytes());
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("the client certificate or key is not usable: {e}"))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(
                    "a client certificate needs its key, and a key its certificate".to_owned(),
                );
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("could not build the HTTP client: {}", error_chain(&e)))?;
        Ok((server, http))
    }
}

/// Reads the parts of a kubeconfig, with file paths relative to its folder.
struct Loader {
    sink: String,
    base: PathBuf,
}

impl Loader {
    fn fail(&self, message: String) -> Error {
        Error::config(&self.sink, message)
    }

    fn read_file(&self, what: &str, path: &Path) -> Result<Vec<u8>, Error> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        std::fs::read(&path).map_err(|e| {
            self.fail(format!(
                "could not read the {what} `{}`: {e}",
                path.display()
            ))
        })
    }

    fn decode(&self, what: &str, data: &str) -> Result<Vec<u8>, Error> {
        BASE64
            .decode(data.trim())
            .map_err(|_| self.fail(format!("`{what}` is not valid base64")))
    }

    /// Inline data wins over a file, as in kubectl.
    fn data_or_file(
        &self,
        what: &str,
        data: Option<&String>,
        file: Option<&PathBuf>,
    ) -> Result<Option<Vec<u8>>, Error> {
        match (data, file) {
            (Some(data), _) => self.decode(what, data).map(Some),
            (None, Some(file)) => self.read_file(what, file).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn cluster(&self, named: &NamedCluster) -> Result<Cluster, Error> {
        let entry = &named.cluster;
        let name = &named.name;
        let server = entry
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.fail(format!("cluster `{name}` has no `server`")))?;
        for (set, field) in [
            (entry.proxy_url.is_some(), "proxy-url"),
            (entry.tls_server_name.is_some(), "tls-server-name"),
        ] {
            if set {
                return Err(self.fail(format!(
                    "cluster `{name}` uses `{field}`, which tsrotate does not support"
                )));
            }
        }
        Ok(Cluster {
            server,
            token: None,
            ca_pem: self.data_or_file(
                "certificate-authority-data",
                entry.certificate_authority_data.as_ref(),
                entry.certificate_authority.as_ref(),
            )?,
            client_cert: None,
            client_key: None,
            insecure_skip_tls_verify: entry.insecure_skip_tls_verify.unwrap_or(false),
        })
    }

    fn user(&self, named: &NamedUser, out: &mut Cluster) -> Result<(), Error> {
        let name = &named.name;
        let u = &named.user;
        let unsupported = |what: &str, hint: &str| {
            self.fail(format!(
                "user `{name}` authenticates with {what}, which tsrotate does not support"
            ))
            .with_hint(hint)
        };
        let token_hint = "use a context whose user has a `token`, a `tokenFile` or client certificates (for example a service account token from `kubectl create token`)";
        if u.exec.is_some() {
            return Err(unsupported("an `exec` credential plugin", token_hint));
        }
        if u.auth_provider.is_some() {
            return Err(unsupported("an `auth-provider`", token_hint));
        }
        if u.username.is_some() || u.password.is_some() {
            return Err(unsupported(
                "basic auth (`username`/`password`)",
                token_hint,
            ));
        }
        if u.impersonate.is_some() || u.impersonate_groups.is_some() || u.impersonate_uid.is_some()
        {
            return Err(unsupported(
                "impersonation (`as`, `as-groups`, `as-uid`)",
                "use a context that authenticates as the identity that should write the Secret",
            ));
        }
        let text = |bytes: Zeroizing<Vec<u8>>, what: &str| {
            std::str::from_utf8(&bytes)
                .map(|s| Secret::new(s.to_owned()))
                .map_err(|_| self.fail(format!("the {what} is not text")))
        };
        out.token = match (&u.token_file, &u.token) {
            (Some(file), _) => {
                let token = text(
                    Zeroizing::new(self.read_file("token file", file)?),
                    "token file",
                )?;
                Some(Secret::new(token.expose_secret().trim().to_owned()))
            }
            (None, Some(token)) => Some(Secret::new(token.trim().to_owned())),
            (None, None) => None,
        }
        .filter(|t| !t.expose_secret().is_empty());
        out.client_cert = self.data_or_file(
            "client-certificate-data",
            u.client_certificate_data.as_ref(),
            u.client_certificate.as_ref(),
        )?;
        out.client_key = self
            .data_or_file(
                "client-key-data",
                u.client_key_data.as_ref(),
                u.client_key.as_ref(),
            )?
            .map(|key| text(Zeroizing::new(key), "client key"))
            .transpose()?;
        Ok(())
    }
}

/// A key of a Kubernetes Secret.
pub struct SecretSink {
    server: Url,
    token: Option<Secret>,
    namespace: String,
    name: String,
    key: String,
    http: reqwest::Client,
    /// How long one request may take.
    timeout: std::time::Duration,
}

impl fmt::Debug for SecretSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSink")
            .field("server", &self.server.as_str())
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A DNS-1123 label: what a namespace name must be.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what a Secret's name must be.
fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A key of `data`: letters, digits, `-`, `_`, `.`; not `.`, `..` or starting with `..`.
fn is_data_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && !s.starts_with("..")
}

impl SecretSink {
    /// Key `key` of Secret `name` in `namespace`. Checks the names and the cluster settings
    /// and builds the HTTP client; nothing is sent.
    pub fn new(cluster: Cluster, namespace: &str, name: &str, key: &str) -> Result<Self, Error> {
        let fail = |message: String| {
            Error::config(
                format!("kubernetes-secret {namespace}/{name}#{key}"),
                message,
            )
        };
        if !is_dns_label(namespace) {
            return Err(fail(format!(
                "invalid namespace `{}`: lowercase letters, digits and `-`, at most 63",
                namespace.escape_debug()
            )));
        }
        if !is_dns_subdomain(name) {
            return Err(fail(format!(
                "invalid Secret name `{}`: lowercase letters, digits, `-` and `.`, at most 253",
                name.escape_debug()
            )));
        }
        if !is_data_key(key) {
            return Err(fail(format!(
                "invalid key `{}`: letters, digits, `-`, `_` and `.`, not starting with `..`",
                key.escape_debug()
            )));
        }
        let (server, http) = cluster.client().map_err(fail)?;
        Ok(Self {
            server,
            token: cluster.token,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
            http,
            timeout: crate::http::REQUEST_TIMEOUT,
        })
    }

    /// Let each request to the service take at most `timeout` (instead of
    /// the default of 30 seconds): a write that gets no answer in time fails as the
    /// service being unavailable, and the rotation stops before revocation.
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `…/namespaces/{ns}/secrets`, plus `/{name}` when `object`.
    fn url(&self, object: bool) -> Url {
        let mut url = self.server.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(["api", "v1", "namespaces", &self.namespace, "secrets"]);
            if object {
                segments.push(&self.name);
            }
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::new(self.describe(), kind, message)
    }

    fn conflict(&self) -> Error {
        Error::conflict(self.describe())
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        request.timeout(self.timeout).send().await.map_err(|e| {
            self.error(
                ErrorKind::Unavailable,
                format!(
                    "could not reach the API server to {what}: {}",
                    error_chain(&e)
                ),
            )
        })
    }

    /// The Secret as the API server has it, or `None`.
    async fn get(&self) -> Result<Option<Value>, Error> {
        let response = self
            .send(self.request(Method::GET, self.url(true)), "read the Secret")
            .await?;
        match response.status() {
            StatusCode::OK => {
                let object: Value = response.json().await.map_err(|e| {
                    self.error(
                        ErrorKind::Unavailable,
                        format!("could not read the Secret: {}", error_chain(&e)),
                    )
                })?;
                if object.get("kind").and_then(Value::as_str) != Some("Secret") {
                    return Err(self.error(
                        ErrorKind::Other,
                        "the API server answered something other than a Secret".to_owned(),
                    ));
                }
                Ok(Some(object))
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(self.classify(status, response, None, Op::Read).await),
        }
    }

    fn resource_version(&self, object: &Value) -> Result<Version, Error> {
        object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| Version(v.to_owned()))
            .ok_or_else(|| {
                self.error(
                    ErrorKind::Other,
                    "the Secret has no `metadata.resourceVersion`".to_owned(),
                )
            })
    }

    /// The value as `data` holds it. The one place the value's bytes are used.
    fn encode(value: &Secret) -> String {
        BASE64.encode(value.expose_secret().as_bytes())
    }

    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    async fn read_snapshot(&self) -> Result<Snapshot, Error> {
        let Some(object) = self.get().await? else {
            return Ok(Snapshot {
                value: None,
                version: None,
            });
        };
        let version = self.resource_version(&object)?;
        let value = match object.pointer("/data").and_then(|d| d.get(&self.key)) {
            None | Some(Value::Null) => None,
            Some(Value::String(encoded)) => {
                let bytes = Zeroizing::new(BASE64.decode(encoded).map_err(|_| {
                    self.error(
                        ErrorKind::Other,
                        format!("`data.{}` is not valid base64", self.key),
                    )
                })?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    self.error(
                        ErrorKind::Other,
                        format!("`data.{}` is not UTF-8 text", self.key),
                    )
                })?;
                Some(Secret::new(text.to_owned()))
            }
            Some(_) => {
                return Err(self.error(
                    ErrorKind::Other,
                    format!("`data.{}` is not a string", self.key),
                ));
            }
        };
        Ok(Snapshot {
            value,
            version: Some(version),
        })
    }

    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    async fn write_value(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        match expect {
            Expect::Absent => self.create(value).await,
            Expect::Version(version) => match self.get().await? {
                None => Err(self.conflict()),
                Some(object) => {
                    if &self.resource_version(&object)? != version {
                        return Err(self.conflict());
                    }
                    self.replace(object, value).await
                }
            },
            Expect::Unchecked => match self.get().await? {
                None => self.create(value).await,
                Some(object) => self.replace(object, value).await,
            },
        }
    }

    /// `POST` a new Opaque Secret holding only our key.
    async fn create(&self, value: &Secret) -> Result<Option<Version>, Error> {
        let mut data = serde_json::Map::new();
        data.insert(self.key.clone(), Value::String(Self::encode(value)));
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "type": "Opaque",
            "data": data,
        });
        let response = self
            .send(
                self.request(Method::POST, self.url(false)).json(&body),
                "create the Secret",
            )
            .await?;
        drop(body);
        self.written(response, value, Op::Create).await
    }

    /// `PUT` `object` back with our key replaced, at the `resourceVersion` it was read at.
    async fn replace(&self, mut object: Value, value: &Secret) -> Result<Option<Version>, Error> {
        let Some(fields) = object.as_object_mut() else {
            return Err(self.error(
                ErrorKind::Other,
                "the Secret is not a JSON object".to_owned(),
            ));
        };
        let data = fields
            .entry("data")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if data.is_null() {
            *data = Value::Object(serde_json::Map::new());
        }
        let Some(data) = data.as_object_mut() else {
            return Err(self.error(
                ErrorKind::Other,
                "the Secret's `data` is not an object".to_owned(),
            ));
        };
        data.insert(self.key.clone(), Value::String(Self::encode(value)));
        let response = self
            .send(
                self.request(Method::PUT, self.url(true)).json(&object),
                "update the Secret",
            )
            .await?;
        drop(object);
        self.written(response, value, Op::Replace).await
    }

    /// The new `resourceVersion` from a write's answer, or the error it means.
    async fn written(
        &self,
        response: reqwest::Response,
        value: &Secret,
        op: Op,
    ) -> Result<Option<Version>, Error> {
        let status = response.status();
        if !status.is_success() {
            return Err(self.classify(status, response, Some(value), op).await);
        }
        let object: Value = response.json().await.map_err(|e| {
            self.error(
                ErrorKind::Unavailable,
                format!(
                    "the API server accepted the write but its answer could not be read: {}",
                    error_chain(&e)
                ),
            )
        })?;
        self.resource_version(&object).map(Some)
    }

    /// Turn an unsuccessful answer into an error the rotation engine can branch on.
    async fn classify(
        &self,
        status: StatusCode,
        response: reqwest::Response,
        value: Option<&Secret>,
        op: Op,
    ) -> Error {
        let code = status.as_u16();
        if status.is_redirection() {
            return self.error(ErrorKind::Other,
                format!("the API server answered a redirect ({code}); not followed while carrying credentials"),
            );
        }
        let message = message_field(response).await.map_or_else(
            || status.canonical_reason().unwrap_or("no message").to_owned(),
            |m| scrub(&m, value.map(Secret::expose_secret).as_slice()),
        );
        match status {
            StatusCode::UNAUTHORIZED => self.error(
                ErrorKind::Denied,
                format!("the API server did not accept the credentials ({code}): {message}"),
            ),
            StatusCode::FORBIDDEN => self.error(ErrorKind::Denied, format!("{message} ({code})")),
            StatusCode::CONFLICT => self.conflict(),
            StatusCode::NOT_FOUND => match op {
                // Deleted between our read and our write: someone else is changing it.
                Op::Replace => self.conflict(),
                Op::Create => self.error(
                    ErrorKind::Config,
                    format!(
                        "namespace `{}` not found ({code}): {message}",
                        self.namespace
                    ),
                ),
                Op::Read => self.error(ErrorKind::Other, format!("{message} ({code})")),
            },
            StatusCode::TOO_MANY_REQUESTS => self.error(
                ErrorKind::Unavailable,
                format!("the API server is throttling ({code}): {message}"),
            ),
            s if s.is_server_error() => self.error(
                ErrorKind::Unavailable,
                format!("the API server failed ({code}): {message}"),
            ),
            _ => self.error(
                ErrorKind::Other,
                format!("the API server refused the request ({code}): {message}"),
            ),
        }
    }
}

/// Which call an error answered, for what a 404 means.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Create,
    Replace,
}

impl Sink for SecretSink {
    fn describe(&self) -> String {
        format!(
            "kubernetes-secret {}/{}#{} on {}",
            self.namespace,
            self.name,
            self.key,
            self.server.host_str().unwrap_or("?")
        )
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(self.read_snapshot())
    }

    fn write<'a>(
        &'a self,
        value: &'a Secret,
        expect: &'a Expect,
    ) -> BoxFuture<'a, Result<Option<Version>, Error>> {
        Box::pin(self.write_value(value, expect))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_network() {
        let cluster = || Cluster {
            server: "https://k8s.example:6443".into(),
            token: None,
            ca_pem: None,
            client_cert: None,
            client_key: None,
            insecure_skip_tls_verify: false,
        };
        for (ns, name, key) in [
            ("Default", "s", "k"),
            ("a/b", "s", "k"),
            ("ns", "../s", "k"),
            ("ns", "s/x", "k"),
            ("ns", "S", "k"),
            ("ns", "s", ".."),
            ("ns", "s", "a/b"),
            ("ns", "s", ""),
        ] {
            let err = SecretSink::new(cluster(), ns, name, key).unwrap_err();
            assert!(err.kind == ErrorKind::Config, "{ns} {name} {key}: {err}");
        }
        let plain = Cluster {
            server: "http://k8s.example:8080".into(),
            ..cluster()
        };
        let err = SecretSink::new(plain, "ns", "s", "k").unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
        assert!(SecretSink::new(cluster(), "kube-system", "ts.auth-key", "TS_AUTHKEY").is_ok());
    }

    #[test]
    fn in_cluster_reads_the_mounted_service_account() {
        let dir = tempfile::tempdir().unwrap();
        let mut token = std::fs::File::create(dir.path().join("token")).unwrap();
        std::io::Write::write_all(&mut token, b"sa-token-value\n").unwrap();
        let mut ca = std::fs::File::create(dir.path().join("ca.crt")).unwrap();
        std::io::Write::write_all(&mut ca, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let cluster = Cluster::in_cluster_at(dir.path(), "fd00::1", "443").unwrap();
        assert_eq!(cluster.server, "https://[fd00::1]:443");
        assert_eq!(
            cluster.token.as_ref().unwrap().expose_secret(),
            "sa-token-value"
        );
        assert!(!format!("{cluster:?}").contains("sa-token-value"));
        let err = Cluster::in_cluster_at(dir.path(), "10.0.0.1", "").unwrap_err();
        assert!(err.kind == ErrorKind::Config);
        let err =
            Cluster::in_cluster_at(&dir.path().join("missing"), "10.0.0.1", "443").unwrap_err();
        assert!(err.to_string().contains("service account token"), "{err}");
    }
}
