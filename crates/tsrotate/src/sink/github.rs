//! GitHub Actions secrets of a repository, an environment or an organization.
//!
//! GitHub never gives a secret's value back, so this sink is write-only: [`Sink::read`]
//! answers [`ErrorKind::WriteOnly`] and verification has to happen where the secret is used.
//!
//! A write is two calls, as GitHub's REST API documents them
//! (<https://docs.github.com/en/rest/actions/secrets>, API version [`API_VERSION`]):
//!
//! 1. `GET …/secrets/public-key` answers `{"key_id", "key"}`, the base64 X25519 public key of
//!    the repository, environment or organization.
//! 2. `PUT …/secrets/{name}` with `{"encrypted_value", "key_id"}` (and `"visibility"` for an
//!    organization secret), where `encrypted_value` is the base64 of libsodium's
//!    `crypto_box_seal` of the value under that key. 201 creates, 204 updates.
//!
//! | Target | Path prefix |
//! |---|---|
//! | [`Target::Repository`] | `/repos/{owner}/{repo}/actions/secrets` |
//! | [`Target::Environment`] | `/repos/{owner}/{repo}/environments/{environment}/secrets` |
//! | [`Target::Organization`] | `/orgs/{org}/actions/secrets` |
//!
//! Environment secrets used to live under `/repositories/{repository_id}/environments/…`,
//! which needed an extra call to learn the numeric repository ID; GitHub's current reference
//! addresses them by owner and name, and that is the form used here. An environment name
//! may contain `/`, which the reference says to send as `%2F`: every path segment is
//! percent-encoded as one segment.
//!
//! GitHub may rotate a public key at any time. A `PUT` sealed under a key that has just been
//! retired is refused with 422, so on a 422 the sink fetches the public key once more and,
//! only if its `key_id` changed, seals and sends again. A `PUT` replaces the secret wholesale,
//! so repeating it is safe. Any other failure is returned as it is, classified for the
//! rotation engine: 401 and 403 are [`ErrorKind::Denied`], a 403 or 429 that carries
//! `x-ratelimit-remaining: 0` or `retry-after` is [`ErrorKind::Unavailable`], 404 is
//! [`ErrorKind::Config`] (GitHub answers 404, not 403, for a repository the token may not see),
//! 5xx and transport failures are [`ErrorKind::Unavailable`].
//!
//! # Security
//!
//! - The value leaves the process only sealed, in one place (`ActionsSecretSink::seal`); the
//!   sealed box uses a fresh ephemeral key, so not even this process could open it again.
//! - The token is sent only as `Authorization: Bearer`, only to the configured API URL, over
//!   https (plain http only to a loopback address, for tests), and redirects are never
//!   followed, so it cannot be forwarded to another host.
//! - Errors carry GitHub's `message` field passed through [`crate::key::redact_in`], with the
//!   exact value replaced, never a request body. `Debug` shows the target and the secret's
//!   name only.
//! - The token's rights: a fine-grained token needs "Secrets: write" on the repository
//!   ("Environments: write" too for environment secrets) or "Secrets: write" on the
//!   organization; a classic token needs `repo` (and `admin:org` for organization secrets).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::http::{error_chain, http_client, message_field, parse_endpoint, scrub};
use super::{BoxFuture, Error, ErrorKind, Expect, Sink, Snapshot, Version};
use crate::key::Secret;

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The REST API version we speak (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

/// GitHub refuses secrets larger than 48 KB; failing before the network says why.
pub const MAX_SECRET_BYTES: usize = 48 * 1024;

/// Where the secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A repository secret.
    Repository {
        /// The account that owns the repository.
        owner: String,
        /// The repository's name, without `.git`.
        repo: String,
    },
    /// A secret of one deployment environment of a repository.
    Environment {
        /// The account that owns the repository.
        owner: String,
        /// The repository's name, without `.git`.
        repo: String,
        /// The environment's name (may contain `/`).
        environment: String,
    },
    /// An organization secret.
    Organization {
        /// The organization's login.
        org: String,
        /// Which repositories may use it: `all`, `private` or `selected`. GitHub requires it
        /// on every write; with `selected`, the list of repositories is left as it is.
        visibility: String,
    },
}

