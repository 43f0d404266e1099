//! The Secrets Manager and SSM sinks against a real moto server (`moto_server`, from `PyPI`'s
//! `moto[server]`), with moto's IAM authentication switched on: every request must carry a
//! valid `SigV4` signature from a known access key, so these tests also check our signer
//! against an independent implementation (botocore's, which moto uses to verify).
//!
//! One server for the whole test binary; every test uses its own secret or parameter name.
//! What the server holds is checked through moto's `/moto-api/data.json`, independent of the
//! sinks.

use std::sync::OnceLock;

use serde_json::{Value, json};
use tsrotate::key::Secret;
use tsrotate::sink::aws::{AwsCredentials, SecretsManagerSink, SsmSink};
use tsrotate::sink::{Error, ErrorKind, Expect, Sink, Snapshot, Version};
use tsrotate_test_support::http;
use tsrotate_test_support::services::{self, MotoAccessKey, Service};

/// Canaries: every secret value written below contains this; no error may show it.
const CANARY: &str = "CANARYaws";
const REGION: &str = "us-east-1";

struct Moto {
    service: Service,
    /// An IAM user's access key.
    key: MotoAccessKey,
    /// An assumed role's temporary credentials, with a session token.
    session: MotoAccessKey,
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
    services::shared(&MOTO, || {
        let service = services::moto();
        let key = services::moto_iam_user(service.url(), "tsrotate-test");
        let session = services::moto_assumed_role(service.url(), "tsrotate-test-role");
        services::moto_require_iam_auth(service.url());
        Moto {
            service,
            key,
            session,
        }
    })
}

/// The moto endpoint, as `endpoint_url` takes it.
fn endpoint() -> String {
    moto().service.url().to_owned()
}

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: moto().key.access_key_id.clone(),
        secret_access_key: Secret::new(moto().key.secret_access_key.clone()),
        session_token: None,
    }
}

/// A Tailscale-shaped credential whose secret part is a canary.
fn credential(tag: &str) -> Secret {
    Secret::new(format!("tskey-auth-k{tag}CNTRL-{CANARY}{tag}0123456789"))
}

fn secret(id: &str) -> SecretsManagerSink {
    SecretsManagerSink::new(id, None, REGION, Some(endpoint()), credentials()).unwrap()
}

fn secret_field(id: &str, field: &str) -> SecretsManagerSink {
    SecretsManagerSink::new(
        id,
        Some(field.into()),
        REGION,
        Some(endpoint()),
        credentials(),
    )
    .unwrap()
}

fn parameter(name: &str) -> SsmSink {
    SsmSink::new(name, REGION, Some(endpoint()), credentials()).unwrap()
}

/// An error's Display and Debug, checked for canaries and the secret access key.
fn shown(error: &Error) -> String {
    let text = format!("{error} | {error:?} | {error:#}");
    assert!(!text.contains(CANARY), "a secret value leaked: {text}");
    assert!(
        !text.contains(&moto().key.secret_access_key),
        "the secret access key leaked: {text}"
    );
    text
}

fn value_of(snapshot: &Snapshot) -> Option<&str> {
    snapshot.value.as_ref().map(Secret::expose_secret)
}

fn state() -> Value {
    let response = http::send(
        moto().service.url(),
        "GET",
        "/moto-api/data.json",
        &[],
        None,
    )
    .unwrap();
    assert_eq!(response.status, 200);
    response.json()
}

