//! `/api/v2/tailnet/{tailnet}/keys[/{keyId}]`: list, create, get, set and delete keys of every
//! type (auth keys, OAuth clients, federated identities, API access tokens).

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::{
    auth::{Caller, Principal},
    error::ApiError,
    model::{DeviceCreate, Federation, KeyRecord, KeyType},
    scope::{self, Access},
    secret,
    state::{DeletedKeys, EmulatorState, Store},
    validate,
    wire::{ApiPath, ApiQuery, JsonBody, KeyBody, KeyJson, parse_bool},
};

/// The scope resources that govern keys, in the order 403 messages name them.
const KEY_RESOURCES: [&str; 4] = [
    "auth_keys",
    "oauth_keys",
    "federated_keys",
    "api_access_tokens",
];

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/keys", get(list).post(create))
        .route(
            "/api/v2/tailnet/{tailnet}/keys/{key_id}",
            get(get_key).put(set_key).delete(delete_key),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    all: Option<String>,
}

/// Active keys only. Without `all`: a user's token sees that user's keys, an OAuth token sees
/// the tailnet's OAuth clients. With `all=true`: every key of the types the caller may read.
async fn list(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = parse_bool("all", query.all.as_deref())?;
    state.read(|store, now| {
        store.check_tailnet(&tailnet)?;
        let visible: Box<dyn Fn(&KeyRecord) -> bool> = if all {
            let readable: Vec<&str> = KEY_RESOURCES
                .into_iter()
                .filter(|r| caller.may(r, Access::Read))
                .collect();
            if readable.is_empty() {
                return Err(ApiError::Forbidden(format!(
                    "calling actor does not have enough permissions to perform this function: \
                     missing one of the scopes {}",
                    KEY_RESOURCES.map(|r| format!("\"{r}:read\"")).join(", ")
                )));
            }
            Box::new(move |k: &KeyRecord| readable.contains(&k.scope_resource()))
        } else {
            match &caller.principal {
                Principal::User { user_id } => {
                    let user_id = user_id.clone();
                    Box::new(move |k: &KeyRecord| k.user_id == user_id)
                }
                // "an access token derived from an OAuth client [sees] all OAuth clients …,
                // derived from a federated identity, all federated identities" (spec).
                Principal::OAuth { client_id, .. } => {
                    let via = store.key(client_id).map_or(KeyType::Client, |k| k.key_type);
                    if via == KeyType::Federated {
                        caller.require("federated_keys", Access::Read)?;
                        Box::new(|k: &KeyRecord| k.key_type == KeyType::Federated)
                    } else {
                        caller.require("oauth_keys", Access::Read)?;
                        Box::new(|k: &KeyRecord| k.key_type == KeyType::Client)
                    }
                }
            }
        };
        let keys: Vec<KeyJson> = store
            .keys
            .iter()
            .filter(|k| k.is_active(now) && visible(k))
            .map(|k| KeyJson::new(k, now, None))
            .collect();
        Ok(Json(serde_json::json!({ "keys": keys })))
    })
}

async fn get_key(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath((tailnet, key_id)): ApiPath<(String, String)>,
) -> Result<Json<KeyJson>, ApiError> {
    state.read(|store, now| {
        store.check_tailnet(&tailnet)?;
        let key = store
            .key(&key_id)
            .ok_or(ApiError::NotFound("key not found"))?;
        if !caller.is_self(&key.id) {
            caller.require(key.scope_resource(), Access::Read)?;
        }
        if !key.is_active(now) && store.config.deleted_keys == DeletedKeys::NotFound {
            return Err(ApiError::NotFound("key not found"));
        }
        Ok(Json(KeyJson::new(key, now, None)))
    })
}

