//! The test-only admin surface under `/_emulator/`: no authentication, never faulted, never in
//! the request log. It lets tests move the clock, simulate what happens outside the API
//! (devices using auth keys, people creating API tokens in the console), inject faults and
//! inspect the emulator's state. See the route table in the crate docs.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;

use crate::{
    clock::rfc3339,
    devices,
    error::ApiError,
    faults::FaultRule,
    model::{Invalidity, KeyRecord, KeyType},
    secret,
    state::{ADMIN_USER_ID, Config, DeletedKeys, EmulatorState, MAX_EXPIRY_SECONDS},
    validate,
    wire::{ApiPath, JsonBody, KeyJson, WebhookJson},
};

/// Shortest lifetime the admin console offers for an API access token: one day.
const MIN_API_TOKEN_SECONDS: i64 = 86_400;

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route("/_emulator/state", get(state))
        .route("/_emulator/clock", get(clock).post(advance_clock))
        .route("/_emulator/keys/{key_id}/use", post(use_key))
        .route("/_emulator/api-tokens", post(create_api_token))
        .route("/_emulator/devices", post(join_device))
        .route("/_emulator/devices/batch", post(join_devices))
        .route("/_emulator/devices/{node_id}/advertise", post(advertise))
        .route("/_emulator/audit-noise", post(audit_noise))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/requests", get(requests).delete(clear_requests))
        .route("/_emulator/config", get(config).post(set_config))
}

fn invalidity_name(key: &KeyRecord, now: time::OffsetDateTime) -> Option<&'static str> {
    key.invalidity(now).map(|why| match why {
        Invalidity::Revoked => "revoked",
        Invalidity::Expired => "expired",
        Invalidity::UsedUp => "used",
    })
}

/// A key as `/_emulator/state` shows it: the API view plus emulator bookkeeping.
fn key_view(key: &KeyRecord, now: time::OffsetDateTime) -> serde_json::Value {
    let mut view = serde_json::to_value(KeyJson::new(key, now, None)).unwrap_or_default();
    if let Some(object) = view.as_object_mut() {
        object.insert("uses".into(), key.uses.into());
        object.insert("issuedBy".into(), key.issued_by.clone().into());
        object.insert("invalidReason".into(), invalidity_name(key, now).into());
    }
    view
}

/// `GET /_emulator/state`: everything, including invalid keys and deleted webhooks, without
/// any secret or hash.
async fn state(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    state.read(|store, now| {
        let keys: Vec<serde_json::Value> = store.keys.iter().map(|k| key_view(k, now)).collect();
        let webhooks: Vec<serde_json::Value> = store
            .webhooks
            .iter()
            .map(|w| {
                let mut view = serde_json::to_value(WebhookJson::new(w, None)).unwrap_or_default();
                if let Some(object) = view.as_object_mut() {
                    object.insert("rotations".into(), w.rotations.into());
                    object.insert("deleted".into(), w.deleted.map(rfc3339).into());
                }
                view
            })
            .collect();
        Json(serde_json::json!({
            "tailnet": store.tailnet,
            "now": rfc3339(now),
            "config": store.config,
            "keys": keys,
            "webhooks": webhooks,
        }))
    })
}

