//! Would a sample identity token be accepted by a federated identity?
//!
//! Before consumers are switched, a token their identity provider issued (from
//! `--id-token-file`) is checked against what the identity will require, so that a mismatch
//! shows now and not as a failed deployment. The most common failure upstream is a subject
//! pattern that does not match the `sub` GitHub sends (tailscale/github-action#227), so every
//! [`Mismatch`] names the claim, what was required and what the token carries.
//!
//! [`check`] is pure: it decodes the token's claims (without checking the signature) and
//! compares issuer, audience, lifetime, subject and custom claim rules. [`check_issuer`] asks
//! the issuer for its discovery document and keys, and checks that the key the token names
//! is among them. The signature itself is checked by Tailscale at exchange time; this module
//! does not hold an OIDC client, since a forged token would only fail later, never succeed.
//!
//! # Security
//!
//! An identity token is a bearer credential for as long as it lives: it is held in a
//! [`Secret`], and only its claims (issuer, subject, repository, ...) appear in messages.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::subject::matches;
use crate::key::Secret;

/// Errors of reading a token or reaching its issuer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is not a JWT whose claims can be read.
    #[error("the identity token is not a JWT: {0}")]
    Malformed(String),
    /// The issuer could not be asked.
    #[error("issuer {issuer} is not reachable: {message}")]
    Unreachable {
        /// The issuer URL.
        issuer: String,
        /// Why.
        message: String,
    },
    /// The issuer answered, but not as an OIDC issuer.
    #[error("issuer {issuer}: {message}")]
    Issuer {
        /// The issuer URL.
        issuer: String,
        /// What is wrong.
        message: String,
    },
}

/// What an identity requires of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// `iss`, exactly.
    pub issuer: String,
    /// The `sub` pattern (`*` wildcards).
    pub subject: String,
    /// `aud` must contain this, when known (Tailscale generates it when the identity is
    /// created without one).
    pub audience: Option<String>,
    /// Claim name to pattern.
    pub claim_rules: BTreeMap<String, String>,
}

/// A token's header and claims, read without checking the signature.
#[derive(Debug, Clone)]
pub struct Claims {
    /// The `kid` of the header.
    pub kid: Option<String>,
    /// The `alg` of the header.
    pub alg: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
}

impl Claims {
    /// A claim as text (strings as they are, other JSON as JSON).
    #[must_use]
    pub fn text(&self, name: &str) -> Option<String> {
        self.claims.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// One way the token would be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The claim (`sub`, `aud`, `exp`, a custom claim).
    pub claim: String,
    /// What the identity requires.
    pub required: String,
    /// What the token carries, if anything.
    pub actual: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.actual {
            Some(actual) => write!(
                f,
                "claim `{}` is `{actual}`, but the identity requires `{}`",
                self.claim, self.required
            ),
            None => write!(
                f,
                "claim `{}` is missing, but the identity requires `{}`",
                self.claim, self.required
            ),
        }
    }
}

/// Decode the header and claims of a compact JWS.
pub fn decode(token: &Secret) -> Result<Claims, Error> {
    let token = token.expose_secret().trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed(
            "expected three dot-separated parts (header.payload.signature)".into(),
        ));
    };
    let json = |part: &str, what: &str| -> Result<Map<String, Value>, Error> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| Error::Malformed(format!("the {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Error::Malformed(format!("the {what} is not a JSON object"))),
        }
    };
    let header = json(header, "header")?;
    let claims = json(payload, "payload")?;
    let text = |name: &str| header.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(Claims {
        kid: text("kid"),
        alg: text("alg"),
        claims,
    })
}

/// Everything in `claims` that `requirements` would refuse at time `now`; empty means the
/// claims would be accepted (the signature aside).
#[must_use]
pub fn check(claims: &Claims, requirements: &Requirements, now: OffsetDateTime) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut require = |claim: &str, required: String, ok: bool| {
        if !ok {
            out.push(Mismatch {
                claim: claim.to_owned(),
                required,
                actual: claims.text(claim),
            });
        }
    };
    require(
        "iss",
        requirements.issuer.clone(),
        claims.text("iss").as_deref() == Some(requirements.issuer.as_str()),
    );
    if let Some(audience) = &requirements.audience {
        let ok = match claims.claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        require("aud", audience.clone(), ok);
    }
    let unix = now.unix_timestamp();
    let number = |name: &str| claims.claims.get(name).and_then(Value::as_i64);
    require(
        "exp",
        format!("a time after now ({unix})"),
        number("exp").is_some_and(|exp| exp > unix),
    );
    if claims.claims.contains_key("nbf") {
        require(
            "nbf",
            format!("a time not after now ({unix})"),
            number("nbf").is_some_and(|nbf| nbf <= unix),
        );
    }
    require(
        "sub",
        requirements.subject.clone(),
        claims
            .text("sub")
            .is_some_and(|sub| matches(&requirements.subject, &sub)),
    );
    for (claim, pattern) in &requirements.claim_rules {
        require(
            claim,
            pattern.clone(),
            claims.text(claim).is_some_and(|v| matches(pattern, &v)),
        );
    }
    out
}

