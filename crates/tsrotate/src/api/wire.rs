//! The JSON the Tailscale API speaks for keys, OAuth tokens and webhooks.
//!
//! Every response field is optional unless the API always sends it: Tailscale has returned
//! bare `{"id": ...}` objects from the key list in the past (tailscale-api.md §4.1), and
//! fields were added over time. Request bodies follow what the official Go client sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::{KeyId, Secret};

/// What kind of key object the API describes (`keyType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// An auth key, for registering devices.
    Auth,
    /// An OAuth client.
    Client,
    /// An API access token, personal or minted for an OAuth client.
    Api,
    /// A federated identity (workload identity federation).
    Federated,
    /// A type this version does not know.
    #[serde(other)]
    Unknown,
}

/// What devices registered with an auth key get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCreateCapabilities {
    /// The key can register more than one device.
    #[serde(default)]
    pub reusable: bool,
    /// Devices registered with it are removed when they go offline.
    #[serde(default)]
    pub ephemeral: bool,
    /// Devices registered with it skip device approval.
    #[serde(default)]
    pub preauthorized: bool,
    /// Tags the devices get; required for tailnet-owned keys.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `capabilities.devices` of an auth key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCapabilities {
    /// What devices registered with the key get; absent means a single-use, untagged key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<DeviceCreateCapabilities>,
}

/// `capabilities` of an auth key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCapabilities {
    /// Device capabilities; the API requires the object, even empty.
    #[serde(default)]
    pub devices: DeviceCapabilities,
}

/// A key object as the API describes it. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    /// The key ID.
    pub id: KeyId,
    /// The kind of key, when the API says.
    #[serde(default)]
    pub key_type: Option<KeyType>,
    /// The description given at creation.
    #[serde(default)]
    pub description: Option<String>,
    /// When it was created.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// When it was last updated (OAuth clients).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated: Option<OffsetDateTime>,
    /// When it expires; absent for OAuth clients, which do not expire.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// When it was revoked.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
    /// The lifetime it was created with, in seconds.
    #[serde(default)]
    pub expiry_seconds: Option<i64>,
    /// True when the key was revoked, used up or expired.
    #[serde(default)]
    pub invalid: bool,
    /// Auth keys: what registered devices get.
    #[serde(default)]
    pub capabilities: Option<KeyCapabilities>,
    /// OAuth clients and tokens: granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// OAuth clients: tags the client may assign.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The user who created it; empty for keys created by an OAuth client (tailnet-owned).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Federated identities: the tokens they accept. Empty for other keys.
    #[serde(flatten)]
    pub federation: Federation,
}

/// What a federated identity accepts (`keyType: federated`): nothing in it is a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Federation {
    /// The OIDC issuer whose tokens are accepted (`iss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The pattern the `sub` claim must match; `*` is any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The `aud` tokens must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Claim name to pattern, for claims beyond `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_claim_rules: Option<BTreeMap<String, String>>,
}

impl Key {
    /// The device capabilities of an auth key, or the defaults (single-use, untagged).
    #[must_use]
    pub fn device_capabilities(&self) -> DeviceCreateCapabilities {
        self.capabilities
            .as_ref()
            .and_then(|c| c.devices.create.clone())
            .unwrap_or_default()
    }

    /// Whether the key is tailnet-owned (created by an OAuth client or federated identity).
    #[must_use]
    pub fn is_tailnet_owned(&self) -> bool {
        self.user_id.as_deref().is_none_or(str::is_empty)
    }

    /// Whether the key is dead as of `now`: flagged invalid, revoked, or past its expiry.
    #[must_use]
    pub fn is_dead_at(&self, now: OffsetDateTime) -> bool {
        self.invalid || self.revoked.is_some() || self.expires.is_some_and(|e| e <= now)
    }
}

/// A key just created, with its secret: the only time the API shows it. `Debug` shows the
/// secret redacted.
#[derive(Debug)]
pub struct CreatedKey {
    /// The key object.
    pub key: Key,
    /// The secret, shown once.
    pub secret: Secret,
}

/// The body of `POST /tailnet/{tailnet}/keys` for an auth key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAuthKey {
    /// Always `auth`.
    pub key_type: KeyType,
    /// What devices registered with it get.
    pub capabilities: KeyCapabilities,
    /// Lifetime in seconds; the API's default (90 days) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_seconds: Option<i64>,
    /// At most 50 characters: letters, digits, hyphens, spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl CreateAuthKey {
    /// An auth key with these capabilities.
    #[must_use]
    pub fn new(create: DeviceCreateCapabilities) -> Self {
        Self {
            key_type: KeyType::Auth,
            capabilities: KeyCapabilities {
                devices: DeviceCapabilities {
                    create: Some(create),
                },
            },
            expiry_seconds: None,
            description: None,
        }
    }
}

/// The body of `POST /tailnet/{tailnet}/keys` for an OAuth client, and of `PUT` on one.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientRequest {
    /// Always `client`.
    pub key_type: KeyType,
    /// Scopes the client may grant; at least one.
    pub scopes: Vec<String>,
    /// Tags the client may assign; required with `auth_keys` or `devices:core`.
    pub tags: Vec<String>,
    /// At most 50 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The answer of `POST /oauth/token`.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: Secret,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

/// `{"keys": [...]}` from the key list.
#[derive(Deserialize)]
pub(crate) struct KeyList {
    #[serde(default)]
    pub(crate) keys: Vec<Key>,
}

/// `{"message": "..."}`, the body of every API error.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) message: String,
}

/// The answer of `POST /webhooks/{id}/rotate` (and webhook create).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookSecret {
    #[serde(default)]
    pub(crate) secret: Option<Secret>,
}

/// A webhook endpoint, as listed. The secret is never listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Its ID, used in `/webhooks/{endpointId}`.
    pub endpoint_id: String,
    /// Where Tailscale posts events.
    #[serde(default)]
    pub endpoint_url: String,
}

/// `{"webhooks": [...]}`.
#[derive(Deserialize)]
pub(crate) struct WebhookList {
    #[serde(default)]
    pub(crate) webhooks: Vec<Webhook>,
}
