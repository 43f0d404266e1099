//! A test OIDC identity provider's signing side: an ES256 key of its own, its JWKS, and
//! signed identity tokens. The emulator serves one under `/_emulator/oidc` (for the demo and
//! CLI tests); `tsrotate-test-support` serves others on their own ports.
//!
//! The cryptography is `ring` (key generation) and `jsonwebtoken` (JWS signing); nothing here
//! is hand-written crypto. Tokens signed here are bearer credentials for a federated identity
//! that trusts this issuer: tests treat them as canaries.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

/// An ES256 signing key with its key ID.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// The public key as a JWK (`kty: EC`, `crv: P-256`).
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh P-256 key named `kid`.
    ///
    /// # Panics
    ///
    /// If the system random source fails (ring then cannot make a key at all).
    #[must_use]
    pub fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system random source works");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("ring reads the key it made");
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        });
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// The key ID tokens carry in their header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    #[must_use]
    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// `{"keys": [jwk]}`.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// A compact JWS of `claims`, with this key's ID in the header.
    #[must_use]
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Like [`Self::sign`] but naming `kid` in the header: a token whose key the issuer does
    /// not publish, or (with another key's ID) one whose signature does not verify.
    ///
    /// # Panics
    ///
    /// Never for JSON claims; signing with a valid ECDSA key does not fail.
    #[must_use]
    pub fn sign_as(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("ES256 signing works")
    }
}

/// The OIDC discovery document of an issuer whose JWKS is at `{issuer}/jwks`.
#[must_use]
pub fn discovery_document(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "nbf"],
    })
}

/// Claims of an identity token: `iss`, `sub`, `aud`, `iat` = `nbf` = `now`, `exp` =
/// `now + lifetime`, plus `extra` (which may override any of them).
#[must_use]
pub fn claims(
    issuer: &str,
    subject: &str,
    audience: &str,
    now: i64,
    lifetime: i64,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()),
    });
    if let Some(object) = claims.as_object_mut() {
        for (name, value) in extra {
            object.insert(name.clone(), value.clone());
        }
    }
    claims
}