/// Revokes a key. Deleting an OAuth client or federated identity also revokes every access
/// token it issued.
async fn delete_key(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath((tailnet, key_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.mutate(|store, now| {
        store.check_tailnet(&tailnet)?;
        let key = store
            .key(&key_id)
            .filter(|k| k.revoked.is_none())
            .ok_or(ApiError::NotFound("key not found"))?;
        caller.require(key.scope_resource(), Access::Write)?;
        let key_type = key.key_type;
        if let Some(key) = store.key_mut(&key_id) {
            key.revoked = Some(now);
        }
        let mut tokens = 0;
        if matches!(key_type, KeyType::Client | KeyType::Federated) {
            for token in &mut store.keys {
                if token.issued_by.as_deref() == Some(key_id.as_str()) && token.revoked.is_none() {
                    token.revoked = Some(now);
                    tokens += 1;
                }
            }
        }
        tracing::info!(key_id = %key_id, ?key_type, revoked_tokens = tokens, "key deleted");
        Ok(StatusCode::OK)
    })
}

async fn create(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath(tailnet): ApiPath<String>,
    JsonBody(body): JsonBody<KeyBody>,
) -> Result<Json<KeyJson>, ApiError> {
    state.mutate(|store, now| {
        store.check_tailnet(&tailnet)?;
        let key_type = match body.key_type.as_deref() {
            None | Some("" | "auth") => KeyType::Auth,
            Some("client") => KeyType::Client,
            Some("federated") => KeyType::Federated,
            Some("api") => {
                return Err(ApiError::bad_request(
                    "API access tokens cannot be created through the API; \
                     generate them in the admin console",
                ));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid keyType \"{other}\": must be auth, client or federated"
                )));
            }
        };
        let (record, secret) = match key_type {
            KeyType::Auth => new_auth_key(store, &caller, body, now)?,
            KeyType::Client | KeyType::Federated => {
                new_trust_credential(store, &caller, key_type, body, now)?
            }
            KeyType::Api => unreachable!("refused above"),
        };
        tracing::info!(key_id = %record.id, ?key_type, user_id = %record.user_id, "key created");
        let json = KeyJson::new(&record, now, secret);
        store.keys.push(record);
        Ok(Json(json))
    })
}

fn new_auth_key(
    store: &Store,
    caller: &Caller,
    body: KeyBody,
    now: OffsetDateTime,
) -> Result<(KeyRecord, Option<String>), ApiError> {
    caller.require("auth_keys", Access::Write)?;
    let description = validate::description(body.description)?;
    let expiry = validate::auth_key_expiry(body.expiry_seconds.as_ref())?;
    // The spec: "at a minimum, the request POST body must have a `capabilities` object with a
    // `devices` object, though it can be an empty JSON object".
    let create = body
        .capabilities
        .and_then(|c| c.devices)
        .ok_or_else(|| {
            ApiError::bad_request("auth keys require a capabilities object with a devices object")
        })?
        .create
        .unwrap_or_default();
    let tags = validate::tags(create.tags)?;
    if let Principal::OAuth { tags: allowed, .. } = &caller.principal {
        // Keys created with a trust credential belong to the tailnet and must be tagged with
        // tags the credential holds. Tailscale also lets `all` pass any tag and accepts tags
        // owned (via tagOwners) by the credential's tags; the emulator has no policy file and
        // applies the plain rule to every scope, including `all`.
        if tags.is_empty() {
            return Err(ApiError::bad_request(
                "tags are required for auth keys owned by the tailnet \
                 (created with an OAuth access token)",
            ));
        }
        let refused: Vec<String> = tags
            .iter()
            .filter(|t| !allowed.contains(t))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(ApiError::tags_not_permitted(&refused));
        }
    }
    let id = store.unused_key_id();
    let credential = secret::new_credential("auth", &id);
    let mut record = KeyRecord::new(id, KeyType::Auth, now);
    record.secret_sha256 = Some(secret::sha256_hex(&credential));
    record.description = description;
    record.expiry_seconds = Some(expiry);
    record.expires = Some(now + time::Duration::seconds(expiry));
    caller.owner().clone_into(&mut record.user_id);
    if let Principal::OAuth { client_id, .. } = &caller.principal {
        record.created_by = Some(client_id.clone());
    }
    record.capabilities = Some(DeviceCreate {
        reusable: create.reusable.unwrap_or(false),
        ephemeral: create.ephemeral.unwrap_or(false),
        preauthorized: create.preauthorized.unwrap_or(false),
        tags,
    });
    Ok((record, Some(credential)))
}

