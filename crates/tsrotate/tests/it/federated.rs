//! tsrotate's own API access by federated identity, against the emulator and the test OIDC
//! issuer (with its fake of GitHub Actions' ID-token endpoint) over loopback.

use std::time::Duration;

use serde_json::{Value, json};
use tsrotate::api::{self, Auth, Client, ClientBuilder, GitHubActions, IdentityToken, RetryPolicy};
use tsrotate::key::Secret;
use tsrotate_test_support::emulator::{self, ThreadServer};
use tsrotate_test_support::oidc_issuer::{
    ACTIONS_REQUEST_TOKEN, DEFAULT_ACTIONS_SUBJECT, TestIssuer,
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(1),
        deadline: Duration::from_secs(20),
    }
}

/// A federated identity trusting `issuer` for `subject`; returns `(id, audience)`.
fn identity(emu: &ThreadServer, issuer: &TestIssuer, subject: &str) -> (String, String) {
    let key = emulator::create_federated_identity(
        emu,
        &json!({"scopes": ["all"], "tags": ["tag:ci"], "issuer": issuer.url(), "subject": subject,
            "description": "tsrotate in CI"}),
    );
    (
        key["id"].as_str().unwrap().to_owned(),
        key["audience"].as_str().unwrap().to_owned(),
    )
}

fn client(emu: &ThreadServer, client_id: &str, identity: IdentityToken) -> Client {
    ClientBuilder::new(Auth::Federated {
        client_id: client_id.to_owned(),
        identity,
    })
    .base_url(emu.url())
    .retry(fast_retries())
    .build()
    .unwrap()
}

fn actions(issuer: &TestIssuer, audience: &str) -> IdentityToken {
    IdentityToken::GitHubActions(GitHubActions {
        request_url: issuer.actions_request_url(),
        request_token: Secret::new(ACTIONS_REQUEST_TOKEN.to_owned()),
        audience: audience.to_owned(),
    })
}

fn accepted(emu: &ThreadServer) -> usize {
    emulator::token_exchanges(emu.url())
        .iter()
        .filter(|e| e["accepted"] == true)
        .count()
}

fn statuses(emu: &ThreadServer) -> Vec<u64> {
    emulator::requests(emu.url())
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect()
}

/// Both clocks move together: the identity tokens follow the control plane's time.
fn advance(emu: &ThreadServer, issuer: &TestIssuer, seconds: u64) {
    let _ = emulator::advance_clock(emu.url(), seconds);
    issuer.advance(i64::try_from(seconds).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_identity_is_exchanged_once_and_again_before_the_token_expires() {
    let emu = emulator::start();
    let issuer = TestIssuer::start();
    let (id, audience) = identity(&emu, &issuer, DEFAULT_ACTIONS_SUBJECT);
    let client = client(&emu, &id, actions(&issuer, &audience));
    for _ in 0..3 {
        client.list_keys(true).await.unwrap();
    }
    assert_eq!(accepted(&emu), 1, "one exchange for three calls");
    assert_eq!(issuer.actions_requests(), 1);

    // 55 minutes pass on the control plane: the hour-long token still works, but is inside
    // the renewal margin. The next answer tells the client the time; the call after it
    // renews first, with a fresh identity token, instead of waiting for a 401.
    advance(&emu, &issuer, 55 * 60);
    client.list_keys(true).await.unwrap();
    assert_eq!(
        accepted(&emu),
        1,
        "the first call after the jump uses the cached token"
    );
    client.list_keys(true).await.unwrap();
    assert_eq!(accepted(&emu), 2, "renewed before expiry");
    assert_eq!(
        issuer.actions_requests(),
        2,
        "a fresh identity token for each exchange"
    );
    assert!(
        !statuses(&emu).contains(&401),
        "no call was refused on the way: {:?}",
        emulator::requests(emu.url())
    );

    // Past the end of a token the API refuses it; the client exchanges again once and goes on.
    advance(&emu, &issuer, 2 * 3600);
    client.list_keys(true).await.unwrap();
    assert_eq!(accepted(&emu), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_token_file_is_read_again_at_each_exchange() {
    let emu = emulator::start();
    let issuer = TestIssuer::start();
    let (id, audience) = identity(&emu, &issuer, "system:serviceaccount:ops:tsrotate");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let first = issuer.token("system:serviceaccount:ops:tsrotate", &audience, 600);
    std::fs::write(&file, format!("{first}\n")).unwrap();
    let client = client(&emu, &id, IdentityToken::File(file.clone()));
    client.list_keys(true).await.unwrap();

    // The platform refreshes the file; the first token and the access token expire.
    advance(&emu, &issuer, 2 * 3600);
    let second = issuer.token("system:serviceaccount:ops:tsrotate", &audience, 600);
    std::fs::write(&file, &second).unwrap();
    client.list_keys(true).await.unwrap();
    assert_eq!(accepted(&emu), 2);

    // An unreadable file is said in words, naming the file, never a token.
    std::fs::remove_file(&file).unwrap();
    advance(&emu, &issuer, 2 * 3600);
    let err = client.list_keys(true).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(matches!(err, api::Error::IdentityToken { .. }), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    for secret in [&first, &second] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_identity_token_is_explained_by_its_claims_never_shown() {
    let emu = emulator::start();
    let issuer = TestIssuer::start();
    let (id, audience) = identity(&emu, &issuer, "repo:acme/infra:ref:refs/heads/main");

    // The most common refusal upstream: the subject does not match the pattern.
    let wrong = issuer.token("repo:acme/infra:pull_request", &audience, 300);
    let err = client(&emu, &id, IdentityToken::Given(Secret::new(wrong.clone())))
        .list_keys(true)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, api::Error::ExchangeRefused { status: 403, .. }),
        "{text}"
    );
    assert!(text.contains(&id), "{text}");
    assert!(
        text.contains("sub `repo:acme/infra:pull_request`"),
        "{text}"
    );
    assert!(text.contains(&format!("aud `{audience}`")), "{text}");
    assert!(!text.contains(&wrong), "{text}");

    // A token given as a value cannot be renewed: once expired, the refusal says so.
    let given = issuer.token("repo:acme/infra:ref:refs/heads/main", &audience, 300);
    let client = client(&emu, &id, IdentityToken::Given(Secret::new(given.clone())));
    client.list_keys(true).await.unwrap();
    advance(&emu, &issuer, 2 * 3600);
    let err = client.list_keys(true).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("expired"), "{text}");
    assert!(!text.contains(&given), "{text}");
    let reasons: Vec<Value> = emulator::token_exchanges(emu.url())
        .into_iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("expired"))),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_actions_endpoint_that_refuses_is_explained() {
    let emu = emulator::start();
    let issuer = TestIssuer::start();
    let (id, audience) = identity(&emu, &issuer, DEFAULT_ACTIONS_SUBJECT);
    let wrong_request_token = "ghs_CANARYwrongREQUESTtoken00000000000";
    let client = client(
        &emu,
        &id,
        IdentityToken::GitHubActions(GitHubActions {
            request_url: issuer.actions_request_url(),
            request_token: Secret::new(wrong_request_token.to_owned()),
            audience,
        }),
    );
    let err = client.list_keys(true).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, api::Error::IdentityToken { .. }), "{text}");
    assert!(text.contains("id-token: write"), "{text}");
    assert!(!text.contains(wrong_request_token), "{text}");
    assert_eq!(accepted(&emu), 0);
    assert!(
        emulator::token_exchanges(emu.url()).is_empty(),
        "nothing was sent to Tailscale"
    );
}
