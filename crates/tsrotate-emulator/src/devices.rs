//! Devices: `GET /tailnet/{tailnet}/devices`, `GET/DELETE /device/{deviceId}`, the device
//! actions (`expire`, `authorized`, `routes`) and `GET /users/{userId}`.
//!
//! Devices join only through the admin route `POST /_emulator/devices` ([`join`]), as if a node
//! had used an auth key: the device's tags and owner follow the key, as upstream, and the join
//! writes the audit events Tailscale writes for it, under one `eventGroupID`: `NODE.CREATE`,
//! `NODE.UPDATE.KEY_EXPIRY_TIME`, `NODE.LOGIN` and `NODE.APPROVE`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    audit_log::{self, Actor, AuditEvent, Target},
    auth::Caller,
    clock::rfc3339,
    error::ApiError,
    scope::Access,
    state::{EmulatorState, Store},
    wire::{ApiPath, ApiQuery, JsonBody, parse_bool},
};

/// How long a node key lives before the device must log in again (Tailscale's default).
const NODE_KEY_SECONDS: i64 = 180 * 86_400;

/// The `user` Tailscale shows for devices owned by tags.
const TAGGED_DEVICES_USER: &str = "tagged-devices";

/// One device. The flags mirror the API's booleans one for one.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRecord {
    /// Legacy numeric ID.
    pub(crate) id: String,
    pub(crate) node_id: String,
    pub(crate) hostname: String,
    /// The login name of the user who registered it, or `tagged-devices`.
    pub(crate) user: String,
    pub(crate) os: String,
    pub(crate) client_version: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) last_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires: OffsetDateTime,
    pub(crate) key_expiry_disabled: bool,
    pub(crate) authorized: bool,
    pub(crate) is_external: bool,
    pub(crate) is_ephemeral: bool,
    pub(crate) tags: Vec<String>,
    pub(crate) addresses: Vec<String>,
    pub(crate) advertised_routes: Vec<String>,
    pub(crate) enabled_routes: Vec<String>,
    /// Emulator bookkeeping, never in API answers: the auth key the device joined with.
    #[serde(default)]
    pub(crate) auth_key_id: Option<String>,
}

impl DeviceRecord {
    /// The `MagicDNS` name.
    fn name(&self, tailnet: &str) -> String {
        format!("{}.{}.ts.net", self.hostname, tailnet.replace('.', "-"))
    }

    /// The API view: `fields=default` or `fields=all`.
    pub(crate) fn to_json(&self, tailnet: &str, all: bool) -> serde_json::Value {
        let mut out = serde_json::json!({
            "addresses": self.addresses,
            "id": self.id,
            "nodeId": self.node_id,
            "user": self.user,
            "name": self.name(tailnet),
            "hostname": self.hostname,
            "clientVersion": self.client_version,
            "updateAvailable": false,
            "os": self.os,
            "created": self.created.map(rfc3339).unwrap_or_default(),
            "connectedToControl": false,
            "lastSeen": rfc3339(self.last_seen),
            "keyExpiryDisabled": self.key_expiry_disabled,
            "expires": rfc3339(self.expires),
            "authorized": self.authorized,
            "isExternal": self.is_external,
            "machineKey": if self.is_external { String::new() } else { format!("mkey:{:0>64}", self.id) },
            "nodeKey": format!("nodekey:{:0>64}", self.id),
            "blocksIncomingConnections": false,
            "tailnetLockKey": format!("nlpub:{:0>64}", self.id),
            "tailnetLockError": "",
            "tags": self.tags,
            "isEphemeral": self.is_ephemeral,
        });
        if self.created.is_none()
            && let Some(object) = out.as_object_mut()
        {
            // "this is empty for external devices": an empty string is not a date-time.
            object.remove("created");
        }
        if all && let Some(object) = out.as_object_mut() {
            object.insert("enabledRoutes".into(), self.enabled_routes.clone().into());
            object.insert(
                "advertisedRoutes".into(),
                self.advertised_routes.clone().into(),
            );
            object.insert("sshEnabled".into(), false.into());
        }
        out
    }

    fn routes_json(&self) -> serde_json::Value {
        serde_json::json!({
            "advertisedRoutes": self.advertised_routes,
            "enabledRoutes": self.enabled_routes,
        })
    }

    fn target(&self, tailnet: &str, property: Option<&str>) -> Target {
        Target {
            id: self.node_id.clone(),
            name: self.name(tailnet),
            kind: "NODE".to_owned(),
            is_ephemeral: Some(self.is_ephemeral),
            property: property.map(str::to_owned),
        }
    }
}

impl Store {
    fn device_index(&self, id: &str) -> Option<usize> {
        self.devices
            .iter()
            .position(|d| d.node_id == id || d.id == id)
    }
}

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/devices", get(list))
        .route("/api/v2/device/{device_id}", get(get_device).delete(delete))
        .route("/api/v2/device/{device_id}/expire", post(expire))
        .route("/api/v2/device/{device_id}/authorized", post(authorize))
        .route("/api/v2/device/{device_id}/key", post(set_key_expiry))
        .route(
            "/api/v2/device/{device_id}/routes",
            get(get_routes).post(set_routes),
        )
        .route("/api/v2/users/{user_id}", get(get_user))
}

/// `fields`: absent or `default` for the default set, `all` for everything.
fn fields_all(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("default") => Ok(false),
        Some("all") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid value for fields: must be all or default",
        )),
    }
}