/// The `AWSCURRENT` version of a secret as moto holds it: `(VersionId, SecretString)`.
fn current_secret(name: &str) -> Option<(String, String)> {
    let state = state();
    let secret = state["secretsmanager"]["FakeSecret"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?
        .clone();
    let versions = secret["versions"].as_object()?;
    versions.values().find_map(|v| {
        let current = v["version_stages"]
            .as_array()?
            .iter()
            .any(|s| s == "AWSCURRENT");
        current.then(|| {
            (
                v["version_id"].as_str().unwrap().to_owned(),
                v["secret_string"].as_str().unwrap().to_owned(),
            )
        })
    })
}

/// How many versions a secret has in moto.
fn secret_version_count(name: &str) -> usize {
    let state = state();
    state["secretsmanager"]["FakeSecret"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .and_then(|s| s["versions"].as_object().map(serde_json::Map::len))
        .unwrap_or(0)
}

/// The latest version of a parameter as moto holds it: `(Version, Type, stored value)`.
/// moto "encrypts" a `SecureString` as `kms:<key>:<value>`.
fn latest_parameter(name: &str) -> Option<(i64, String, String)> {
    let state = state();
    state["ssm"]["Parameter"]
        .as_array()?
        .iter()
        .filter(|p| p["name"] == name)
        .max_by_key(|p| p["version"].as_i64())
        .map(|p| {
            (
                p["version"].as_i64().unwrap(),
                p["parameter_type"].as_str().unwrap().to_owned(),
                p["value"].as_str().unwrap().to_owned(),
            )
        })
}

// ---------------------------------------------------------------------------------------
// Secrets Manager, whole secret

#[tokio::test]
async fn secretsmanager_absent_secret_reads_as_no_value_and_no_version() {
    for sink in [secret("sm/absent"), secret_field("sm/absent", "authkey")] {
        let snapshot = sink.read().await.unwrap();
        assert!(snapshot.value.is_none());
        assert_eq!(snapshot.version, None);
    }
}

#[tokio::test]
async fn secretsmanager_whole_secret_create_write_and_read_back() {
    let sink = secret("sm/whole");
    let first = credential("SMW1");
    let v1 = sink.write(&first, &Expect::Absent).await.unwrap().unwrap();
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(first.expose_secret()));
    assert_eq!(snapshot.version.as_ref(), Some(&v1));
    assert_eq!(
        current_secret("sm/whole"),
        Some((v1.0.clone(), first.expose_secret().to_owned()))
    );

    let second = credential("SMW2");
    let v2 = sink
        .write(&second, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(v1, v2);
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(second.expose_secret()));
    assert_eq!(snapshot.version, Some(v2.clone()));
    assert_eq!(
        current_secret("sm/whole"),
        Some((v2.0, second.expose_secret().to_owned()))
    );
}

#[tokio::test]
async fn secretsmanager_stale_version_is_a_conflict_and_the_other_writers_value_stays() {
    let sink = secret("sm/stale");
    sink.write(&credential("SMS1"), &Expect::Absent)
        .await
        .unwrap();
    let snapshot = sink.read().await.unwrap();
    let theirs = credential("SMSTHEIRS");
    secret("sm/stale")
        .write(&theirs, &Expect::Unchecked)
        .await
        .unwrap();

    let error = sink
        .write(&credential("SMSOURS"), &Expect::from_snapshot(&snapshot))
        .await
        .unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Conflict, "{text}");
    assert_eq!(
        current_secret("sm/stale").map(|(_, s)| s),
        Some(theirs.expose_secret().to_owned())
    );
}

#[tokio::test]
async fn secretsmanager_creating_what_exists_is_a_conflict() {
    let theirs = credential("SMCTHEIRS");
    secret("sm/created")
        .write(&theirs, &Expect::Absent)
        .await
        .unwrap();
    let error = secret("sm/created")
        .write(&credential("SMCOURS"), &Expect::Absent)
        .await
        .unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Conflict, "{text}");
    assert_eq!(
        current_secret("sm/created").map(|(_, s)| s),
        Some(theirs.expose_secret().to_owned())
    );
}

#[tokio::test]
async fn secretsmanager_a_repeated_write_is_idempotent() {
    let sink = secret("sm/repeat");
    sink.write(&credential("SMR1"), &Expect::Absent)
        .await
        .unwrap();
    let expect = Expect::from_snapshot(&sink.read().await.unwrap());
    let value = credential("SMR2");
    let first = sink.write(&value, &expect).await.unwrap();
    // The engine repeats the write after a crash, with the same expectation.
    let again = sink.write(&value, &expect).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(secret_version_count("sm/repeat"), 2);
}

/// The version ID is our `ClientRequestToken`: UUID-shaped, derived from the write (not from
/// the value itself), and different for different secrets.
#[tokio::test]
async fn secretsmanager_version_ids_are_our_request_tokens() {
    let value = credential("SMTOK");
    let a = secret("sm/token-a")
        .write(&value, &Expect::Absent)
        .await
        .unwrap()
        .unwrap();
    let b = secret("sm/token-b")
        .write(&value, &Expect::Absent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.0.len(), 36, "{a:?}");
    assert!(!a.0.contains(CANARY));
    assert_ne!(a, b, "the secret's name is part of the token");
}

// ---------------------------------------------------------------------------------------
// Secrets Manager, one field of a JSON secret

#[tokio::test]
async fn secretsmanager_json_field_replaced_and_other_fields_kept() {
    let old = credential("SMJOLD");
    let db_password = format!("{CANARY}dbPASSWORD");
    let document = json!({
        "authkey": old.expose_secret(),
        "db_password": db_password,
        "port": 5432,
    });
    secret("sm/json")
        .write(&Secret::new(document.to_string()), &Expect::Absent)
        .await
        .unwrap();

    let sink = secret_field("sm/json", "authkey");
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(old.expose_secret()));
    let new = credential("SMJNEW");
    let version = sink
        .write(&new, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap()
        .unwrap();

    let (current_version, text) = current_secret("sm/json").unwrap();
    assert_eq!(Version(current_version), version);
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored,
        json!({
            "authkey": new.expose_secret(),
            "db_password": db_password,
            "port": 5432,
        })
    );
    assert_eq!(
        value_of(&sink.read().await.unwrap()),
        Some(new.expose_secret())
    );
}

