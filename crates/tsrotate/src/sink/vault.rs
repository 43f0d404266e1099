//! A field of a Vault or `OpenBao` KV version 2 secret, written with check-and-set.
//!
//! The KV v2 HTTP API (<https://openbao.org/api-docs/secret/kv/kv-v2/>) is used directly:
//!
//! | call | request | what we take |
//! | --- | --- | --- |
//! | read | `GET /v1/{mount}/data/{path}` | `data.data[field]`, `data.metadata.version` |
//! | write | `POST /v1/{mount}/data/{path}` with `{"data": {…}, "options": {"cas": N}}` | `data.version` |
//!
//! KV v2 writes replace the whole secret, so a write reads the secret first and sends every
//! other field back unchanged. The `cas` option makes the server refuse the write when the
//! secret's current version is not `N` (`0`: the secret must not exist), which closes the
//! window between that read and the write: a concurrent writer makes ours fail with
//! [`ErrorKind::Conflict`](super::ErrorKind::Conflict) instead of being silently undone.
//!
//! [`Version`] is the KV metadata version (`"3"`). A secret whose latest version was deleted
//! reads as no value at that version, so that writing against it continues the history
//! instead of failing `cas: 0`.
//!
//! Before writing, the mount's KV version is checked the way the `vault kv` CLI does
//! (`GET /v1/sys/internal/ui/mounts/{mount}`): on a KV version 1 mount the same `POST` would
//! create a new secret at `{mount}/data/{path}` holding our request body.
//!
//! A write that finds the place already holding the value it was asked to store succeeds
//! without writing: the rotation engine repeats writes after a crash, and the first attempt
//! may have landed.
//!
//! # Security
//!
//! - The token travels only in the `X-Vault-Token` header, marked sensitive so that HTTP
//!   logging does not print it, and only to the configured address: redirects are never
//!   followed (a Vault standby answers `307`; we report it instead of re-sending the token
//!   elsewhere), and plain `http://` is refused unless the host is a loopback address.
//! - The secret's fields, ours and the others, are in the request body and in responses;
//!   neither is ever logged or put in an error. Error messages from the server are passed
//!   through a scrubber that removes every string value of the request and anything shaped
//!   like a Tailscale credential, and are cut to a bounded length.
//! - Other fields of the secret pass through this process in `serde_json` values, which are
//!   not zeroed on drop; only the credential itself is held as a [`Secret`].

use std::fmt;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{
    MAX_MESSAGE_LEN, http_client, parse_endpoint, scrub, sensitive_header, transport_error,
};
use super::{BoxFuture, Error, Expect, Sink, Snapshot, Version};
use crate::http::{encode_segment, json_problem};
use crate::key::Secret;

/// What a KV v2 server says when `options.cas` does not match the current version.
const CAS_MISMATCH: &str = "check-and-set parameter did not match";

/// A field of a KV version 2 secret in Vault or `OpenBao`.
pub struct VaultKvSink {
    http: reqwest::Client,
    /// `{address}/v1/{mount}/data/{path}`, each segment percent-encoded.
    url: Url,
    /// `{address}/v1/sys/internal/ui/mounts/{mount}`: which KV version the mount is.
    mount_url: Url,
    field: String,
    token: Secret,
    namespace: Option<HeaderValue>,
    name: String,
    /// How long one request may take.
    timeout: std::time::Duration,
}

