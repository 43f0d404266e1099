//! Webhooks: `GET/POST /api/v2/tailnet/{tailnet}/webhooks`, `GET/PATCH/DELETE
//! /api/v2/webhooks/{endpointId}` and `POST /api/v2/webhooks/{endpointId}/rotate`.
//!
//! The secret (`tskey-webhook-<id>-<secret>`) is returned by create and rotate only. Rotation
//! replaces the stored hash, so the old secret is retired at once. Scope: `webhooks` /
//! `webhooks:read`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};

use crate::{
    auth::{Caller, Principal},
    error::ApiError,
    model::WebhookRecord,
    scope::Access,
    secret,
    state::{ADMIN_USER_ID, EmulatorState, Store},
    wire::{ApiPath, JsonBody, WebhookBody, WebhookJson},
};

/// `providerType` values (the spec's enum plus the empty string it describes).
const PROVIDER_TYPES: [&str; 5] = ["", "slack", "mattermost", "googlechat", "discord"];

/// The spec's `subscriptions` enum.
const EVENTS: [&str; 18] = [
    "nodeCreated",
    "nodeNeedsApproval",
    "nodeApproved",
    "nodeKeyExpiringInOneDay",
    "nodeKeyExpired",
    "nodeDeleted",
    "nodeSigned",
    "nodeNeedsSignature",
    "policyUpdate",
    "userCreated",
    "userNeedsApproval",
    "userSuspended",
    "userRestored",
    "userDeleted",
    "userApproved",
    "userRoleUpdated",
    "subnetIPForwardingNotEnabled",
    "exitNodeIPForwardingNotEnabled",
];

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/webhooks", get(list).post(create))
        .route(
            "/api/v2/webhooks/{endpoint_id}",
            get(get_webhook).patch(update).delete(delete_webhook),
        )
        .route("/api/v2/webhooks/{endpoint_id}/rotate", post(rotate))
}

fn subscriptions(values: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let values = values.ok_or_else(|| ApiError::bad_request("subscriptions are required"))?;
    if let Some(unknown) = values.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(format!(
            "invalid subscription \"{unknown}\""
        )));
    }
    let mut unique = Vec::with_capacity(values.len());
    for event in values {
        if !unique.contains(&event) {
            unique.push(event);
        }
    }
    Ok(unique)
}

fn live<'a>(store: &'a Store, endpoint_id: &str) -> Result<&'a WebhookRecord, ApiError> {
    store
        .webhooks
        .iter()
        .find(|w| w.endpoint_id == endpoint_id && w.deleted.is_none())
        .ok_or(ApiError::NotFound("webhook not found"))
}

fn live_mut<'a>(
    store: &'a mut Store,
    endpoint_id: &str,
) -> Result<&'a mut WebhookRecord, ApiError> {
    store
        .webhooks
        .iter_mut()
        .find(|w| w.endpoint_id == endpoint_id && w.deleted.is_none())
        .ok_or(ApiError::NotFound("webhook not found"))
}

/// A fresh `(secret_id, credential)` pair.
fn new_secret(store: &Store) -> (String, String) {
    let id = store.unused_key_id();
    let credential = secret::new_credential("webhook", &id);
    (id, credential)
}

async fn list(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.read(|store, _now| {
        store.check_tailnet(&tailnet)?;
        caller.require("webhooks", Access::Read)?;
        let webhooks: Vec<WebhookJson> = store
            .webhooks
            .iter()
            .filter(|w| w.deleted.is_none())
            .map(|w| WebhookJson::new(w, None))
            .collect();
        Ok(Json(serde_json::json!({ "webhooks": webhooks })))
    })
}

async fn create(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<Json<WebhookJson>, ApiError> {
    state.mutate(|store, now| {
        store.check_tailnet(&tailnet)?;
        caller.require("webhooks", Access::Write)?;
        let endpoint_url = body.endpoint_url.unwrap_or_default();
        if !endpoint_url.starts_with("https://") || endpoint_url.len() <= "https://".len() {
            return Err(ApiError::bad_request("endpointUrl must be an https:// URL"));
        }
        let provider_type = body.provider_type.unwrap_or_default();
        if !PROVIDER_TYPES.contains(&provider_type.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid providerType \"{provider_type}\""
            )));
        }
        let subscriptions = subscriptions(body.subscriptions)?;
        let endpoint_id = loop {
            let id = secret::random_alphanumeric(12);
            if !store.webhooks.iter().any(|w| w.endpoint_id == id) {
                break id;
            }
        };
        let creator_login_name = match &caller.principal {
            Principal::User { user_id } if user_id == ADMIN_USER_ID => {
                format!("admin@{}", store.tailnet)
            }
            Principal::User { user_id } => format!("{user_id}@{}", store.tailnet),
            // "In some cases, such as webhooks created with an OAuth client, this can be blank."
            Principal::OAuth { .. } => String::new(),
        };
        let (secret_id, credential) = new_secret(store);
        let record = WebhookRecord {
            endpoint_id,
            endpoint_url,
            provider_type,
            creator_login_name,
            created: now,
            last_modified: now,
            subscriptions,
            secret_id,
            secret_sha256: secret::sha256_hex(&credential),
            rotations: 0,
            deleted: None,
        };
        tracing::info!(endpoint_id = %record.endpoint_id, "webhook created");
        let json = WebhookJson::new(&record, Some(credential));
        store.webhooks.push(record);
        Ok(Json(json))
    })
}

async fn get_webhook(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<WebhookJson>, ApiError> {
    caller.require("webhooks", Access::Read)?;
    state.read(|store, _now| Ok(Json(WebhookJson::new(live(store, &endpoint_id)?, None))))
}

async fn update(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<Json<WebhookJson>, ApiError> {
    caller.require("webhooks", Access::Write)?;
    state.mutate(|store, now| {
        let subscriptions = body
            .subscriptions
            .map(|s| subscriptions(Some(s)))
            .transpose()?;
        let webhook = live_mut(store, &endpoint_id)?;
        if let Some(subscriptions) = subscriptions {
            webhook.subscriptions = subscriptions;
        }
        webhook.last_modified = now;
        Ok(Json(WebhookJson::new(webhook, None)))
    })
}

async fn delete_webhook(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require("webhooks", Access::Write)?;
    state.mutate(|store, now| {
        live_mut(store, &endpoint_id)?.deleted = Some(now);
        tracing::info!(endpoint_id = %endpoint_id, "webhook deleted");
        Ok(StatusCode::OK)
    })
}

/// Issues a new secret and retires the old one.
async fn rotate(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<WebhookJson>, ApiError> {
    caller.require("webhooks", Access::Write)?;
    state.mutate(|store, now| {
        live(store, &endpoint_id)?;
        let (secret_id, credential) = new_secret(store);
        let webhook = live_mut(store, &endpoint_id)?;
        webhook.secret_id = secret_id;
        webhook.secret_sha256 = secret::sha256_hex(&credential);
        webhook.rotations += 1;
        webhook.last_modified = now;
        tracing::info!(endpoint_id = %endpoint_id, "webhook secret rotated");
        Ok(Json(WebhookJson::new(webhook, Some(credential))))
    })
}
