//! The emulator's own test OIDC issuer, on the admin surface (`/_emulator/oidc`), so that the
//! demo and CLI tests can use workload identity federation against one server: create a
//! federated identity with issuer `http://<emulator>/_emulator/oidc`, mint a token here,
//! exchange it at `/api/v2/oauth/token-exchange`. Also `GET /_emulator/token-exchanges`: every
//! exchange and why it was refused.
//!
//! Tokens are signed with a key made at start (never persisted: after a restart, older tokens
//! no longer verify). `iat`/`nbf` are the emulator's `now`, so moving its clock ages them.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{error::ApiError, issuer, state::EmulatorState, wire::JsonBody};

/// Default lifetime of a minted identity token: GitHub's are valid for about 5 minutes.
const DEFAULT_LIFETIME_SECONDS: i64 = 300;

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route(
            "/_emulator/oidc/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/_emulator/oidc/jwks", get(jwks))
        .route("/_emulator/oidc/token", post(token))
        .route("/_emulator/token-exchanges", get(exchanges))
}

/// `http://<Host>/_emulator/oidc`: the admin surface is served over loopback http only.
fn issuer_url(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']))
        .ok_or_else(|| ApiError::bad_request("a Host header is required"))?;
    Ok(format!("http://{host}/_emulator/oidc"))
}

async fn discovery(headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(issuer::discovery_document(&issuer_url(&headers)?)))
}

async fn jwks(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    Json(state.issuer_key().jwks())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    sub: String,
    aud: String,
    #[serde(default)]
    lifetime_seconds: Option<i64>,
    /// More claims, e.g. `repository_owner`; may override the standard ones.
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
}

/// `POST /_emulator/oidc/token {"sub", "aud", "lifetime_seconds"?, "claims"?}`:
/// `{"token", "issuer"}`.
async fn token(
    State(state): State<EmulatorState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let issuer = issuer_url(&headers)?;
    let now = state.read(|_, now| now.unix_timestamp());
    let lifetime = body.lifetime_seconds.unwrap_or(DEFAULT_LIFETIME_SECONDS);
    let claims = issuer::claims(&issuer, &body.sub, &body.aud, now, lifetime, &body.claims);
    let token = state.issuer_key().sign(&claims);
    Ok(Json(
        serde_json::json!({ "token": token, "issuer": issuer }),
    ))
}

async fn exchanges(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "exchanges": state.exchanges() }))
}
