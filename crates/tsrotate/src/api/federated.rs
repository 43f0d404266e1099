//! tsrotate's own API access by workload identity federation.
//!
//! A federated identity holds no secret: tsrotate presents an OIDC identity token from the
//! platform it runs on (GitHub Actions, a Kubernetes service account, a file another tool
//! refreshes) to `POST /api/v2/oauth/token-exchange` with the identity's ID as `client_id`,
//! and gets an hour-long API access token with the identity's scopes and tags.
//!
//! Identity tokens live minutes (GitHub's about five, Kubernetes' projected tokens an hour or
//! so), so every exchange gets a fresh one from its [`IdentityToken`] source: a file is read
//! again, GitHub's ID-token endpoint is asked again. Only a token given as a value cannot be
//! renewed; when it has expired, the refusal says so.
//!
//! Both the identity token and the API access token are bearer credentials: they stay in
//! [`Secret`], and messages show only the token's `iss`, `sub`, `aud` and `exp` claims (which
//! say nothing an attacker could use without the signature).

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use time::OffsetDateTime;

use super::Error;
use crate::http;
use crate::key::Secret;

/// The largest identity token accepted from a file or endpoint: real ones are a few KiB.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Where tsrotate gets the OIDC identity token it exchanges.
#[derive(Clone)]
pub enum IdentityToken {
    /// A token given as a value (`TAILSCALE_IDENTITY_TOKEN`). It cannot be renewed: a run that
    /// outlives it fails at its next exchange.
    Given(Secret),
    /// A file holding the token, read again at every exchange
    /// (`TAILSCALE_IDENTITY_TOKEN_FILE`; projected service account tokens are refreshed in
    /// place).
    File(PathBuf),
    /// GitHub Actions' ID-token endpoint, asked for a fresh token at every exchange
    /// (`TAILSCALE_AUDIENCE` with `ACTIONS_ID_TOKEN_REQUEST_URL` and
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, which GitHub sets in jobs with
    /// `permissions: id-token: write`).
    GitHubActions(GitHubActions),
}