/// The scope resource that creating or changing a trust credential needs.
fn trust_resource(key_type: KeyType) -> &'static str {
    if key_type == KeyType::Federated {
        "federated_keys"
    } else {
        "oauth_keys"
    }
}

/// 403 unless an OAuth caller holds every scope it tries to hand out.
fn check_grantable(caller: &Caller, scopes: &[String]) -> Result<(), ApiError> {
    if let Principal::OAuth { scopes: held, .. } = &caller.principal {
        let refused: Vec<&str> = scopes
            .iter()
            .filter(|s| !scope::covers(held, s))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "OAuth client cannot grant scopes \"{}\"",
                refused.join(" ")
            )));
        }
    }
    Ok(())
}

/// Issuer and subject are required for federated identities; the audience is generated when
/// omitted, as Tailscale does.
fn federation(
    store: &Store,
    id: &str,
    body: &mut KeyBody,
    previous: Option<&Federation>,
) -> Result<Federation, ApiError> {
    let issuer = body.issuer.take().unwrap_or_default();
    // Tailscale requires a publicly reachable https:// issuer; loopback http issuers are the
    // emulator's one exception, for tests and the demo.
    if !crate::exchange::issuer_allowed(&issuer) {
        return Err(ApiError::bad_request(
            "issuer must be a valid https:// URL for federated identities",
        ));
    }
    let subject = body.subject.take().unwrap_or_default();
    if subject.is_empty() {
        return Err(ApiError::bad_request(
            "subject is required for federated identities",
        ));
    }
    let audience = match body.audience.take().filter(|a| !a.is_empty()) {
        Some(audience) => audience,
        None => previous.map_or_else(
            || format!("api.tailscale.com/{}-{id}", store.tailnet),
            |p| p.audience.clone(),
        ),
    };
    Ok(Federation {
        issuer,
        subject,
        audience,
        custom_claim_rules: body.custom_claim_rules.take().unwrap_or_default(),
    })
}

fn new_trust_credential(
    store: &Store,
    caller: &Caller,
    key_type: KeyType,
    mut body: KeyBody,
    now: OffsetDateTime,
) -> Result<(KeyRecord, Option<String>), ApiError> {
    caller.require(trust_resource(key_type), Access::Write)?;
    let description = validate::description(body.description.take())?;
    let (scopes, tags) = validate::trust_credential(body.scopes.take(), body.tags.take())?;
    check_grantable(caller, &scopes)?;
    let id = store.unused_key_id();
    let mut record = KeyRecord::new(id.clone(), key_type, now);
    let credential = if key_type == KeyType::Federated {
        record.federation = Some(federation(store, &id, &mut body, None)?);
        None
    } else {
        let credential = secret::new_credential("client", &id);
        record.secret_sha256 = Some(secret::sha256_hex(&credential));
        Some(credential)
    };
    record.description = description;
    caller.owner().clone_into(&mut record.user_id);
    record.scopes = scopes;
    record.tags = tags;
    Ok((record, credential))
}

