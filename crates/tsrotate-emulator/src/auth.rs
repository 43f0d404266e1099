//! Who is calling: the [`Caller`] extractor resolves `Authorization` to an active API access
//! token and the rights it carries.
//!
//! Accepted forms, as Tailscale accepts them: `Authorization: Bearer <token>`, or HTTP Basic
//! with the token as user name and an empty password (what tailscale-client-go-v2 sends).
//! Unknown, malformed, revoked or expired tokens, tokens of the wrong type (an auth key or a
//! client secret) and tokens whose OAuth client is gone are all 401.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use base64::Engine as _;

use crate::{
    error::ApiError,
    model::KeyType,
    scope::{self, Access},
    secret,
    state::EmulatorState,
};

/// What a token may do.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// A personal API access token. Every emulated user is an admin, so it may do anything.
    User { user_id: String },
    /// An access token from `POST /oauth/token`, limited to its scopes and tags.
    OAuth {
        client_id: String,
        scopes: Vec<String>,
        tags: Vec<String>,
    },
}

/// The authenticated caller of an API route.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Key ID of the token used.
    pub(crate) token_id: String,
    pub(crate) principal: Principal,
}

impl Caller {
    /// Whether the caller may `access` keys or objects governed by `resource`.
    pub(crate) fn may(&self, resource: &str, access: Access) -> bool {
        match &self.principal {
            Principal::User { .. } => true,
            Principal::OAuth { scopes, .. } => scope::grants(scopes, resource, access),
        }
    }

    /// Like [`Self::may`], as a 403 that names the missing scope.
    pub(crate) fn require(&self, resource: &str, access: Access) -> Result<(), ApiError> {
        if self.may(resource, access) {
            Ok(())
        } else {
            Err(ApiError::missing_scope(&scope::name_for(resource, access)))
        }
    }

    /// Whether `key_id` is the key making the call: the token itself or, for an OAuth access
    /// token, its client. Every token may GET its own key (kb/1215).
    pub(crate) fn is_self(&self, key_id: &str) -> bool {
        self.token_id == key_id
            || matches!(&self.principal, Principal::OAuth { client_id, .. } if client_id == key_id)
    }

    /// The user that owns what this caller creates; empty when the tailnet owns it.
    pub(crate) fn owner(&self) -> &str {
        match &self.principal {
            Principal::User { user_id } => user_id,
            Principal::OAuth { .. } => "",
        }
    }
}

/// The token in an `Authorization` header, Bearer or Basic (user name = token).
pub(crate) fn token_from(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        (!rest.is_empty()).then(|| rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let (user, _password) = basic_credentials(rest)?;
        (!user.is_empty()).then_some(user)
    } else {
        None
    }
}

/// Decodes an HTTP Basic `user:password` pair.
pub(crate) fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    Some((user.to_owned(), password.to_owned()))
}

impl FromRequestParts<EmulatorState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &EmulatorState,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from(&parts.headers).ok_or(ApiError::Unauthorized)?;
        authenticate(state, &token).ok_or(ApiError::Unauthorized)
    }
}

fn authenticate(state: &EmulatorState, token: &str) -> Option<Caller> {
    let (kind, id) = secret::parse_credential(token)?;
    if kind != "api" {
        return None;
    }
    state.read(|store, now| {
        let key = store.key(id)?;
        let hash = key.secret_sha256.as_deref()?;
        if key.key_type != KeyType::Api || !secret::matches_hash(token, hash) || !key.is_active(now)
        {
            return None;
        }
        let principal = match &key.issued_by {
            Some(client_id) => {
                // Deleting a client revokes its tokens; check the client too in case a state
                // file was edited by hand.
                if !store.key(client_id).is_some_and(|c| c.is_active(now)) {
                    return None;
                }
                Principal::OAuth {
                    client_id: client_id.clone(),
                    scopes: key.scopes.clone(),
                    tags: key.tags.clone(),
                }
            }
            None => Principal::User {
                user_id: key.user_id.clone(),
            },
        };
        Some(Caller {
            token_id: key.id.clone(),
            principal,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header value"),
        );
        headers
    }

    #[test]
    fn bearer_and_basic_with_empty_password_carry_the_token() {
        assert_eq!(
            token_from(&headers("Bearer tskey-api-a-b")).as_deref(),
            Some("tskey-api-a-b")
        );
        assert_eq!(
            token_from(&headers("bearer  tskey-api-a-b ")).as_deref(),
            Some("tskey-api-a-b")
        );
        // base64("tskey-api-a-b:")
        assert_eq!(
            token_from(&headers("Basic dHNrZXktYXBpLWEtYjo=")).as_deref(),
            Some("tskey-api-a-b")
        );
    }

    #[test]
    fn other_or_empty_schemes_carry_no_token() {
        assert_eq!(token_from(&HeaderMap::new()), None);
        assert_eq!(token_from(&headers("Bearer ")), None);
        assert_eq!(token_from(&headers("Token tskey-api-a-b")), None);
        assert_eq!(token_from(&headers("Basic !!!")), None);
        // base64(":pw"): empty user name
        assert_eq!(token_from(&headers("Basic OnB3")), None);
    }
}