/// How to ask GitHub Actions for an identity token.
#[derive(Clone)]
pub struct GitHubActions {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (it carries its own query; `&audience=` is appended).
    pub request_url: String,
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`: a bearer credential for that endpoint.
    pub request_token: Secret,
    /// The audience the federated identity expects (`aud`).
    pub audience: String,
}

impl IdentityToken {
    /// What the token comes from, for messages. Never a secret.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Given(_) => "the identity token given".to_owned(),
            Self::File(path) => format!("the identity token in `{}`", path.display()),
            Self::GitHubActions(actions) => format!(
                "GitHub Actions' identity token for audience `{}`",
                actions.audience
            ),
        }
    }

    /// The secrets this source holds (to redact them from children's output).
    pub(super) fn secrets(&self) -> Vec<&Secret> {
        match self {
            Self::Given(token) => vec![token],
            Self::File(_) => Vec::new(),
            Self::GitHubActions(actions) => vec![&actions.request_token],
        }
    }

    /// The token its file holds now, for redaction only (best effort: an unreadable, empty
    /// or oversized file gives nothing). A child can read the same file, so while a rotation
    /// runs the token is a secret in play like the others (red-team finding).
    pub(super) fn read_now(&self) -> Option<Secret> {
        let Self::File(path) = self else { return None };
        crate::key::read_secret_file(path, "identity token").ok()
    }

    /// Refuse what cannot work before anything is sent.
    pub(super) fn check(&self) -> Result<(), Error> {
        match self {
            Self::Given(token) => check_shape(token, "the identity token given"),
            Self::File(_) => Ok(()),
            Self::GitHubActions(actions) => actions.url().map(drop),
        }
    }

    /// A token to exchange now.
    pub(super) async fn fetch(&self, client: &reqwest::Client) -> Result<Secret, Error> {
        match self {
            Self::Given(token) => Ok(token.clone()),
            Self::File(path) => {
                // The one secret-file reader: bounded, and a FIFO without a writer is an
                // empty file, not a hang (red-team finding 7).
                let token = crate::key::read_secret_file(path, "identity token").map_err(|e| {
                    Error::IdentityToken {
                        problem: e.to_string(),
                    }
                })?;
                check_shape(&token, &format!("`{}`", path.display()))?;
                Ok(token)
            }
            Self::GitHubActions(actions) => actions.fetch(client).await,
        }
    }
}

impl GitHubActions {
    /// The request URL with `audience` appended; https, or http to a loopback address.
    fn url(&self) -> Result<Url, Error> {
        let mut url = Url::parse(&self.request_url).map_err(|_| {
            Error::Config(
                "ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: it is set by GitHub Actions, do not set it by hand".to_owned(),
            )
        })?;
        match url.scheme() {
            "https" => {}
            "http" if http::is_loopback(&url) => {}
            _ => {
                return Err(Error::Config(http::plain_http_refused(
                    &url,
                    "the GitHub Actions request token",
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config(
                "ACTIONS_ID_TOKEN_REQUEST_URL must not contain credentials".to_owned(),
            ));
        }
        url.query_pairs_mut()
            .append_pair("audience", &self.audience);
        Ok(url)
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Secret, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            value: Option<Secret>,
        }
        let url = self.url()?;
        let shown = http::shown_url(&url);
        let problem = |what: String| Error::IdentityToken { problem: what };
        let response = client
            .get(url)
            .bearer_auth(self.request_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                problem(format!(
                    "GitHub Actions' ID-token endpoint {shown} could not be reached: {}",
                    e.without_url()
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            let why = match status.as_u16() {
                401 | 403 => {
                    "; the job needs `permissions: id-token: write`, and ACTIONS_ID_TOKEN_REQUEST_TOKEN must be the one GitHub set for this job"
                }
                _ => "",
            };
            return Err(problem(format!(
                "GitHub Actions' ID-token endpoint {shown} answered {}{why}",
                status.as_u16()
            )));
        }
        let bytes = response.bytes().await.map_err(|e| {
            problem(format!(
                "the answer of GitHub Actions' ID-token endpoint could not be read: {}",
                e.without_url()
            ))
        })?;
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(problem(
                "GitHub Actions' ID-token endpoint answered more than an identity token".to_owned(),
            ));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            problem(format!(
                "GitHub Actions' ID-token endpoint answered unexpected JSON: {}",
                http::json_problem(&e)
            ))
        })?;
        let token = answer.value.ok_or_else(|| {
            problem("GitHub Actions' ID-token endpoint answered no `value`".to_owned())
        })?;
        check_shape(&token, "GitHub Actions' answer")?;
        Ok(token)
    }
}

/// A JWT is three base64url parts separated by dots; anything else is not worth sending.
fn check_shape(token: &Secret, what: &str) -> Result<(), Error> {
    let value = token.expose_secret();
    let parts = value.split('.').count();
    let alphabet = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
    if parts == 3 && alphabet {
        Ok(())
    } else {
        Err(Error::IdentityToken {
            problem: format!("{what} is not a JWT (three base64url parts separated by dots)"),
        })
    }
}

/// The claims of an identity token that messages may show. The signature is not checked:
/// this is for explaining a refusal, never for trusting the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShownClaims {
    /// `iss`.
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud` (every value when it is a list).
    pub audience: Vec<String>,
    /// `exp`.
    pub expires: Option<OffsetDateTime>,
}

