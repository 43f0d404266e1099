//! An in-memory emulator of Tailscale's credential API (auth keys, OAuth clients, federated
//! identities, API access tokens, the OAuth token endpoint and webhooks) and of the parts of the
//! device API and configuration audit log that containment needs, for tests and demos.
//!
//! It is an independent implementation of the upstream contract: it shares no types with the
//! `tsrotate` client, so a serde mistake cannot hide on both sides; both are checked against
//! Tailscale's `OpenAPI` description instead. It is **not** a Tailscale control server: devices
//! only join through an admin route, and there is no policy file and no user directory (a user
//! is an ID with the login name `<id, lower case>@<tailnet>`).
//!
//! Start it with [`serve`] (on the caller's runtime), [`spawn_on_thread`] (own thread, for
//! synchronous tests) or mount [`app`] for in-process `oneshot` tests. Every start prints or
//! returns a [`Bootstrap`]: an API access token (`keyType: api`, owned by [`ADMIN_USER_ID`],
//! full access, 90 days) and an OAuth client (scopes `["all"]`, tags
//! [`BOOTSTRAP_CLIENT_TAGS`]). They are random for a fresh state and persist with
//! [`Options::state_file`].
//!
//! # Routes
//!
//! `{tailnet}` is `-` or [`Options::tailnet`]; anything else is 404. Errors are always
//! `{"message": "..."}`. "token" = `Authorization: Bearer <token>` or HTTP Basic with the token
//! as user name and an empty password; unknown, revoked or expired tokens are 401.
//!
//! | Method and path | Auth | Behaviour |
//! |---|---|---|
//! | `GET /api/v2/tailnet/{tailnet}/keys[?all=true]` | token | Active keys. Without `all`: a user token sees its user's keys, an OAuth token the tailnet's OAuth clients (needs `oauth_keys:read`). With `all`: every active key of the types the caller may read |
//! | `POST /api/v2/tailnet/{tailnet}/keys` | token | Create an auth key (default), OAuth client (`keyType: client`) or federated identity. The secret (`key`) is returned only here. `keyType: api` is 400 |
//! | `GET /api/v2/tailnet/{tailnet}/keys/{keyId}` | token | One key, any state: invalid keys have `invalid: true` (or are 404, see `/_emulator/config`). Every token may read itself and its OAuth client |
//! | `PUT /api/v2/tailnet/{tailnet}/keys/{keyId}` | token | OAuth clients and federated identities only (else 400): wholesale replace of description, scopes, tags (and federation fields); secret unchanged, no `key` in the answer |
//! | `DELETE /api/v2/tailnet/{tailnet}/keys/{keyId}` | token | Revoke; 200 with an empty body. Deleting a client revokes its access tokens. Already deleted: 404 |
//! | `POST /api/v2/oauth/token` | client secret (form or Basic) | Client-credentials exchange: a 1-hour `tskey-api-…` token; optional `scope`, `tags` |
//! | `POST /api/v2/oauth/token-exchange` | identity token (form `client_id`, `jwt`) | Workload identity federation: verifies the OIDC token against the federated identity's issuer (discovery + JWKS; http only for loopback issuers), `iss`, `aud`, `exp`/`nbf`, subject pattern, claim rules; a 1-hour token with the identity's scopes and tags. Refusals are 403 `Unauthorized` (see `exchange`) |
//! | `GET /_emulator/oidc/.well-known/openid-configuration`, `GET /_emulator/oidc/jwks` | none | The emulator's own test OIDC issuer (`http://<host>/_emulator/oidc`) |
//! | `POST /_emulator/oidc/token` `{"sub", "aud", "lifetime_seconds"?, "claims"?}` | none | A signed identity token of that issuer (`{"token", "issuer"}`), dated by the emulator's clock |
//! | `GET /_emulator/token-exchanges` | none | Every token exchange: client ID, accepted, why refused, token ID (never tokens) |
//! | `GET /api/v2/tailnet/{tailnet}/webhooks` | token | Webhooks without secrets (`webhooks:read`) |
//! | `POST /api/v2/tailnet/{tailnet}/webhooks` | token | Create; `secret` (`tskey-webhook-…`) returned once (`webhooks`) |
//! | `GET/PATCH/DELETE /api/v2/webhooks/{endpointId}` | token | Get / change `subscriptions` / delete (200, empty body) |
//! | `POST /api/v2/webhooks/{endpointId}/rotate` | token | New `secret`; the old one is retired at once |
//! | `POST /api/v2/secret-scanning/verify` | none | Form `key=<credential>`: 204 if live, 401 if not (scanner liveness check) |
//! | `GET /api/v2/tailnet/{tailnet}/devices[?fields=all\|default][&<field>=<value>…]` | token | Devices (`devices:core:read`). Filters are exact matches on top-level simple or list properties (a list must contain every value given), all of them must hold; other names are 400 |
//! | `GET/DELETE /api/v2/device/{deviceId}[?fields=]` | token | One device (node ID or numeric ID) / delete it (`devices:core`); a shared-in device answers 501 |
//! | `POST /api/v2/device/{deviceId}/expire` | token | The node key expires now (`devices:core`) |
//! | `POST /api/v2/device/{deviceId}/key` `{"keyExpiryDisabled": bool}` | token | Disable / enable node-key expiry (`devices:core`); the expiry time is kept, as the spec says. The emulator keeps the two fields and models no effect of either on connectivity (whether disabling expiry brings an expired device back is undocumented, and reports conflict: juanfont/headscale#1851 says it did, tailscale/tailscale#19785 says it did not) |
//! | `POST /api/v2/device/{deviceId}/authorized` `{"authorized": bool}` | token | (De)authorize (`devices:core`); a missing or non-boolean field is 400 |
//! | `GET/POST /api/v2/device/{deviceId}/routes` `{"routes": [...]}` | token | Advertised and enabled routes / replace the enabled ones (`devices:routes`) |
//! | `GET /api/v2/tailnet/{tailnet}/logging/configuration?start=&end=[&event=][&actor=][&target=]` | token | Configuration audit log (`logs:configuration:read`), chronological, 90 days; `start`/`end` RFC 3339 are required; `event[]` etc. are accepted too |
//! | `GET /api/v2/users/{userId}` | token | A user that owns a key (`users:read`) |
//! | `POST /_emulator/devices` `{"auth_key_id", "hostname", "os", "client_version", "created_offset_seconds" (≤ 0), "routes", "audit_actor": "owner"\|"key"\|{"type", "id"}, "external"}` | none | A node joins with the auth key at now + offset: tags and owner follow the key, its use count goes up (the key must have been usable then). Audit events under one `eventGroupID`: `NODE.CREATE`, `NODE.UPDATE.KEY_EXPIRY_TIME`, `NODE.LOGIN`, `NODE.APPROVE`, with actor the owner (user, or the OAuth client that created the key), the key ID, or an actor object as the `OpenAPI` description has it (`type` one of its enum; `id` may be left out for `NODE`: the joining node). `external: true` (no key) adds a shared-in device. Answers the device (`fields=all`) |
//! | `POST /_emulator/devices/batch` `{"devices": [...]}` | none | Many joins at once, all or nothing; answers `{"count"}` |
//! | `POST /_emulator/devices/{nodeId}/advertise` `{"routes": [...]}` | none | The node now advertises these routes (as `tailscale set --advertise-routes` would): `advertisedRoutes` changes, `enabledRoutes` (an admin's approval) does not. Answers the device (`fields=all`) |
//! | `POST /_emulator/audit-noise` `{"count", "start_offset_seconds"}` | none | `count` unrelated audit events (`ADMIN_CONSOLE.LOGIN`) spread from now + offset to now |
//! | `GET /_emulator/state` | none | Tailnet, `now`, config, every key (invalid too, with `uses`, `issuedBy`, `invalidReason`) and webhook, never secrets or hashes |
//! | `GET /_emulator/clock`, `POST /_emulator/clock` `{"advance_seconds": N}` | none | Read / move emulator time forward; answers `{"now": …}` |
//! | `POST /_emulator/keys/{keyId}/use` | none | A device registers with an auth key; a single-use key becomes invalid. 404 unknown, 400 not usable |
//! | `POST /_emulator/api-tokens` `{"expirySeconds", "description", "userId"}` | none | A person creates an API access token in the console: 1–90 days (default 90), user default [`ADMIN_USER_ID`]; answers the Key with `key` |
//! | `GET/POST/DELETE /_emulator/faults` | none | List / append / clear fault rules (semantics below) |
//! | `GET/DELETE /_emulator/requests` | none | Log of API requests (method, path, query, status, `auth`: bearer/basic/none/other, `injected`, `dropped`); never bodies or credentials |
//! | `GET/POST /_emulator/config` `{"deleted_keys": "invalid" \| "not_found"}` | none | How GET answers for an invalid key |
//!
//! Admin routes are never faulted or logged; their bodies reject unknown fields so that a typo
//! in a test fails loudly.
//!
//! ## Fault rules
//!
//! `POST /_emulator/faults` with any of `method`, `path_prefix`, `status` (400..=599), `count`,
//! `retry_after_s`, `latency_ms`, `drop_connection`, `drop_before`, `skip`. Rules match in
//! insertion order on method (any if absent) and path prefix (any if absent); the first match
//! is used, after letting `skip` matching requests through untouched, and a rule with
//! `count` is removed after that many uses (without `count` it lasts until cleared). Effect:
//! wait `latency_ms`; then if `status` is set, answer it with `{"message"}` (and `Retry-After`
//! if `retry_after_s`) without processing the request; else if `drop_before`, close the
//! connection without processing the request; else if `drop_connection`, process the
//! request (its side effect happens) and close the TCP connection without a response; else
//! process normally. With [`app`] (no TCP), a dropped response is returned with a marker
//! extension instead.
//!
//! # Rules as Tailscale applies them
//!
//! - Secrets are returned once, by create (and webhook rotate, and the token endpoint).
//! - Auth keys: `expirySeconds` omitted or `0` means 90 days (Go clients send `0` when unset);
//!   more than 90 days or negative is 400. `capabilities.devices` is required (spec minimum).
//! - `description`: at most 50 characters of alphanumerics, hyphens and spaces, else 400.
//! - OAuth-derived tokens need scopes: `X:read` reads, `X` reads and writes, `all:read` reads
//!   everything, `all` grants everything, legacy `devices` = `auth_keys` + `devices:core` (+
//!   posture attributes). Auth keys → `auth_keys`, OAuth clients and OAuth-issued tokens →
//!   `oauth_keys`, personal API tokens → `api_access_tokens`, federated identities →
//!   `federated_keys`, webhooks → `webhooks`. A 403 names the missing scope. Personal API tokens
//!   act with their user's rights, and every emulated user is an admin.
//! - Auth keys created with an OAuth token are tailnet-owned (`userId` empty) and need
//!   non-empty tags, each one of the token's tags (by default the client's):
//!   400 `requested tags [tag:x] are invalid or not permitted`.
//! - OAuth clients and federated identities: at least one known scope; tags required when the
//!   scopes include `auth_keys`, `devices:core`, `devices` or `all`; an OAuth caller cannot
//!   hand out scopes it lacks (403 `OAuth client cannot grant scopes "..."`).
//! - Token endpoint: the secret identifies the client (the client ID is ignored: the official
//!   CLI sends `"some-client-id"`, `feature/oauthkey/oauthkey.go`); `scope` must be covered by
//!   the client's scopes (403 otherwise, observed in adinhodovic/tailscale-exporter#34), `tags`
//!   must be client tags (400, tailscale/tailscale#8299). A missing or empty `grant_type` means
//!   `client_credentials`: Go's `clientcredentials` library sends it, but Tailscale's documented
//!   example (kb/1215, `curl -d "client_id=…" -d "client_secret=…"`) does not, and clients in
//!   the wild copy that example. Any other `grant_type` is 400.
//!
//! # Where the spec and observed behaviour differ, and what the emulator does
//!
//! - **`all` is marked `required: true`** on `GET /keys`, but the spec's own text (and every
//!   client) treats it as optional. The emulator treats it as optional and parses it like Go's
//!   `strconv.ParseBool`.
//! - **`POST /keys` documents only 404 and 500**, but Tailscale answers 400 for bad tags,
//!   descriptions and expiries and 403 for missing scopes. The emulator does the same, and
//!   `PUT`/`DELETE` likewise answer 400/403 the spec does not list. 401 is documented nowhere;
//!   the emulator answers `{"message": "API token invalid"}`.
//! - **The token endpoint** (`/oauth/token`) and `/secret-scanning/verify` are absent from the
//!   spec. The emulator implements the shapes observed (tailscale-api.md §5.1, §3). Bad client
//!   credentials are 401 `{"message"}` (`OAuth2` would say `invalid_client`). Requesting `tags`
//!   without a devices scope is not refused (upstream's behaviour here is unclear, #8299 vs
//!   #15456). `/oauth/token-exchange` (workload identity federation) is implemented
//!   as Tailscale documents workload identity federation: see `exchange`.
//! - **Invalid keys: `invalid: true` or 404.** The spec says a revoked or expired key answers
//!   200 with `invalid: true`; in practice Tailscale sometimes answers 404 (notably for used
//!   single-use keys). Default is `invalid: true` (with `revoked` set when deleted);
//!   `POST /_emulator/config {"deleted_keys": "not_found"}` switches every invalid key
//!   (revoked, expired or used up) to 404. Lists always show active keys only.
//! - **Tags on tailnet-owned auth keys.** The spec says the tags must *exactly match* the
//!   client's tags or be owned by them; issues report that a subset fails, and `all` is said to
//!   allow any tag. The emulator has no policy file: it accepts any non-empty subset of the
//!   token's tags and nothing else, and applies this to the `all` scope too.
//! - **`GET /keys` object shape.** The spec shows full objects; older Tailscale returned only
//!   `id`. The emulator returns full objects without `key`.
//! - **`Webhook.providerType`**: the spec's enum lacks the empty string its description says is
//!   returned when no provider applies; the emulator returns `""` for generic webhooks.
//! - **Webhook endpoint URLs** must be `https://` (Tailscale's console requires it; the spec is
//!   silent). `POST /webhooks/{id}/test` is not implemented.
//! - **OAuth-issued access tokens** are stored as `keyType: api` keys with `userId` empty, an
//!   `expires` one hour out and the token's `scopes`/`tags`; `all=true` lists them to callers
//!   with `oauth_keys:read` (the spec groups "OAuth clients and OAuth tokens" under that scope).
//!   Changing a client with `PUT` does not change tokens it already issued.
//! - **Webhook secrets** use `tskey-webhook-<id>-<secret>` with a fresh key-style ID per
//!   rotation; that ID is not a key under `/keys`.
//! - **`expirySeconds` type**: the current spec says integer, the 2025 copy said `number`; the
//!   emulator accepts integral numbers in either form (`86400` and `86400.0`). `0` means "use
//!   the default", because Go clients without `omitempty` send `0` for unset.
//! - **Minimum auth-key body**: the spec requires `capabilities.devices` ("can be an empty JSON
//!   object"); whether Tailscale enforces it is unknown. The emulator enforces it (400), so a
//!   client that omits it is caught here rather than in production.
//! - **Reading one's own key**: the spec's `getKey` lists only the per-type scopes; kb/1215 says
//!   every scope may GET the key making the call. The emulator follows the kb, for the token's
//!   own ID and its OAuth client's ID.
//! - **`DELETE /keys/{keyId}`**: the spec says it deletes "a specific api access token or auth
//!   key" and declares 404 only as "Tailnet not found". The emulator deletes every type
//!   (clients and federated identities too, as the spec's own scope notes imply), answers 404
//!   for unknown or already-revoked keys, and lets expired or used-up keys be deleted (they
//!   become revoked).
//! - **`Key.tags`** is documented for trust credentials only; the emulator also shows the tags
//!   an OAuth access token may assign on that token's `keyType: api` key.
//! - **`{tailnet}`**: the spec also accepts a tailnet ID (`T1234CNTRL`); the emulator knows
//!   only `-` and its tailnet's name.
//! - **Devices**: the spec does not say how filters treat unknown fields or objects; the emulator
//!   answers 400. It does not say what the device actions answer for a shared-in device; the
//!   emulator answers 400 (delete: 501, as the spec says). A join's audit actor for a key is
//!   an `AUTOMATED_WORKER` with the key's ID (undocumented upstream: observed once in a webhook
//!   payload); tagged devices have `user` `tagged-devices` and key expiry disabled.
//! - **Audit log**: the event names the `event` filter takes are `<target.type>.<action>` and
//!   `.<target.property>` when set; actor `~search` matches login or display name, `target`
//!   matches any part of the target's ID or name (as the spec says).
//! - **Rate limits** are undocumented upstream (429 appears on a few endpoints only). The
//!   emulator never limits on its own; use a fault rule with `status: 429` and `retry_after_s`.
//!
//! # Security
//!
//! Only SHA-256 hashes of credentials are kept, in memory and in the state file, with one
//! exception: the bootstrap credentials are also written in plaintext to the state file's
//! `bootstrap` section (mode `0o600`), because a restart must hand out the same ones. Logs
//! (`tracing`) name key IDs, never secrets; the request log holds no headers or bodies, and
//! redacts credential-like query parameters.
//!
//! The `/_emulator/` routes are unauthenticated and can mint API access tokens and read the
//! whole state: serve the emulator on a loopback address only.