async fn clock(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    state.read(|_store, now| Json(serde_json::json!({ "now": rfc3339(now) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    advance_seconds: u64,
}

/// `POST /_emulator/clock {"advance_seconds": N}`: moves emulator time forward by N seconds.
async fn advance_clock(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody<AdvanceBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, _now| {
        if !store.clock.advance(body.advance_seconds) {
            return Err(ApiError::bad_request("advance_seconds is too large"));
        }
        let now = store.clock.now();
        tracing::info!(advance_seconds = body.advance_seconds, now = %rfc3339(now), "clock advanced");
        Ok(Json(serde_json::json!({ "now": rfc3339(now) })))
    })
}

/// `POST /_emulator/keys/{keyId}/use`: a device registers with an auth key. A single-use key
/// becomes invalid. 404 for an unknown key, 400 for a key that cannot register a device.
async fn use_key(
    State(state): State<EmulatorState>,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, now| {
        let key = store
            .key_mut(&key_id)
            .ok_or(ApiError::NotFound("key not found"))?;
        if key.key_type != KeyType::Auth {
            return Err(ApiError::bad_request(format!(
                "key {key_id} is not an auth key"
            )));
        }
        if let Some(why) = invalidity_name(key, now) {
            return Err(ApiError::bad_request(format!(
                "key {key_id} cannot register a device: it is {why}"
            )));
        }
        key.uses += 1;
        tracing::info!(key_id = %key_id, uses = key.uses, "auth key used");
        Ok(Json(key_view(key, now)))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApiTokenBody {
    expiry_seconds: Option<i64>,
    description: Option<String>,
    user_id: Option<String>,
}

/// `POST /_emulator/api-tokens`: a person creates a personal API access token in the admin
/// console (the API cannot). Lifetime 1–90 days, default 90; owner defaults to the admin.
async fn create_api_token(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody<ApiTokenBody>,
) -> Result<Json<KeyJson>, ApiError> {
    let expiry = body.expiry_seconds.unwrap_or(MAX_EXPIRY_SECONDS);
    if !(MIN_API_TOKEN_SECONDS..=MAX_EXPIRY_SECONDS).contains(&expiry) {
        return Err(ApiError::bad_request(format!(
            "expirySeconds must be between {MIN_API_TOKEN_SECONDS} (1 day) and \
             {MAX_EXPIRY_SECONDS} (90 days)"
        )));
    }
    let description = validate::description(body.description)?;
    let user_id = body.user_id.unwrap_or_else(|| ADMIN_USER_ID.to_owned());
    if user_id.is_empty() || !user_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request("userId must be alphanumeric"));
    }
    state.mutate(|store, now| {
        let id = store.unused_key_id();
        let credential = secret::new_credential("api", &id);
        let mut record = KeyRecord::new(id, KeyType::Api, now);
        record.secret_sha256 = Some(secret::sha256_hex(&credential));
        record.description = description;
        record.expiry_seconds = Some(expiry);
        record.expires = Some(now + time::Duration::seconds(expiry));
        record.user_id = user_id;
        record.scopes = vec!["all".to_owned()];
        tracing::info!(key_id = %record.id, user_id = %record.user_id, "API access token created");
        let json = KeyJson::new(&record, now, Some(credential));
        store.keys.push(record);
        Ok(Json(json))
    })
}

/// `POST /_emulator/devices`: a node joins with an auth key (see `devices::join`); answers the
/// device as `GET /device/{id}?fields=all` would.
async fn join_device(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody<devices::JoinBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, now| devices::join(store, now, body).map(Json))
}

/// `POST /_emulator/devices/{nodeId}/advertise {"routes": [...]}`: the node advertises other
/// routes now (see `devices::advertise`).
async fn advertise(
    State(state): State<EmulatorState>,
    ApiPath(node_id): ApiPath<String>,
    JsonBody(body): JsonBody<devices::AdvertiseBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, _| devices::advertise(store, &node_id, body).map(Json))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBatch {
    devices: Vec<devices::JoinBody>,
}

/// `POST /_emulator/devices/batch {"devices": [...]}`: many joins in one request (volume
/// tests); all or nothing. Answers `{"count": N}`.
async fn join_devices(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody<JoinBatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, now| {
        let before = (store.devices.len(), store.audit.len());
        let uses: Vec<(String, u64)> = store.keys.iter().map(|k| (k.id.clone(), k.uses)).collect();
        let count = body.devices.len();
        for join in body.devices {
            if let Err(error) = devices::join(store, now, join) {
                store.devices.truncate(before.0);
                store.audit.truncate(before.1);
                for (id, n) in uses {
                    if let Some(key) = store.key_mut(&id) {
                        key.uses = n;
                    }
                }
                return Err(error);
            }
        }
        Ok(Json(serde_json::json!({ "count": count })))
    })
}

/// `POST /_emulator/audit-noise`: unrelated audit events, for volume tests.
async fn audit_noise(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody<devices::NoiseBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.mutate(|store, now| {
        devices::noise(store, now, &body)?;
        Ok(Json(serde_json::json!({ "events": store.audit.len() })))
    })
}

async fn list_faults(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "faults": state.faults().list() }))
}

/// `POST /_emulator/faults`: appends a rule (see `faults.rs` for the semantics).
async fn add_fault(
    State(state): State<EmulatorState>,
    JsonBody(rule): JsonBody<FaultRule>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rule = rule.validate()?;
    tracing::info!(?rule, "fault rule added");
    state.faults().add(rule);
    Ok(Json(serde_json::json!({ "faults": state.faults().list() })))
}

async fn clear_faults(State(state): State<EmulatorState>) -> StatusCode {
    state.faults().clear();
    StatusCode::OK
}

async fn requests(State(state): State<EmulatorState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "requests": state.requests().list() }))
}

async fn clear_requests(State(state): State<EmulatorState>) -> StatusCode {
    state.requests().clear();
    StatusCode::OK
}

async fn config(State(state): State<EmulatorState>) -> Json<Config> {
    state.read(|store, _now| Json(store.config))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    deleted_keys: Option<DeletedKeys>,
}

/// `POST /_emulator/config`: changes the given switches, keeps the others.
async fn set_config(
    State(state): State<EmulatorState>,
    JsonBody(patch): JsonBody<ConfigPatch>,
) -> Result<Json<Config>, ApiError> {
    state.mutate(|store, _now| {
        if let Some(deleted_keys) = patch.deleted_keys {
            store.config.deleted_keys = deleted_keys;
        }
        tracing::info!(config = ?store.config, "config changed");
        Ok(Json(store.config))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_util::TestApp;

    #[tokio::test]
    async fn state_holds_no_secrets_or_hashes() {
        let app = TestApp::new();
        let state = app.send("GET", "/_emulator/state", None, None).await;
        assert_eq!(state.status, 200);
        let text = state.body.to_string();
        let token_hash = crate::secret::sha256_hex(&app.boot.api_key);
        assert!(!text.contains(&app.boot.api_key) && !text.contains(&token_hash));
        assert_eq!(state.body["keys"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn admin_bodies_reject_typos() {
        let app = TestApp::new();
        let response = app
            .send(
                "POST",
                "/_emulator/clock",
                None,
                Some(&json!({"advance": 5})),
            )
            .await;
        assert_eq!(response.status, 400);
        assert!(response.body["message"].as_str().is_some());
    }
}