impl fmt::Debug for VaultKvSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKvSink")
            .field("sink", &self.name)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl VaultKvSink {
    /// A sink for `field` of the secret at `path` under the KV v2 `mount` on the server at
    /// `address` (`https://vault.example.com:8200`), authenticated with `token`, in a Vault
    /// Enterprise `namespace` when given.
    ///
    /// Checks everything it can without the network: the address (https, or plain http to a
    /// loopback address only, no credentials, query or fragment), the mount and path (no
    /// empty, `.` or `..` segments), and that the token and namespace can be sent as headers.
    pub fn new(
        address: &str,
        mount: &str,
        path: &str,
        field: &str,
        token: Secret,
        namespace: Option<String>,
    ) -> Result<Self, Error> {
        let mount = mount.trim_matches('/');
        let path = path.trim_matches('/');
        let name = match &namespace {
            Some(ns) => format!("vault-kv {}/{mount}/{path}#{field}", ns.trim_matches('/')),
            None => format!("vault-kv {mount}/{path}#{field}"),
        };
        let config = |message: String| Error::config(&name, message);
        let base = parse_endpoint(address, "the Vault address").map_err(config)?;
        if field.is_empty() {
            return Err(config("the field name is empty".into()));
        }
        let mut segments = vec!["v1".to_owned()];
        let mut mount_segments = Vec::new();
        for (what, value) in [("mount", mount), ("path", path)] {
            if value.is_empty() {
                return Err(config(format!("the secret's {what} is empty")));
            }
            for segment in value.split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return Err(config(format!(
                        "the secret's {what} `{value}` has an empty, `.` or `..` segment"
                    )));
                }
                segments.push(encode_segment(segment));
            }
            if what == "mount" {
                mount_segments = segments[1..].to_vec();
                segments.push("data".to_owned());
            }
        }
        let base_path = base.path().trim_end_matches('/').to_owned();
        let mut url = base.clone();
        url.set_path(&format!("{base_path}/{}", segments.join("/")));
        let mut mount_url = base;
        mount_url.set_path(&format!(
            "{base_path}/v1/sys/internal/ui/mounts/{}",
            mount_segments.join("/")
        ));
        if token.expose_secret().is_empty() || sensitive_header(token.expose_secret()).is_none() {
            return Err(config(
                "the Vault token is empty or has characters that cannot be sent in a header".into(),
            ));
        }
        let namespace = match namespace {
            None => None,
            Some(ns) => Some(
                HeaderValue::from_str(ns.trim_matches('/'))
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| config(format!("invalid Vault namespace `{ns}`")))?,
            ),
        };
        let http = http_client().map_err(config)?;
        Ok(Self {
            http,
            url,
            mount_url,
            field: field.to_owned(),
            token,
            namespace,
            name,
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

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let token = sensitive_header(self.token.expose_secret())
            .expect("checked to be a valid header value in VaultKvSink::new");
        let mut request = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .header(HeaderName::from_static("x-vault-token"), token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(ns) = &self.namespace {
            request = request.header(HeaderName::from_static("x-vault-namespace"), ns.clone());
        }
        request
    }

    /// The secret as the server has it now: `None` when it never existed.
    async fn fetch(&self) -> Result<Option<Current>, Error> {
        let response = self
            .request(reqwest::Method::GET, self.url.clone())
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unavailable(&e))?;
        match status {
            StatusCode::OK => {
                let read: KvRead = serde_json::from_slice(&body).map_err(|e| self.decode(&e))?;
                let data = read.data.ok_or_else(|| self.not_kv2())?;
                Ok(Some(Current {
                    version: data.metadata.version,
                    data: data.data.unwrap_or_default(),
                }))
            }
            // 404 has three meanings: never written (`{"errors":[]}`), latest version deleted
            // or destroyed (the metadata comes along), and no such mount (an error message).
            StatusCode::NOT_FOUND => {
                if let Ok(KvRead { data: Some(data) }) = serde_json::from_slice::<KvRead>(&body) {
                    return Ok(Some(Current {
                        version: data.metadata.version,
                        data: Map::new(),
                    }));
                }
                let message = vault_message(&body, &[]);
                if message.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::config(&self.name, message).with_hint(
                        "is the mount a KV version 2 secrets engine, and does the token's policy allow reading it?",
                    ))
                }
            }
            status => Err(self.status_error(status, &body, &[])),
        }
    }

    /// Which KV version the mount is, as the `vault kv` CLI finds out before it writes: a KV
    /// version 1 mount would store our request body as a new secret at `{mount}/data/{path}`.
    /// `None` when the server does not say (the token may not read `sys/internal/ui/mounts`).
    async fn kv_version(&self) -> Result<Option<String>, Error> {
        #[derive(Deserialize)]
        struct Mount {
            data: MountData,
        }
        #[derive(Deserialize)]
        struct MountData {
            #[serde(default)]
            options: Option<MountOptions>,
        }
        #[derive(Deserialize)]
        struct MountOptions {
            #[serde(default)]
            version: Option<String>,
        }
        let response = self
            .request(reqwest::Method::GET, self.mount_url.clone())
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let body = response.bytes().await.map_err(|e| self.unavailable(&e))?;
        Ok(serde_json::from_slice::<Mount>(&body)
            .ok()
            .and_then(|m| m.data.options)
            .and_then(|o| o.version))
    }

    async fn store(&self, data: &Map<String, Value>, cas: u64) -> Result<u64, Error> {
        let body = json!({ "data": data, "options": { "cas": cas } });
        let response = self
            .request(reqwest::Method::POST, self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        drop(body);
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unavailable(&e))?;
        if status == StatusCode::NO_CONTENT {
            // Only KV version 1 answers a write with no body.
            return Err(Error::config(
                &self.name,
                "the server stored the write as a KV version 1 secret; the mount is not KV version 2",
            )
            .with_hint("delete the secret it created at `<mount>/data/<path>`, and point the sink at a KV version 2 mount"));
        }
        if status.is_success() {
            let written: KvWritten = serde_json::from_slice(&bytes).map_err(|e| self.decode(&e))?;
            return Ok(written.data.version);
        }
        if status == StatusCode::BAD_REQUEST && vault_message(&bytes, &[]).contains(CAS_MISMATCH) {
            return Err(Error::conflict(&self.name));
        }
        let mut sent: Vec<&str> = data.values().filter_map(Value::as_str).collect();
        sent.push(self.token.expose_secret());
        Err(self.status_error(status, &bytes, &sent))
    }

    async fn write_value(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        let current = self.fetch().await?;
        let holds_value = current.as_ref().is_some_and(|c| {
            c.data.get(&self.field).and_then(Value::as_str) == Some(value.expose_secret())
        });
        let current_version = current.as_ref().map(|c| c.version);
        let cas = match expect {
            Expect::Absent => 0,
            Expect::Version(v) => v.0.parse::<u64>().map_err(|_| {
                Error::config(&self.name, format!("`{}` is not a KV version number", v.0))
            })?,
            // No expectation: still write against the version just read, so that the other
            // fields we send back are the ones the server has.
            Expect::Unchecked => current_version.unwrap_or(0),
        };
        if holds_value {
            // Already there (a repeated write after a crash, or nothing to change).
            return Ok(current_version.map(|v| Version(v.to_string())));
        }
        if current_version.unwrap_or(0) != cas {
            return Err(Error::conflict(&self.name));
        }
        if let Some(version) = self.kv_version().await?
            && version != "2"
        {
            return Err(Error::config(
                &self.name,
                format!(
                    "the mount is a KV version {version} secrets engine; only KV version 2 has versions for check-and-set"
                ),
            ));
        }
        let mut data = current.map(|c| c.data).unwrap_or_default();
        data.insert(
            self.field.clone(),
            Value::String(value.expose_secret().to_owned()),
        );
        let version = self.store(&data, cas).await?;
        Ok(Some(Version(version.to_string())))
    }

    fn unavailable(&self, e: &reqwest::Error) -> Error {
        transport_error(&self.name, &self.url, e)
    }

    fn decode(&self, e: &serde_json::Error) -> Error {
        Error::other(
            &self.name,
            format!("unexpected answer from the server: {}", json_problem(e)),
        )
    }

    fn not_kv2(&self) -> Error {
        Error::config(
            &self.name,
            "the answer has no `data`; is the mount a KV version 2 secrets engine?",
        )
    }

    fn status_error(&self, status: StatusCode, body: &[u8], sent: &[&str]) -> Error {
        let mut known = sent.to_vec();
        known.push(self.token.expose_secret());
        let message = vault_message(body, &known);
        let shown = if message.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {message}", status.as_u16())
        };
        let sink = self.name.clone();
        match status.as_u16() {
            401 | 403 => Error::denied(sink, shown),
            // 412: a performance standby has not caught up yet; 429: a rate-limit quota.
            412 | 429 | 500..=599 => Error::unavailable(sink, shown),
            300..=399 => Error::config(
                sink,
                format!(
                    "{shown}: the server redirected; redirects are not followed so that the token goes nowhere else"
                ),
            )
            .with_hint("use the active node's address, or a load balancer that forwards"),
            404 | 405 => Error::config(sink, shown)
                .with_hint("is the mount a KV version 2 secrets engine?"),
            _ => Error::other(sink, shown),
        }
    }
}