/// Top-level properties the list can be filtered on (simple values and lists, not objects).
const FILTERABLE: &[&str] = &[
    "addresses",
    "id",
    "nodeId",
    "user",
    "name",
    "hostname",
    "clientVersion",
    "updateAvailable",
    "os",
    "created",
    "connectedToControl",
    "lastSeen",
    "keyExpiryDisabled",
    "expires",
    "authorized",
    "isExternal",
    "machineKey",
    "nodeKey",
    "blocksIncomingConnections",
    "tailnetLockKey",
    "tailnetLockError",
    "tags",
    "isEphemeral",
    "enabledRoutes",
    "advertisedRoutes",
    "sshEnabled",
];

/// Exact-match filters: a list property must contain every value given for it; any other
/// property must equal the (single) value. All of them must hold.
fn matches_filters(device: &serde_json::Value, filters: &[(String, Vec<String>)]) -> bool {
    filters
        .iter()
        .all(|(field, wanted)| match device.get(field) {
            Some(serde_json::Value::Array(items)) => wanted
                .iter()
                .all(|w| items.iter().any(|item| item.as_str() == Some(w.as_str()))),
            Some(serde_json::Value::Bool(b)) => wanted
                .iter()
                .all(|w| parse_bool(field, Some(w)).is_ok_and(|v| v == *b)),
            Some(serde_json::Value::String(s)) => wanted.iter().all(|w| w == s),
            _ => false,
        })
}

async fn list(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut fields = None;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in pairs {
        if name == "fields" {
            fields = Some(value);
            continue;
        }
        if !FILTERABLE.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "cannot filter devices on \"{name}\": not a top-level device property with a simple or list value"
            )));
        }
        match filters.iter_mut().find(|(f, _)| *f == name) {
            Some((_, values)) => values.push(value),
            None => filters.push((name, vec![value])),
        }
    }
    let all = fields_all(fields.as_deref())?;
    state.read(|store, _now| {
        store.check_tailnet(&tailnet)?;
        caller.require("devices:core", Access::Read)?;
        let devices: Vec<serde_json::Value> = store
            .devices
            .iter()
            .filter_map(|d| {
                if filters.is_empty() {
                    return Some(d.to_json(&store.tailnet, all));
                }
                let full = d.to_json(&store.tailnet, true);
                matches_filters(&full, &filters).then(|| d.to_json(&store.tailnet, all))
            })
            .collect();
        Ok(Json(serde_json::json!({ "devices": devices })))
    })
}

#[derive(Deserialize)]
struct FieldsQuery {
    fields: Option<String>,
}

async fn get_device(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FieldsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = fields_all(query.fields.as_deref())?;
    state.read(|store, _now| {
        caller.require("devices:core", Access::Read)?;
        let index = store
            .device_index(&device_id)
            .ok_or(ApiError::NotFound("device not found"))?;
        Ok(Json(store.devices[index].to_json(&store.tailnet, all)))
    })
}

async fn get_routes(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.read(|store, _now| {
        caller.require("devices:routes", Access::Read)?;
        let index = store
            .device_index(&device_id)
            .ok_or(ApiError::NotFound("device not found"))?;
        Ok(Json(store.devices[index].routes_json()))
    })
}

/// Finds a device the caller may change: 404 unknown; shared-in devices belong to another
/// tailnet (`external` decides the answer, 501 for delete as the spec says, 400 otherwise).
fn owned_device(store: &Store, device_id: &str, external: ApiError) -> Result<usize, ApiError> {
    let index = store
        .device_index(device_id)
        .ok_or(ApiError::NotFound("device not found"))?;
    if store.devices[index].is_external {
        return Err(external);
    }
    Ok(index)
}

fn not_owned() -> ApiError {
    ApiError::bad_request("device is shared into this tailnet; only its own tailnet can change it")
}

/// `POST /device/{id}/expire`: the node key expires now; the device must log in again.
async fn expire(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.mutate(|store, now| {
        caller.require("devices:core", Access::Write)?;
        let index = owned_device(store, &device_id, not_owned())?;
        let tailnet = store.tailnet.clone();
        let device = &mut store.devices[index];
        let old = rfc3339(device.expires);
        device.expires = now;
        let event = AuditEvent {
            event_time: now,
            event_group_id: audit_log::new_group_id(),
            origin: "CONFIG_API".to_owned(),
            actor: Actor::of_caller(&caller, &tailnet),
            target: device.target(&tailnet, Some("KEY_EXPIRY_TIME")),
            action: "UPDATE".to_owned(),
            old: Some(old.into()),
            new: Some(rfc3339(now).into()),
        };
        tracing::info!(node_id = %device.node_id, "device key expired");
        store.audit.push(event);
        Ok(StatusCode::OK)
    })
}

#[derive(Deserialize)]
struct KeyBody {
    #[serde(rename = "keyExpiryDisabled")]
    key_expiry_disabled: Option<serde_json::Value>,
}

/// `POST /device/{id}/key {"keyExpiryDisabled": bool}`. The emulator keeps the two fields as
/// the spec describes them: the expiry time is kept while expiry is disabled, and enabling it
/// again leaves the key to expire at that time, which may be past. It models no effect of
/// either field on connectivity: whether disabling key expiry brings back a device whose node
/// key expired is not documented, and reports conflict (juanfont/headscale#1851 reports that
/// "Disable key expiry" did bring an expired machine back on Tailscale's control server;
/// tailscale/tailscale#19785, of 2026-05-18, reports that it did not). Nor does `expire` look
/// at `keyExpiryDisabled`: what an expiry does to a device whose expiry is disabled is not
/// documented either.
async fn set_key_expiry(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
    JsonBody(body): JsonBody<KeyBody>,
) -> Result<StatusCode, ApiError> {
    let Some(serde_json::Value::Bool(disabled)) = body.key_expiry_disabled else {
        return Err(ApiError::bad_request(
            "the keyExpiryDisabled field is missing or not a boolean",
        ));
    };
    state.mutate(|store, now| {
        caller.require("devices:core", Access::Write)?;
        let index = owned_device(store, &device_id, not_owned())?;
        let tailnet = store.tailnet.clone();
        let device = &mut store.devices[index];
        if device.key_expiry_disabled != disabled {
            let old = device.key_expiry_disabled;
            device.key_expiry_disabled = disabled;
            store.audit.push(AuditEvent {
                event_time: now,
                event_group_id: audit_log::new_group_id(),
                origin: "CONFIG_API".to_owned(),
                actor: Actor::of_caller(&caller, &tailnet),
                // The spec's `property` enum has `KEY_EXPIRY` beside `KEY_EXPIRY_TIME` (and
                // no `KEY_EXPIRY_DISABLED`, which an earlier version wrote): the toggle's.
                target: device.target(&tailnet, Some("KEY_EXPIRY")),
                action: "UPDATE".to_owned(),
                old: Some(old.into()),
                new: Some(disabled.into()),
            });
        }
        tracing::info!(node_id = %device_id, disabled, "device key expiry set");
        Ok(StatusCode::OK)
    })
}

