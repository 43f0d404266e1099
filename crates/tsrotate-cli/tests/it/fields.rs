//! Configuration fields whose effect no other test shows (see `tsrotate::config`'s table of
//! fields: every field the parser accepts must have a test that shows what it does).

use std::io::{Read as _, Write as _};

use tsrotate_test_support::emulator;

use crate::support::TestEnv;

/// `[tailscale] tailnet`, `oauth_client_id` and `oauth_client_secret_file`: tsrotate
/// authenticates as that OAuth client and talks to that tailnet; another tailnet's name is
/// refused by the API.
#[test]
fn the_tailscale_section_names_the_tailnet_and_the_oauth_client() {
    let env = TestEnv::new();
    let boot = env.emu.bootstrap().clone();
    let secret = env.write_aside("oauth-secret", &boot.oauth_client_secret);
    let config = |tailnet: &str| {
        env.write_aside(
            &format!("tsrotate-{tailnet}.toml"),
            format!(
                "[tailscale]\nbase_url = \"{}\"\ntailnet = \"{tailnet}\"\noauth_client_id = \"{}\"\noauth_client_secret_file = \"{}\"\n",
                env.url(),
                boot.oauth_client_id,
                secret.display()
            ),
        )
    };
    let keys = |config: &std::path::Path| {
        let mut cmd = env.cmd();
        cmd.env_remove("TAILSCALE_BASE_URL")
            .env_remove("TAILSCALE_API_KEY")
            .arg("--config")
            .arg(config)
            .args(["keys", "list"]);
        env.run(&mut cmd)
    };
    emulator::clear_requests(env.url());
    keys(&config("example.com")).expect(0);
    let requests = emulator::requests(env.url());
    let paths: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or(""),
                r["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        paths.iter().any(|p| p.contains("/oauth/token")),
        "authenticated as the OAuth client: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("/tailnet/example.com/")),
        "the configured tailnet is asked: {paths:?}"
    );
    let other = keys(&config("elsewhere.example"));
    assert_ne!(
        other.code, 0,
        "another tailnet is not this one:\n{}",
        other.stderr
    );
}

/// `[notify] url_env` and `url_file`: where `rotate --due` posts its summary.
#[test]
fn notify_url_env_and_url_file_receive_the_summary() {
    let env = TestEnv::new();
    let w = env.work.path().display().to_string();
    env.write("app/.env", "NOTHING=here\n");
    for (field, value_is_file) in [("url_env", false), ("url_file", true)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let collector = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(at) = text.find("\r\n\r\n") {
                    let length: usize = text[..at]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= at + 4 + length || n == 0 {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .unwrap();
                        return text[at + 4..].to_owned();
                    }
                }
            }
        });
        let value = if value_is_file {
            env.write_aside("notify-url", &url).display().to_string()
        } else {
            "TEST_NOTIFY_URL".to_owned()
        };
        let config = env.write_aside(
            "tsrotate.toml",
            format!(
                "[notify]\n{field} = \"{value}\"\n\n[[credential]]\nname = \"web\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"{w}/app/.env\"\nfield = \"TS_AUTHKEY\"\n"
            ),
        );
        let mut cmd = env.cmd();
        cmd.env("TEST_NOTIFY_URL", &url)
            .arg("--config")
            .arg(&config)
            .args(["rotate", "--due", "--yes"]);
        env.run(&mut cmd);
        let body = collector.join().unwrap();
        assert!(body.contains("tsrotate:"), "{field}: {body}");
    }
}