mod admin;
mod admin_oidc;
mod audit_log;
mod auth;
mod clock;
mod devices;
mod error;
mod exchange;
mod faults;
mod guard;
pub mod issuer;
mod keys;
mod model;
mod oauth;
mod persist;
mod request_log;
mod scope;
mod secret;
mod server;
mod state;
#[cfg(test)]
mod test_util;
mod validate;
mod verify;
mod webhooks;
mod wire;

use std::{fmt, path::PathBuf};

use axum::{Router, middleware::from_fn_with_state};
use serde::Serialize;

pub use crate::{
    error::Error,
    guard::Exposure,
    server::{Server, ThreadServer, serve, spawn_on_thread, try_spawn_on_thread},
    state::{ADMIN_USER_ID, BOOTSTRAP_CLIENT_TAGS, EmulatorState},
};

/// The tailnet name used when [`Options::tailnet`] is not set.
pub const DEFAULT_TAILNET: &str = "example.com";

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// The tailnet's name, accepted in `{tailnet}` besides `-`. Default [`DEFAULT_TAILNET`].
    pub tailnet: String,
    /// Where to keep state across restarts: loaded on start if it exists, saved atomically
    /// after every change. `None` keeps everything in memory.
    pub state_file: Option<PathBuf>,
    /// Who may talk to it ([`Exposure::Loopback`] unless the person asked for the network).
    pub exposure: Exposure,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tailnet: DEFAULT_TAILNET.to_owned(),
            state_file: None,
            exposure: Exposure::Loopback,
        }
    }
}

