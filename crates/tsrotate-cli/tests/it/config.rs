//! Managed credentials from a configuration file: `rotate --config --credential`, `rotate KEY
//! --config`, `config check`, `config show`, with file-family places.

use serde_json::Value;

use crate::support::{TestEnv, credentials_in, values_of};

/// Plant `key` in five kinds of places and write a configuration naming them.
fn setup(env: &TestEnv, key: &str) -> std::path::PathBuf {
    env.write("etc/authkey", format!("{key}\n"));
    env.write(
        "app/.env",
        format!("# app\nA=1\nTS_AUTHKEY=\"{key}\" # prod\nB=2\n"),
    );
    env.write(
        "app/settings.json",
        format!("{{\n  \"tailscale\": {{\"authkey\": \"{key}\"}},\n  \"n\": 1\n}}\n"),
    );
    env.write(
        "app/config.toml",
        format!("# top\n[tailscale]\nauthkey = \"{key}\" # keep\n"),
    );
    env.write(
        "deploy/values.yaml",
        format!("tailscale:\n  authKey: {key}\n  hostname: web-1\n"),
    );
    let w = env.work.path();
    let marker = w.join("after-ran");
    let config = format!(
        r#"
[[credential]]
name = "web"
kind = "auth-key"

[credential.template]
description = "web servers"

[[credential.sink]]
type = "file"
path = "{w}/etc/authkey"

[[credential.sink]]
type = "dotenv"
path = "{w}/app/.env"
field = "TS_AUTHKEY"
after = ["sh", "-c", "printf %s \"$TSROTATE_NEW_KEY\" > {marker}"]

[[credential.sink]]
type = "json"
path = "{w}/app/settings.json"
field = "tailscale.authkey"
verify = ["sh", "-c", "grep -qF \"$TSROTATE_NEW_KEY\" {w}/app/settings.json"]

[[credential.sink]]
type = "toml"
path = "{w}/app/config.toml"
field = "tailscale.authkey"

[[credential.sink]]
type = "yaml"
path = "{w}/deploy/values.yaml"
field = "tailscale.authKey"
"#,
        w = w.display(),
        marker = marker.display()
    );
    env.write("tsrotate.toml", config)
}

fn the_one_key(env: &TestEnv) -> String {
    let ids: std::collections::BTreeSet<String> = credentials_in(env.work.path())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(ids.len(), 1, "places disagree: {ids:?}");
    ids.into_iter().next().unwrap()
}

#[test]
fn a_managed_credential_rotates_through_every_place() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let config = setup(&env, &old);
    let before: Vec<(String, Vec<u8>)> = [
        "etc/authkey",
        "app/.env",
        "app/settings.json",
        "app/config.toml",
        "deploy/values.yaml",
    ]
    .iter()
    .map(|r| ((*r).to_owned(), env.read(r)))
    .collect();

    let run = env
        .run(env.cmd().arg("--config").arg(&config).args([
            "rotate",
            "--credential",
            "web",
            "--yes",
        ]))
        .expect(0);
    assert!(run.stdout.contains("5 place(s) updated"), "{}", run.stdout);
    let new_id = the_one_key(&env);
    assert_ne!(new_id, old_id);
    let new = values_of(&env.read("etc/authkey"), &new_id).pop().unwrap();
    env.canary(&new);
    for (rel, bytes) in &before {
        let expected = String::from_utf8(bytes.clone())
            .unwrap()
            .replace(&old, &new);
        assert_eq!(String::from_utf8(env.read(rel)).unwrap(), expected, "{rel}");
    }
    assert_eq!(
        std::fs::read_to_string(env.work.path().join("after-ran")).unwrap(),
        new,
        "the after command got the new key"
    );
    assert_eq!(env.key(&old_id)["invalid"], true);
    let minted = env.key(&new_id);
    assert!(
        minted["description"]
            .as_str()
            .unwrap()
            .starts_with("web servers tsrotate r"),
        "{minted}"
    );
    env.assert_state_clean();

    // The journal knows the credential; a second rotation finds the new key by itself.
    env.run(env.cmd().arg("--config").arg(&config).args([
        "rotate",
        "--credential",
        "web",
        "--yes",
    ]))
    .expect(0);
    let newer = the_one_key(&env);
    assert_ne!(newer, new_id);
    assert_eq!(env.key(&new_id)["invalid"], true);
}

