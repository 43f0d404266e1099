//! `POST /api/v2/oauth/token-exchange`: workload identity federation (not in the spec).
//!
//! Form fields `client_id` (the federated identity's key ID) and `jwt` (an OIDC identity token
//! from the workload's identity provider); `grant_type` and `code`, which `oauth2.Exchange`
//! also sends, are ignored. The emulator fetches the identity's issuer's discovery document
//! (`{issuer}/.well-known/openid-configuration`) and the JWKS it names, checks the signature
//! (asymmetric algorithms only), `iss`, `aud`, `exp`, `nbf` (against the emulator's clock, no
//! leeway), the subject pattern and the custom claim rules, and answers a 1-hour `tskey-api-…`
//! token carrying the identity's scopes and tags.
//!
//! Refusals answer as Tailscale does: 403 `{"message": "Unauthorized"}` whatever the rule, so a
//! caller learns nothing about the identity's configuration; a token that is not three
//! dot-separated parts is 400 `invalid JWT format: …`. Why a token was refused is kept for
//! tests and the demo at `GET /_emulator/token-exchanges`, never in the answer.
//!
//! Issuers must be `https://`, except loopback issuers (`http://127.0.0.1:…`), which may be
//! plain http so that tests and the demo need no certificates. Redirects are not followed.

use std::{collections::HashSet, time::Duration};

use axum::{
    Form, Json, Router,
    extract::{State, rejection::FormRejection},
    routing::post,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    error::ApiError,
    model::{Federation, KeyRecord, KeyType},
    oauth::ACCESS_TOKEN_SECONDS,
    secret,
    state::EmulatorState,
};

/// How long one fetch from the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest discovery document or JWKS read: anything bigger is not a real one.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new().route("/api/v2/oauth/token-exchange", post(exchange))
}

#[derive(Debug, Default, Deserialize)]
struct ExchangeForm {
    client_id: Option<String>,
    jwt: Option<String>,
}

/// One exchange as `GET /_emulator/token-exchanges` shows it: never the token.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExchangeRecord {
    pub(crate) client_id: String,
    pub(crate) accepted: bool,
    /// Why it was refused (the rule that failed), or `null`.
    pub(crate) reason: Option<String>,
    /// The key ID of the access token issued.
    pub(crate) token_id: Option<String>,
}

/// Whether an issuer URL may be used: `https://`, or `http://` to a loopback address.
pub(crate) fn issuer_allowed(issuer: &str) -> bool {
    let Ok(url) = Url::parse(issuer) else {
        return false;
    };
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => true,
        "http" => is_loopback(&url),
        _ => false,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
pub(crate) fn pattern_matches(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A refusal: the reason is recorded, the caller sees Tailscale's opaque 403.
struct Refused(String);

impl<T: Into<String>> From<T> for Refused {
    fn from(reason: T) -> Self {
        Self(reason.into())
    }
}

async fn exchange(
    State(state): State<EmulatorState>,
    form: Result<Form<ExchangeForm>, FormRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Form(form) = form.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let client_id = form
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("client_id is required"))?;
    let jwt = form
        .jwt
        .filter(|j| !j.is_empty())
        .ok_or_else(|| ApiError::bad_request("jwt is required"))?;
    let parts = jwt.split('.').count();
    if parts != 3 {
        return Err(ApiError::bad_request(format!(
            "invalid JWT format: expected 3 parts separated by '.', got {parts}"
        )));
    }
    let outcome = verify(&state, &client_id, &jwt).await;
    let outcome = match outcome {
        Ok(federation) => issue(&state, &client_id, &federation),
        Err(refused) => Err(refused),
    };
    match outcome {
        Ok((body, token_id)) => {
            tracing::info!(client_id = %client_id, token_id = %token_id, "identity token exchanged");
            state.record_exchange(ExchangeRecord {
                client_id,
                accepted: true,
                reason: None,
                token_id: Some(token_id),
            });
            Ok(Json(body))
        }
        Err(Refused(reason)) => {
            tracing::info!(client_id = %client_id, %reason, "identity token refused");
            state.record_exchange(ExchangeRecord {
                client_id,
                accepted: false,
                reason: Some(reason),
                token_id: None,
            });
            Err(ApiError::Forbidden("Unauthorized".to_owned()))
        }
    }
}

/// Every check but the final one that the identity is still there.
async fn verify(state: &EmulatorState, client_id: &str, jwt: &str) -> Result<Federation, Refused> {
    let federation = state
        .read(|store, now| {
            store
                .key(client_id)
                .filter(|k| k.key_type == KeyType::Federated && k.is_active(now))
                .and_then(|k| k.federation.clone())
        })
        .ok_or("unknown or revoked federated identity")?;

    let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("bad JWT header: {e}"))?;
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(format!("unsupported signing algorithm {:?}", header.alg).into());
    }

    let jwks = fetch_keys(&federation.issuer).await?;
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| format!("unknown key ID \"{kid}\": not in the issuer's JWKS"))?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => return Err("the token names no key ID and the issuer has several keys".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
    let mut validation = Validation::new(header.alg);
    // The time and audience checks below use the emulator's clock and give their own reasons.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    validation.leeway = 0;
    let claims =
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(jwt, &key, &validation)
            .map_err(|e| format!("signature check failed: {e}"))?
            .claims;

    let now = state.read(|_, now| now);
    check_claims(&federation, &claims, now)?;
    Ok(federation)
}

