//! The configuration audit log: `GET /api/v2/tailnet/{tailnet}/logging/configuration`.
//!
//! Events are stored as Tailscale documents them (`ConfigurationAuditLog`): one operation writes
//! one or more events sharing an `eventGroupID`. The event names the filter `event` takes
//! (`NODE.CREATE`, `NODE.UPDATE.KEY_EXPIRY_TIME`, …) are `<target.type>.<action>` plus
//! `.<target.property>` when the event changed a property.

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    auth::{Caller, Principal},
    clock::rfc3339,
    error::ApiError,
    scope::Access,
    secret,
    state::EmulatorState,
    wire::{ApiPath, ApiQuery},
};

/// How far back the log goes: 90 days.
const RETENTION_SECONDS: i64 = 90 * 86_400;

/// Who caused an event (`actor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Actor {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) login_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) display_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags: Vec<String>,
}

impl Actor {
    /// The caller of an API route as an audit actor: a user, or the OAuth client behind an
    /// access token.
    pub(crate) fn of_caller(caller: &Caller, tailnet: &str) -> Self {
        match &caller.principal {
            Principal::User { user_id } => Self::user(user_id, tailnet),
            Principal::OAuth { client_id, .. } => Self {
                id: client_id.clone(),
                kind: "OAUTH_CLIENT".to_owned(),
                login_name: String::new(),
                display_name: String::new(),
                tags: Vec::new(),
            },
        }
    }

    /// A user of the tailnet.
    pub(crate) fn user(user_id: &str, tailnet: &str) -> Self {
        Self {
            id: user_id.to_owned(),
            kind: "USER".to_owned(),
            login_name: login_name(user_id, tailnet),
            display_name: user_id.to_owned(),
            tags: Vec::new(),
        }
    }
}

/// The login name the emulator gives a user ID (it has no user directory).
pub(crate) fn login_name(user_id: &str, tailnet: &str) -> String {
    format!("{}@{tailnet}", user_id.to_ascii_lowercase())
}

/// What an event acted on (`target`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_ephemeral: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) property: Option<String>,
}

/// One configuration audit log event, stored as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) event_time: OffsetDateTime,
    pub(crate) event_group_id: String,
    pub(crate) origin: String,
    pub(crate) actor: Actor,
    pub(crate) target: Target,
    pub(crate) action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) old: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) new: Option<serde_json::Value>,
}

impl AuditEvent {
    /// The name the `event` filter uses, e.g. `NODE.CREATE`.
    fn name(&self) -> String {
        match &self.target.property {
            Some(property) => format!("{}.{}.{property}", self.target.kind, self.action),
            None => format!("{}.{}", self.target.kind, self.action),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "eventTime": rfc3339(self.event_time),
            "type": "CONFIG",
            "deferredAt": "0001-01-01T00:00:00Z",
            "eventGroupID": self.event_group_id,
            "origin": self.origin,
            "actor": self.actor,
            "target": self.target,
            "action": self.action,
        });
        if let Some(object) = out.as_object_mut() {
            if let Some(old) = &self.old {
                object.insert("old".into(), old.clone());
            }
            if let Some(new) = &self.new {
                object.insert("new".into(), new.clone());
            }
        }
        out
    }
}

/// A new `eventGroupID`: 32 lower-case hex digits, as in Tailscale's example.
pub(crate) fn new_group_id() -> String {
    secret::random_alphanumeric(32)
        .bytes()
        .map(|b| char::from(b"0123456789abcdef"[usize::from(b % 16)]))
        .collect()
}

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new().route("/api/v2/tailnet/{tailnet}/logging/configuration", get(list))
}

/// `start`, `end` (RFC 3339, required) and the repeatable filters; `event[]` and friends are
/// accepted as spellings of `event`.
fn parse_query(pairs: Vec<(String, String)>) -> Result<LogQuery, ApiError> {
    let mut query = LogQuery::default();
    for (name, value) in pairs {
        let parse_time = |value: &str| {
            OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
                |_| {
                    ApiError::bad_request(format!(
                        "invalid value for {name}: want an RFC 3339 time"
                    ))
                },
            )
        };
        match name.trim_end_matches("[]") {
            "start" => query.start = Some(parse_time(&value)?),
            "end" => query.end = Some(parse_time(&value)?),
            "event" => query.events.push(value),
            "actor" => query.actors.push(value),
            "target" => query.targets.push(value),
            _ => {}
        }
    }
    Ok(query)
}

#[derive(Default)]
struct LogQuery {
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    events: Vec<String>,
    actors: Vec<String>,
    targets: Vec<String>,
}

impl LogQuery {
    fn matches(&self, event: &AuditEvent) -> bool {
        let event_ok = self.events.is_empty() || self.events.contains(&event.name());
        let actor_ok = self.actors.is_empty()
            || self
                .actors
                .iter()
                .any(|wanted| match wanted.strip_prefix('~') {
                    Some(search) => {
                        let search = search.to_lowercase();
                        event.actor.login_name.to_lowercase().contains(&search)
                            || event.actor.display_name.to_lowercase().contains(&search)
                    }
                    None => *wanted == event.actor.id,
                });
        let target_ok = self.targets.is_empty()
            || self.targets.iter().any(|wanted| {
                event.target.id.contains(wanted) || event.target.name.contains(wanted)
            });
        event_ok && actor_ok && target_ok
    }
}

/// Events between `start` and `end` (inclusive), at most 90 days old, chronologically.
async fn list(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = parse_query(pairs)?;
    let (Some(start), Some(end)) = (query.start, query.end) else {
        return Err(ApiError::bad_request(
            "start and end are required (RFC 3339 times)",
        ));
    };
    if end < start {
        return Err(ApiError::bad_request("end must not be before start"));
    }
    state.read(|store, now| {
        store.check_tailnet(&tailnet)?;
        caller.require("logs:configuration", Access::Read)?;
        let oldest = now - time::Duration::seconds(RETENTION_SECONDS);
        let mut logs: Vec<&AuditEvent> = store
            .audit
            .iter()
            .filter(|e| e.event_time >= start && e.event_time <= end && e.event_time >= oldest)
            .filter(|e| query.matches(e))
            .collect();
        logs.sort_by_key(|e| e.event_time);
        let logs: Vec<serde_json::Value> = logs.into_iter().map(AuditEvent::to_json).collect();
        Ok(Json(serde_json::json!({
            "version": "1.1",
            "tailnet": store.tailnet,
            "logs": logs,
        })))
    })
}