#[derive(Deserialize)]
struct AuthorizedBody {
    authorized: Option<serde_json::Value>,
}

/// `POST /device/{id}/authorized {"authorized": bool}`.
async fn authorize(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
    JsonBody(body): JsonBody<AuthorizedBody>,
) -> Result<StatusCode, ApiError> {
    let Some(serde_json::Value::Bool(authorized)) = body.authorized else {
        return Err(ApiError::bad_request(
            "the authorized field is missing or not a boolean",
        ));
    };
    state.mutate(|store, now| {
        caller.require("devices:core", Access::Write)?;
        let index = owned_device(store, &device_id, not_owned())?;
        let tailnet = store.tailnet.clone();
        let device = &mut store.devices[index];
        if device.authorized != authorized {
            device.authorized = authorized;
            let event = AuditEvent {
                event_time: now,
                event_group_id: audit_log::new_group_id(),
                origin: "CONFIG_API".to_owned(),
                actor: Actor::of_caller(&caller, &tailnet),
                target: device.target(&tailnet, None),
                action: if authorized { "APPROVE" } else { "REVOKE" }.to_owned(),
                old: None,
                new: None,
            };
            store.audit.push(event);
        }
        tracing::info!(node_id = %device_id, authorized, "device authorization set");
        Ok(StatusCode::OK)
    })
}

#[derive(Deserialize)]
struct RoutesBody {
    routes: Option<Vec<String>>,
}

/// Whether `route` is an IP prefix such as `10.0.0.0/24` or `::/0`.
pub(crate) fn is_prefix(route: &str) -> bool {
    let Some((address, bits)) = route.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// `POST /device/{id}/routes {"routes": [...]}`: replaces the enabled routes.
async fn set_routes(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
    JsonBody(body): JsonBody<RoutesBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let routes = body.routes.unwrap_or_default();
    if let Some(bad) = routes.iter().find(|r| !is_prefix(r)) {
        return Err(ApiError::bad_request(format!(
            "invalid route \"{bad}\": want an IP prefix such as 10.0.0.0/24"
        )));
    }
    state.mutate(|store, now| {
        caller.require("devices:routes", Access::Write)?;
        let index = owned_device(store, &device_id, not_owned())?;
        let tailnet = store.tailnet.clone();
        let device = &mut store.devices[index];
        let old = device.enabled_routes.clone();
        device.enabled_routes.clone_from(&routes);
        let event = AuditEvent {
            event_time: now,
            event_group_id: audit_log::new_group_id(),
            origin: "CONFIG_API".to_owned(),
            actor: Actor::of_caller(&caller, &tailnet),
            target: device.target(&tailnet, Some("ALLOWED_IPS")),
            action: "UPDATE".to_owned(),
            old: Some(old.into()),
            new: Some(routes.into()),
        };
        let answer = device.routes_json();
        store.audit.push(event);
        Ok(Json(answer))
    })
}

/// `DELETE /device/{id}`: removes the device. Shared-in devices answer 501.
async fn delete(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(device_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.mutate(|store, now| {
        caller.require("devices:core", Access::Write)?;
        let index = owned_device(store, &device_id, ApiError::NotOwned)?;
        let tailnet = store.tailnet.clone();
        let device = store.devices.remove(index);
        store.audit.push(AuditEvent {
            event_time: now,
            event_group_id: audit_log::new_group_id(),
            origin: "CONFIG_API".to_owned(),
            actor: Actor::of_caller(&caller, &tailnet),
            target: device.target(&tailnet, None),
            action: "DELETE".to_owned(),
            old: None,
            new: None,
        });
        tracing::info!(node_id = %device.node_id, "device deleted");
        Ok(StatusCode::OK)
    })
}

/// `GET /users/{userId}`: the users the emulator knows are the owners of its keys.
async fn get_user(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.read(|store, now| {
        caller.require("users", Access::Read)?;
        let first = store
            .keys
            .iter()
            .find(|k| k.user_id == user_id && !user_id.is_empty())
            .ok_or(ApiError::NotFound("user not found"))?;
        let login = audit_log::login_name(&user_id, &store.tailnet);
        let devices = store.devices.iter().filter(|d| d.user == login).count();
        Ok(Json(serde_json::json!({
            "id": user_id,
            "displayName": user_id,
            "loginName": login,
            "profilePicUrl": "",
            "tailnetId": store.tailnet,
            "created": rfc3339(first.created),
            "type": "member",
            "role": "admin",
            "status": "active",
            "deviceCount": devices,
            "lastSeen": rfc3339(now),
            "currentlyConnected": false,
        })))
    })
}

/// Who the audit log names as the actor of a join: `"owner"`, `"key"`, or an actor given as
/// the `OpenAPI` description's actor object (`{"type": "NODE"}`, `{"type":
/// "AUTOMATED_WORKER", "id": "wrk-123"}`). How Tailscale logs a join by auth key is not
/// documented, so a client must cope with any actor type the description lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum JoinActor {
    /// `"owner"` or `"key"`.
    Named(NamedActor),
    /// An actor object.
    Given(GivenActor),
}

impl Default for JoinActor {
    fn default() -> Self {
        Self::Named(NamedActor::Owner)
    }
}

/// The actors a join is usually logged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NamedActor {
    /// The key's owner: its user, or for a tailnet-owned key the OAuth client that created it.
    Owner,
    /// The auth key's ID itself (observed in a real webhook payload, undocumented).
    Key,
}

