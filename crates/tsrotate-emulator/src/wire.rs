//! The emulator's own JSON shapes for Tailscale's API, independent of the `tsrotate` client's
//! types so that a serde mistake cannot hide on both sides.
//!
//! Output field order follows tailscale-client-go-v2's `Key` struct. Request bodies ignore
//! unknown fields and accept `null` for any optional field, as Tailscale's Go server does (the
//! Go client sends `null` for unset slices).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    http::request::Parts,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;

use crate::{
    clock::rfc3339,
    error::ApiError,
    model::{KeyRecord, KeyType, WebhookRecord},
};

/// A JSON request body. Unlike `axum::Json` it does not insist on a `Content-Type`, and every
/// failure is a 400 `{"message"}`.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("invalid JSON body: empty body"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}

/// Path parameters, with a 400 `{"message"}` when they do not parse.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters, with a 400 `{"message"}` when they do not parse.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Go's `strconv.ParseBool`, which is how Tailscale reads boolean query parameters.
pub(crate) fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        None | Some("" | "0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value {other:?} for query parameter {name}"
        ))),
    }
}

/// `Key` as the API returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyJson {
    id: String,
    key_type: KeyType,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_seconds: Option<i64>,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked: Option<String>,
    invalid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<CapabilitiesJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_claim_rules: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CapabilitiesJson {
    devices: DevicesJson,
}

#[derive(Debug, Serialize)]
pub(crate) struct DevicesJson {
    create: crate::model::DeviceCreate,
}

impl KeyJson {
    /// The API view of a key at `now`; `secret` only in the create response.
    pub(crate) fn new(key: &KeyRecord, now: OffsetDateTime, secret: Option<String>) -> Self {
        let trust_credential = matches!(key.key_type, KeyType::Client | KeyType::Federated);
        let federation = key.federation.as_ref();
        Self {
            id: key.id.clone(),
            key_type: key.key_type,
            key: secret,
            description: key.description.clone(),
            expiry_seconds: key.expiry_seconds,
            created: rfc3339(key.created),
            updated: key.updated.map(rfc3339),
            expires: key.expires.map(rfc3339),
            revoked: key.revoked.map(rfc3339),
            invalid: !key.is_active(now),
            capabilities: key.capabilities.clone().map(|create| CapabilitiesJson {
                devices: DevicesJson { create },
            }),
            scopes: (key.key_type != KeyType::Auth).then(|| key.scopes.clone()),
            tags: (trust_credential || !key.tags.is_empty()).then(|| key.tags.clone()),
            user_id: key.user_id.clone(),
            audience: federation.map(|f| f.audience.clone()),
            issuer: federation.map(|f| f.issuer.clone()),
            subject: federation.map(|f| f.subject.clone()),
            custom_claim_rules: federation.map(|f| f.custom_claim_rules.clone()),
        }
    }
}

/// `Webhook` as the API returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookJson {
    endpoint_id: String,
    endpoint_url: String,
    provider_type: String,
    creator_login_name: String,
    created: String,
    last_modified: String,
    subscriptions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookJson {
    /// The API view of a webhook; `secret` only on create and rotate.
    pub(crate) fn new(webhook: &WebhookRecord, secret: Option<String>) -> Self {
        Self {
            endpoint_id: webhook.endpoint_id.clone(),
            endpoint_url: webhook.endpoint_url.clone(),
            provider_type: webhook.provider_type.clone(),
            creator_login_name: webhook.creator_login_name.clone(),
            created: rfc3339(webhook.created),
            last_modified: rfc3339(webhook.last_modified),
            subscriptions: webhook.subscriptions.clone(),
            secret,
        }
    }
}

/// `POST /tailnet/{tailnet}/keys` and `PUT /tailnet/{tailnet}/keys/{keyId}` bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyBody {
    pub(crate) key_type: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) capabilities: Option<CapabilitiesBody>,
    /// A number: the 2025 spec typed it `number`, so `86400.0` must work too.
    pub(crate) expiry_seconds: Option<serde_json::Number>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) custom_claim_rules: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CapabilitiesBody {
    pub(crate) devices: Option<DevicesBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DevicesBody {
    pub(crate) create: Option<CreateBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CreateBody {
    pub(crate) reusable: Option<bool>,
    pub(crate) ephemeral: Option<bool>,
    pub(crate) preauthorized: Option<bool>,
    pub(crate) tags: Option<Vec<String>>,
}

/// `POST /tailnet/{tailnet}/webhooks` and `PATCH /webhooks/{endpointId}` bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookBody {
    pub(crate) endpoint_url: Option<String>,
    pub(crate) provider_type: Option<String>,
    pub(crate) subscriptions: Option<Vec<String>>,
}

/// An integral JSON number as `i64` (`86400` or `86400.0`), or `None`.
pub(crate) fn integral(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| {
        let f = number.as_f64()?;
        let in_range = f.fract() == 0.0 && f.abs() < i64::MAX as f64;
        in_range.then_some(f as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_numbers_accept_integer_valued_floats_only() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).expect("number");
        assert_eq!(integral(&n("86400")), Some(86_400));
        assert_eq!(integral(&n("86400.0")), Some(86_400));
        assert_eq!(integral(&n("-5")), Some(-5));
        assert_eq!(integral(&n("1.5")), None);
        assert_eq!(integral(&n("1e300")), None);
    }

    #[test]
    fn key_bodies_ignore_unknown_fields_and_accept_nulls() {
        let body: KeyBody = serde_json::from_str(
            r#"{"keyType":"client","scopes":["auth_keys"],"tags":null,"unknownField":{"x":1}}"#,
        )
        .expect("lenient parse");
        assert_eq!(body.key_type.as_deref(), Some("client"));
        assert!(body.tags.is_none());
    }
}
