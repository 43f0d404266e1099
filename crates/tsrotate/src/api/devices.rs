//! Devices, the configuration audit log and users: what `contain` reads and changes.
//!
//! Retries: three device actions are safe to repeat (setting `authorized` or the enabled
//! routes to the same value, deleting a deleted device: the second call changes nothing, and a
//! 404 after a lost answer means the delete happened), so they are retried like `GET`s on 429,
//! 5xx and transport errors. Expiring is not: each call moves the node key's expiry again (and
//! logs it), so it is retried only when the API provably did not act, and `contain` looks at
//! the device before trying again.

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use super::{Client, Error, Idempotency, encode_segment};
use crate::key::KeyId;

/// A device as `GET /tailnet/{tailnet}/devices?fields=all` describes it. Every field is
/// optional: external (shared-in) devices leave many empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    clippy::struct_excessive_bools,
    reason = "mirrors the API's booleans one for one"
)]
pub struct Device {
    /// The preferred ID (`n…CNTRL`).
    #[serde(default)]
    pub node_id: String,
    /// The legacy numeric ID.
    #[serde(default)]
    pub id: String,
    /// The machine name.
    #[serde(default)]
    pub hostname: String,
    /// The `MagicDNS` name.
    #[serde(default)]
    pub name: String,
    /// Login name of the user who registered it (`tagged-devices` for tagged devices).
    #[serde(default)]
    pub user: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Tailscale client version; empty for external devices.
    #[serde(default)]
    pub client_version: String,
    /// When it joined; absent (or empty) for external devices.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    #[serde(serialize_with = "time::serde::rfc3339::option::serialize")]
    pub created: Option<OffsetDateTime>,
    /// When its node key expires (or expired); absent for external devices. `contain` tells
    /// by it whether an expiry it asked for happened before a crash.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    #[serde(serialize_with = "time::serde::rfc3339::option::serialize")]
    pub expires: Option<OffsetDateTime>,
    /// Whether its node key's expiry is disabled ("the keys for the device will not
    /// expire"): tagged devices join so by default. Whether `POST /device/{id}/expire` takes
    /// effect on such a device is not documented, which `contain`'s plan says.
    #[serde(default)]
    pub key_expiry_disabled: bool,
    /// Whether it is authorized to join the tailnet.
    #[serde(default)]
    pub authorized: bool,
    /// Shared in from another tailnet: never changed by tsrotate.
    #[serde(default)]
    pub is_external: bool,
    /// Ephemeral node.
    #[serde(default)]
    pub is_ephemeral: bool,
    /// Several connections share its node key (node state copied between machines).
    #[serde(default)]
    pub multiple_connections: bool,
    /// Tags (empty for user-owned devices).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Routes it asks to expose.
    #[serde(default)]
    pub advertised_routes: Vec<String>,
    /// Routes an admin approved.
    #[serde(default)]
    pub enabled_routes: Vec<String>,
}

/// An empty string (external devices) reads as absent.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let text = Option::<String>::deserialize(d)?.unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `DeviceRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRoutes {
    /// Routes the device asks to expose.
    #[serde(default)]
    pub advertised_routes: Vec<String>,
    /// Routes enabled for it.
    #[serde(default)]
    pub enabled_routes: Vec<String>,
}

/// Who caused an audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditActor {
    /// User ID, node ID, OAuth client ID, or (observed, undocumented) an auth key's ID.
    #[serde(default)]
    pub id: String,
    /// `USER`, `NODE`, `OAUTH_CLIENT`, …
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The login name, for users.
    #[serde(default)]
    pub login_name: String,
}

/// What an audit event acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditTarget {
    /// The node ID for `NODE` targets.
    #[serde(default)]
    pub id: String,
    /// Its name at the time.
    #[serde(default)]
    pub name: String,
    /// `NODE`, `USER`, …
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The property changed, if any.
    #[serde(default)]
    pub property: Option<String>,
}