/// An audit actor as the `OpenAPI` description's `actor` object has it: `type` one of its enum,
/// `id` (for a `NODE` actor, absent means the joining node itself).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GivenActor {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "loginName")]
    login_name: Option<String>,
}

/// The actor `type` values the `OpenAPI` description lists.
const ACTOR_TYPES: [&str; 10] = [
    "USER",
    "NODE",
    "AUTOMATED_WORKER",
    "OAUTH_CLIENT",
    "SCIM",
    "MULLVAD",
    "LOGSTREAM",
    "SECRET_SCANNER",
    "PAM_CONNECTOR",
    "PAM_SERVICE_ACCOUNT",
];

impl GivenActor {
    /// Refuses an object the description does not allow, before the join changes anything.
    fn check(&self) -> Result<(), ApiError> {
        if !ACTOR_TYPES.contains(&self.kind.as_str()) {
            return Err(ApiError::bad_request(format!(
                "audit_actor type must be one of {}",
                ACTOR_TYPES.join(", ")
            )));
        }
        match (&self.id, self.kind.as_str()) {
            (Some(id), _) if !id.is_empty() => Ok(()),
            (None, "NODE") => Ok(()),
            _ => Err(ApiError::bad_request(
                "audit_actor id is required (it may be left out only for type NODE: the joining node)",
            )),
        }
    }

    /// The actor of `node_id`'s join (checked by [`GivenActor::check`]).
    fn actor(&self, node_id: &str) -> Actor {
        Actor {
            id: self.id.clone().unwrap_or_else(|| node_id.to_owned()),
            kind: self.kind.clone(),
            login_name: self.login_name.clone().unwrap_or_default(),
            display_name: String::new(),
            tags: Vec::new(),
        }
    }
}

/// `POST /_emulator/devices`: a node joins with an auth key (or, with `external`, a device
/// is shared in from another tailnet).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinBody {
    pub(crate) auth_key_id: Option<String>,
    pub(crate) hostname: String,
    #[serde(default)]
    pub(crate) os: Option<String>,
    #[serde(default)]
    pub(crate) client_version: Option<String>,
    #[serde(default)]
    pub(crate) created_offset_seconds: i64,
    #[serde(default)]
    pub(crate) routes: Vec<String>,
    #[serde(default)]
    pub(crate) audit_actor: JoinActor,
    #[serde(default)]
    pub(crate) external: bool,
}

/// A random numeric legacy ID and a `n…CNTRL` node ID not used yet.
fn new_device_ids(store: &Store) -> (String, String) {
    loop {
        let number: u64 = rand::random::<u64>() % 9_000_000_000_000_000 + 1_000_000_000_000_000;
        let node_id = format!("n{}CNTRL", crate::secret::random_alphanumeric(10));
        if !store
            .devices
            .iter()
            .any(|d| d.id == number.to_string() || d.node_id == node_id)
        {
            return (number.to_string(), node_id);
        }
    }
}

fn address(index: usize) -> Vec<String> {
    let n = index + 1;
    vec![
        format!("100.{}.{}.{}", 64 + (n >> 16) % 64, (n >> 8) % 256, n % 256),
        format!("fd7a:115c:a1e0::{:x}", n),
    ]
}

/// Refuses join requests a node could not make.
fn check_join(body: &JoinBody) -> Result<(), ApiError> {
    if body.created_offset_seconds > 0 {
        return Err(ApiError::bad_request(
            "created_offset_seconds must not be positive (a device cannot join in the future)",
        ));
    }
    if body.hostname.is_empty()
        || !body
            .hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad_request(
            "hostname must be letters, digits and hyphens",
        ));
    }
    if let Some(bad) = body.routes.iter().find(|r| !is_prefix(r)) {
        return Err(ApiError::bad_request(format!("invalid route \"{bad}\"")));
    }
    if let JoinActor::Given(given) = &body.audit_actor {
        given.check()?;
    }
    Ok(())
}

/// The body of `POST /_emulator/devices/{nodeId}/advertise`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdvertiseBody {
    routes: Vec<String>,
}

/// The node advertises `body.routes` from now on, as its owner would set them on the machine.
/// Enabled routes are an admin's approval and stay as they are.
pub(crate) fn advertise(
    store: &mut Store,
    node_id: &str,
    body: AdvertiseBody,
) -> Result<serde_json::Value, ApiError> {
    if let Some(bad) = body.routes.iter().find(|r| !is_prefix(r)) {
        return Err(ApiError::bad_request(format!("invalid route \"{bad}\"")));
    }
    let tailnet = store.tailnet.clone();
    let device = store
        .devices
        .iter_mut()
        .find(|d| d.node_id == node_id && !d.is_external)
        .ok_or(ApiError::NotFound("device not found"))?;
    device.advertised_routes = body.routes;
    Ok(device.to_json(&tailnet, true))
}