/// The secret as read: its current version and its fields (empty when the latest version
/// is deleted).
struct Current {
    version: u64,
    data: Map<String, Value>,
}

#[derive(Deserialize)]
struct KvRead {
    data: Option<KvReadData>,
}

#[derive(Deserialize)]
struct KvReadData {
    data: Option<Map<String, Value>>,
    metadata: KvMetadata,
}

#[derive(Deserialize)]
struct KvMetadata {
    version: u64,
}

#[derive(Deserialize)]
struct KvWritten {
    data: KvMetadata,
}

impl Sink for VaultKvSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move {
            let Some(current) = self.fetch().await? else {
                return Ok(Snapshot {
                    value: None,
                    version: None,
                });
            };
            let value = match current.data.get(&self.field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(Secret::new(s.clone())),
                Some(_) => {
                    return Err(Error::other(
                        &self.name,
                        "the field holds a JSON value that is not a string",
                    ));
                }
            };
            Ok(Snapshot {
                value,
                version: Some(Version(current.version.to_string())),
            })
        })
    }

    fn write<'a>(
        &'a self,
        value: &'a Secret,
        expect: &'a Expect,
    ) -> BoxFuture<'a, Result<Option<Version>, Error>> {
        Box::pin(self.write_value(value, expect))
    }
}

