//! One managed credential in a file, a dotenv file, `OpenBao` (real server), AWS Secrets
//! Manager (moto, a real implementation of its API) and GitHub Actions (a strict fake),
//! rotated by `tsrotate rotate --config F --credential NAME --yes`; then with one place failing:
//! the old key stays live, `resume` finishes, `rollback` restores every readable place.

use std::path::PathBuf;

use assert_cmd::Command;
use tsrotate::key::{Credential, Secret};
use tsrotate::sink::{self, Expect, Logins, SinkSpec};
use tsrotate_test_support::github_fake::{self, GithubFake, Scope};
use tsrotate_test_support::services::{self, Service};

use crate::support::{TestEnv, values_of};

/// Failures that outlast the engine's retries of a write: one per attempt.
const GITHUB_OUTAGE: usize = tsrotate::rotate::engine::WRITE_ATTEMPTS as usize;

const AWS_KEY_ID: &str = "AKIDTSROTATETEST";
const AWS_SECRET: &str = "tsrotate-test-aws-secret-key-canary";

struct Places {
    env: TestEnv,
    bao: Service,
    moto: Service,
    github: GithubFake,
    config: PathBuf,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Places {
    fn credentials(&self) -> Logins {
        Logins {
            vault_token: Some(Secret::new(self.bao.root_token().to_owned())),
            aws_access_key_id: Some(AWS_KEY_ID.to_owned()),
            aws_secret_access_key: Some(Secret::new(AWS_SECRET.to_owned())),
            aws_region: Some("us-east-1".to_owned()),
            github_token: Some(Secret::new(github_fake::TOKEN.to_owned())),
            ..Logins::default()
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = self.env.cmd();
        cmd.env("VAULT_TOKEN", self.bao.root_token())
            .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("GITHUB_TOKEN", github_fake::TOKEN)
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    fn vault(&self) -> SinkSpec {
        SinkSpec::VaultKv {
            address: Some(self.bao.url().to_owned()),
            mount: "secret".into(),
            path: "ci/tailscale".into(),
            field: "authkey".into(),
            token_file: None,
            namespace: None,
        }
    }

    fn aws(&self) -> SinkSpec {
        SinkSpec::AwsSecretsmanager {
            secret_id: "ci/tailscale".into(),
            json_field: Some("authkey".into()),
            region: None,
            endpoint_url: Some(self.moto.url().to_owned()),
        }
    }

    /// What a readable place holds, as a key ID.
    fn held(&self, spec: &SinkSpec) -> String {
        let place = sink::build(spec, &self.credentials()).unwrap();
        let value = block_on(place.read()).unwrap().value.unwrap();
        Credential::parse(value.expose_secret())
            .unwrap()
            .key_id()
            .to_string()
    }

    fn github_value(&self) -> String {
        self.github
            .secret_value(&Scope::repository("acme", "deploy"), "TS_AUTHKEY")
            .unwrap()
    }

    /// Every place's key ID: file, dotenv, vault, aws, github.
    fn all_held(&self) -> Vec<String> {
        let file = String::from_utf8(self.env.read("etc/authkey")).unwrap();
        let id_of = |v: &str| Credential::parse(v.trim()).unwrap().key_id().to_string();
        let dotenv = String::from_utf8(self.env.read("app/.env")).unwrap();
        let dotenv_value = dotenv
            .lines()
            .find_map(|l| l.strip_prefix("TS_AUTHKEY="))
            .unwrap();
        vec![
            id_of(&file),
            id_of(dotenv_value),
            self.held(&self.vault()),
            self.held(&self.aws()),
            id_of(&self.github_value()),
        ]
    }
}

fn setup() -> Places {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    let bao = services::openbao();
    let moto = services::moto();
    let github = GithubFake::start();
    github.add_repository("acme", "deploy");
    env.canary(bao.root_token());
    env.canary(github_fake::TOKEN);
    env.canary(AWS_SECRET);
    env.write("etc/authkey", format!("{old}\n"));
    env.write("app/.env", format!("A=1\nTS_AUTHKEY={old}\n"));
    let w = env.work.path().display().to_string();
    let config = format!(
        r#"
[[credential]]
name = "ci"
kind = "auth-key"

[[credential.sink]]
type = "file"
path = "{w}/etc/authkey"

[[credential.sink]]
type = "dotenv"
path = "{w}/app/.env"
field = "TS_AUTHKEY"

[[credential.sink]]
type = "vault-kv"
address = "{bao}"
path = "ci/tailscale"
field = "authkey"

[[credential.sink]]
type = "aws-secretsmanager"
secret_id = "ci/tailscale"
json_field = "authkey"
endpoint_url = "{moto}"

[[credential.sink]]
type = "github-actions"
repository = "acme/deploy"
secret = "TS_AUTHKEY"
api_url = "{gh}"
"#,
        bao = bao.url(),
        moto = moto.url(),
        gh = github.url()
    );
    let config = env.write("tsrotate.toml", config);
    let places = Places {
        env,
        bao,
        moto,
        github,
        config,
    };
    // Seed the services with the old key, next to fields that must survive.
    let creds = places.credentials();
    let value = Secret::new(old.clone());
    for spec in [places.vault(), places.aws()] {
        let place = sink::build(&spec, &creds).unwrap();
        block_on(place.write(&value, &Expect::Absent)).unwrap();
    }
    let github = sink::build(
        &SinkSpec::GithubActions {
            repository: Some("acme/deploy".into()),
            organization: None,
            environment: None,
            visibility: None,
            secret: "TS_AUTHKEY".into(),
            api_url: Some(places.github.url().to_owned()),
        },
        &creds,
    )
    .unwrap();
    block_on(github.write(&value, &Expect::Unchecked)).unwrap();
    places
}

fn one_key(held: &[String]) -> String {
    assert!(
        held.iter().all(|k| *k == held[0]),
        "places disagree: {held:?}"
    );
    held[0].clone()
}

#[test]
fn every_place_gets_the_new_key_and_a_failing_place_is_resumed_or_rolled_back() {
    let mut p = setup();
    let old_id = one_key(&p.all_held());

    // 1. All places at once.
    let run = p
        .env
        .run(p.cmd().args(["rotate", "--credential", "ci", "--yes"]))
        .expect(0);
    assert!(run.stdout.contains("done"), "{}", run.stdout);
    let first = one_key(&p.all_held());
    assert_ne!(first, old_id);
    let value = values_of(&p.env.read("etc/authkey"), &first).pop().unwrap();
    p.env.canary(&value);
    assert_eq!(
        p.github_value(),
        value,
        "GitHub received (and the fake decrypted) the new key"
    );
    assert_eq!(p.env.key(&old_id)["invalid"], true);
    assert_eq!(p.env.key(&first)["invalid"], false);

    // 2. GitHub fails on every attempt (a passing failure is tried again a few times):
    //    nothing is revoked; resume finishes with the new key everywhere.
    p.github.fail_next(GITHUB_OUTAGE, 502);
    let run = p
        .env
        .run(p.cmd().args(["rotate", "--credential", "ci", "--yes"]))
        .expect(1);
    assert!(run.stdout.contains("github-actions"), "{}", run.stdout);
    assert_eq!(
        p.env.key(&first)["invalid"],
        false,
        "the old key survives a failed place"
    );
    p.env.run(p.cmd().args(["resume", "--yes"])).expect(0);
    let second = one_key(&p.all_held());
    assert_ne!(second, first);
    assert_eq!(p.env.key(&first)["invalid"], true);
    for k in p.env.keys() {
        if k["description"]
            .as_str()
            .is_some_and(|d| d.contains("tsrotate r"))
            && k["id"] != second.as_str()
        {
            assert_eq!(k["invalid"], true, "orphan {}", k["id"]);
        }
    }
    let second_value = values_of(&p.env.read("etc/authkey"), &second)
        .pop()
        .unwrap();
    p.env.canary(&second_value);

    // 3. GitHub fails again: rollback puts the old key back in every place and revokes what
    //    the rotation minted.
    p.github.fail_next(GITHUB_OUTAGE, 502);
    p.env
        .run(p.cmd().args(["rotate", "--credential", "ci", "--yes"]))
        .expect(1);
    // The unfinished rotation (IDs started within one second do not sort by time).
    let last = std::fs::read_dir(p.env.state.path().join("rotations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|path| {
            !std::fs::read_to_string(path)
                .unwrap()
                .contains("\"type\":\"done\"")
        })
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .unwrap();
    // Every readable place already holds the new key and GitHub cannot be read: tsrotate
    // stores no secret, so the person gives the old value back.
    let run = p
        .env
        .run(p.cmd().args(["rollback", &last, "--yes"]))
        .expect(2);
    assert!(run.stderr.contains("--old-key-file"), "{}", run.stderr);
    let old_file = p.env.write_aside("old-key", format!("{second_value}\n"));
    p.env
        .run(
            p.cmd()
                .args(["rollback", &last, "--yes", "--old-key-file"])
                .arg(&old_file),
        )
        .expect(0);
    let held = p.all_held();
    assert_eq!(
        one_key(&held),
        second,
        "every place holds the key from before the failed rotation"
    );
    assert_eq!(p.env.key(&second)["invalid"], false);
    for k in p.env.keys() {
        if k["description"].as_str().is_some_and(|d| d.contains(&last)) {
            assert_eq!(
                k["invalid"], true,
                "the rolled-back rotation's key {} is revoked",
                k["id"]
            );
        }
    }
    p.env.assert_state_clean();
    // Every place is still readable and consistent.
    let run = p
        .env
        .run(p.cmd().args(["--format", "json", "config", "check"]))
        .expect(0);
    assert_eq!(run.json()["places"].as_array().unwrap().len(), 5);
}