#[tokio::test]
async fn secretsmanager_json_field_absent_reads_as_no_value_and_is_added() {
    secret("sm/json-absent")
        .write(&Secret::new(r#"{"other":"x"}"#.into()), &Expect::Absent)
        .await
        .unwrap();
    let sink = secret_field("sm/json-absent", "authkey");
    let snapshot = sink.read().await.unwrap();
    assert!(snapshot.value.is_none());
    assert!(snapshot.version.is_some());
    let value = credential("SMJADD");
    sink.write(&value, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&current_secret("sm/json-absent").unwrap().1).unwrap();
    assert_eq!(
        stored,
        json!({ "authkey": value.expose_secret(), "other": "x" })
    );
}

#[tokio::test]
async fn secretsmanager_json_field_create_when_absent() {
    let sink = secret_field("sm/json-new", "authkey");
    let value = credential("SMJCREATE");
    sink.write(&value, &Expect::Absent).await.unwrap();
    let stored: Value = serde_json::from_str(&current_secret("sm/json-new").unwrap().1).unwrap();
    assert_eq!(stored, json!({ "authkey": value.expose_secret() }));
}

#[tokio::test]
async fn secretsmanager_json_field_of_a_non_json_secret_is_refused_without_its_value() {
    secret("sm/not-json")
        .write(&credential("SMNOTJSON"), &Expect::Absent)
        .await
        .unwrap();
    let sink = secret_field("sm/not-json", "authkey");
    let error = sink.read().await.unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Config, "{text}");
    let error = sink
        .write(&credential("SMNJ2"), &Expect::Unchecked)
        .await
        .unwrap_err();
    shown(&error);
}

// ---------------------------------------------------------------------------------------
// SSM Parameter Store

#[tokio::test]
async fn ssm_absent_parameter_reads_as_no_value_and_no_version() {
    let snapshot = parameter("/ci/absent").read().await.unwrap();
    assert!(snapshot.value.is_none());
    assert_eq!(snapshot.version, None);
}

#[tokio::test]
async fn ssm_securestring_round_trip() {
    let sink = parameter("/ci/round-trip");
    let first = credential("SSM1");
    let v1 = sink.write(&first, &Expect::Absent).await.unwrap();
    assert_eq!(v1, Some(Version("1".into())));
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(first.expose_secret()));
    assert_eq!(snapshot.version, v1);

    let second = credential("SSM2");
    let v2 = sink
        .write(&second, &Expect::from_snapshot(&snapshot))
        .await
        .unwrap();
    assert_eq!(v2, Some(Version("2".into())));
    let snapshot = sink.read().await.unwrap();
    assert_eq!(value_of(&snapshot), Some(second.expose_secret()));

    let (version, kind, stored) = latest_parameter("/ci/round-trip").unwrap();
    assert_eq!((version, kind.as_str()), (2, "SecureString"));
    assert!(
        stored.ends_with(second.expose_secret()) && stored.starts_with("kms:"),
        "stored encrypted (as moto fakes it)"
    );
}

#[tokio::test]
async fn ssm_stale_version_is_a_conflict_and_the_other_writers_value_stays() {
    let sink = parameter("/ci/stale");
    sink.write(&credential("SSMS1"), &Expect::Absent)
        .await
        .unwrap();
    let snapshot = sink.read().await.unwrap();
    let theirs = credential("SSMSTHEIRS");
    parameter("/ci/stale")
        .write(&theirs, &Expect::Unchecked)
        .await
        .unwrap();
    let error = sink
        .write(&credential("SSMSOURS"), &Expect::from_snapshot(&snapshot))
        .await
        .unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Conflict, "{text}");
    assert_eq!(
        value_of(&sink.read().await.unwrap()),
        Some(theirs.expose_secret())
    );
    assert_eq!(latest_parameter("/ci/stale").unwrap().0, 2);
}

#[tokio::test]
async fn ssm_creating_what_exists_is_a_conflict() {
    let theirs = credential("SSMCTHEIRS");
    parameter("/ci/created")
        .write(&theirs, &Expect::Absent)
        .await
        .unwrap();
    let error = parameter("/ci/created")
        .write(&credential("SSMCOURS"), &Expect::Absent)
        .await
        .unwrap_err();
    let text = shown(&error);
    assert!(error.kind == ErrorKind::Conflict, "{text}");
    assert_eq!(latest_parameter("/ci/created").unwrap().0, 1);
}