/// Ask the token's issuer for its discovery document and key set, and check that the issuer
/// names itself as `issuer` and publishes the key `kid`.
///
/// The issuer must be `https://`; plain `http://` is allowed only to a loopback address
/// (test issuers), as Tailscale's own check would refuse anything else.
pub async fn check_issuer(issuer: &str, kid: Option<&str>, timeout: Duration) -> Result<(), Error> {
    let fail = |message: String| Error::Issuer {
        issuer: issuer.to_owned(),
        message,
    };
    let unreachable = |message: String| Error::Unreachable {
        issuer: issuer.to_owned(),
        message,
    };
    let base = reqwest::Url::parse(issuer).map_err(|e| fail(format!("not a URL ({e})")))?;
    match base.scheme() {
        "https" => {}
        "http" if crate::http::is_loopback(&base) => {}
        _ => return Err(fail("an issuer must be an https:// URL".into())),
    }
    let http = crate::http::client(timeout).map_err(&unreachable)?;
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{url}: {}", without_url(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("{url} answered {}", status.as_u16()));
            }
            response
                .json::<Value>()
                .await
                .map_err(|_| format!("{url} did not answer JSON"))
        }
    };
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery = get(discovery_url).await.map_err(&unreachable)?;
    let named = discovery.get("issuer").and_then(Value::as_str);
    if named != Some(issuer) {
        return Err(fail(format!(
            "its discovery document names issuer `{}`, not itself",
            named.unwrap_or("(none)")
        )));
    }
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("its discovery document has no `jwks_uri`".into()))?;
    let jwks = get(jwks_uri.to_owned()).await.map_err(&unreachable)?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| fail("its key set has no `keys`".into()))?;
    if let Some(kid) = kid
        && !keys
            .iter()
            .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
    {
        return Err(fail(format!(
            "its key set has no key `{kid}`, the one that signed the token"
        )));
    }
    Ok(())
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "");
    }
    s.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &Value) -> Secret {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        Secret::new(format!("{header}.{payload}.c2ln"))
    }

    fn requirements() -> Requirements {
        Requirements {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "repo:acme/app:ref:refs/heads/main".into(),
            audience: Some("api.tailscale.com/abc".into()),
            claim_rules: BTreeMap::from([("repository_owner".into(), "acme".into())]),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn good() -> Value {
        serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "api.tailscale.com/abc",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_owner": "acme",
            "exp": 1_700_000_600,
            "nbf": 1_699_999_000,
        })
    }

    #[test]
    fn a_matching_token_has_no_mismatch() {
        let claims = decode(&token(&good())).unwrap();
        assert_eq!(claims.kid.as_deref(), Some("k1"));
        assert_eq!(check(&claims, &requirements(), now()), vec![]);
    }

    #[test]
    fn issue_227_subject_mismatch_names_the_claim_and_its_value() {
        let mut claims = good();
        claims["sub"] = "repo:acme/app:environment:production".into();
        let found = check(&decode(&token(&claims)).unwrap(), &requirements(), now());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].claim, "sub");
        assert_eq!(
            found[0].to_string(),
            "claim `sub` is `repo:acme/app:environment:production`, but the identity requires `repo:acme/app:ref:refs/heads/main`"
        );
    }

    #[test]
    fn each_rule_is_checked() {
        for (claim, value) in [
            ("iss", Value::from("https://evil.example")),
            ("aud", Value::from("other")),
            ("exp", Value::from(1_699_999_999)),
            ("nbf", Value::from(1_700_000_001)),
            ("repository_owner", Value::from("evil")),
        ] {
            let mut claims = good();
            claims[claim] = value;
            let found = check(&decode(&token(&claims)).unwrap(), &requirements(), now());
            assert_eq!(
                found.iter().map(|m| m.claim.as_str()).collect::<Vec<_>>(),
                vec![claim]
            );
        }
        let mut claims = good();
        claims.as_object_mut().unwrap().remove("sub");
        let found = check(&decode(&token(&claims)).unwrap(), &requirements(), now());
        assert_eq!(found[0].actual, None);
        assert!(found[0].to_string().contains("missing"));
        let mut claims = good();
        claims["aud"] = serde_json::json!(["x", "api.tailscale.com/abc"]);
        assert!(check(&decode(&token(&claims)).unwrap(), &requirements(), now()).is_empty());
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        for bad in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.bm90IGpzb24.x"] {
            let err = decode(&Secret::new(bad.into())).unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{bad}");
        }
        let err = decode(&Secret::new("eyJhIjoxfQ.CANARYsecretPART.sig".into())).unwrap_err();
        assert!(!err.to_string().contains("CANARY"));
    }
}
