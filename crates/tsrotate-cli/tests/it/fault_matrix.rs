//! The fault matrix of issue 11: for each API call of a rotation and each fault, run
//! `rotate`, then `resume` or `rollback` as its report advises, and check the invariants:
//!
//! - at the end, at most one of the rotation's keys (old or minted) is live, and every place
//!   holds it;
//! - no key minted by the rotation is left live unless every place holds it;
//! - the advice was true when it was given: "still works" and an offered rollback only while
//!   the old key is live, "no longer works" only when it is dead.
//!
//! Every random choice (the order of the cases, how many requests a fault hits, and whether to
//! take the offered rollback or resume) comes from one seed, printed first: set
//! `TSROTATE_MATRIX_SEED` to replay a failure.

#![allow(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "the seed and each case's course are printed so that a failure can be replayed"
)]

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tsrotate_test_support::github_fake::{self, Cut, Failure, GithubFake, Scope};
use tsrotate_test_support::{emulator, http};

use crate::support::{Run, TestEnv, credentials_in, values_of};

/// Each API request, and each request to a place's service, may take this long
/// (`TSROTATE_API_TIMEOUT`, `TSROTATE_PLACE_TIMEOUT`); latency faults exceed it.
const TIMEOUT_S: &str = "1";
const LATENCY_MS: u64 = 1_300;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An auth key in two files, tsrotate on an API access token.
    AuthKey,
    /// An OAuth client in one file; the new client's token exchange is the "verify" call.
    OauthClient,
    /// An auth key in a configured file and a GitHub Actions secret (a strict fake of
    /// GitHub's API): writing the secret is the "write" call.
    GithubPlace,
}

#[derive(Debug, Clone, Copy)]
enum Call {
    /// Creating the replacement: `POST /keys`.
    Mint,
    /// Writing a place: the GitHub Actions secret (faults injected by the GitHub fake: a
    /// status, a dropped connection, or an answer after the place timeout while the fake
    /// stores the secret all the same).
    Write,
    /// The new OAuth client proving it can get a token: `POST /oauth/token`.
    Verify,
    /// Deleting the old key: `DELETE /keys/{old}`.
    Revoke,
    /// Checking the old key is dead: the `GET /keys/{old}` after the delete.
    Confirm,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 503 with `Retry-After: 1`.
    Unavailable,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// The connection closes before the server acts.
    DropBefore,
    /// The server acts, then the connection closes without an answer.
    DropAfter,
    /// The answer comes after the client's timeout (the server acts).
    Latency,
}

/// `None`: the fault lasts until cleared (it outlasts the client's retries).
fn rule(call: Call, fault: Fault, old_id: &str, count: Option<u32>) -> Value {
    let (method, path, skip) = match call {
        Call::Mint | Call::Write => ("POST", "/api/v2/tailnet/-/keys".to_owned(), 0),
        Call::Verify => ("POST", "/api/v2/oauth/token".to_owned(), 0),
        Call::Revoke => ("DELETE", format!("/api/v2/tailnet/-/keys/{old_id}"), 0),
        // The plan looks the old key up once; the next GET is the confirmation.
        Call::Confirm => ("GET", format!("/api/v2/tailnet/-/keys/{old_id}"), 1),
    };
    let mut rule = json!({"method": method, "path_prefix": path, "skip": skip});
    if let Some(count) = count {
        rule["count"] = json!(count);
    }
    let effect = match fault {
        Fault::Unavailable => json!({"status": 503, "retry_after_s": 1}),
        Fault::RateLimited => json!({"status": 429, "retry_after_s": 1}),
        Fault::DropBefore => json!({"drop_before": true}),
        Fault::DropAfter => json!({"drop_connection": true}),
        Fault::Latency => json!({"latency_ms": LATENCY_MS}),
    };
    for (k, v) in effect.as_object().unwrap() {
        rule[k] = v.clone();
    }
    rule
}

/// Keys whose description carries `rotation`, with whether each is live.
fn minted(env: &TestEnv, rotation: &str) -> Vec<(String, bool)> {
    env.keys()
        .into_iter()
        .filter(|k| {
            k["description"]
                .as_str()
                .is_some_and(|d| d.contains(rotation))
        })
        .map(|k| (k["id"].as_str().unwrap().to_owned(), k["invalid"] == false))
        .collect()
}

fn live(env: &TestEnv, id: &str) -> bool {
    env.key(id)["invalid"] == false
}