/// `iss`, `aud`, `exp`, `nbf`, `sub` and the custom claim rules.
fn check_claims(
    federation: &Federation,
    claims: &serde_json::Map<String, serde_json::Value>,
    now: OffsetDateTime,
) -> Result<(), Refused> {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    if text("iss") != Some(federation.issuer.as_str()) {
        return Err("iss does not match the identity's issuer".into());
    }
    let audience_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => *aud == federation.audience,
        Some(serde_json::Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str() == Some(federation.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err("aud does not contain the identity's audience".into());
    }
    let now = now.unix_timestamp();
    let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
    match number("exp") {
        Some(exp) if exp > now => {}
        Some(_) => return Err("the token has expired (exp)".into()),
        None => return Err("the token has no exp".into()),
    }
    if number("nbf").is_some_and(|nbf| nbf > now) {
        return Err("the token is not valid yet (nbf)".into());
    }
    let subject = text("sub").unwrap_or_default();
    if !pattern_matches(&federation.subject, subject) {
        return Err("sub does not match the identity's subject pattern".into());
    }
    for (name, pattern) in &federation.custom_claim_rules {
        let value = match claims.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => v.to_string(),
            _ => return Err(format!("claim {name} is missing or not a string").into()),
        };
        if !pattern_matches(pattern, &value) {
            return Err(format!("claim {name} does not match its rule").into());
        }
    }
    Ok(())
}

/// The issuer's discovery document, then the JWKS it names; both over https, or http to a
/// loopback issuer.
async fn fetch_keys(issuer: &str) -> Result<JwkSet, Refused> {
    if !issuer_allowed(issuer) {
        return Err("the issuer URL is not https:// (or http:// to a loopback address)".into());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: serde_json::Value = fetch_json(&client, &discovery_url).await?;
    if discovery.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer) {
        return Err("the discovery document names another issuer".into());
    }
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .ok_or("the discovery document has no jwks_uri")?;
    if !issuer_allowed(jwks_uri) {
        return Err("jwks_uri is not https:// (or http:// to a loopback address)".into());
    }
    fetch_json(&client, jwks_uri).await
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, Refused> {
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status().as_u16()).into());
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read {url}: {}", e.without_url()))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes").into());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{url} is not the expected JSON: {e}").into())
}