/// Joins a device as a node using `body.auth_key_id` would, at `now + created_offset_seconds`.
/// The key must have existed and been usable then; its use count goes up.
pub(crate) fn join(
    store: &mut Store,
    now: OffsetDateTime,
    body: JoinBody,
) -> Result<serde_json::Value, ApiError> {
    check_join(&body)?;
    let created = now + time::Duration::seconds(body.created_offset_seconds);
    let (id, node_id) = new_device_ids(store);
    let tailnet = store.tailnet.clone();
    let addresses = address(store.devices.len());
    let os = body.os.clone().unwrap_or_else(|| "linux".to_owned());
    if body.external {
        return join_external(store, now, body, id, node_id, addresses, os);
    }
    let client_version = body
        .client_version
        .clone()
        .unwrap_or_else(|| "1.80.0".to_owned());
    let key_id = body
        .auth_key_id
        .ok_or_else(|| ApiError::bad_request("auth_key_id is required"))?;
    let key = store
        .key_mut(&key_id)
        .ok_or(ApiError::NotFound("key not found"))?;
    let caps = key
        .capabilities
        .clone()
        .ok_or_else(|| ApiError::bad_request(format!("key {key_id} is not an auth key")))?;
    if created < key.created {
        return Err(ApiError::bad_request(format!(
            "key {key_id} did not exist yet at the requested join time"
        )));
    }
    if key.revoked.is_some_and(|r| r <= created)
        || key.expires.is_some_and(|e| e <= created)
        || (!caps.reusable && key.uses > 0)
    {
        return Err(ApiError::bad_request(format!(
            "key {key_id} cannot register a device at that time"
        )));
    }
    key.uses += 1;
    let owner = key.user_id.clone();
    let created_by = key.created_by.clone();
    let tagged = !caps.tags.is_empty();
    let device = DeviceRecord {
        id,
        node_id,
        hostname: body.hostname,
        user: if tagged || owner.is_empty() {
            TAGGED_DEVICES_USER.to_owned()
        } else {
            audit_log::login_name(&owner, &tailnet)
        },
        os,
        client_version,
        created: Some(created),
        last_seen: now,
        expires: created + time::Duration::seconds(NODE_KEY_SECONDS),
        key_expiry_disabled: tagged,
        authorized: true,
        is_external: false,
        is_ephemeral: caps.ephemeral,
        tags: caps.tags,
        addresses,
        advertised_routes: body.routes,
        enabled_routes: Vec::new(),
        auth_key_id: Some(key_id.clone()),
    };
    let actor = match body.audit_actor {
        JoinActor::Given(given) => given.actor(&device.node_id),
        JoinActor::Named(NamedActor::Key) => Actor {
            id: key_id,
            kind: "AUTOMATED_WORKER".to_owned(),
            login_name: String::new(),
            display_name: String::new(),
            tags: Vec::new(),
        },
        JoinActor::Named(NamedActor::Owner) if !owner.is_empty() => Actor::user(&owner, &tailnet),
        JoinActor::Named(NamedActor::Owner) => Actor {
            id: created_by.unwrap_or_default(),
            kind: "OAUTH_CLIENT".to_owned(),
            login_name: String::new(),
            display_name: String::new(),
            tags: Vec::new(),
        },
    };
    let events = join_events(&device, &actor, &tailnet);
    store.audit.extend(events);
    let json = device.to_json(&tailnet, true);
    tracing::info!(node_id = %device.node_id, key_id = ?device.auth_key_id, "device joined");
    store.devices.push(device);
    Ok(json)
}

/// The events Tailscale writes for one join, under one `eventGroupID`.
fn join_events(device: &DeviceRecord, actor: &Actor, tailnet: &str) -> [AuditEvent; 4] {
    let created = device.created.unwrap_or(device.last_seen);
    let group = audit_log::new_group_id();
    let event = |property: Option<&str>, action: &str, new: Option<serde_json::Value>| AuditEvent {
        event_time: created,
        event_group_id: group.clone(),
        origin: "NODE".to_owned(),
        actor: actor.clone(),
        target: device.target(tailnet, property),
        action: action.to_owned(),
        old: None,
        new,
    };
    [
        event(None, "CREATE", None),
        event(
            Some("KEY_EXPIRY_TIME"),
            "UPDATE",
            Some(rfc3339(device.expires).into()),
        ),
        event(None, "LOGIN", None),
        event(None, "APPROVE", None),
    ]
}

/// A device shared in from another tailnet: no key, no creation date, no client version.
fn join_external(
    store: &mut Store,
    now: OffsetDateTime,
    body: JoinBody,
    id: String,
    node_id: String,
    addresses: Vec<String>,
    os: String,
) -> Result<serde_json::Value, ApiError> {
    let tailnet = store.tailnet.clone();
    if body.auth_key_id.is_some() {
        return Err(ApiError::bad_request(
            "an external (shared-in) device does not join with this tailnet's auth key",
        ));
    }
    let device = DeviceRecord {
        id,
        node_id,
        hostname: body.hostname,
        user: "someone@other.example".to_owned(),
        os,
        client_version: String::new(),
        created: None,
        last_seen: now,
        expires: now + time::Duration::seconds(NODE_KEY_SECONDS),
        key_expiry_disabled: false,
        authorized: true,
        is_external: true,
        is_ephemeral: false,
        tags: Vec::new(),
        addresses,
        advertised_routes: body.routes,
        enabled_routes: Vec::new(),
        auth_key_id: None,
    };
    let json = device.to_json(&tailnet, true);
    store.devices.push(device);
    Ok(json)
}

/// `POST /_emulator/audit-noise {"count": N, "start_offset_seconds": -S}`: `N` unrelated events
/// (admin console logins) spread evenly from `now - S` to now, for volume tests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoiseBody {
    pub(crate) count: u32,
    pub(crate) start_offset_seconds: i64,
}