#[tokio::test]
async fn ssm_a_repeated_write_is_idempotent() {
    let sink = parameter("/ci/repeat");
    let value = credential("SSMR");
    sink.write(&value, &Expect::Absent).await.unwrap();
    let again = sink.write(&value, &Expect::Absent).await.unwrap();
    assert_eq!(again, Some(Version("1".into())));
    assert_eq!(latest_parameter("/ci/repeat").unwrap().0, 1);
}

// ---------------------------------------------------------------------------------------
// Credentials and reachability

fn all_sinks(credentials: &AwsCredentials, endpoint: Option<String>) -> Vec<Box<dyn Sink>> {
    vec![
        Box::new(
            SecretsManagerSink::new(
                "auth/x",
                None,
                REGION,
                endpoint.clone(),
                credentials.clone(),
            )
            .unwrap(),
        ),
        Box::new(
            SecretsManagerSink::new(
                "auth/y",
                Some("f".into()),
                REGION,
                endpoint.clone(),
                credentials.clone(),
            )
            .unwrap(),
        ),
        Box::new(SsmSink::new("/auth/z", REGION, endpoint, credentials.clone()).unwrap()),
    ]
}

async fn assert_all_fail(sinks: Vec<Box<dyn Sink>>, check: fn(&Error) -> bool) {
    for sink in sinks {
        let read = sink.read().await.unwrap_err();
        let write = sink
            .write(&credential("AUTHFAIL"), &Expect::Absent)
            .await
            .unwrap_err();
        for error in [read, write] {
            let text = shown(&error);
            assert!(check(&error), "{}: {text}", sink.describe());
        }
    }
}

#[tokio::test]
async fn an_unknown_access_key_is_denied() {
    let unknown = AwsCredentials {
        access_key_id: "AKIAUNKNOWN000000000".into(),
        ..credentials()
    };
    assert_all_fail(all_sinks(&unknown, Some(endpoint())), |e| {
        e.kind == ErrorKind::Denied && !e.is_retryable()
    })
    .await;
    assert!(current_secret("auth/x").is_none(), "nothing was written");
}

#[tokio::test]
async fn a_wrong_secret_access_key_is_denied_without_showing_it() {
    let wrong = AwsCredentials {
        secret_access_key: Secret::new(format!("{CANARY}WrongSecretAccessKey")),
        ..credentials()
    };
    assert_all_fail(all_sinks(&wrong, Some(endpoint())), |e| {
        e.kind == ErrorKind::Denied
    })
    .await;
    assert!(latest_parameter("/auth/z").is_none(), "nothing was written");
}

fn session_credentials() -> AwsCredentials {
    let session = &moto().session;
    AwsCredentials {
        access_key_id: session.access_key_id.clone(),
        secret_access_key: Secret::new(session.secret_access_key.clone()),
        session_token: session.session_token.clone().map(Secret::new),
    }
}

/// `X-Amz-Security-Token` is sent and signed: moto checks it against the session it issued.
#[tokio::test]
async fn temporary_credentials_with_a_session_token_work() {
    let credentials = session_credentials();
    assert!(credentials.access_key_id.starts_with("ASIA"));
    let value = credential("SESSION");
    let ssm = SsmSink::new("/ci/session", REGION, Some(endpoint()), credentials.clone()).unwrap();
    ssm.write(&value, &Expect::Absent).await.unwrap();
    assert_eq!(
        value_of(&ssm.read().await.unwrap()),
        Some(value.expose_secret())
    );
    let sm =
        SecretsManagerSink::new("sm/session", None, REGION, Some(endpoint()), credentials).unwrap();
    sm.write(&value, &Expect::Absent).await.unwrap();
    assert_eq!(
        value_of(&sm.read().await.unwrap()),
        Some(value.expose_secret())
    );
}

#[tokio::test]
async fn a_wrong_session_token_is_denied_without_showing_it() {
    let wrong = AwsCredentials {
        session_token: Some(Secret::new(format!("{CANARY}WrongSessionToken"))),
        ..session_credentials()
    };
    assert_all_fail(all_sinks(&wrong, Some(endpoint())), |e| {
        e.kind == ErrorKind::Denied
    })
    .await;
}

#[tokio::test]
async fn redirects_are_not_followed_with_a_signed_request() {
    let trap = services::redirect_trap();
    assert_all_fail(
        all_sinks(&credentials(), Some(trap.url().to_owned())),
        |e| e.kind == ErrorKind::Config && e.to_string().contains("307"),
    )
    .await;
    assert_eq!(trap.followed(), 0);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_retryable() {
    assert_all_fail(
        all_sinks(&credentials(), Some(services::unreachable_url())),
        |e| e.kind == ErrorKind::Unavailable && e.is_retryable(),
    )
    .await;
}
