//! AWS Secrets Manager secrets and SSM Parameter Store parameters, over the services' JSON 1.1
//! protocol with a small hand-written Signature Version 4 signer.
//!
//! | sink | read | write |
//! | --- | --- | --- |
//! | [`SecretsManagerSink`] | `secretsmanager.GetSecretValue` (`AWSCURRENT`) | `PutSecretValue`; `CreateSecret` when absent |
//! | [`SsmSink`] | `AmazonSSM.GetParameter` (`WithDecryption`) | `PutParameter` (`SecureString`, `Overwrite`) |
//!
//! `sigv4` signs a request, `client` sends one JSON 1.1 call and classifies its failure,
//! `secretsmanager` and `ssm` are the two sinks on top of it.
//!
//! # Why not the AWS SDK
//!
//! We need four operations of two services and static credentials. The SDK
//! (`aws-config` + `aws-sdk-secretsmanager` + `aws-sdk-ssm`, measured with 1.13/1.125/1.133 in
//! a scratch crate on this project's 2-core machine) resolves to 202 packages, 64 of them not
//! already in our lock file: a second HTTP stack (hyper 0.14, rustls 0.21), `aws-lc-sys`
//! (a C build script) and the generated service crates. A clean debug build took 6 min 25 s of
//! user CPU (14 min 47 s of wall time on a machine shared with other builds) and 1.5 GB of
//! `target/`; `aws-sdk-ssm` alone took 367 s, the `aws-lc-sys` build script 190 s. Signing
//! by hand adds only `hmac` (one small crate over `digest`, which `sha2` already brings) and
//! compiles in 0.3 s (measured with `cargo build --timings`). What we give up: the SDK's
//! credential chain (profiles, SSO, instance and container roles; the CLI resolves static or session credentials from the
//! environment instead), its retries (these sinks try each call once; the rotation engine
//! tries a failed write again when its [`ErrorKind`](super::ErrorKind) is retryable, and
//! reports a failed read) and endpoint rules beyond `https://{service}.{region}.amazonaws.com`
//! (`.amazonaws.com.cn` in China; anything else through `endpoint_url`). The signer is
//! checked against AWS's published test vectors and, in the integration tests, against a real
//! verifier (moto with IAM authentication switched on).
//!
//! # Check-and-set on services that have none
//!
//! Neither service has a conditional write, so a write reads the current version right before
//! writing and refuses with [`ErrorKind::Conflict`](super::ErrorKind::Conflict) when it is
//! not the expected one. That leaves a race window of one round trip between the read and the write: a value stored by someone
//! else inside it is replaced by ours. Neither service loses it: Secrets Manager keeps it as
//! the `AWSPREVIOUS` version, SSM in the parameter's history (`GetParameterHistory`). Outside
//! that window nothing is overwritten. Creating is exact: `CreateSecret` fails when the secret
//! exists, and `PutParameter` without `Overwrite` when the parameter exists.
//!
//! A write is safe to repeat. `PutSecretValue` and `CreateSecret` carry a
//! `ClientRequestToken` derived from the secret, the expected version and the new value's
//! fingerprint, so that a repeated request is a no-op on the service's side; and a write that
//! finds the place already holding its value succeeds without writing, on both services.
//!
//! In JSON-field mode the secret's other fields are kept; their order is not (they are written
//! back sorted by name).
//!
//! # Security
//!
//! - The secret access key never leaves the process: it keys the HMAC chain, held in a
//!   zeroing buffer. The `Authorization` and `X-Amz-Security-Token` headers are marked
//!   sensitive. [`AwsCredentials`] prints only the access key ID.
//! - Requests go only to the configured endpoint, over https unless it is a loopback address,
//!   and redirects are not followed.
//! - Request bodies hold the new value (and in JSON-field mode the secret's other fields);
//!   they are never logged or put in an error. Service messages (AWS validation messages can
//!   quote request members) pass through a scrubber that removes every string we sent or
//!   read and anything shaped like a Tailscale credential.
//! - `ClientRequestToken` becomes the new version's `VersionId`, visible to anyone allowed to
//!   list the secret's versions. It is derived from the value's [`crate::key::Fingerprint`]
//!   (48 bits of a hash), never from the value itself.

mod client;
mod secretsmanager;
mod sigv4;
mod ssm;

use std::fmt;

pub use secretsmanager::SecretsManagerSink;
pub use ssm::SsmSink;

use crate::key::Secret;

/// Static AWS credentials, as the CLI resolves them from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key ID (`AKIA…`, or `ASIA…` for temporary credentials). Not secret.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            access_key_id,
            secret_access_key: _,
            session_token,
        } = self;
        f.debug_struct("AwsCredentials")
            .field("access_key_id", access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Credentials for the unit tests of this module; `CANARY` marks what must never be shown.
#[cfg(test)]
fn test_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("CANARYsecretACCESSkey".into()),
        session_token: Some(Secret::new("CANARYsessionTOKEN".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{ErrorKind, Sink};

    #[test]
    fn credentials_print_only_the_key_id() {
        let shown = format!("{:?}", test_credentials());
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("CANARY"), "{shown}");
    }

    #[test]
    fn bad_input_fails_before_the_network() {
        let bad = [
            SsmSink::new("/p", "US-EAST-1", None, test_credentials()).err(),
            SsmSink::new("/p", "us-east-1/../x", None, test_credentials()).err(),
            SsmSink::new(
                "/p",
                "us-east-1",
                Some("http://example.com".into()),
                test_credentials(),
            )
            .err(),
            SsmSink::new("", "us-east-1", None, test_credentials()).err(),
            SecretsManagerSink::new(
                "s",
                Some(String::new()),
                "us-east-1",
                None,
                test_credentials(),
            )
            .err(),
            SecretsManagerSink::new(
                "s",
                None,
                "us-east-1",
                None,
                AwsCredentials {
                    access_key_id: "AKID EXAMPLE".into(),
                    ..test_credentials()
                },
            )
            .err(),
        ];
        for (i, error) in bad.into_iter().enumerate() {
            let error = error.unwrap_or_else(|| panic!("case {i} was accepted"));
            assert!(error.kind == ErrorKind::Config, "case {i}: {error}");
            assert!(!format!("{error} {error:?}").contains("CANARY"));
        }
    }

    #[test]
    fn descriptions_name_the_place_as_the_configuration_does() {
        let sink = SsmSink::new("/ci/ts", "eu-west-1", None, test_credentials()).unwrap();
        assert_eq!(sink.describe(), "aws-ssm /ci/ts");
        let sink = SecretsManagerSink::new(
            "ci",
            Some("authkey".into()),
            "eu-west-1",
            None,
            test_credentials(),
        )
        .unwrap();
        assert_eq!(sink.describe(), "aws-secretsmanager ci#authkey");
    }
}