/// The key IDs of the kind's prefix that the places hold.
fn held(env: &TestEnv) -> std::collections::BTreeSet<String> {
    credentials_in(env.work.path())
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

fn github_value(fake: &GithubFake) -> String {
    fake.secret_value(&Scope::repository("acme", "deploy"), "TS_AUTHKEY")
        .unwrap()
}

/// Put `value` in the fake's secret as a person would have, before the rotation.
fn github_write(fake: &GithubFake, value: &str) {
    let spec = tsrotate::sink::SinkSpec::GithubActions {
        repository: Some("acme/deploy".into()),
        organization: None,
        environment: None,
        visibility: None,
        secret: "TS_AUTHKEY".into(),
        api_url: Some(fake.url().to_owned()),
    };
    let credentials = tsrotate::sink::Logins {
        github_token: Some(tsrotate::key::Secret::new(github_fake::TOKEN.to_owned())),
        ..tsrotate::sink::Logins::default()
    };
    let place = tsrotate::sink::build(&spec, &credentials).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(place.write(
            &tsrotate::key::Secret::new(value.to_owned()),
            &tsrotate::sink::Expect::Unchecked,
        ))
        .unwrap();
}

fn canary_files(env: &mut TestEnv) {
    for (path, id) in credentials_in(env.work.path()) {
        for value in values_of(&std::fs::read(&path).unwrap(), &id) {
            env.canary(&value);
        }
    }
}

fn create_client(env: &mut TestEnv) -> (String, String) {
    let auth = format!("Bearer {}", env.emu.bootstrap().api_key);
    let body = json!({"keyType": "client", "scopes": ["auth_keys"], "tags": ["tag:ci"], "description": "deploy bot"});
    let response = http::send(
        env.url(),
        "POST",
        "/api/v2/tailnet/-/keys",
        &[("Authorization", &auth)],
        Some(&body),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    let v = response.json();
    let secret = v["key"].as_str().unwrap().to_owned();
    env.canary(&secret);
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// What the report advised, and whether the advice was true when given.
#[derive(Debug, PartialEq, Eq)]
enum Advice {
    Nothing,
    Resume,
    ResumeOrRollback,
}

fn check_advice(env: &TestEnv, outcome: &Value, old_id: &str, case: &str) -> Advice {
    let next = outcome["next"].as_str().unwrap_or_default();
    let old_live = live(env, old_id);
    let old_key = outcome["old_key"].as_str().unwrap();
    match old_key {
        "live" => assert!(old_live, "{case}: reported live, but it is dead\n{outcome}"),
        "revoked" => assert!(
            !old_live,
            "{case}: reported revoked, but it is live\n{outcome}"
        ),
        "unknown" => {}
        other => panic!("{case}: unexpected old_key {other}\n{outcome}"),
    }
    if next.starts_with("the old key still works") {
        assert!(
            old_live,
            "{case}: advice says the old key works:\n{outcome}"
        );
    }
    if next.starts_with("the old key no longer works") {
        assert!(
            !old_live,
            "{case}: advice says the old key is dead:\n{outcome}"
        );
    }
    if next.contains("tsrotate rollback") {
        assert!(
            old_live,
            "{case}: rollback offered for a dead key:\n{outcome}"
        );
        assert!(next.contains("tsrotate resume"), "{case}: {next}");
        return Advice::ResumeOrRollback;
    }
    if outcome["outcome"] == "done" {
        assert!(next.is_empty(), "{case}: {next}");
        return Advice::Nothing;
    }
    assert!(
        next.contains("tsrotate resume"),
        "{case}: incomplete without resume advice:\n{outcome}"
    );
    Advice::Resume
}

/// The end state every case must reach.
fn assert_settled(env: &TestEnv, rotation: &str, old_id: &str, rolled_back: bool, case: &str) {
    let places = held(env);
    assert_eq!(places.len(), 1, "{case}: places disagree: {places:?}");
    let holder = places.into_iter().next().unwrap();
    assert!(live(env, &holder), "{case}: places hold dead key {holder}");
    let minted = minted(env, rotation);
    let mut live_keys: Vec<String> = minted
        .iter()
        .filter(|(_, live)| *live)
        .map(|(id, _)| id.clone())
        .collect();
    if live(env, old_id) {
        live_keys.push(old_id.to_owned());
    }
    assert_eq!(
        live_keys,
        vec![holder.clone()],
        "{case}: exactly the key every place holds is live (minted: {minted:?})"
    );
    if rolled_back {
        assert_eq!(holder, old_id, "{case}: rollback puts the old key back");
    } else {
        assert_ne!(
            holder, old_id,
            "{case}: the rotation finished with a new key"
        );
    }
}

/// Run one case to its end; returns what the first `rotate` printed.
fn run_case(kind: Kind, call: Call, fault: Fault, lasting: bool, seed: u64) -> Run {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Auth keys are rotated with `--revoke-first` half of the time: the advice must follow.
    let revoke_first = matches!(kind, Kind::AuthKey) && rng.random_bool(0.5);
    let case = format!(
        "{kind:?}/{call:?}/{fault:?}{}",
        if revoke_first { " --revoke-first" } else { "" }
    );
    let mut env = TestEnv::new();
    let mut github = None;
    let mut config = None;
    let (old_id, old) = match kind {
        Kind::AuthKey => {
            let (id, secret) = env.mint_default();
            env.write("app/.env", format!("TS_AUTHKEY={secret}\n"));
            env.write("deploy/values.yaml", format!("authKey: \"{secret}\"\n"));
            (id, secret)
        }
        Kind::OauthClient => {
            let (id, secret) = create_client(&mut env);
            env.write("deploy/.env", format!("TS_API_CLIENT_SECRET={secret}\n"));
            (id, secret)
        }
        Kind::GithubPlace => {
            let (id, secret) = env.mint_default();
            let fake = GithubFake::start();
            fake.add_repository("acme", "deploy");
            env.canary(github_fake::TOKEN);
            env.write("etc/authkey", format!("{secret}\n"));
            let w = env.work.path().display().to_string();
            config = Some(env.write_aside(
                "tsrotate.toml",
                format!(
                    "[[credential]]\nname = \"ci\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"file\"\npath = \"{w}/etc/authkey\"\n\n[[credential.sink]]\ntype = \"github-actions\"\nrepository = \"acme/deploy\"\nsecret = \"TS_AUTHKEY\"\napi_url = \"{}\"\n",
                    fake.url()
                ),
            ));
            github = Some(fake);
            (id, secret)
        }
    };
    let cmd = |env: &TestEnv| {
        let mut cmd = env.cmd();
        cmd.env("TSROTATE_API_TIMEOUT", TIMEOUT_S)
            .env("TSROTATE_PLACE_TIMEOUT", TIMEOUT_S);
        if let Some(config) = &config {
            cmd.env("GITHUB_TOKEN", github_fake::TOKEN)
                .arg("--config")
                .arg(config);
        }
        cmd
    };
    if let Some(fake) = &github {
        // Seed the GitHub secret with the old key, as the place held it before.
        github_write(fake, &old);
    }
    // A passing fault hits one or two requests (retries absorb it); a lasting one stays
    // until cleared.
    let count = (!lasting).then(|| rng.random_range(1..=2));
    match (call, &github) {
        (Call::Write, Some(fake)) => {
            let count = count.map_or(1_000, |c| c as usize);
            let (status, headers) = match fault {
                Fault::Unavailable => (503, vec![("retry-after".to_owned(), "1".to_owned())]),
                Fault::RateLimited => (429, vec![("retry-after".to_owned(), "1".to_owned())]),
                // The secret's PUT loses its connection, before or after GitHub stored it.
                Fault::DropBefore | Fault::DropAfter => {
                    let cut = if matches!(fault, Fault::DropBefore) {
                        Cut::Before
                    } else {
                        Cut::After
                    };
                    fake.drop_next(cut, count, Some("PUT"));
                    (0, Vec::new())
                }
                // The secret's PUT is answered after the place timeout; the fake stores it.
                Fault::Latency => {
                    let wait = std::time::Duration::from_millis(LATENCY_MS);
                    fake.delay_next(wait, count, Some("PUT"));
                    (0, Vec::new())
                }
            };
            if status != 0 {
                fake.fail_next_with(Failure {
                    status,
                    count,
                    headers,
                    method: None,
                });
            }
        }
        _ => emulator::add_fault(env.url(), &rule(call, fault, &old_id, count)),
    }
    let mut rotate = cmd(&env);
    rotate.args(["--format", "json", "rotate", "--yes"]);
    if revoke_first {
        rotate.arg("--revoke-first");
    }
    if github.is_some() {
        rotate.args(["--credential", "ci"]);
    } else {
        rotate
            .args(["-", "--in"])
            .arg(env.work.path())
            .write_stdin(old.clone());
    }
    let run: Run = env.run(&mut rotate);
    canary_files(&mut env);
    if let Some(fake) = &github {
        env.canary(&github_value(fake));
    }
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert!(
        run.code == 0 || run.code == 1,
        "{case} (count {count:?}): exit {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let report = run.json();
    let outcome = &report["outcome"];
    let rotation = outcome["rotation_id"].as_str().unwrap().to_owned();
    let case = format!("{case} (count {count:?}, rotation {rotation})");
    let advice = check_advice(&env, outcome, &old_id, &case);
    eprintln!(
        "{case}: exit {}, old key {}, advice {advice:?}",
        run.code, outcome["old_key"]
    );
    emulator::clear_faults(env.url());
    if let Some(fake) = &github {
        fake.clear_failures();
    }
    let rolled_back = match advice {
        Advice::Nothing => false,
        Advice::ResumeOrRollback if rng.random_bool(0.5) => {
            // The person gives the old value back when no place holds it any more.
            let old_file = env.write_aside("old-key", format!("{old}\n"));
            let run = env.run(
                cmd(&env)
                    .args(["rollback", &rotation, "--yes", "--old-key-file"])
                    .arg(&old_file),
            );
            assert_eq!(
                run.code, 0,
                "{case}: rollback\n{}\n{}",
                run.stdout, run.stderr
            );
            true
        }
        Advice::Resume | Advice::ResumeOrRollback => {
            let run = env.run(cmd(&env).args(["resume", &rotation, "--yes"]));
            canary_files(&mut env);
            env.assert_clean(&run.stdout);
            assert_eq!(
                run.code, 0,
                "{case}: resume\n{}\n{}",
                run.stdout, run.stderr
            );
            false
        }
    };
    assert_settled(&env, &rotation, &old_id, rolled_back, &case);
    if let Some(fake) = &github {
        let places = held(&env);
        assert!(
            github_value(fake).contains(&format!("-{}-", places.first().unwrap())),
            "{case}: GitHub holds another key than the files"
        );
    }
    env.assert_state_clean();
    run
}

#[test]
fn every_fault_of_every_api_call_ends_safe_with_true_advice() {
    let seed = std::env::var("TSROTATE_MATRIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("fault matrix seed: {seed} (replay with TSROTATE_MATRIX_SEED={seed})");
    eprintln!("fault matrix seed: {seed} (replay with TSROTATE_MATRIX_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let faults = [
        Fault::Unavailable,
        Fault::RateLimited,
        Fault::DropBefore,
        Fault::DropAfter,
        Fault::Latency,
    ];
    let mut cases = Vec::new();
    for fault in faults {
        for lasting in [false, true] {
            for call in [Call::Mint, Call::Revoke, Call::Confirm] {
                cases.push((Kind::AuthKey, call, fault, lasting, rng.random::<u64>()));
            }
            cases.push((
                Kind::OauthClient,
                Call::Verify,
                fault,
                lasting,
                rng.random::<u64>(),
            ));
            let seed = rng.random::<u64>();
            cases.push((Kind::GithubPlace, Call::Write, fault, lasting, seed));
        }
    }
    cases.shuffle(&mut rng);
    // Each case has its own emulator and folders; most of their time is spent waiting for
    // retries and timeouts, so a few run at once.
    let queue = std::sync::Mutex::new(cases);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((kind, call, fault, lasting, seed)) = next else {
                        break;
                    };
                    let _ = run_case(kind, call, fault, lasting, seed);
                }
            });
        }
    });
}

/// Issue 11 (fault matrix, places): a place whose service answers after the place timeout
/// (`TSROTATE_PLACE_TIMEOUT`) for as long as the rotation retries stops the rotation before
/// revocation, with the old key live and a message that says the write timed out; `resume`
/// then finishes it (checked by the case itself). Places had a fixed 30 s timeout, so a
/// test could not exceed it.
#[test]
fn a_place_write_past_its_timeout_stops_before_revocation_and_resume_finishes() {
    let run = run_case(Kind::GithubPlace, Call::Write, Fault::Latency, true, 11);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let outcome = &run.json()["outcome"];
    assert_eq!(outcome["old_key"], "live", "{outcome}");
    assert!(
        outcome["next"]
            .as_str()
            .is_some_and(|n| n.starts_with("the old key still works")),
        "{outcome}"
    );
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("timed out"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}
