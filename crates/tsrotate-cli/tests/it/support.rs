//! A test environment: a running emulator, a work folder, a state folder, canary secrets, and
//! a preconfigured `tsrotate` command.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{Value, json};
use tempfile::TempDir;
use tsrotate_test_support::emulator::{self, ThreadServer};
use tsrotate_test_support::http;

pub struct TestEnv {
    pub emu: ThreadServer,
    pub work: TempDir,
    pub state: TempDir,
    /// Files the commands must not find in the work tree (scan reports, new tokens, outputs),
    /// private to this test: tests run in parallel.
    pub aside: TempDir,
    /// Holds the journal key file (`TSROTATE_JOURNAL_KEY_FILE`): outside the state
    /// directory, private to this test, never the developer's own.
    pub keys: TempDir,
    canaries: Vec<String>,
}

/// What a command printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: &Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let emu = emulator::start();
        let mut env = Self {
            emu,
            work: TempDir::new().unwrap(),
            state: TempDir::new().unwrap(),
            aside: TempDir::new().unwrap(),
            keys: TempDir::new().unwrap(),
            canaries: Vec::new(),
        };
        let boot = env.emu.bootstrap().clone();
        env.canary(&boot.api_key);
        env.canary(&boot.oauth_client_secret);
        env
    }

    pub fn url(&self) -> &str {
        self.emu.url()
    }

    /// A secret that must never appear in any output or in anything tsrotate writes outside
    /// the target files.
    pub fn canary(&mut self, secret: &str) {
        self.canaries.push(secret.to_owned());
    }

    /// `tsrotate` authenticated with the bootstrap API access token.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("tsrotate").unwrap();
        for (k, _) in std::env::vars() {
            if k.starts_with("TAILSCALE_") || k.starts_with("TSROTATE_") {
                cmd.env_remove(k);
            }
        }
        // The developer's own ~/.config/tsrotate/config.toml (and journal key) must not reach
        // the tests.
        cmd.env("HOME", self.aside.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("TSROTATE_JOURNAL_KEY_FILE", self.journal_key_file())
            .env("TAILSCALE_BASE_URL", self.url())
            .env("TAILSCALE_API_KEY", &self.emu.bootstrap().api_key)
            .env("TSROTATE_STATE_DIR", self.state.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE");
        cmd
    }

    /// [`TestEnv::cmd`] as a `std::process::Command`, for a test that spawns tsrotate and
    /// acts while it runs (a kill, a pipe closed under it): same program, same environment.
    pub fn process(&self) -> std::process::Command {
        let mut process = std::process::Command::new(assert_cmd::cargo::cargo_bin("tsrotate"));
        for (k, v) in self.cmd().get_envs() {
            match v {
                Some(v) => process.env(k, v),
                None => process.env_remove(k),
            };
        }
        process
    }

    /// The journal key file every command of this test uses (made by the first that needs
    /// it).
    pub fn journal_key_file(&self) -> PathBuf {
        self.keys.path().join("journal.key")
    }

    /// Seal a journal this test planted or edited with the test's journal key, so that it
    /// reaches the check the test is about (see `tsrotate_test_support::journal_seal`).
    pub fn seal_journal(&self, journal: &Path) {
        if !self.journal_key_file().exists() {
            // Made here as tsrotate would make it: any 32 bytes will do for a test.
            let key = "5e".repeat(32);
            std::fs::write(self.journal_key_file(), key).unwrap();
            std::fs::set_permissions(
                self.journal_key_file(),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
        tsrotate_test_support::journal_seal::reseal(journal, &self.journal_key_file());
    }

    /// `tsrotate` authenticated as the bootstrap OAuth client.
    pub fn cmd_oauth(&self) -> Command {
        let boot = self.emu.bootstrap();
        self.cmd_as(&boot.oauth_client_id, &boot.oauth_client_secret)
    }

    /// `tsrotate` authenticated as OAuth client `id` (one a test minted, say with fewer
    /// scopes) instead of the API access token.
    pub fn cmd_as(&self, id: &str, secret: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.env_remove("TAILSCALE_API_KEY")
            .env("TAILSCALE_OAUTH_CLIENT_ID", id)
            .env("TAILSCALE_OAUTH_CLIENT_SECRET", secret);
        cmd
    }

    /// Run a command and check its outputs for canaries.
    pub fn run(&self, cmd: &mut Command) -> Run {
        let output = cmd.output().unwrap();
        let run = Run::from(&output);
        self.assert_clean(&run.stdout);
        self.assert_clean(&run.stderr);
        run
    }

    #[track_caller]
    pub fn assert_clean(&self, text: &str) {
        for c in self.canaries.iter().chain(&self.journal_key()) {
            assert!(
                !text.contains(c.as_str()),
                "a secret leaked into output:\n{text}"
            );
        }
    }

    /// The journal key as its file spells it, once made: a secret like the canaries.
    fn journal_key(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.journal_key_file()).ok()?;
        Some(text.trim().to_owned()).filter(|k| !k.is_empty())
    }

    /// Every file tsrotate wrote outside the target files (journal, audit log, locks) must
    /// be free of secrets.
    #[track_caller]
    pub fn assert_state_clean(&self) {
        for path in walk(self.state.path()) {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for c in self.canaries.iter().chain(&self.journal_key()) {
                assert!(
                    !text.contains(c.as_str()),
                    "a secret leaked into {}",
                    path.display()
                );
            }
        }
    }

    /// Mint an auth key in the emulator with the bootstrap API token; returns (id, secret).
    pub fn mint(&mut self, body: Value) -> (String, String) {
        let auth = format!("Bearer {}", self.emu.bootstrap().api_key);
        let response = http::send(
            self.url(),
            "POST",
            "/api/v2/tailnet/-/keys",
            &[("Authorization", &auth)],
            Some(&body),
        )
        .unwrap();
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let v = response.json();
        let secret = v["key"].as_str().unwrap().to_owned();
        self.canary(&secret);
        (v["id"].as_str().unwrap().to_owned(), secret)
    }

    /// A typical leaked key: reusable, preauthorized, tagged, 30 days.
    pub fn mint_default(&mut self) -> (String, String) {
        self.mint(json!({
            "capabilities": {"devices": {"create": {"reusable": true, "ephemeral": false, "preauthorized": true, "tags": ["tag:server"]}}},
            "expirySeconds": 30 * 86400,
            "description": "web servers"
        }))
    }

    /// The emulator's view of one key.
    pub fn key(&self, id: &str) -> Value {
        let state = emulator::state(self.url());
        state["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no key {id} in {state}"))
    }

    /// Every key the emulator knows.
    pub fn keys(&self) -> Vec<Value> {
        emulator::state(self.url())["keys"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.work.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Write a file outside the work tree (see [`TestEnv::aside`]).
    pub fn write_aside(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.aside.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.work.path().join(rel)).unwrap()
    }

    /// The journal of the only rotation so far.
    pub fn only_rotation(&self) -> String {
        let dir = self.state.path().join("rotations");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".jsonl")
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.pop().unwrap()
    }
}

/// Every regular file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(walk(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

/// Every Tailscale credential value with key ID `id` in `bytes`.
pub fn values_of(bytes: &[u8], id: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let needle = format!("-{id}-");
    for (i, _) in text.match_indices("tskey-") {
        let rest = &text[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_+/=".contains(c)))
            .unwrap_or(rest.len());
        let value = &rest[..end];
        if value.contains(&needle) {
            out.push(value.to_owned());
        }
    }
    out
}

/// Every credential value in any file under `dir`, with the key ID it carries.
pub fn credentials_in(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for path in walk(dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for (i, _) in text.match_indices("tskey-") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_".contains(c)))
                .unwrap_or(rest.len());
            let id = rest[..end].split('-').nth(2).unwrap_or_default().to_owned();
            if !id.is_empty() {
                out.push((path.clone(), id));
            }
        }
    }
    out
}