/// Wholesale replace of an OAuth client's or federated identity's description, scopes and
/// tags (and federation fields). The secret stays; the response carries no `key`.
async fn set_key(
    State(state): State<EmulatorState>,
    caller: Caller,
    ApiPath((tailnet, key_id)): ApiPath<(String, String)>,
    JsonBody(mut body): JsonBody<KeyBody>,
) -> Result<Json<KeyJson>, ApiError> {
    state.mutate(|store, now| {
        store.check_tailnet(&tailnet)?;
        let key = store
            .key(&key_id)
            .filter(|k| k.revoked.is_none())
            .ok_or(ApiError::NotFound("key not found"))?;
        let key_type = key.key_type;
        if !matches!(key_type, KeyType::Client | KeyType::Federated) {
            return Err(ApiError::bad_request(
                "only OAuth clients and federated identities can be updated",
            ));
        }
        caller.require(trust_resource(key_type), Access::Write)?;
        let expected = if key_type == KeyType::Client {
            "client"
        } else {
            "federated"
        };
        if let Some(given) = body.key_type.as_deref().filter(|t| !t.is_empty())
            && given != expected
        {
            return Err(ApiError::bad_request(format!(
                "keyType \"{given}\" does not match key {key_id}, which is a {expected} key"
            )));
        }
        let description = validate::description(body.description.take())?;
        let (scopes, tags) = validate::trust_credential(body.scopes.take(), body.tags.take())?;
        check_grantable(&caller, &scopes)?;
        let federation = if key_type == KeyType::Federated {
            Some(federation(
                store,
                &key_id,
                &mut body,
                key.federation.as_ref(),
            )?)
        } else {
            None
        };
        let key = store
            .key_mut(&key_id)
            .ok_or(ApiError::NotFound("key not found"))?;
        key.description = description;
        key.scopes = scopes;
        key.tags = tags;
        key.federation = federation;
        key.updated = Some(now);
        tracing::info!(key_id = %key_id, ?key_type, "key updated");
        Ok(Json(KeyJson::new(key, now, None)))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_util::TestApp;

    const KEYS: &str = "/api/v2/tailnet/-/keys";

    #[tokio::test]
    async fn a_created_key_reads_back_without_its_secret() {
        let app = TestApp::new();
        let token = app.boot.api_key.clone();
        let body = json!({"capabilities": {"devices": {"create": {"ephemeral": true}}}});
        let created = app.send("POST", KEYS, Some(&token), Some(&body)).await;
        TestApp::assert_per_spec("POST", KEYS, &created);
        assert_eq!(created.status, 200, "{}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        assert!(
            created.body["key"]
                .as_str()
                .expect("secret")
                .starts_with("tskey-auth-")
        );

        let path = format!("{KEYS}/{id}");
        let fetched = app.send("GET", &path, Some(&token), None).await;
        TestApp::assert_per_spec("GET", &path, &fetched);
        assert_eq!(fetched.status, 200);
        assert!(fetched.body.get("key").is_none());
        assert_eq!(fetched.body["capabilities"], created.body["capabilities"]);

        // Only the hash is stored.
        let stored = app
            .state
            .read(|store, _| store.key(&id).cloned())
            .expect("stored");
        let secret = created.body["key"].as_str().expect("secret");
        assert_eq!(
            stored.secret_sha256,
            Some(crate::secret::sha256_hex(secret))
        );
    }

    #[tokio::test]
    async fn authentication_comes_before_routing_details() {
        let app = TestApp::new();
        let anonymous = app
            .send("GET", "/api/v2/tailnet/nope/keys/kX", None, None)
            .await;
        assert_eq!(anonymous.status, 401);
        assert_eq!(anonymous.body, json!({"message": "API token invalid"}));
        let token = app.boot.api_key.clone();
        let unknown_tailnet = app
            .send("GET", "/api/v2/tailnet/nope/keys/kX", Some(&token), None)
            .await;
        assert_eq!(unknown_tailnet.status, 404);
    }

    #[tokio::test]
    async fn oauth_callers_listing_without_all_need_oauth_keys_read() {
        let app = TestApp::new();
        let token = app.state.mutate(|store, now| {
            let id = store.unused_key_id();
            let credential = crate::secret::new_credential("api", &id);
            let mut record = crate::model::KeyRecord::new(id, crate::model::KeyType::Api, now);
            record.secret_sha256 = Some(crate::secret::sha256_hex(&credential));
            record.expires = Some(now + time::Duration::hours(1));
            record.scopes = vec!["auth_keys:read".to_owned()];
            record.issued_by = Some(app.boot.oauth_client_id.clone());
            store.keys.push(record);
            Ok(credential)
        });
        let token = token.expect("token");
        let listed = app.send("GET", KEYS, Some(&token), None).await;
        assert_eq!(listed.status, 403);
        assert!(
            listed.body["message"]
                .as_str()
                .expect("message")
                .contains("oauth_keys:read")
        );
        let all = app
            .send("GET", &format!("{KEYS}?all=true"), Some(&token), None)
            .await;
        assert_eq!(all.status, 200);
    }
}