/// Vault's error body is `{"errors": ["…"]}`; anything else is shown cut short.
fn vault_message(body: &[u8], scrub_values: &[&str]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    let raw = match serde_json::from_slice::<Errors>(body) {
        Ok(e) => e.errors.join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE_LEN)]).into_owned(),
    };
    scrub(raw.trim(), scrub_values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ErrorKind;

    fn token() -> Secret {
        Secret::new("hvs.CANARYtokenVALUE".into())
    }

    #[test]
    fn addresses_follow_the_api_client_rules() {
        for ok in [
            "http://127.0.0.1:8200",
            "http://localhost:8200/",
            "http://[::1]:8200",
            "https://vault.example.com:8200",
        ] {
            assert!(
                VaultKvSink::new(ok, "secret", "ci/ts", "authkey", token(), None).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://vault.example.com:8200",
            "http://10.0.0.1:8200",
            "ftp://127.0.0.1",
            "https://u:p@vault.example.com",
            "https://vault.example.com/?x=1",
            "nonsense",
        ] {
            let err =
                VaultKvSink::new(bad, "secret", "ci/ts", "authkey", token(), None).expect_err(bad);
            assert!(err.kind == ErrorKind::Config, "{bad}: {err}");
        }
    }

    #[test]
    fn paths_are_encoded_per_segment_and_dot_segments_refused() {
        let sink = VaultKvSink::new(
            "https://vault.example.com/prefix/",
            "/kv/",
            "team a/ci",
            "authkey",
            token(),
            Some("ns1/".into()),
        )
        .unwrap();
        assert_eq!(
            sink.url.as_str(),
            "https://vault.example.com/prefix/v1/kv/data/team%20a/ci"
        );
        assert_eq!(sink.describe(), "vault-kv ns1/kv/team a/ci#authkey");
        for path in ["a/../b", "a//b", "", "./a"] {
            let err =
                VaultKvSink::new("https://v", "secret", path, "f", token(), None).expect_err(path);
            assert!(err.kind == ErrorKind::Config, "{path}");
        }
    }

    #[test]
    fn a_token_that_is_not_a_header_is_refused_without_showing_it() {
        let err = VaultKvSink::new(
            "https://v",
            "secret",
            "p",
            "f",
            Secret::new("CANARY\ntoken".into()),
            None,
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("CANARY"));
    }
}