impl Target {
    /// The path segments up to and including `secrets`.
    fn segments(&self) -> Vec<&str> {
        match self {
            Self::Repository { owner, repo } => vec!["repos", owner, repo, "actions", "secrets"],
            Self::Environment {
                owner,
                repo,
                environment,
            } => vec!["repos", owner, repo, "environments", environment, "secrets"],
            Self::Organization { org, .. } => vec!["orgs", org, "actions", "secrets"],
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Repository { owner, repo } => {
                check_name("owner", owner)?;
                check_name("repository", repo)
            }
            Self::Environment {
                owner,
                repo,
                environment,
            } => {
                check_name("owner", owner)?;
                check_name("repository", repo)?;
                check_environment(environment)
            }
            Self::Organization { org, visibility } => {
                check_name("organization", org)?;
                match visibility.as_str() {
                    "all" | "private" | "selected" => Ok(()),
                    other => Err(format!(
                        "invalid organization secret visibility `{other}`: expected `all`, `private` or `selected`"
                    )),
                }
            }
        }
    }

    /// What a 404 means for this target.
    fn not_found(&self) -> String {
        match self {
            Self::Repository { owner, repo } => format!(
                "repository `{owner}/{repo}` not found, or the token cannot see it (GitHub answers 404 for both)"
            ),
            Self::Environment {
                owner,
                repo,
                environment,
            } => format!(
                "environment `{environment}` of repository `{owner}/{repo}` not found, or the token cannot see the repository (GitHub answers 404 for both)"
            ),
            Self::Organization { org, .. } => format!(
                "organization `{org}` not found, or the token cannot manage its secrets (GitHub answers 404 for both)"
            ),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repository { owner, repo } => write!(f, "repository {owner}/{repo}"),
            Self::Environment {
                owner,
                repo,
                environment,
            } => write!(f, "environment {environment} of {owner}/{repo}"),
            Self::Organization { org, visibility } => {
                write!(f, "organization {org} (visibility {visibility})")
            }
        }
    }
}

/// Owner, repository and organization names are single path segments.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty"));
    }
    if name.contains("..") || name == "." {
        return Err(format!(
            "invalid {what} name `{name}`: `.` and `..` are not names"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "invalid {what} name `{}`: `{}` is not allowed (letters, digits, `-`, `_` and `.` only)",
            name.escape_debug(),
            c.escape_debug()
        ));
    }
    Ok(())
}

/// Environment names are free text; they are sent percent-encoded as one segment.
fn check_environment(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the environment name is empty".to_owned());
    }
    if name.contains("..") {
        return Err(format!(
            "invalid environment name `{name}`: `..` is not allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "invalid environment name `{}`: control characters are not allowed",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// GitHub's rules for secret names: letters, digits and `_`, not starting with a digit or
/// with `GITHUB_`.
fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the secret name is empty".to_owned());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "invalid secret name `{}`: letters, digits and `_` only",
            name.escape_debug()
        ));
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Err(format!(
            "invalid secret name `{name}`: it must not start with a digit"
        ));
    }
    if name.to_ascii_uppercase().starts_with("GITHUB_") {
        return Err(format!(
            "invalid secret name `{name}`: the `GITHUB_` prefix is reserved"
        ));
    }
    Ok(())
}

/// A GitHub Actions secret.
pub struct ActionsSecretSink {
    target: Target,
    name: String,
    /// The API's base URL (`https://api.github.com` or GitHub Enterprise's `…/api/v3`).
    base: Url,
    token: Secret,
    http: reqwest::Client,
    /// How long one request may take.
    timeout: std::time::Duration,
}

impl fmt::Debug for ActionsSecretSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionsSecretSink")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The answer of `GET …/secrets/public-key`.
#[derive(Deserialize)]
struct PublicKey {
    key_id: String,
    key: String,
}

/// What [`ActionsSecretSink::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The secret existed and is gone.
    Deleted,
    /// There was no such secret.
    Absent,
}

