//! What can go wrong talking to the Tailscale API, classified so callers can branch.

use std::time::Duration;

/// An error from the Tailscale API or from reaching it.
///
/// Messages from the API are passed through [`crate::key::redact_in`] before they are stored,
/// and through a [`crate::child::Redactor`] of the secrets the request carried (tsrotate's
/// credential, its access token, an identity token), so no variant carries a credential in
/// any encoding, even from an API that echoes what it was sent. Request bodies are never
/// included.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the key, client or tailnet does not exist (or is not visible to the caller).
    #[error("not found: {message}")]
    NotFound {
        /// The API's message.
        message: String,
    },
    /// 401: the credential tsrotate authenticates with is unknown, revoked or expired.
    #[error("the API rejected tsrotate's credential (401): {message}")]
    Unauthorized {
        /// The API's message.
        message: String,
    },
    /// 403: the credential is valid but lacks a scope or permission.
    #[error("forbidden (403): {message}")]
    Forbidden {
        /// The API's message, which usually names what is missing.
        message: String,
    },
    /// 400: the request was refused as invalid.
    #[error("the API refused the request (400): {message}")]
    BadRequest {
        /// The API's message.
        message: String,
    },
    /// 429: too many requests.
    #[error("rate limited by the API{}", match wait { Some(w) => format!("; retry after {}s", w.as_secs()), None => String::new() })]
    RateLimited {
        /// How long the API asked us to wait, from `Retry-After`.
        wait: Option<Duration>,
    },
    /// 5xx: the API failed.
    #[error("the API failed ({status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// Another unexpected status, including a redirect (which we never follow while
    /// carrying credentials).
    #[error("unexpected response from the API ({status}){}", location.as_ref().map(|l| format!(": redirect to {l} refused; tsrotate does not follow redirects with credentials")).unwrap_or_default())]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// For redirects: where the API pointed us (scheme, host and path only).
        location: Option<String>,
    },
    /// The request could not be sent or the response not read.
    #[error("could not reach the Tailscale API at {url}")]
    Transport {
        /// The URL without query string.
        url: String,
        /// What happened, without the URL (reqwest's message would repeat it).
        #[source]
        source: reqwest::Error,
    },
    /// A create request was sent but its answer was lost. The key may exist; look for it by
    /// its description before trying again.
    #[error("the request to {url} was sent but no answer came back; the key may have been created")]
    OutcomeUnknown {
        /// The URL without query string.
        url: String,
        /// What happened.
        #[source]
        source: reqwest::Error,
    },
    /// The call's total deadline passed while retrying.
    #[error("gave up after {attempts} attempts within {deadline:?}")]
    DeadlineExceeded {
        /// How many attempts were made.
        attempts: u32,
        /// The deadline.
        deadline: Duration,
        /// The last error seen.
        #[source]
        last: Box<Error>,
    },
    /// The API answered with something that is not the expected JSON.
    #[error("unexpected response body from {context}: {problem}")]
    Decode {
        /// Which call.
        context: &'static str,
        /// Where the body went wrong, without echoing the body (it may hold a secret).
        problem: String,
    },
    /// The client was configured wrongly; nothing was sent.
    #[error("{0}")]
    Config(String),
    /// No identity token could be had for a federated identity (a file that cannot be read,
    /// GitHub Actions' endpoint refusing); nothing was sent to Tailscale.
    #[error("cannot get an identity token: {problem}")]
    IdentityToken {
        /// What went wrong, in words; never the token.
        problem: String,
    },
    /// The token exchange refused the identity token (Tailscale does not say which rule
    /// failed: issuer, audience, subject pattern, claim rules, expiry or signature).
    #[error(
        "the token exchange refused {what} ({status}); the identity's issuer, audience and subject pattern must match these, and the token must not have expired"
    )]
    ExchangeRefused {
        /// The HTTP status.
        status: u16,
        /// The identity, where the token came from, the API's message and the token's
        /// `iss`, `sub`, `aud` and expiry, in words; never the token.
        what: String,
    },
}

impl Error {
    /// This error with the API's message redacted of `secrets`, in every encoding.
    pub(crate) fn redacted(self, secrets: &[&crate::key::Secret]) -> Self {
        if secrets.is_empty() {
            return self;
        }
        let redactor = crate::child::Redactor::new(secrets.iter().copied());
        let clean = |message: String| redactor.redact(message.as_bytes());
        match self {
            Self::NotFound { message } => Self::NotFound {
                message: clean(message),
            },
            Self::Unauthorized { message } => Self::Unauthorized {
                message: clean(message),
            },
            Self::Forbidden { message } => Self::Forbidden {
                message: clean(message),
            },
            Self::BadRequest { message } => Self::BadRequest {
                message: clean(message),
            },
            Self::Server { status, message } => Self::Server {
                status,
                message: clean(message),
            },
            other => other,
        }
    }

    /// Whether trying the same call again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. } => true,
            Self::DeadlineExceeded { last, .. } => last.is_retryable(),
            Self::NotFound { .. }
            | Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::BadRequest { .. }
            | Self::UnexpectedStatus { .. }
            | Self::OutcomeUnknown { .. }
            | Self::Decode { .. }
            | Self::Config(_)
            | Self::IdentityToken { .. }
            | Self::ExchangeRefused { .. } => false,
        }
    }

    /// Whether this is a 404.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// The HTTP status the API answered with, if it answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { .. } => Some(404),
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::BadRequest { .. } => Some(400),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. }
            | Self::UnexpectedStatus { status, .. }
            | Self::ExchangeRefused { status, .. } => Some(*status),
            Self::DeadlineExceeded { last, .. } => last.status(),
            Self::IdentityToken { .. }
            | Self::Transport { .. }
            | Self::OutcomeUnknown { .. }
            | Self::Decode { .. }
            | Self::Config(_) => None,
        }
    }
}