/// Mints the access token, if the identity is still active.
fn issue(
    state: &EmulatorState,
    client_id: &str,
    federation: &Federation,
) -> Result<(serde_json::Value, String), Refused> {
    let minted = state.mutate(|store, now| {
        let identity = store
            .key(client_id)
            .filter(|k| {
                k.key_type == KeyType::Federated
                    && k.is_active(now)
                    && k.federation.as_ref() == Some(federation)
            })
            .ok_or(ApiError::Forbidden(String::new()))?;
        let scopes = identity.scopes.clone();
        let tags = identity.tags.clone();
        let id = store.unused_key_id();
        let access_token = secret::new_credential("api", &id);
        let mut record = KeyRecord::new(id.clone(), KeyType::Api, now);
        record.secret_sha256 = Some(secret::sha256_hex(&access_token));
        record.expiry_seconds = Some(ACCESS_TOKEN_SECONDS);
        record.expires = Some(now + time::Duration::seconds(ACCESS_TOKEN_SECONDS));
        record.scopes.clone_from(&scopes);
        record.tags.clone_from(&tags);
        record.issued_by = Some(client_id.to_owned());
        store.keys.push(record);
        let body = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": scopes.join(" "),
        });
        Ok((body, id))
    });
    minted.map_err(|_| Refused::from("the identity changed or was deleted during the exchange"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_of_characters() {
        assert!(pattern_matches(
            "repo:org/app:*",
            "repo:org/app:ref:refs/heads/main"
        ));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
        assert!(!pattern_matches(
            "repo:org/app:*",
            "repo:org/application:ref"
        ));
        assert!(!pattern_matches("a*b", "ac"));
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(issuer_allowed(
            "https://token.actions.githubusercontent.com"
        ));
        assert!(issuer_allowed("http://127.0.0.1:8080"));
        assert!(issuer_allowed("http://[::1]:1/oidc"));
        assert!(issuer_allowed("http://localhost:9"));
        assert!(!issuer_allowed("http://example.com"));
        assert!(!issuer_allowed("http://10.0.0.1"));
        assert!(!issuer_allowed("ftp://127.0.0.1"));
        assert!(!issuer_allowed("https://"));
        assert!(!issuer_allowed("https://x.example?q=1"));
    }
}

#[cfg(test)]
mod exchange_tests {
    use axum::{
        body::Body,
        http::{Request, header},
    };
    use serde_json::{Value, json};
    use tsrotate_test_support::oidc_issuer::{SigningKey, TestIssuer};

    use crate::test_util::{TestApp, TestResponse};

    const KEYS: &str = "/api/v2/tailnet/-/keys";
    const SUBJECT: &str = "repo:acme/infra:ref:refs/heads/main";

    /// A federated identity trusting `issuer`, answered as created.
    async fn identity(app: &TestApp, issuer: &TestIssuer) -> Value {
        let body = json!({
            "keyType": "federated",
            "issuer": issuer.url(),
            "subject": "repo:acme/infra:*",
            "customClaimRules": {"repository_owner": "acme"},
            "scopes": ["auth_keys"],
            "tags": ["tag:ci"],
            "description": "ci deploys",
        });
        let created = app
            .send("POST", KEYS, Some(&app.boot.api_key), Some(&body))
            .await;
        TestApp::assert_per_spec("POST", KEYS, &created);
        assert_eq!(created.status, 200, "{}", created.body);
        assert!(
            created.body.get("key").is_none(),
            "no secret: {}",
            created.body
        );
        created.body
    }

    async fn exchange(app: &TestApp, client_id: &str, jwt: &str) -> TestResponse {
        let form = format!("client_id={client_id}&jwt={jwt}&grant_type=ignored");
        let request = Request::builder()
            .method("POST")
            .uri("/api/v2/oauth/token-exchange")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .expect("request");
        app.send_request(request).await
    }

    fn claims(pairs: &[(&str, Value)]) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("repository_owner".into(), json!("acme"));
        for (name, value) in pairs {
            map.insert((*name).to_owned(), value.clone());
        }
        map
    }

    /// The reason the last exchange was refused, after checking the answer is Tailscale's
    /// opaque 403 and holds no trace of the token.
    fn refused_because(app: &TestApp, response: &TestResponse, jwt: &str) -> String {
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(response.body, json!({"message": "Unauthorized"}));
        let last = app.state.exchanges().pop().expect("recorded");
        assert!(!last.accepted);
        let reason = last.reason.expect("a reason");
        assert!(!reason.contains(jwt));
        reason
    }

    #[tokio::test]
    async fn a_matching_token_gets_an_access_token_with_the_identity_scopes_and_tags() {
        let app = TestApp::new();
        let issuer = TestIssuer::start();
        let identity = identity(&app, &issuer).await;
        let id = identity["id"].as_str().expect("id");
        let audience = identity["audience"].as_str().expect("generated audience");
        assert!(audience.starts_with("api.tailscale.com/"), "{audience}");

        let jwt = issuer.token_with(SUBJECT, audience, 300, &claims(&[]));
        let answer = exchange(&app, id, &jwt).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["token_type"], "Bearer");
        assert_eq!(answer.body["expires_in"], 3600);
        assert_eq!(answer.body["scope"], "auth_keys");
        let token = answer.body["access_token"].as_str().expect("token");
        assert!(token.starts_with("tskey-api-"));

        // The token acts with the identity's scopes and tags: it may create a tag:ci auth key
        // and list the tailnet's federated identities, not its OAuth clients.
        let key = json!({"capabilities": {"devices": {"create": {"tags": ["tag:ci"]}}}});
        let created = app.send("POST", KEYS, Some(token), Some(&key)).await;
        assert_eq!(created.status, 200, "{}", created.body);
        assert_eq!(created.body["userId"], "");
        let other_tag = json!({"capabilities": {"devices": {"create": {"tags": ["tag:db"]}}}});
        let refused = app.send("POST", KEYS, Some(token), Some(&other_tag)).await;
        assert_eq!(refused.status, 400);

        // Deleting the identity revokes the tokens it issued.
        let path = format!("{KEYS}/{id}");
        let deleted = app
            .send("DELETE", &path, Some(&app.boot.api_key), None)
            .await;
        assert_eq!(deleted.status, 200);
        let after = app.send("POST", KEYS, Some(token), Some(&key)).await;
        assert_eq!(after.status, 401);
        let again = exchange(&app, id, &jwt).await;
        let reason = refused_because(&app, &again, &jwt);
        assert!(reason.contains("unknown or revoked"), "{reason}");
    }

    #[tokio::test]
    async fn every_rule_refuses_on_its_own() {
        let app = TestApp::new();
        let issuer = TestIssuer::start();
        let identity = identity(&app, &issuer).await;
        let id = identity["id"].as_str().expect("id");
        let aud = identity["audience"].as_str().expect("audience");
        let now = issuer.now();
        let stranger = SigningKey::generate(issuer.key().kid());
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "wrong issuer",
                issuer.token_with(
                    SUBJECT,
                    aud,
                    300,
                    &claims(&[("iss", json!("https://evil.example"))]),
                ),
                "iss does not match",
            ),
            (
                "wrong audience",
                issuer.token_with(SUBJECT, "api.tailscale.com/other", 300, &claims(&[])),
                "aud does not contain",
            ),
            (
                "expired",
                issuer.token_with(SUBJECT, aud, 300, &claims(&[("exp", json!(now - 1))])),
                "expired",
            ),
            (
                "not yet valid",
                issuer.token_with(SUBJECT, aud, 3000, &claims(&[("nbf", json!(now + 600))])),
                "not valid yet",
            ),
            (
                "subject mismatch",
                issuer.token_with(
                    "repo:acme/other:ref:refs/heads/main",
                    aud,
                    300,
                    &claims(&[]),
                ),
                "sub does not match",
            ),
            (
                "claim rule",
                issuer.token_with(
                    SUBJECT,
                    aud,
                    300,
                    &claims(&[("repository_owner", json!("evil"))]),
                ),
                "claim repository_owner does not match",
            ),
            (
                "missing claim",
                {
                    let claims = tsrotate_emulator_claims(issuer.url(), aud, now);
                    issuer.key().sign(&claims)
                },
                "claim repository_owner is missing",
            ),
            (
                "bad signature",
                stranger.sign(&tsrotate_emulator_claims_with_owner(issuer.url(), aud, now)),
                "signature check failed",
            ),
            (
                "unknown kid",
                issuer.key().sign_as(
                    "rotated-away",
                    &tsrotate_emulator_claims_with_owner(issuer.url(), aud, now),
                ),
                "unknown key ID",
            ),
        ];
        for (rule, jwt, expected) in cases {
            let answer = exchange(&app, id, &jwt).await;
            let reason = refused_because(&app, &answer, &jwt);
            assert!(reason.contains(expected), "{rule}: {reason}");
        }
        // And the same token with everything right is accepted, so each refusal above was
        // down to its one rule.
        let good = issuer.token_with(SUBJECT, aud, 300, &claims(&[]));
        assert_eq!(exchange(&app, id, &good).await.status, 200);
    }

    fn tsrotate_emulator_claims(issuer: &str, aud: &str, now: i64) -> Value {
        crate::issuer::claims(issuer, SUBJECT, aud, now, 300, &serde_json::Map::new())
    }

    fn tsrotate_emulator_claims_with_owner(issuer: &str, aud: &str, now: i64) -> Value {
        crate::issuer::claims(issuer, SUBJECT, aud, now, 300, &claims(&[]))
    }

    #[tokio::test]
    async fn malformed_requests_are_bad_requests() {
        let app = TestApp::new();
        let answer = exchange(&app, "kX", "not-a-jwt").await;
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.body["message"],
            "invalid JWT format: expected 3 parts separated by '.', got 1"
        );
        let request = Request::builder()
            .method("POST")
            .uri("/api/v2/oauth/token-exchange")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("jwt=a.b.c"))
            .expect("request");
        assert_eq!(app.send_request(request).await.status, 400);
    }

    #[tokio::test]
    async fn identities_are_created_updated_and_listed_per_the_spec() {
        let app = TestApp::new();
        let issuer = TestIssuer::start();
        let created = identity(&app, &issuer).await;
        let id = created["id"].as_str().expect("id");
        let path = format!("{KEYS}/{id}");
        let update = json!({
            "keyType": "federated",
            "issuer": issuer.url(),
            "subject": "repo:acme/infra:environment:prod",
            "audience": "custom-audience",
            "scopes": ["auth_keys", "devices:core"],
            "tags": ["tag:ci"],
        });
        let updated = app
            .send("PUT", &path, Some(&app.boot.api_key), Some(&update))
            .await;
        TestApp::assert_per_spec("PUT", &path, &updated);
        assert_eq!(updated.status, 200, "{}", updated.body);
        assert_eq!(updated.body["subject"], "repo:acme/infra:environment:prod");
        assert_eq!(updated.body["audience"], "custom-audience");
        assert_eq!(updated.body["customClaimRules"], json!({}));
        let fetched = app.send("GET", &path, Some(&app.boot.api_key), None).await;
        TestApp::assert_per_spec("GET", &path, &fetched);
        assert_eq!(fetched.body["keyType"], "federated");
        let listed = app
            .send(
                "GET",
                &format!("{KEYS}?all=true"),
                Some(&app.boot.api_key),
                None,
            )
            .await;
        TestApp::assert_per_spec("GET", KEYS, &listed);
        assert!(
            listed.body["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k["id"] == id && k["issuer"] == issuer.url())
        );
        let plain_http = json!({
            "keyType": "federated", "issuer": "http://issuer.example", "subject": "x",
            "scopes": ["auth_keys"], "tags": ["tag:ci"],
        });
        let refused = app
            .send("POST", KEYS, Some(&app.boot.api_key), Some(&plain_http))
            .await;
        assert_eq!(refused.status, 400);
    }
}