/// How a `PUT` ended, when it did not fail outright.
enum Put {
    Stored,
    /// 422, with GitHub's message: possibly a key rotated under us.
    Unprocessable(String),
}

impl ActionsSecretSink {
    /// A sink for secret `secret_name` of `target`, through the API at `api_url`
    /// ([`DEFAULT_API_URL`], or GitHub Enterprise Server's `https://HOST/api/v3`).
    ///
    /// Checks the names and the URL and builds the HTTP client; nothing is sent.
    pub fn new(
        target: Target,
        secret_name: &str,
        api_url: &str,
        token: Secret,
    ) -> Result<Self, Error> {
        let sink = format!("github-actions {target} secret {secret_name}");
        let config = |message: String| Error::config(&sink, message);
        target.validate().map_err(config)?;
        check_secret_name(secret_name).map_err(config)?;
        let base = parse_endpoint(api_url, "the GitHub API URL").map_err(config)?;
        if token.expose_secret().trim().is_empty() {
            return Err(config("no GitHub token".to_owned())
                .with_hint("set GITHUB_TOKEN to a token that may write Actions secrets"));
        }
        let http = http_client().map_err(config)?;
        Ok(Self {
            target,
            name: secret_name.to_owned(),
            base,
            token,
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

    /// The target.
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn url(&self, last: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(self.target.segments());
            segments.push(last);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::new(self.describe(), kind, message)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        request.timeout(self.timeout).send().await.map_err(|e| {
            self.error(
                ErrorKind::Unavailable,
                format!("could not reach GitHub to {what}: {}", error_chain(&e)),
            )
        })
    }

    /// `GET …/secrets/public-key`.
    async fn public_key(&self) -> Result<(String, crypto_box::PublicKey), Error> {
        let response = self
            .send(
                self.request(Method::GET, self.url("public-key")),
                "fetch the public key",
            )
            .await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.classify(status, response, None).await);
        }
        let key: PublicKey = response.json().await.map_err(|e| {
            self.error(
                ErrorKind::Other,
                format!(
                    "unexpected public key response from GitHub: {}",
                    error_chain(&e)
                ),
            )
        })?;
        let bytes = BASE64
            .decode(key.key.trim())
            .ok()
            .and_then(|b| <[u8; crypto_box::KEY_SIZE]>::try_from(b).ok())
            .ok_or_else(|| {
                self.error(
                    ErrorKind::Other,
                    format!(
                        "GitHub's public key {} is not a base64 32-byte X25519 key",
                        key.key_id
                    ),
                )
            })?;
        Ok((key.key_id, crypto_box::PublicKey::from(bytes)))
    }

    /// Seal `value` for GitHub: base64 of `crypto_box_seal(value, key)`. The one place where
    /// the value's bytes are used.
    fn seal(&self, value: &Secret, key: &crypto_box::PublicKey) -> Result<String, Error> {
        let sealed = key
            .seal(
                &mut crypto_box::aead::OsRng,
                value.expose_secret().as_bytes(),
            )
            .map_err(|_| self.error(ErrorKind::Other, "could not encrypt the value".to_owned()))?;
        Ok(BASE64.encode(sealed))
    }

    /// `PUT …/secrets/{name}` sealed under `key`.
    async fn put(
        &self,
        value: &Secret,
        key_id: &str,
        key: &crypto_box::PublicKey,
    ) -> Result<Put, Error> {
        let mut body = serde_json::json!({
            "encrypted_value": self.seal(value, key)?,
            "key_id": key_id,
        });
        if let Target::Organization { visibility, .. } = &self.target {
            body["visibility"] = serde_json::Value::String(visibility.clone());
        }
        let response = self
            .send(
                self.request(Method::PUT, self.url(&self.name)).json(&body),
                "write the secret",
            )
            .await?;
        drop(body);
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(Put::Stored),
            StatusCode::UNPROCESSABLE_ENTITY => {
                let message = self.message(response, Some(value)).await;
                Ok(Put::Unprocessable(message))
            }
            status => Err(self.classify(status, response, Some(value)).await),
        }
    }

