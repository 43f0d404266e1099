//! `POST /api/v2/oauth/token`: the OAuth 2.0 client-credentials exchange (not in the spec).
//!
//! Form fields `grant_type=client_credentials` (optional: absent means client credentials, as in
//! Tailscale's documented `curl` example), `client_id`, `client_secret` (or HTTP Basic
//! `client_id:client_secret`), optional `scope` (space-separated) and `tags`. The secret alone
//! identifies the client, since the official CLI sends a dummy client ID. The answer is a
//! 1-hour API access token (`tskey-api-…`) stored as a `keyType: api` key issued by the client.

use axum::{
    Form, Json, Router,
    extract::{State, rejection::FormRejection},
    http::{HeaderMap, header},
    routing::post,
};
use serde::Deserialize;

use crate::{
    auth::basic_credentials,
    error::ApiError,
    model::{KeyRecord, KeyType},
    scope, secret,
    state::EmulatorState,
};

/// Lifetime of an OAuth access token, fixed by Tailscale (kb/1215).
pub(crate) const ACCESS_TOKEN_SECONDS: i64 = 3600;

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new().route("/api/v2/oauth/token", post(token))
}

#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    #[allow(
        dead_code,
        reason = "accepted and ignored: the secret identifies the client"
    )]
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    tags: Option<String>,
}

fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn token(
    State(state): State<EmulatorState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Form(form) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    // Tailscale's own documented example (kb/1215: `curl -d "client_id=…" -d
    // "client_secret=…" …/api/v2/oauth/token`) sends no grant_type, and clients copy it: an
    // absent or empty grant_type means client credentials. Any other grant is still refused.
    match form.grant_type.as_deref() {
        None | Some("" | "client_credentials") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported grant_type \"{other}\""
            )));
        }
    }
    let client_secret = form
        .client_secret
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            let (scheme, encoded) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| basic_credentials(encoded.trim()))
                .flatten()
                .map(|(_id, secret)| secret)
        })
        .ok_or(ApiError::InvalidClient)?;
    let requested_scopes = split_list(form.scope.as_deref());
    let requested_tags = split_list(form.tags.as_deref());

    state.mutate(|store, now| {
        let client_id = match secret::parse_credential(&client_secret) {
            Some(("client", id)) => id.to_owned(),
            _ => return Err(ApiError::InvalidClient),
        };
        let client = store
            .key(&client_id)
            .filter(|k| {
                k.key_type == KeyType::Client
                    && k.is_active(now)
                    && k.secret_sha256
                        .as_deref()
                        .is_some_and(|h| secret::matches_hash(&client_secret, h))
            })
            .ok_or(ApiError::InvalidClient)?;

        let scopes = if requested_scopes.is_empty() {
            client.scopes.clone()
        } else {
            let refused: Vec<&str> = requested_scopes
                .iter()
                .filter(|s| !scope::covers(&client.scopes, s))
                .map(String::as_str)
                .collect();
            if !refused.is_empty() {
                return Err(ApiError::Forbidden(format!(
                    "OAuth client cannot grant scopes \"{}\"",
                    refused.join(" ")
                )));
            }
            requested_scopes.clone()
        };
        let tags = if requested_tags.is_empty() {
            client.tags.clone()
        } else {
            let refused: Vec<String> = requested_tags
                .iter()
                .filter(|t| !client.tags.contains(t))
                .cloned()
                .collect();
            if !refused.is_empty() {
                return Err(ApiError::tags_not_permitted(&refused));
            }
            requested_tags.clone()
        };

        let id = store.unused_key_id();
        let access_token = secret::new_credential("api", &id);
        let mut record = KeyRecord::new(id, KeyType::Api, now);
        record.secret_sha256 = Some(secret::sha256_hex(&access_token));
        record.expiry_seconds = Some(ACCESS_TOKEN_SECONDS);
        record.expires = Some(now + time::Duration::seconds(ACCESS_TOKEN_SECONDS));
        record.scopes.clone_from(&scopes);
        record.tags.clone_from(&tags);
        record.issued_by = Some(client_id.clone());
        tracing::info!(token_id = %record.id, client_id = %client_id, "access token issued");
        store.keys.push(record);

        let mut body = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": scopes.join(" "),
        });
        if !requested_tags.is_empty() {
            body["tags"] = serde_json::Value::from(tags.join(" "));
        }
        Ok(Json(body))
    })
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        http::{Request, header},
    };

    use crate::test_util::TestApp;

    fn token_request(form: &str) -> Request<Body> {
        Request::builder()
            .method("POST")
            .uri("/api/v2/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("request")
    }

    #[tokio::test]
    async fn issued_tokens_authenticate_and_are_stored_as_hashes() {
        let app = TestApp::new();
        let form = format!(
            "grant_type=client_credentials&client_id=x&client_secret={}&scope=oauth_keys%3Aread",
            app.boot.oauth_client_secret
        );
        let response = app.send_request(token_request(&form)).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body["scope"], "oauth_keys:read");
        let token = response.body["access_token"]
            .as_str()
            .expect("token")
            .to_owned();

        let listed = app
            .send("GET", "/api/v2/tailnet/-/keys", Some(&token), None)
            .await;
        assert_eq!(listed.status, 200);
        let stored = app.state.read(|store, _| {
            store
                .keys
                .iter()
                .find(|k| k.issued_by.is_some())
                .cloned()
                .expect("token record")
        });
        assert_eq!(
            stored.secret_sha256,
            Some(crate::secret::sha256_hex(&token))
        );
        assert_eq!(
            stored.issued_by.as_deref(),
            Some(app.boot.oauth_client_id.as_str())
        );
    }

    /// Issue 11 item 16: kb/1215's own example (`curl -d client_id=… -d client_secret=…`)
    /// sends no `grant_type`; real clients rely on it.
    #[tokio::test]
    async fn a_token_request_without_grant_type_is_client_credentials() {
        let app = TestApp::new();
        let form = format!(
            "client_id={}&client_secret={}",
            app.boot.oauth_client_id, app.boot.oauth_client_secret
        );
        let response = app.send_request(token_request(&form)).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body["token_type"], "Bearer");
        let token = response.body["access_token"].as_str().expect("token");
        assert!(token.starts_with("tskey-api-"));

        let empty = format!("grant_type=&client_secret={}", app.boot.oauth_client_secret);
        let response = app.send_request(token_request(&empty)).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    #[tokio::test]
    async fn a_token_request_with_another_grant_type_is_refused() {
        let app = TestApp::new();
        let form = format!(
            "grant_type=authorization_code&client_secret={}",
            app.boot.oauth_client_secret
        );
        let response = app.send_request(token_request(&form)).await;
        assert_eq!(response.status, 400, "{}", response.body);
        assert_eq!(
            response.body["message"],
            "unsupported grant_type \"authorization_code\""
        );
        assert!(
            !response
                .body
                .to_string()
                .contains(&app.boot.oauth_client_secret)
        );
    }

    #[tokio::test]
    async fn a_secret_of_another_type_is_not_a_client_secret() {
        let app = TestApp::new();
        let form = format!(
            "grant_type=client_credentials&client_secret={}",
            app.boot.api_key
        );
        let response = app.send_request(token_request(&form)).await;
        assert_eq!(response.status, 401);
        assert_eq!(response.body["message"], "invalid client credentials");
    }
}