/// Where the emulator listens and the credentials to start with. Serializes as the CLI's
/// "ready" line; `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Bootstrap {
    /// Base URL, e.g. `http://127.0.0.1:41234`; API paths start with `/api/v2`.
    pub url: String,
    /// The tailnet's name.
    pub tailnet: String,
    /// A personal API access token (`tskey-api-…`) of the admin user, full access, 90 days.
    pub api_key: String,
    /// The bootstrap OAuth client's ID (`k…CNTRL`).
    pub oauth_client_id: String,
    /// The bootstrap OAuth client's secret (`tskey-client-<id>-…`), scopes `all`.
    pub oauth_client_secret: String,
    /// With [`Exposure::Network`]: the bearer token every `/_emulator/` route needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

impl fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bootstrap")
            .field("url", &self.url)
            .field("tailnet", &self.tailnet)
            .field("api_key", &"tskey-api-…[redacted]")
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"tskey-client-…[redacted]")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "tsemu-admin-…[redacted]"),
            )
            .finish()
    }
}

/// The emulator as an axum router, for in-process tests with `tower::ServiceExt::oneshot`.
pub fn app(state: EmulatorState) -> Router {
    Router::new()
        .merge(keys::routes())
        .merge(devices::routes())
        .merge(audit_log::routes())
        .merge(oauth::routes())
        .merge(exchange::routes())
        .merge(webhooks::routes())
        .merge(verify::routes())
        .merge(admin::routes())
        .merge(admin_oidc::routes())
        .fallback(|| async { error::ApiError::NotFound("not found") })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), faults::apply))
        .layer(from_fn_with_state(state.clone(), request_log::record))
        .layer(from_fn_with_state(state.clone(), date_header))
        .layer(from_fn_with_state(state.clone(), guard::check))
        .with_state(state)
}