#[test]
fn places_out_of_sync_are_all_brought_to_the_new_key() {
    let mut env = TestEnv::new();
    let (stale_id, stale) = env.mint_default();
    let (current_id, current) = env.mint_default();
    let config = setup(&env, &current);
    env.write("app/.env", format!("TS_AUTHKEY={stale}\n"));
    let run = env
        .run(env.cmd().arg("--config").arg(&config).args([
            "rotate",
            "--credential",
            "web",
            "--yes",
        ]))
        .expect(0);
    assert!(run.stdout.contains("out of sync"), "{}", run.stdout);
    let new_id = the_one_key(&env);
    assert!(new_id != stale_id && new_id != current_id);
    assert_eq!(
        env.key(&current_id)["invalid"],
        true,
        "the current key is revoked"
    );
    // The out-of-sync key was someone's older key: replaced, not revoked by this rotation.
    assert_eq!(env.key(&stale_id)["invalid"], false);
}

#[test]
fn a_key_alone_finds_its_configured_places() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let config = setup(&env, &old);
    env.run(
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["rotate", &old_id, "--yes"]),
    )
    .expect(0);
    assert_ne!(the_one_key(&env), old_id);
}

#[test]
fn a_dry_run_reads_every_place_and_changes_nothing() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let config = setup(&env, &old);
    let before = env.read("app/.env");
    let run = env
        .run(env.cmd().arg("--config").arg(&config).args([
            "--format",
            "json",
            "rotate",
            "--credential",
            "web",
            "--dry-run",
        ]))
        .expect(0);
    let plan: Value = run.json();
    assert_eq!(plan["plan"]["old_key"]["key_id"], old_id.as_str());
    assert_eq!(env.read("app/.env"), before);
    assert_eq!(env.key(&old_id)["invalid"], false);
}

#[test]
fn config_check_reads_every_place_and_reports_trouble() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    let config = setup(&env, &old);
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["--format", "json", "config", "check"]),
        )
        .expect(0);
    let report = run.json();
    assert_eq!(report["api_ok"], true);
    let places = report["places"].as_array().unwrap();
    assert_eq!(places.len(), 5);
    for p in places {
        assert_eq!(p["state"], "ok", "{p}");
        assert_eq!(p["key_id"], old_id.as_str());
        assert_eq!(p["key_status"], "live");
    }
    env.write("deploy/values.yaml", "tailscale: [unclosed\n");
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["config", "check"]),
        )
        .expect(1);
    assert!(
        run.stdout.contains("ERROR") && run.stdout.contains("values.yaml"),
        "{}",
        run.stdout
    );
    // Nothing was written by a check.
    assert_eq!(env.read("deploy/values.yaml"), b"tailscale: [unclosed\n");
    // A place that cannot be read stops a rotation before anything happens.
    let run = env.run(env.cmd().arg("--config").arg(&config).args([
        "rotate",
        "--credential",
        "web",
        "--yes",
    ]));
    assert_ne!(run.code, 0);
    assert_eq!(env.key(&old_id)["invalid"], false);
    assert!(!env.state.path().join("rotations").exists());
}

#[test]
fn a_config_holding_a_secret_or_a_typo_is_refused() {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    let bad = env.write("bad.toml", format!("[[credential]]\nname = \"x\"\nkind = \"auth-key\"\n[[credential.sink]]\ntype = \"command\"\nrun = [\"echo\", \"{old}\"]\n"));
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&bad)
                .args(["config", "check"]),
        )
        .expect(2);
    assert!(
        run.stderr.contains("secrets never belong"),
        "{}",
        run.stderr
    );
    let typo = env.write("typo.toml", "[[credential]]\nname = \"x\"\nkind = \"auth-key\"\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"/x\"\nfeild = \"K\"\n");
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&typo)
                .args(["rotate", "--credential", "x", "--yes"]),
        )
        .expect(2);
    assert!(run.stderr.contains("feild"), "{}", run.stderr);
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&typo)
                .args(["rotate", "--credential", "nope", "--yes"]),
        )
        .expect(2);
    assert!(run.stderr.contains("feild"), "{}", run.stderr);
    let ok = setup(&env, &old);
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&ok)
                .args(["rotate", "--credential", "nope", "--yes"]),
        )
        .expect(2);
    assert!(
        run.stderr.contains("no credential `nope`") && run.stderr.contains("web"),
        "{}",
        run.stderr
    );
}

/// Issue 11 item 15: a TOML syntax error echoed the offending line, with the webhook URL's
/// token in it. The error names the line and column and never a value of the file.
#[test]
fn a_broken_configuration_is_reported_by_line_without_its_values() {
    let mut env = TestEnv::new();
    let token = "CANARYhookTOKENq7Wz2Rx9";
    env.canary(token);
    let broken = env.write(
        "broken.toml",
        format!("[notify]\nurl_env = https://hooks.example.com/services/T0/B0/{token}\n"),
    );
    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&broken)
                .args(["config", "check"]),
        )
        .expect(2);
    assert!(
        run.stderr
            .contains("line 2, column 11: string values must be quoted"),
        "{}",
        run.stderr
    );
}

