//! Errors: [`ApiError`] is what an API caller sees, [`Error`] is what starting the emulator can
//! fail with.
//!
//! Every API error leaves as Tailscale's error body, `{"message": "..."}` (the spec's `Error`
//! schema). Internal detail goes to the log, never into the response.

use std::path::PathBuf;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Failures of [`crate::serve`], [`crate::EmulatorState::new`] and
/// [`crate::try_spawn_on_thread`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener's local address could not be read, or the thread server could not bind.
    #[error("cannot set up the listener")]
    Listener(#[source] std::io::Error),
    /// The emulator thread or its runtime could not be started.
    #[error("cannot start the emulator runtime")]
    Runtime(#[source] std::io::Error),
    /// The state file exists but could not be read.
    #[error("cannot read state file `{}`", path.display())]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not JSON of the expected shape.
    #[error("state file `{}` is not valid emulator state", path.display())]
    ParseState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The state file was written by an incompatible emulator version.
    #[error("state file `{}` has format version {found}, expected {expected}", path.display())]
    StateVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The state file belongs to another tailnet than the one requested in [`crate::Options`].
    #[error("state file `{}` belongs to tailnet {found}, not {requested}", path.display())]
    TailnetMismatch {
        path: PathBuf,
        found: String,
        requested: String,
    },
    /// The state file could not be written.
    #[error("cannot write state file `{}`", path.display())]
    WriteState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An error answer from the emulated API, rendered as `{"message": "..."}`.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: the request is malformed or breaks one of Tailscale's rules.
    BadRequest(String),
    /// 401: no token, or an unknown, revoked or expired one.
    Unauthorized,
    /// 401 from the token endpoint: the client secret is unknown, wrong or revoked.
    InvalidClient,
    /// 403: the caller lacks a scope or permission; the message names it.
    Forbidden(String),
    /// 404: tailnet, key, webhook or route not found.
    NotFound(&'static str),
    /// 405 for a known path with another method.
    MethodNotAllowed,
    /// 501: a device shared into the tailnet cannot be deleted from it.
    NotOwned,
    /// A status chosen by a fault rule (`/_emulator/faults`).
    Injected {
        status: StatusCode,
        retry_after_seconds: Option<u64>,
    },
    /// Refused by the access guard ([`crate::guard`]): 401, 415 or 421 with its reason.
    Status(StatusCode, String),
    /// 500: something the emulator itself got wrong (e.g. the state file cannot be written).
    /// The detail is logged, not sent.
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// 403 naming the missing scope, e.g. `auth_keys`.
    pub(crate) fn missing_scope(scope: &str) -> Self {
        Self::Forbidden(format!(
            "calling actor does not have enough permissions to perform this function: \
             missing scope \"{scope}\""
        ))
    }

    /// 400 in the words Tailscale uses for tags a caller may not assign.
    pub(crate) fn tags_not_permitted(tags: &[String]) -> Self {
        Self::BadRequest(format!(
            "requested tags [{}] are invalid or not permitted",
            tags.join(" ")
        ))
    }
}

/// The message Tailscale's spec shows for a status (components.responses examples), used for
/// injected faults.
fn canonical_message(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "bad request".to_owned(),
        403 => "forbidden".to_owned(),
        404 => "not found".to_owned(),
        409 => "conflict".to_owned(),
        429 => "too many requests".to_owned(),
        500 => "internal server error".to_owned(),
        502 => "bad gateway".to_owned(),
        504 => "request took too long to process, please try again later".to_owned(),
        _ => status
            .canonical_reason()
            .map_or_else(|| format!("status {}", status.as_u16()), str::to_lowercase),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, retry_after) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message, None),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "API token invalid".to_owned(),
                None,
            ),
            Self::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid client credentials".to_owned(),
                None,
            ),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, message, None),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, what.to_owned(), None),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed".to_owned(),
                None,
            ),
            Self::NotOwned => (
                StatusCode::NOT_IMPLEMENTED,
                "device not owned by tailnet".to_owned(),
                None,
            ),
            Self::Injected {
                status,
                retry_after_seconds,
            } => (status, canonical_message(status), retry_after_seconds),
            Self::Status(status, message) => (status, message, None),
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal emulator error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    canonical_message(StatusCode::INTERNAL_SERVER_ERROR),
                    None,
                )
            }
        };
        let mut response =
            (status, Json(serde_json::json!({ "message": message }))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}