impl ShownClaims {
    /// The claims of `token`, when its payload is readable JSON.
    #[must_use]
    pub fn of(token: &Secret) -> Option<Self> {
        let payload = token.expose_secret().split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).ok()?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        let audience = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            issuer: text("iss"),
            subject: text("sub"),
            audience,
            expires: claims
                .get("exp")
                .and_then(serde_json::Value::as_i64)
                .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()),
        })
    }

    /// One line for a refusal message, judged at `now` (the control plane's time).
    #[must_use]
    pub fn describe(&self, now: OffsetDateTime) -> String {
        let shown = |v: &Option<String>| v.as_deref().unwrap_or("(none)").to_owned();
        let audience = if self.audience.is_empty() {
            "(none)".to_owned()
        } else {
            self.audience.join(", ")
        };
        let expiry = match self.expires {
            Some(exp) if exp <= now => format!("; it expired {}s ago", (now - exp).whole_seconds()),
            Some(exp) => format!("; it expires in {}s", (exp - now).whole_seconds()),
            None => "; it has no exp".to_owned(),
        };
        format!(
            "the token's iss is `{}`, sub `{}`, aud `{audience}`{expiry}",
            shown(&self.issuer),
            shown(&self.subject),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &serde_json::Value) -> Secret {
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        Secret::new(format!(
            "{}.{}.c2lnbmF0dXJl",
            part(&serde_json::json!({"alg": "ES256"})),
            part(claims)
        ))
    }

    /// Red-team finding 7: the identity token file is read by the one secret-file reader, so
    /// a FIFO without a writer is an empty file (not a hang) and a file larger than a token is
    /// refused after at most 64 KiB (it was read whole first). The writer below never stops
    /// and never closes: reading the file whole would never end.
    #[test]
    #[cfg(target_os = "linux")]
    fn token_files_are_read_bounded_and_a_fifo_without_a_writer_never_hangs() {
        use crate::key::tests::{bounded, endless_writer, pipe_path};
        let fetch = |path: PathBuf| {
            bounded(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime
                    .block_on(IdentityToken::File(path).fetch(&reqwest::Client::new()))
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = fetch(fifo).unwrap_err();
        assert!(err.ends_with("` is empty"), "{err}");

        let (reader, writer) = std::io::pipe().unwrap();
        let flood = endless_writer(writer);
        let err = fetch(pipe_path(&reader)).unwrap_err();
        assert!(
            err.contains("does not start with a line of at most 64 KiB"),
            "{err}"
        );
        drop(reader);
        flood.join().unwrap();

        let good = dir.path().join("token");
        let token = jwt(&serde_json::json!({"sub": "x"}));
        #[allow(clippy::disallowed_methods, reason = "a test fixture")]
        std::fs::write(&good, format!("{}\n", token.expose_secret())).unwrap();
        fetch(good).unwrap();
    }

    #[test]
    fn shown_claims_say_what_a_refusal_needs_and_nothing_more() {
        let token = jwt(&serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:acme/infra:ref:refs/heads/main",
            "aud": ["api.tailscale.com/abc"],
            "exp": 1_000,
            "secret_claim": "do-not-show",
        }));
        let claims = ShownClaims::of(&token).expect("claims");
        let now = OffsetDateTime::from_unix_timestamp(1_060).unwrap();
        let line = claims.describe(now);
        assert_eq!(
            line,
            "the token's iss is `https://token.actions.githubusercontent.com`, sub `repo:acme/infra:ref:refs/heads/main`, aud `api.tailscale.com/abc`; it expired 60s ago"
        );
        assert!(!line.contains("do-not-show"));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        for bad in ["not-a-jwt", "a.b", "a.b.c.d", "a.b c.d", "tskey-api-kX-yyy"] {
            let err = check_shape(&Secret::new(bad.to_owned()), "the value").unwrap_err();
            let text = err.to_string();
            assert!(text.contains("is not a JWT"), "{text}");
            assert!(!text.contains(bad), "{text}");
        }
        assert!(check_shape(&Secret::new("aGk.aGk.aGk".to_owned()), "x").is_ok());
    }

    #[test]
    fn the_actions_url_gets_the_audience_and_refuses_plain_http_elsewhere() {
        let actions = |url: &str| GitHubActions {
            request_url: url.to_owned(),
            request_token: Secret::new("ghs_x".to_owned()),
            audience: "api.tailscale.com/k1".to_owned(),
        };
        let url = actions("https://pipelines.example/idtoken?api-version=2.0")
            .url()
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://pipelines.example/idtoken?api-version=2.0&audience=api.tailscale.com%2Fk1"
        );
        assert!(actions("http://127.0.0.1:9/t").url().is_ok());
        assert!(matches!(
            actions("http://pipelines.example/t").url(),
            Err(Error::Config(_))
        ));
        assert!(matches!(actions("nonsense").url(), Err(Error::Config(_))));
    }
}