/// One configuration audit log event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub event_time: OffsetDateTime,
    /// Shared by the events of one operation.
    #[serde(default, rename = "eventGroupID")]
    pub event_group_id: String,
    /// Who.
    #[serde(default)]
    pub actor: AuditActor,
    /// On what.
    #[serde(default)]
    pub target: AuditTarget,
    /// `CREATE`, `LOGIN`, …
    #[serde(default)]
    pub action: String,
}

/// A user, as far as `contain` needs one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user ID.
    #[serde(default)]
    pub id: String,
    /// The login name devices show in `user`.
    #[serde(default)]
    pub login_name: String,
}

#[derive(Deserialize)]
struct DeviceList {
    devices: Vec<Device>,
}

#[derive(Deserialize)]
struct AuditLog {
    #[serde(default)]
    logs: Vec<AuditEvent>,
}

#[derive(Serialize)]
struct AuthorizedBody {
    authorized: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyExpiryBody {
    key_expiry_disabled: bool,
}

#[derive(Serialize)]
struct RoutesBody<'a> {
    routes: &'a [String],
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Client {
    fn device_path(id: &str, action: &str) -> String {
        format!("/api/v2/device/{}{action}", encode_segment(id))
    }

    /// One action on a device whose answer carries nothing we need.
    async fn act_on_device<B: Serialize + Sync>(
        &self,
        method: Method,
        (id, action): (&str, &str),
        body: Option<&B>,
        idempotency: Idempotency,
        what: &'static str,
    ) -> Result<(), Error> {
        let path = Self::device_path(id, action);
        let _: serde::de::IgnoredAny = self
            .call(method, &path, &[], body, idempotency, what)
            .await?;
        Ok(())
    }

    /// `GET /tailnet/{tailnet}/devices?fields=all`, with exact-match `filters`
    /// (`("tags", "tag:ci")`, …). Needs `devices:core:read`.
    #[tracing::instrument(skip_all)]
    pub async fn list_devices(&self, filters: &[(&str, &str)]) -> Result<Vec<Device>, Error> {
        let path = format!("/api/v2/tailnet/{}/devices", encode_segment(self.tailnet()));
        let mut query = vec![("fields", "all")];
        query.extend_from_slice(filters);
        let list: DeviceList = self
            .call(
                Method::GET,
                &path,
                &query,
                None::<&()>,
                Idempotency::Safe,
                "the device list",
            )
            .await?;
        Ok(list.devices)
    }

    /// `GET /device/{deviceId}?fields=all`.
    #[tracing::instrument(skip_all, fields(device = %id))]
    pub async fn get_device(&self, id: &str) -> Result<Device, Error> {
        self.call(
            Method::GET,
            &Self::device_path(id, ""),
            &[("fields", "all")],
            None::<&()>,
            Idempotency::Safe,
            "a device",
        )
        .await
    }

    /// `POST /device/{deviceId}/expire`: its node key expires now. Needs `devices:core`.
    #[tracing::instrument(skip_all, fields(device = %id))]
    pub async fn expire_device(&self, id: &str) -> Result<(), Error> {
        self.act_on_device(
            Method::POST,
            (id, "/expire"),
            None::<&()>,
            Idempotency::Creates,
            "the device expiry",
        )
        .await
    }

    /// `POST /device/{deviceId}/key {"keyExpiryDisabled": …}`. Needs `devices:core`. The
    /// expiry time is kept (the spec). Whether disabling expiry brings back a device whose
    /// node key already expired is not documented and reports conflict
    /// (juanfont/headscale#1851 says it did, tailscale/tailscale#19785 says it did not), so
    /// `rollback` does not rely on it.
    #[tracing::instrument(skip_all, fields(device = %id, disabled))]
    pub async fn set_device_key_expiry_disabled(
        &self,
        id: &str,
        disabled: bool,
    ) -> Result<(), Error> {
        let body = KeyExpiryBody {
            key_expiry_disabled: disabled,
        };
        self.act_on_device(
            Method::POST,
            (id, "/key"),
            Some(&body),
            Idempotency::Safe,
            "the device key expiry",
        )
        .await
    }

    /// `POST /device/{deviceId}/authorized`. Needs `devices:core`.
    #[tracing::instrument(skip_all, fields(device = %id, authorized))]
    pub async fn set_device_authorized(&self, id: &str, authorized: bool) -> Result<(), Error> {
        self.act_on_device(
            Method::POST,
            (id, "/authorized"),
            Some(&AuthorizedBody { authorized }),
            Idempotency::Safe,
            "the device authorization",
        )
        .await
    }

    /// `POST /device/{deviceId}/routes`: replaces the enabled routes. Needs `devices:routes`.
    #[tracing::instrument(skip_all, fields(device = %id))]
    pub async fn set_device_routes(
        &self,
        id: &str,
        routes: &[String],
    ) -> Result<DeviceRoutes, Error> {
        self.call(
            Method::POST,
            &Self::device_path(id, "/routes"),
            &[],
            Some(&RoutesBody { routes }),
            Idempotency::Safe,
            "the device routes",
        )
        .await
    }

    /// `DELETE /device/{deviceId}`. Needs `devices:core`. Cannot be undone.
    #[tracing::instrument(skip_all, fields(device = %id))]
    pub async fn delete_device(&self, id: &str) -> Result<(), Error> {
        self.act_on_device(
            Method::DELETE,
            (id, ""),
            None::<&()>,
            Idempotency::Safe,
            "the device deletion",
        )
        .await
    }

    /// `GET /tailnet/{tailnet}/logging/configuration` between `start` and `end`, limited to
    /// `events` (e.g. `NODE.CREATE`) when given. Needs `logs:configuration:read`.
    #[tracing::instrument(skip_all)]
    pub async fn list_audit_log(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        events: &[&str],
    ) -> Result<Vec<AuditEvent>, Error> {
        let path = format!(
            "/api/v2/tailnet/{}/logging/configuration",
            encode_segment(self.tailnet())
        );
        let (start, end) = (rfc3339(start), rfc3339(end));
        let mut query = vec![("start", start.as_str()), ("end", end.as_str())];
        query.extend(events.iter().map(|e| ("event", *e)));
        let log: AuditLog = self
            .call(
                Method::GET,
                &path,
                &query,
                None::<&()>,
                Idempotency::Safe,
                "the configuration audit log",
            )
            .await?;
        Ok(log.logs)
    }

    /// `GET /users/{userId}`. Needs `users:read`.
    #[tracing::instrument(skip_all, fields(user = %id))]
    pub async fn get_user(&self, id: &str) -> Result<User, Error> {
        self.call(
            Method::GET,
            &format!("/api/v2/users/{}", encode_segment(id)),
            &[],
            None::<&()>,
            Idempotency::Safe,
            "a user",
        )
        .await
    }
}

/// The scope a 403 from one of these calls means is missing, for messages.
#[must_use]
pub fn scope_for(call: DeviceCall) -> &'static str {
    match call {
        DeviceCall::List => "devices:core:read",
        DeviceCall::AuditLog => "logs:configuration:read",
        DeviceCall::User => "users:read",
        DeviceCall::Core => "devices:core",
        DeviceCall::Routes => "devices:routes",
    }
}

/// Which device call failed, to name its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCall {
    /// Listing devices.
    List,
    /// Reading the configuration audit log.
    AuditLog,
    /// Reading a user.
    User,
    /// Expire, authorize, delete.
    Core,
    /// Setting routes.
    Routes,
}

/// Keeps [`KeyId`] in this module's public surface for callers that match actors to keys.
#[must_use]
pub fn actor_is_key(actor: &AuditActor, key: &KeyId) -> bool {
    actor.id == key.as_str()
}