pub(crate) fn noise(
    store: &mut Store,
    now: OffsetDateTime,
    body: &NoiseBody,
) -> Result<(), ApiError> {
    if body.start_offset_seconds >= 0 || body.count > 1_000_000 {
        return Err(ApiError::bad_request(
            "start_offset_seconds must be negative and count at most 1000000",
        ));
    }
    let span = -body.start_offset_seconds;
    let tailnet = store.tailnet.clone();
    let actor = Actor::user(crate::state::ADMIN_USER_ID, &tailnet);
    for i in 0..i64::from(body.count) {
        let at = now - time::Duration::seconds(span - span * i / i64::from(body.count.max(1)));
        store.audit.push(AuditEvent {
            event_time: at,
            event_group_id: audit_log::new_group_id(),
            origin: "ADMIN_CONSOLE".to_owned(),
            actor: actor.clone(),
            target: Target {
                id: tailnet.clone(),
                name: tailnet.clone(),
                kind: "ADMIN_CONSOLE".to_owned(),
                is_ephemeral: None,
                property: None,
            },
            action: "LOGIN".to_owned(),
            old: None,
            new: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_util::TestApp;

    const DEVICES: &str = "/api/v2/tailnet/-/devices";
    const AUDIT: &str = "/api/v2/tailnet/-/logging/configuration";

    /// A tagged, reusable, tailnet-owned key created by the bootstrap OAuth client (through an
    /// access token it issued), and an access token with `scopes`.
    fn oauth_token(app: &TestApp, scopes: &[&str]) -> String {
        app.state
            .mutate(|store, now| {
                let id = store.unused_key_id();
                let credential = crate::secret::new_credential("api", &id);
                let mut record = crate::model::KeyRecord::new(id, crate::model::KeyType::Api, now);
                record.secret_sha256 = Some(crate::secret::sha256_hex(&credential));
                record.expires = Some(now + time::Duration::hours(1));
                record.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
                record.tags = vec!["tag:ci".to_owned()];
                record.issued_by = Some(app.boot.oauth_client_id.clone());
                store.keys.push(record);
                Ok(credential)
            })
            .expect("token")
    }

    async fn auth_key(app: &TestApp, token: &str, create: &Value) -> String {
        let body = json!({"capabilities": {"devices": {"create": create}}});
        let created = app
            .send("POST", "/api/v2/tailnet/-/keys", Some(token), Some(&body))
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        created.body["id"].as_str().expect("id").to_owned()
    }

    async fn join(app: &TestApp, body: &Value) -> Value {
        let joined = app
            .send("POST", "/_emulator/devices", None, Some(body))
            .await;
        assert_eq!(joined.status, 200, "{}", joined.body);
        joined.body
    }

    fn window() -> String {
        let now = time::OffsetDateTime::now_utc();
        let start = crate::clock::rfc3339(now - time::Duration::days(30));
        let end = crate::clock::rfc3339(now + time::Duration::days(1));
        format!("start={start}&end={end}")
    }

    #[tokio::test]
    async fn a_join_follows_the_key_and_writes_one_event_group() {
        let app = TestApp::new();
        let token = oauth_token(&app, &["all"]);
        let key = auth_key(&app, &token, &json!({"reusable": true, "tags": ["tag:ci"]})).await;
        let device = join(
            &app,
            &json!({"auth_key_id": key, "hostname": "web-1", "os": "linux",
                    "routes": ["10.0.0.0/24"], "audit_actor": "key"}),
        )
        .await;
        assert_eq!(device["tags"], json!(["tag:ci"]));
        assert_eq!(device["user"], "tagged-devices");
        assert_eq!(device["advertisedRoutes"], json!(["10.0.0.0/24"]));
        let node_id = device["nodeId"].as_str().expect("nodeId").to_owned();

        let admin = app.boot.api_key.clone();
        let listed = app
            .send("GET", &format!("{DEVICES}?fields=all"), Some(&admin), None)
            .await;
        TestApp::assert_per_spec("GET", DEVICES, &listed);
        assert_eq!(listed.body["devices"][0]["nodeId"], node_id.as_str());
        let default = app.send("GET", DEVICES, Some(&admin), None).await;
        TestApp::assert_per_spec("GET", DEVICES, &default);
        assert!(default.body["devices"][0].get("advertisedRoutes").is_none());

        let path = format!("{AUDIT}?{}", window());
        let logs = app.send("GET", &path, Some(&admin), None).await;
        TestApp::assert_per_spec("GET", AUDIT, &logs);
        let logs = logs.body["logs"].as_array().expect("logs").clone();
        let names: Vec<String> = logs
            .iter()
            .map(|e| {
                let property = e["target"]["property"]
                    .as_str()
                    .map(|p| format!(".{p}"))
                    .unwrap_or_default();
                format!(
                    "{}.{}{property}",
                    e["target"]["type"].as_str().unwrap_or(""),
                    e["action"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "NODE.CREATE",
                "NODE.UPDATE.KEY_EXPIRY_TIME",
                "NODE.LOGIN",
                "NODE.APPROVE"
            ]
        );
        assert!(
            logs.iter()
                .all(|e| e["eventGroupID"] == logs[0]["eventGroupID"]
                    && e["actor"]["id"] == key.as_str()
                    && e["target"]["id"] == node_id.as_str())
        );

        // The owner variant names the OAuth client that created the key.
        join(&app, &json!({"auth_key_id": key, "hostname": "web-2"})).await;
        let filtered = app
            .send(
                "GET",
                &format!(
                    "{path}&event=NODE.CREATE&actor={}",
                    app.boot.oauth_client_id
                ),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(filtered.status, 200, "{}", filtered.body);
        let filtered = filtered.body["logs"].as_array().expect("logs").clone();
        assert_eq!(filtered.len(), 1);
        assert_eq!(filtered[0]["actor"]["type"], "OAUTH_CLIENT");
    }

    /// How Tailscale logs a join by auth key is not documented: a test can write any actor
    /// the `OpenAPI` description allows, and nothing else.
    #[tokio::test]
    async fn a_join_can_be_logged_under_any_actor_type_the_description_lists() {
        let app = TestApp::new();
        let token = oauth_token(&app, &["all"]);
        let key = auth_key(&app, &token, &json!({"reusable": true, "tags": ["tag:ci"]})).await;
        let node = join(
            &app,
            &json!({"auth_key_id": key, "hostname": "n-1", "audit_actor": {"type": "NODE"}}),
        )
        .await;
        join(
            &app,
            &json!({"auth_key_id": key, "hostname": "w-1",
                    "audit_actor": {"type": "AUTOMATED_WORKER", "id": "wrk-123"}}),
        )
        .await;
        for bad in [
            json!({"type": "ROBOT", "id": "r-1"}),
            json!({"type": "AUTOMATED_WORKER"}),
            json!({"type": "NODE", "id": "n", "extra": 1}),
            json!("someone"),
        ] {
            let refused = app
                .send(
                    "POST",
                    "/_emulator/devices",
                    None,
                    Some(&json!({"auth_key_id": key, "hostname": "x", "audit_actor": bad})),
                )
                .await;
            assert!(
                refused.status == 400 || refused.status == 422,
                "{bad}: {} {}",
                refused.status,
                refused.body
            );
        }
        let admin = app.boot.api_key.clone();
        let path = format!("{AUDIT}?{}&event=NODE.CREATE", window());
        let logs = app.send("GET", &path, Some(&admin), None).await;
        TestApp::assert_per_spec("GET", AUDIT, &logs);
        let actors: Vec<(String, String)> = logs.body["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|e| {
                (
                    e["actor"]["type"].as_str().unwrap_or("").to_owned(),
                    e["actor"]["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            actors,
            [
                (
                    "NODE".to_owned(),
                    node["nodeId"].as_str().expect("id").to_owned()
                ),
                ("AUTOMATED_WORKER".to_owned(), "wrk-123".to_owned())
            ]
        );
        let listed = app
            .send("GET", &format!("{DEVICES}?fields=all"), Some(&admin), None)
            .await;
        assert_eq!(listed.body["devices"].as_array().expect("devices").len(), 2);
    }

    #[tokio::test]
    async fn user_owned_keys_give_devices_their_user() {
        let app = TestApp::new();
        let admin = app.boot.api_key.clone();
        let key = auth_key(&app, &admin, &json!({})).await;
        let device = join(&app, &json!({"auth_key_id": key, "hostname": "laptop"})).await;
        let user = app
            .send(
                "GET",
                &format!("/api/v2/users/{}", crate::ADMIN_USER_ID),
                Some(&admin),
                None,
            )
            .await;
        TestApp::assert_per_spec("GET", "/api/v2/users/u", &user);
        assert_eq!(device["user"], user.body["loginName"]);
        // Single use: a second join is refused.
        let again = app
            .send(
                "POST",
                "/_emulator/devices",
                None,
                Some(&json!({"auth_key_id": key, "hostname": "x"})),
            )
            .await;
        assert_eq!(again.status, 400);
    }

    #[tokio::test]
    async fn filters_are_exact_and_anded() {
        let app = TestApp::new();
        let admin = app.boot.api_key.clone();
        let token = oauth_token(&app, &["all"]);
        let tagged = auth_key(&app, &token, &json!({"reusable": true, "tags": ["tag:ci"]})).await;
        let plain = auth_key(&app, &admin, &json!({"reusable": true})).await;
        join(
            &app,
            &json!({"auth_key_id": tagged, "hostname": "a", "os": "linux"}),
        )
        .await;
        join(
            &app,
            &json!({"auth_key_id": tagged, "hostname": "b", "os": "windows"}),
        )
        .await;
        join(
            &app,
            &json!({"auth_key_id": plain, "hostname": "c", "os": "linux"}),
        )
        .await;
        let hosts = |body: &Value| -> Vec<String> {
            body["devices"]
                .as_array()
                .expect("devices")
                .iter()
                .map(|d| d["hostname"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let by_tag = app
            .send("GET", &format!("{DEVICES}?tags=tag:ci"), Some(&admin), None)
            .await;
        assert_eq!(hosts(&by_tag.body), ["a", "b"]);
        let both = app
            .send(
                "GET",
                &format!("{DEVICES}?tags=tag:ci&os=linux&fields=all"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(hosts(&both.body), ["a"]);
        let prefix = app
            .send(
                "GET",
                &format!("{DEVICES}?hostname=a&os=lin"),
                Some(&admin),
                None,
            )
            .await;
        assert!(hosts(&prefix.body).is_empty());
        let unknown = app
            .send(
                "GET",
                &format!("{DEVICES}?clientConnectivity=x"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(unknown.status, 400);
        let bad_fields = app
            .send("GET", &format!("{DEVICES}?fields=some"), Some(&admin), None)
            .await;
        assert_eq!(bad_fields.status, 400);
    }

    #[tokio::test]
    async fn actions_change_the_device_and_need_their_scopes() {
        let app = TestApp::new();
        let admin = app.boot.api_key.clone();
        let key = auth_key(&app, &admin, &json!({"reusable": true})).await;
        let device = join(
            &app,
            &json!({"auth_key_id": key, "hostname": "r", "routes": ["10.1.0.0/16"]}),
        )
        .await;
        let id = device["nodeId"].as_str().expect("nodeId");
        let base = format!("/api/v2/device/{id}");

        let reader = oauth_token(&app, &["devices:core:read"]);
        for (method, path, body) in [
            ("POST", format!("{base}/expire"), None),
            (
                "POST",
                format!("{base}/authorized"),
                Some(json!({"authorized": false})),
            ),
            ("DELETE", base.clone(), None),
        ] {
            let refused = app.send(method, &path, Some(&reader), body.as_ref()).await;
            assert_eq!(refused.status, 403, "{method} {path}");
            assert!(
                refused.body["message"]
                    .as_str()
                    .expect("message")
                    .contains("\"devices:core\"")
            );
        }
        let routes_refused = app
            .send(
                "POST",
                &format!("{base}/routes"),
                Some(&reader),
                Some(&json!({"routes": []})),
            )
            .await;
        assert!(
            routes_refused.body["message"]
                .as_str()
                .expect("message")
                .contains("devices:routes")
        );
        let logs_refused = app
            .send("GET", &format!("{AUDIT}?{}", window()), Some(&reader), None)
            .await;
        assert_eq!(logs_refused.status, 403);
        assert!(
            logs_refused.body["message"]
                .as_str()
                .expect("message")
                .contains("logs:configuration:read")
        );

        let writer = oauth_token(&app, &["devices:core", "devices:routes"]);
        let routes = app
            .send(
                "POST",
                &format!("{base}/routes"),
                Some(&writer),
                Some(&json!({"routes": ["10.1.0.0/16"]})),
            )
            .await;
        TestApp::assert_per_spec("POST", &format!("{base}/routes"), &routes);
        assert_eq!(routes.body["enabledRoutes"], json!(["10.1.0.0/16"]));
        let bad = app
            .send(
                "POST",
                &format!("{base}/authorized"),
                Some(&writer),
                Some(&json!({"authorized": "no"})),
            )
            .await;
        assert_eq!(bad.status, 400);
        for (path, body) in [
            (format!("{base}/expire"), None),
            (
                format!("{base}/authorized"),
                Some(json!({"authorized": false})),
            ),
        ] {
            let done = app.send("POST", &path, Some(&writer), body.as_ref()).await;
            TestApp::assert_per_spec("POST", &path, &done);
            assert_eq!(done.status, 200, "{path}: {}", done.body);
        }
        let fetched = app
            .send("GET", &format!("{base}?fields=all"), Some(&writer), None)
            .await;
        TestApp::assert_per_spec("GET", &base, &fetched);
        assert_eq!(fetched.body["authorized"], false);
        let got_routes = app
            .send("GET", &format!("{base}/routes"), Some(&writer), None)
            .await;
        TestApp::assert_per_spec("GET", &format!("{base}/routes"), &got_routes);

        let deleted = app.send("DELETE", &base, Some(&writer), None).await;
        TestApp::assert_per_spec("DELETE", &base, &deleted);
        assert_eq!(deleted.status, 200);
        let gone = app.send("GET", &base, Some(&writer), None).await;
        assert_eq!(gone.status, 404);
    }

    /// Disabling key expiry keeps the expiry time (the spec); it needs `devices:core` and a
    /// boolean. Nothing more is modelled (see [`set_key_expiry`]).
    #[tokio::test]
    async fn key_expiry_is_disabled_with_its_time_kept() {
        let app = TestApp::new();
        let admin = app.boot.api_key.clone();
        let key = auth_key(&app, &admin, &json!({"reusable": true})).await;
        let device = join(&app, &json!({"auth_key_id": key, "hostname": "k"})).await;
        let base = format!("/api/v2/device/{}", device["nodeId"].as_str().expect("id"));
        let path = format!("{base}/key");
        let reader = oauth_token(&app, &["devices:core:read"]);
        let refused = app
            .send(
                "POST",
                &path,
                Some(&reader),
                Some(&json!({"keyExpiryDisabled": true})),
            )
            .await;
        assert_eq!(refused.status, 403);
        let writer = oauth_token(&app, &["devices:core"]);
        for bad in [json!({"keyExpiryDisabled": "yes"}), json!({})] {
            let answer = app.send("POST", &path, Some(&writer), Some(&bad)).await;
            assert_eq!(answer.status, 400, "{bad}");
        }
        let expired = app
            .send("POST", &format!("{base}/expire"), Some(&writer), None)
            .await;
        assert_eq!(expired.status, 200);
        let done = app
            .send(
                "POST",
                &path,
                Some(&writer),
                Some(&json!({"keyExpiryDisabled": true})),
            )
            .await;
        TestApp::assert_per_spec("POST", &path, &done);
        assert_eq!(done.status, 200, "{}", done.body);
        let fetched = app.send("GET", &base, Some(&writer), None).await;
        assert_eq!(fetched.body["keyExpiryDisabled"], true);
        let (now, joined) = (
            fetched.body["expires"].as_str().expect("expires"),
            device["expires"].as_str().expect("expires at join"),
        );
        assert!(now < joined, "expired at {now}, joined with {joined}");
    }

    #[tokio::test]
    async fn shared_in_devices_cannot_be_changed() {
        let app = TestApp::new();
        let admin = app.boot.api_key.clone();
        let device = join(&app, &json!({"hostname": "guest", "external": true})).await;
        assert_eq!(device["isExternal"], true);
        let base = format!("/api/v2/device/{}", device["nodeId"].as_str().expect("id"));
        let deleted = app.send("DELETE", &base, Some(&admin), None).await;
        TestApp::assert_per_spec("DELETE", &base, &deleted);
        assert_eq!(deleted.status, 501);
        let expired = app
            .send("POST", &format!("{base}/expire"), Some(&admin), None)
            .await;
        assert_eq!(expired.status, 400);
        let listed = app.send("GET", DEVICES, Some(&admin), None).await;
        TestApp::assert_per_spec("GET", DEVICES, &listed);
    }
}
