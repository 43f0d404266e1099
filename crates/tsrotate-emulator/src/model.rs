//! The records the emulator stores: keys (every credential type) and webhooks.
//!
//! Records hold SHA-256 hashes of credential strings, never the strings. They serialize as-is
//! into the state file, so renaming a field is a state-format change (see `persist.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Tailscale's `keyType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyType {
    /// Auth key (`tskey-auth-`), registers devices.
    Auth,
    /// OAuth client (`tskey-client-` secret).
    Client,
    /// API access token (`tskey-api-`): personal, or issued by an OAuth client.
    Api,
    /// Federated identity: a trust credential without a secret.
    Federated,
}

impl KeyType {
    /// The `<type>` in `tskey-<type>-…` for types that have a secret.
    pub(crate) fn credential_kind(self) -> Option<&'static str> {
        match self {
            Self::Auth => Some("auth"),
            Self::Client => Some("client"),
            Self::Api => Some("api"),
            Self::Federated => None,
        }
    }
}

/// Why a key no longer works. `None` from [`KeyRecord::invalidity`] means it is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalidity {
    Revoked,
    Expired,
    /// A single-use auth key that has registered a device.
    UsedUp,
}

/// What devices registered with an auth key get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceCreate {
    pub(crate) reusable: bool,
    pub(crate) ephemeral: bool,
    pub(crate) preauthorized: bool,
    pub(crate) tags: Vec<String>,
}

/// The fields only a federated identity has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Federation {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) audience: String,
    pub(crate) custom_claim_rules: BTreeMap<String, String>,
}

/// One credential of any type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyRecord {
    pub(crate) id: String,
    pub(crate) key_type: KeyType,
    /// SHA-256 (hex) of the full credential string; `None` for federated identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_sha256: Option<String>,
    pub(crate) description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) updated: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) expires: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) revoked: Option<OffsetDateTime>,
    /// The requested lifetime, reported as `expirySeconds` (auth keys and API tokens).
    #[serde(default)]
    pub(crate) expiry_seconds: Option<i64>,
    /// Owning user; empty when the tailnet owns the key (created with a trust credential).
    pub(crate) user_id: String,
    /// Auth keys only.
    #[serde(default)]
    pub(crate) capabilities: Option<DeviceCreate>,
    /// Trust credentials and API tokens.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    /// Trust credentials, and access tokens (the tags they may assign).
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// How many devices registered with this auth key (`/_emulator/keys/{id}/use`).
    #[serde(default)]
    pub(crate) uses: u64,
    /// For an access token issued by `POST /oauth/token`: the OAuth client's key ID.
    #[serde(default)]
    pub(crate) issued_by: Option<String>,
    #[serde(default)]
    pub(crate) federation: Option<Federation>,
    /// For a key created with an OAuth access token: that token's OAuth client, which the
    /// audit log names as the actor of what the key does.
    #[serde(default)]
    pub(crate) created_by: Option<String>,
}

impl KeyRecord {
    /// A fresh record with everything optional left empty.
    pub(crate) fn new(id: String, key_type: KeyType, created: OffsetDateTime) -> Self {
        Self {
            id,
            key_type,
            secret_sha256: None,
            description: String::new(),
            created,
            updated: None,
            expires: None,
            revoked: None,
            expiry_seconds: None,
            user_id: String::new(),
            capabilities: None,
            scopes: Vec::new(),
            tags: Vec::new(),
            uses: 0,
            issued_by: None,
            federation: None,
            created_by: None,
        }
    }

    /// Why the key no longer works at `now`, or `None` if it is active.
    pub(crate) fn invalidity(&self, now: OffsetDateTime) -> Option<Invalidity> {
        if self.revoked.is_some() {
            Some(Invalidity::Revoked)
        } else if self.expires.is_some_and(|expires| expires <= now) {
            Some(Invalidity::Expired)
        } else if self
            .capabilities
            .as_ref()
            .is_some_and(|caps| !caps.reusable && self.uses > 0)
        {
            Some(Invalidity::UsedUp)
        } else {
            None
        }
    }

    pub(crate) fn is_active(&self, now: OffsetDateTime) -> bool {
        self.invalidity(now).is_none()
    }

    /// The scope resource that governs this key: `auth_keys`, `oauth_keys`, `federated_keys`
    /// or `api_access_tokens`. Access tokens issued by an OAuth client count as `oauth_keys`
    /// ("`oauth_keys:read` grants access to OAuth clients and OAuth tokens", spec).
    pub(crate) fn scope_resource(&self) -> &'static str {
        match self.key_type {
            KeyType::Auth => "auth_keys",
            KeyType::Client => "oauth_keys",
            KeyType::Federated => "federated_keys",
            KeyType::Api if self.issued_by.is_some() => "oauth_keys",
            KeyType::Api => "api_access_tokens",
        }
    }
}

/// One webhook endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookRecord {
    pub(crate) endpoint_id: String,
    pub(crate) endpoint_url: String,
    pub(crate) provider_type: String,
    pub(crate) creator_login_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) last_modified: OffsetDateTime,
    pub(crate) subscriptions: Vec<String>,
    /// The key-ID part of the current `tskey-webhook-<id>-<secret>`.
    pub(crate) secret_id: String,
    /// SHA-256 (hex) of the current secret; a rotation replaces it, retiring the old one.
    pub(crate) secret_sha256: String,
    /// How many times the secret has been rotated.
    #[serde(default)]
    pub(crate) rotations: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) deleted: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn invalidity_covers_revoked_expired_and_used_up_keys() {
        let now = datetime!(2030-01-01 00:00:00 UTC);
        let mut key = KeyRecord::new("kAbcdefgCNTRL".into(), KeyType::Auth, now);
        key.expires = Some(now + time::Duration::seconds(10));
        key.capabilities = Some(DeviceCreate::default());
        assert_eq!(key.invalidity(now), None);

        key.uses = 1;
        assert_eq!(key.invalidity(now), Some(Invalidity::UsedUp));
        key.capabilities = Some(DeviceCreate {
            reusable: true,
            ..DeviceCreate::default()
        });
        assert_eq!(key.invalidity(now), None);

        assert_eq!(
            key.invalidity(now + time::Duration::seconds(10)),
            Some(Invalidity::Expired)
        );
        key.revoked = Some(now);
        assert_eq!(key.invalidity(now), Some(Invalidity::Revoked));
    }

    #[test]
    fn oauth_issued_tokens_are_governed_by_oauth_keys() {
        let now = datetime!(2030-01-01 00:00:00 UTC);
        let mut token = KeyRecord::new("kAbcdefgCNTRL".into(), KeyType::Api, now);
        assert_eq!(token.scope_resource(), "api_access_tokens");
        token.issued_by = Some("kClientxCNTRL".into());
        assert_eq!(token.scope_resource(), "oauth_keys");
    }
}