    /// Whether the secret exists (`GET …/secrets/{name}` answers metadata, never the value).
    async fn exists(&self) -> Result<bool, Error> {
        let response = self
            .send(
                self.request(Method::GET, self.url(&self.name)),
                "look the secret up",
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            // 404 is also what a missing repository answers; tell the two apart by asking
            // for the public key, which exists whenever the repository does.
            StatusCode::NOT_FOUND => self.public_key().await.map(|_| false),
            status => Err(self.classify(status, response, None).await),
        }
    }

    /// Delete the secret (`DELETE …/secrets/{name}`, 204), once nothing reads it any more:
    /// `tsrotate migrate-to-federated` removes a secret its workflows no longer use.
    ///
    /// A secret that is already gone is [`Deleted::Absent`], so repeating the call after a
    /// crash is safe; a missing repository, environment or organization is still an error
    /// (told apart from a missing secret as in a write, by asking for the public key).
    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    pub async fn delete(&self) -> Result<Deleted, Error> {
        let response = self
            .send(
                self.request(Method::DELETE, self.url(&self.name)),
                "delete the secret",
            )
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(Deleted::Deleted),
            StatusCode::NOT_FOUND => self.public_key().await.map(|_| Deleted::Absent),
            status => Err(self.classify(status, response, None).await),
        }
    }

    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    async fn write_value(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        match expect {
            Expect::Unchecked => {}
            Expect::Absent => {
                if self.exists().await? {
                    return Err(Error::conflict(self.describe()));
                }
            }
            Expect::Version(_) => {
                return Err(self.error(ErrorKind::Config,
                    "GitHub Actions secrets have no versions to check against; write with `Expect::Unchecked`".to_owned(),
                ));
            }
        }
        if value.expose_secret().len() > MAX_SECRET_BYTES {
            return Err(self.error(
                ErrorKind::Config,
                format!("the value is larger than GitHub's limit of {MAX_SECRET_BYTES} bytes"),
            ));
        }
        let (key_id, key) = self.public_key().await?;
        let message = match self.put(value, &key_id, &key).await? {
            Put::Stored => return Ok(None),
            Put::Unprocessable(message) => message,
        };
        // GitHub rotates public keys now and then; a value sealed under the retired key is
        // refused. Fetch the key again, and try once more only if it really changed:
        // otherwise the 422 is about something else and repeating it would not help.
        let (fresh_id, fresh) = self.public_key().await?;
        if fresh_id == key_id {
            return Err(self.error(
                ErrorKind::Other,
                format!("GitHub refused the secret (422): {message}"),
            ));
        }
        tracing::debug!(old = %key_id, new = %fresh_id, "public key rotated during the write; sealing again");
        match self.put(value, &fresh_id, &fresh).await? {
            Put::Stored => Ok(None),
            Put::Unprocessable(message) => Err(self.error(
                ErrorKind::Other,
                format!(
                    "GitHub refused the secret (422) even under its current public key: {message}"
                ),
            )),
        }
    }

    /// GitHub's `message`, made safe to show.
    async fn message(&self, response: reqwest::Response, value: Option<&Secret>) -> String {
        let message = message_field(response)
            .await
            .unwrap_or_else(|| "no message".to_owned());
        scrub(&message, value.map(Secret::expose_secret).as_slice())
    }

    /// Turn an unsuccessful response into an error the rotation engine can branch on.
    async fn classify(
        &self,
        status: StatusCode,
        response: reqwest::Response,
        value: Option<&Secret>,
    ) -> Error {
        let headers = response.headers().clone();
        if (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
            && let Some(wait) = rate_limited(&headers)
        {
            return self.error(
                ErrorKind::Unavailable,
                format!("rate limited by GitHub ({}){wait}", status.as_u16()),
            );
        }
        if status.is_redirection() {
            return self
                .error(
                    ErrorKind::Other,
                    format!(
                        "GitHub answered a redirect ({}); not followed while carrying the token",
                        status.as_u16()
                    ),
                )
                .with_hint("check the API URL");
        }
        let message = self.message(response, value).await;
        let code = status.as_u16();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.error(ErrorKind::Denied, format!("{message} ({code})"))
            }
            StatusCode::NOT_FOUND => self.error(
                ErrorKind::Config,
                format!("{} ({code})", self.target.not_found()),
            ),
            StatusCode::TOO_MANY_REQUESTS => self.error(
                ErrorKind::Unavailable,
                format!("rate limited by GitHub ({code}): {message}"),
            ),
            s if s.is_server_error() => self.error(
                ErrorKind::Unavailable,
                format!("GitHub failed ({code}): {message}"),
            ),
            _ => self.error(
                ErrorKind::Other,
                format!("GitHub answered {code}: {message}"),
            ),
        }
    }
}