/// Red-team finding 13: `config check` repeated an invalid value, so a Vault token pasted into
/// `rotate_before` or a GitHub token in a credential's name was printed. The field is named,
/// the value never; and a bad `base_url` from the file is not blamed on `TAILSCALE_BASE_URL`.
#[test]
fn config_check_names_invalid_fields_without_their_values_and_where_a_bad_url_came_from() {
    let mut env = TestEnv::new();
    let vault = "hvs.CAESIVaultTokenValue0123";
    let github = "ghp_NameFieldToken0123456789";
    env.canary(vault);
    env.canary(github);
    let sink = "[[credential.sink]]\ntype = \"dotenv\"\npath = \"/tmp/x\"\nfield = \"A\"\n";
    let cases = [
        (
            format!(
                "[[credential]]\nname = \"ci\"\nkind = \"auth-key\"\nrotate_before = \"{vault}\"\n{sink}"
            ),
            "credential `ci`: rotate_before is not a duration",
        ),
        (
            format!("[[credential]]\nname = \"ci {github}\"\nkind = \"auth-key\"\n{sink}"),
            "`credential[0].name` is not a name",
        ),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = env.write(&format!("bad{i}.toml"), text);
        let run = env
            .run(
                env.cmd()
                    .arg("--config")
                    .arg(&path)
                    .args(["config", "check"]),
            )
            .expect(2);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
    }
    let url = env.write(
        "url.toml",
        format!("[tailscale]\nbase_url = \"http://example.com\"\n[[credential]]\nname = \"ci\"\nkind = \"auth-key\"\n{sink}"),
    );
    let run = env
        .run(
            env.cmd()
                .env_remove("TAILSCALE_BASE_URL")
                .arg("--config")
                .arg(&url)
                .args(["config", "check"]),
        )
        .expect(2);
    assert!(
        run.stderr
            .contains("hint: check `base_url` in the configuration file's [tailscale] section")
            && !run.stderr.contains("TAILSCALE_BASE_URL"),
        "{}",
        run.stderr
    );
    let run = env
        .run(
            env.cmd()
                .env("TAILSCALE_BASE_URL", "http://example.com")
                .arg("--config")
                .arg(&url)
                .args(["config", "check"]),
        )
        .expect(2);
    assert!(
        run.stderr.contains("hint: check TAILSCALE_BASE_URL"),
        "{}",
        run.stderr
    );
}

#[test]
fn config_show_names_sources_and_hides_secrets() {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    let config = setup(&env, &old);
    let run = env
        .run(
            env.cmd_oauth()
                .arg("--config")
                .arg(&config)
                .args(["config", "show"]),
        )
        .expect(0);
    assert!(
        run.stdout.contains("OAuth client")
            && run.stdout.contains("env TAILSCALE_BASE_URL")
            && run.stdout.contains("web (5 places)"),
        "{}",
        run.stdout
    );
}

/// Every command that talks to the API finds it and its credentials through the
/// configuration's `[tailscale]` section when the environment says nothing.
#[test]
fn every_api_command_reads_the_tailscale_section_of_the_configuration() {
    let mut env = TestEnv::new();
    let (id, key) = env.mint_default();
    env.write("app/.env", format!("TS_AUTHKEY={key}\n"));
    let token = env.write_aside("api-token", &env.emu.bootstrap().api_key);
    let config = env.write_aside(
        "tsrotate.toml",
        format!(
            "[tailscale]\nbase_url = \"{}\"\napi_key_file = \"{}\"\n",
            env.url(),
            token.display()
        ),
    );
    let cmd = || {
        let mut cmd = env.cmd();
        cmd.env_remove("TAILSCALE_BASE_URL")
            .env_remove("TAILSCALE_API_KEY")
            .arg("--config")
            .arg(&config)
            .args(["--format", "json"]);
        cmd
    };
    let scan = env
        .run(cmd().args(["scan", "--verify"]).arg(env.work.path()))
        .expect(1);
    assert_eq!(scan.json()[0]["status"], "live", "{}", scan.stdout);
    let inspect = env.run(cmd().args(["inspect", &id])).expect(0);
    assert_eq!(inspect.json()["status"], "live");
    let keys = env.run(cmd().args(["keys", "list"])).expect(0);
    assert!(keys.stdout.contains(&id), "{}", keys.stdout);
    // The audit finds things to say (tsrotate runs on a personal token here) and exits 1.
    let audit = env.run(cmd().args(["audit"])).expect(1);
    assert!(audit.json()["findings"].is_array(), "{}", audit.stdout);
    env.run(cmd().args(["resume", "--yes"])).expect(0);
    env.run(cmd().args(["revoke", &id, "--yes"])).expect(0);
    assert_eq!(env.key(&id)["invalid"], true);
    // Without the configuration, the same command has nothing to talk to.
    let mut bare = env.cmd();
    bare.env_remove("TAILSCALE_BASE_URL")
        .env_remove("TAILSCALE_API_KEY")
        .args(["inspect", &id]);
    env.run(&mut bare).expect(2);
}

