//! `POST /api/v2/secret-scanning/verify`: the unauthenticated liveness check secret scanners
//! use (`TruffleHog`, `Kingfisher`). Not in the spec.
//!
//! Form body `key=<full credential>`. 204 when the credential is live (an active auth key,
//! OAuth client secret or API access token, or a webhook's current secret), 401 otherwise. It
//! is also how tests confirm that a rotated webhook secret was retired.

use axum::{
    Form, Router,
    extract::{State, rejection::FormRejection},
    http::StatusCode,
    routing::post,
};
use serde::Deserialize;

use crate::{error::ApiError, model::KeyType, secret, state::EmulatorState};

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new().route("/api/v2/secret-scanning/verify", post(verify))
}

#[derive(Deserialize)]
struct VerifyForm {
    key: Option<String>,
}

async fn verify(
    State(state): State<EmulatorState>,
    form: Result<Form<VerifyForm>, FormRejection>,
) -> Result<StatusCode, ApiError> {
    let Form(form) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let credential = form
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_request("key is required"))?;
    let live = state.read(|store, now| {
        let Some((kind, id)) = secret::parse_credential(&credential) else {
            return false;
        };
        if kind == "webhook" {
            return store.webhooks.iter().any(|w| {
                w.deleted.is_none()
                    && w.secret_id == id
                    && secret::matches_hash(&credential, &w.secret_sha256)
            });
        }
        store.key(id).is_some_and(|k| {
            k.key_type.credential_kind() == Some(kind)
                && k.key_type != KeyType::Federated
                && k.is_active(now)
                && k.secret_sha256
                    .as_deref()
                    .is_some_and(|h| secret::matches_hash(&credential, h))
        })
    });
    if live {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Unauthorized)
    }
}