/// Every response carries a `Date` header from the emulator's clock, as a real server's does
/// from its own: clients that judge expiry by the control plane's time (rather than a local
/// clock that may be skewed) see the emulated time too.
async fn date_header(
    axum::extract::State(state): axum::extract::State<EmulatorState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let now = state.read(|_, now| now);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let value = now
        .format(&format)
        .ok()
        .and_then(|v| axum::http::HeaderValue::from_str(&v).ok());
    if let Some(value) = value {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_util::TestApp;

    #[tokio::test]
    async fn unknown_paths_and_methods_answer_json_errors() {
        let app = TestApp::new();
        let token = app.boot.api_key.clone();
        let missing = app.send("GET", "/api/v2/devices", Some(&token), None).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body, json!({"message": "not found"}));
        let wrong = app
            .send("PATCH", "/api/v2/tailnet/-/keys", Some(&token), None)
            .await;
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.body, json!({"message": "method not allowed"}));
    }

    #[test]
    fn bootstrap_debug_output_hides_the_secrets() {
        let app = TestApp::new();
        let debug = format!("{:?}", app.boot);
        assert!(!debug.contains(&app.boot.api_key));
        assert!(!debug.contains(&app.boot.oauth_client_secret));
        assert!(debug.contains(&app.boot.oauth_client_id));
        let ready = serde_json::to_value(&app.boot).expect("serializes");
        assert_eq!(
            ready["api_key"],
            app.boot.api_key.as_str(),
            "the ready line carries them"
        );
    }
}