/// `Some(", retry after …")` when GitHub says we hit a rate limit.
fn rate_limited(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(after) = header("retry-after") {
        return Some(format!("; retry after {}s", after.trim()));
    }
    if header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        return Some(match header("x-ratelimit-reset") {
            Some(reset) => format!("; the limit resets at {} (Unix time)", reset.trim()),
            None => String::new(),
        });
    }
    None
}

impl Sink for ActionsSecretSink {
    fn describe(&self) -> String {
        format!("github-actions {} secret {}", self.target, self.name)
    }

    fn readable(&self) -> bool {
        false
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move { Err(Error::write_only(self.describe())) })
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

    fn repo(owner: &str, repo: &str) -> Target {
        Target::Repository {
            owner: owner.into(),
            repo: repo.into(),
        }
    }

    fn token() -> Secret {
        Secret::new("ghp_example".into())
    }

    #[test]
    fn invalid_inputs_fail_before_network() {
        for (target, name, url) in [
            (repo("a/b", "c"), "S", DEFAULT_API_URL),
            (repo("a", ".."), "S", DEFAULT_API_URL),
            (repo("a", "b..c"), "S", DEFAULT_API_URL),
            (repo("", "c"), "S", DEFAULT_API_URL),
            (repo("a", "c?x"), "S", DEFAULT_API_URL),
            (repo("a", "c"), "GITHUB_TOKEN", DEFAULT_API_URL),
            (repo("a", "c"), "1ABC", DEFAULT_API_URL),
            (repo("a", "c"), "A-B", DEFAULT_API_URL),
            (repo("a", "c"), "", DEFAULT_API_URL),
            (repo("a", "c"), "S", "http://api.github.com"),
            (repo("a", "c"), "S", "https://user:pw@api.github.com"),
            (repo("a", "c"), "S", "ftp://api.github.com"),
            (
                Target::Environment {
                    owner: "a".into(),
                    repo: "c".into(),
                    environment: "../x".into(),
                },
                "S",
                DEFAULT_API_URL,
            ),
            (
                Target::Organization {
                    org: "o".into(),
                    visibility: "public".into(),
                },
                "S",
                DEFAULT_API_URL,
            ),
        ] {
            let err = ActionsSecretSink::new(target.clone(), name, url, token()).unwrap_err();
            assert!(
                err.kind == ErrorKind::Config,
                "{target:?} {name} {url}: {err}"
            );
        }
    }

    #[test]
    fn paths_follow_the_rest_reference() {
        let url = |target: Target, base: &str| {
            ActionsSecretSink::new(target, "TS_KEY", base, token())
                .unwrap()
                .url("TS_KEY")
                .to_string()
        };
        assert_eq!(
            url(repo("o", "r"), DEFAULT_API_URL),
            "https://api.github.com/repos/o/r/actions/secrets/TS_KEY"
        );
        assert_eq!(
            url(
                Target::Environment {
                    owner: "o".into(),
                    repo: "r".into(),
                    environment: "prod/eu 1".into()
                },
                "https://ghe.example/api/v3/"
            ),
            "https://ghe.example/api/v3/repos/o/r/environments/prod%2Feu%201/secrets/TS_KEY"
        );
        assert_eq!(
            url(
                Target::Organization {
                    org: "o".into(),
                    visibility: "all".into()
                },
                "http://127.0.0.1:9"
            ),
            "http://127.0.0.1:9/orgs/o/actions/secrets/TS_KEY"
        );
    }
}