/// A `./tsrotate.toml` that merely lies in the current folder (it could have come with a
/// checkout) is never read unless named; a broken user configuration does not stop commands
/// that only need the API, and stops the ones that would use its places.
#[test]
fn a_configuration_is_read_only_where_the_person_put_or_named_it() {
    let mut env = TestEnv::new();
    let (id, key) = env.mint_default();
    let (second, second_key) = env.mint_default();
    let here = env.aside.path().join("checkout");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::write(
        here.join(".env"),
        format!("TS_AUTHKEY={key}\nSECOND={second_key}\n"),
    )
    .unwrap();
    let marker = env.aside.path().join("after-ran");
    std::fs::write(
        here.join("tsrotate.toml"),
        format!(
            "[tailscale]\nbase_url = \"https://api.example.net\"\ntailnet = \"elsewhere.example\"\n\n[[credential]]\nname = \"app\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"dotenv\"\npath = \"{}\"\nfield = \"TS_AUTHKEY\"\nafter = [\"sh\", \"-c\", \"echo ran > {}\"]\n",
            here.join(".env").display(),
            marker.display()
        ),
    )
    .unwrap();
    let run_here = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.current_dir(&here).args(args);
        env.run(&mut cmd)
    };

    // Its tailnet would make the lookup fail: it is not read.
    let inspect = run_here(&["--format", "json", "inspect", &id]).expect(0);
    assert_eq!(inspect.json()["status"], "live");
    // Commands that work from a configuration say how to use it.
    let status = run_here(&["status"]).expect(2);
    assert!(
        status.stderr.contains("--config ./tsrotate.toml"),
        "{}",
        status.stderr
    );
    // `rotate KEY` rotates the files but runs nothing the file names, and says so.
    let rotate = run_here(&["rotate", &id, "--in", ".", "--yes"]).expect(0);
    assert!(
        rotate.stderr.contains("are not updated"),
        "{}",
        rotate.stderr
    );
    assert!(!marker.exists(), "a command from an unnamed file ran");
    assert_eq!(env.key(&id)["invalid"], true);

    // A broken user configuration: API-only commands go on, rotate KEY stops.
    let user = env.aside.path().join(".config/tsrotate");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("config.toml"), "[tailscale\n").unwrap();
    let inspect = run_here(&["inspect", &id]).expect(0);
    assert!(
        inspect.stderr.contains("going on without it"),
        "{}",
        inspect.stderr
    );
    let rotate = run_here(&["rotate", &second, "--in", ".", "--yes"]).expect(2);
    assert!(rotate.stderr.contains("--config FILE"), "{}", rotate.stderr);
    assert_eq!(env.key(&second)["invalid"], false);
}

/// Issue 12 (one table renderer): `config check` and `config show` lay out their rows with the
/// CLI's table renderer, so a place or value longer than a fixed width no longer pushes its
/// row's last column out of line with the others.
#[test]
fn config_check_and_show_keep_their_columns_in_line() {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    let config = setup(&env, &old);
    // A place far longer than any fixed column width.
    let deep = format!("{}/authkey", "a-rather-long-folder-name".repeat(4));
    env.write(&deep, format!("{old}\n"));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[[credential.sink]]\ntype = \"file\"\npath = \"{}\"\n",
            env.work.path().join(&deep).display()
        ),
    )
    .unwrap();
    let column_of = |line: &str, word: &str| line.find(word).map(|i| line[..i].chars().count());

    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["config", "check"]),
        )
        .expect(0);
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("CREDENTIAL"))
        .collect();
    assert_eq!(rows.len(), 7, "a header and six places:\n{}", run.stdout);
    let state = column_of(rows[0], "STATE").unwrap();
    for row in &rows[1..] {
        assert_eq!(column_of(row, "holds key "), Some(state), "{}", run.stdout);
    }
    assert!(rows.iter().any(|r| r.contains(&deep)), "{}", run.stdout);

    let run = env
        .run(
            env.cmd()
                .arg("--config")
                .arg(&config)
                .args(["config", "show"]),
        )
        .expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let source = column_of(lines[0], "SOURCE").unwrap();
    let config_line = lines.iter().find(|l| l.starts_with("config ")).unwrap();
    assert_eq!(
        column_of(config_line, "--config"),
        Some(source),
        "{}",
        run.stdout
    );
    let base_url = lines.iter().find(|l| l.starts_with("base_url ")).unwrap();
    assert_eq!(
        column_of(base_url, "env TAILSCALE_BASE_URL"),
        Some(source),
        "{}",
        run.stdout
    );
}
