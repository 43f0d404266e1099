//! A containment meeting faults that leave doubt about who changed a device (red team 3):
//! rollback undoes only what the containment did, and `resume` with a credential of another
//! tailnet does not take every device for gone.

use serde_json::{Value, json};
use tsrotate_test_support::emulator;

use crate::contain::{api_at as api, devices, fleet};
use crate::support::TestEnv;

fn node_id(env: &TestEnv, hostname: &str) -> String {
    devices(env)
        .into_iter()
        .find(|d| d["hostname"] == hostname)
        .and_then(|d| d["nodeId"].as_str().map(str::to_owned))
        .unwrap()
}

fn authorized(env: &TestEnv, hostname: &str) -> bool {
    devices(env)
        .into_iter()
        .find(|d| d["hostname"] == hostname)
        .unwrap()["authorized"]
        .as_bool()
        .unwrap()
}

/// The containment's journal steps, as `(type, node_id)`.
fn steps(env: &TestEnv) -> Vec<(String, String)> {
    let dir = env.state.path().join("containments");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            all.push((
                record["event"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                record["event"]["node_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    all
}

/// The deauthorization of evil-0 fails with an answer (HTTP 500: it did not happen); an
/// administrator then deauthorizes the device by hand. Neither `rollback` straight away nor
/// `rollback` after a `resume` (which finds the device deauthorized) may authorize it again:
/// the containment never changed it. The other attackers, which it did deauthorize, are
/// restored.
#[test]
fn rollback_never_reauthorizes_a_device_someone_else_deauthorized_after_its_call_failed() {
    for resume_first in [false, true] {
        let mut env = TestEnv::new();
        let (key_id, _secret) = fleet(&mut env, "key");
        let evil0 = node_id(&env, "evil-0");
        emulator::add_fault(
            env.url(),
            &json!({"method": "POST", "path_prefix": format!("/api/v2/device/{evil0}/authorized"),
                    "status": 500, "count": 20}),
        );
        let containment = deauthorize(&env, &key_id, 1);
        emulator::clear_faults(env.url());
        assert!(
            authorized(&env, "evil-0"),
            "the failed call changed nothing"
        );
        // An administrator quarantines it by hand.
        api(
            env.url(),
            &env.emu.bootstrap().api_key,
            "POST",
            &format!("/api/v2/device/{evil0}/authorized"),
            Some(&json!({"authorized": false})),
        );
        if resume_first {
            let resumed = env
                .run(env.cmd().args(["resume", &containment, "--yes"]))
                .expect(0);
            assert!(
                resumed.stdout.contains("found done by someone else"),
                "{}",
                resumed.stdout
            );
            assert!(steps(&env).iter().any(|(t, n)| t == "done" && *n == evil0));
        }
        let undone = env.run(env.cmd().args(["rollback", &containment, "--yes"]));
        assert!(
            !authorized(&env, "evil-0"),
            "rollback authorized a device the containment never deauthorized (resume first: {resume_first})\n{}\n{}",
            undone.stdout,
            undone.stderr
        );
        assert!(
            undone.stdout.contains("by someone else"),
            "{}",
            undone.stdout
        );
        assert!(authorized(&env, "evil-1") && authorized(&env, "evil-2"));
        env.assert_state_clean();
    }
}

/// `resume` run with a credential of another tailnet met 404 for every device, recorded each
/// as "no longer in the tailnet" and ended the containment as finished, with the attackers
/// still authorized. Now a 404 counts as gone only once the credential is seen to look at the
/// tailnet the devices were in; the right credential then finishes it.
#[test]
fn resume_with_a_credential_of_another_tailnet_does_not_take_the_devices_for_gone() {
    let mut env = TestEnv::new();
    let (key_id, _secret) = fleet(&mut env, "key");
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/device/", "status": 503, "count": 1000}),
    );
    let containment = deauthorize(&env, &key_id, 1);
    emulator::clear_faults(env.url());

    // Another tailnet, with a device of its own.
    let other = other_tailnet(&mut env, "other.example", false);
    let other_key = other.bootstrap().api_key.clone();

    let wrong = env
        .run(
            env.cmd()
                .env("TAILSCALE_BASE_URL", other.url())
                .env("TAILSCALE_API_KEY", &other_key)
                .args(["resume", &containment, "--yes"]),
        )
        .expect(1);
    assert!(
        wrong
            .stdout
            .contains("sees no device of the tailnet the containment ran in"),
        "{}\n{}",
        wrong.stdout,
        wrong.stderr
    );
    let recorded = steps(&env);
    assert!(
        !recorded.iter().any(|(t, _)| t == "gone" || t == "finished"),
        "{recorded:?}"
    );
    for host in ["evil-0", "evil-1", "evil-2"] {
        assert!(authorized(&env, host), "{host}");
    }

    env.run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    for host in ["evil-0", "evil-1", "evil-2"] {
        assert!(!authorized(&env, host), "{host} still authorized");
    }
    assert!(steps(&env).iter().any(|(t, _)| t == "finished"));
    env.assert_state_clean();
}

/// Red team 3 (F12): `rotate --contain` of an OAuth client rotated it (the old secret was
/// revoked), then the containment refused a key that is not an auth key and the run exited 2,
/// which says that nothing was changed. Whatever stops the containment after a rotation is a
/// run that did not complete: exit 1, naming what is left to do.
#[test]
fn a_containment_that_fails_after_a_rotation_exits_1_not_2() {
    let mut env = TestEnv::new();
    let (client_id, secret) = env.mint(json!({"keyType": "client",
        "scopes": ["devices:core:read"], "tags": ["tag:server"], "description": "ci"}));
    env.write(
        "app/.env",
        format!("TS_CLIENT_ID={client_id}\nTS_CLIENT_SECRET={secret}\n"),
    );
    let run = env
        .run(
            env.cmd()
                .args(["rotate", &client_id, "--contain", "--yes", "--in"])
                .arg(env.work.path()),
        )
        .expect(1);
    assert_eq!(
        env.key(&client_id)["invalid"],
        true,
        "the rotation happened"
    );
    assert!(
        run.stderr
            .contains("after the rotation, containing the devices key"),
        "{}",
        run.stderr
    );
    let new_secret = std::fs::read_to_string(env.work.path().join("app/.env")).unwrap();
    for line in new_secret.lines() {
        if let Some(value) = line.strip_prefix("TS_CLIENT_SECRET=") {
            env.canary(value);
        }
    }
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
}

/// `contain ID --since 1d --action deauthorize --yes` (JSON), expecting `code`; its ID.
fn deauthorize(env: &TestEnv, key_id: &str, code: i32) -> String {
    let run = env
        .run(env.cmd().args([
            "--format",
            "json",
            "contain",
            key_id,
            "--since",
            "1d",
            "--action",
            "deauthorize",
            "--yes",
        ]))
        .expect(code);
    run.json()["containment"]["id"].as_str().unwrap().to_owned()
}

/// Another emulator (tailnet `tailnet`) with a device joined there (`external` or not); its
/// API access token is a canary of `env`.
fn other_tailnet(env: &mut TestEnv, tailnet: &str, external: bool) -> emulator::ThreadServer {
    let other = emulator::start_with(emulator::Options {
        tailnet: tailnet.to_owned(),
        ..emulator::Options::default()
    });
    let token = other.bootstrap().api_key.clone();
    env.canary(&token);
    let body = if external {
        json!({"hostname": "guest", "external": true})
    } else {
        let minted = api(
            other.url(),
            &token,
            "POST",
            "/api/v2/tailnet/-/keys",
            Some(
                &json!({"capabilities": {"devices": {"create": {"reusable": true,
                "preauthorized": true, "tags": ["tag:server"]}}}, "expirySeconds": 86400}),
            ),
        );
        env.canary(minted["key"].as_str().unwrap());
        json!({"auth_key_id": minted["id"], "hostname": "db-1"})
    };
    let (status, _) = emulator::admin(other.url(), "POST", "/_emulator/devices", Some(&body));
    assert_eq!(status, 200);
    other
}

/// Red team 4: a 404 from a credential of another tailnet is an answer (the call changed
/// nothing), and it was journaled as "no answer", which erased the earlier answered 500: an
/// administrator's deauthorization by hand was then taken for the containment's and undone.
/// And a device shared into that other tailnet from ours carries our tailnet's domain: it
/// made the other tailnet's credential pass for ours, and resume ended the containment.
#[test]
fn another_tailnets_answers_never_make_rollback_free_or_resume_end_anything() {
    let mut env = TestEnv::new();
    let (key_id, _secret) = fleet(&mut env, "key");
    let evil0 = node_id(&env, "evil-0");
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": format!("/api/v2/device/{evil0}/authorized"),
                "status": 500, "count": 20}),
    );
    let containment = deauthorize(&env, &key_id, 1);
    emulator::clear_faults(env.url());
    // "example-com" names its devices in our domain (example-com.ts.net), like a device
    // shared in from our tailnet would be named there.
    for other in [
        other_tailnet(&mut env, "other.example", false),
        other_tailnet(&mut env, "example-com", true),
    ] {
        let token = other.bootstrap().api_key.clone();
        env.run(
            env.cmd()
                .env("TAILSCALE_BASE_URL", other.url())
                .env("TAILSCALE_API_KEY", &token)
                .args(["resume", &containment, "--yes"]),
        )
        .expect(1);
        let recorded = steps(&env);
        assert!(
            !recorded.iter().any(|(t, _)| t == "gone" || t == "finished"),
            "{recorded:?}"
        );
    }
    // An administrator quarantines evil-0 by hand; the right credential finishes the rest.
    api(
        env.url(),
        &env.emu.bootstrap().api_key,
        "POST",
        &format!("/api/v2/device/{evil0}/authorized"),
        Some(&json!({"authorized": false})),
    );
    let resumed = env
        .run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    assert!(
        resumed.stdout.contains("found done by someone else"),
        "{}",
        resumed.stdout
    );
    env.run(env.cmd().args(["rollback", &containment, "--yes"]));
    assert!(!authorized(&env, "evil-0"), "rollback freed evil-0");
    assert!(authorized(&env, "evil-1") && authorized(&env, "evil-2"));
    env.assert_state_clean();
}

/// Red team 4: a rollback that restored nothing (it could not even look at the devices)
/// journaled that it began, and from then on resume was refused: the containment could
/// neither go on nor start again. Only a rollback that announced or decided a restore holds
/// resume back now.
#[test]
fn a_rollback_that_could_not_look_at_any_device_does_not_stop_resume() {
    let mut env = TestEnv::new();
    let (key_id, _secret) = fleet(&mut env, "key");
    let evil2 = node_id(&env, "evil-2");
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": format!("/api/v2/device/{evil2}/authorized"),
                "status": 503, "count": 20}),
    );
    let containment = deauthorize(&env, &key_id, 1);
    emulator::clear_faults(env.url());
    emulator::add_fault(
        env.url(),
        &json!({"method": "GET", "path_prefix": "/api/v2/device/", "status": 503, "count": 1000}),
    );
    env.run(env.cmd().args(["rollback", &containment, "--yes"]))
        .expect(1);
    emulator::clear_faults(env.url());
    assert!(
        !authorized(&env, "evil-0"),
        "the failed rollback changed nothing"
    );
    env.run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    for host in ["evil-0", "evil-1", "evil-2"] {
        assert!(!authorized(&env, host), "{host}");
    }
    env.assert_state_clean();
}

/// Red team 4: when the containment's devices were the only ones of the tailnet and an
/// administrator deleted them, no device showed the credential's tailnet, and resume never
/// finished. The containment's key, which the API still describes, shows it too.
#[test]
fn the_containments_key_shows_the_tailnet_when_no_device_is_left() {
    let mut env = TestEnv::new();
    let (key_id, _secret) = env.mint_default();
    let _ = emulator::advance_clock(env.url(), 86_400);
    let (status, device) = emulator::admin(
        env.url(),
        "POST",
        "/_emulator/devices",
        Some(
            &json!({"auth_key_id": key_id, "hostname": "evil", "created_offset_seconds": -600,
                     "audit_actor": "key"}),
        ),
    );
    assert_eq!(status, 200);
    let evil = device["nodeId"].as_str().unwrap().to_owned();
    emulator::add_fault(
        env.url(),
        &json!({"method": "POST", "path_prefix": "/api/v2/device/", "status": 503, "count": 20}),
    );
    let containment = deauthorize(&env, &key_id, 1);
    emulator::clear_faults(env.url());
    api(
        env.url(),
        &env.emu.bootstrap().api_key,
        "DELETE",
        &format!("/api/v2/device/{evil}"),
        None,
    );
    env.run(env.cmd().args(["resume", &containment, "--yes"]))
        .expect(0);
    let recorded = steps(&env);
    assert!(
        recorded.iter().any(|(t, n)| t == "gone" && *n == evil),
        "{recorded:?}"
    );
    env.assert_state_clean();
}

/// Red team 4: `tsrotate contain KEY | head -4` panicked ("failed printing to stdout", exit
/// 101) when the reader went away. It ends quietly now, with 141 as SIGPIPE would: not 0,
/// since the run may have stopped before doing what it was asked (red team 5).
#[test]
fn a_reader_that_goes_away_is_not_a_failure() {
    use std::process::Stdio;
    let mut env = TestEnv::new();
    let (key_id, _secret) = fleet(&mut env, "key");
    let mut child = env.process();
    let err = env.aside.path().join("closed.err");
    let mut child = child
        .args(["contain", &key_id, "--since", "1d"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // The reader goes away before tsrotate has looked anything up, let alone printed.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(141), "{stderr}");
    env.assert_clean(&stderr);
}

/// Red team 4: a containment journal that is not even a plan (garbage, or empty after a crash
/// at creation) made `rollback` and `abandon` of it fail as unexpected (exit 3). It is
/// something in the state directory to look at: exit 2, saying how to move it aside.
#[test]
fn a_damaged_containment_journal_is_a_problem_to_look_at_not_a_crash() {
    let env = TestEnv::new();
    let dir = env.state.path().join("containments");
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("c20260101000000garbag.jsonl");
    std::fs::write(&journal, "{ not json\n").unwrap();
    for (k, v) in [(env.state.path(), 0o700), (dir.as_path(), 0o700)] {
        std::fs::set_permissions(k, std::os::unix::fs::PermissionsExt::from_mode(v)).unwrap();
    }
    std::fs::set_permissions(
        &journal,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for args in [
        vec!["rollback", "c20260101000000garbag", "--yes"],
        vec!["abandon", "c20260101000000garbag"],
    ] {
        let run = env.run(env.cmd().args(&args)).expect(2);
        assert!(
            run.stderr.contains("is damaged") && run.stderr.contains("move it aside"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// Red team 5: the remembered answered failure was read by `resume` only. Rollback looked at
/// the device's last progress, which a later call without an answer, or a failed look of an
/// earlier rollback, had replaced: it then authorized again a device an administrator had
/// deauthorized by hand after the containment's own call failed.
#[test]
fn rollback_remembers_an_answered_failure_behind_later_progress() {
    for later in ["unanswered retry", "failed look"] {
        let mut env = TestEnv::new();
        let (key_id, _secret) = fleet(&mut env, "key");
        let evil0 = node_id(&env, "evil-0");
        let authorize_path = format!("/api/v2/device/{evil0}/authorized");
        emulator::add_fault(
            env.url(),
            &json!({"method": "POST", "path_prefix": authorize_path, "status": 500, "count": 20}),
        );
        let containment = deauthorize(&env, &key_id, 1);
        emulator::clear_faults(env.url());
        if later == "unanswered retry" {
            emulator::add_fault(
                env.url(),
                &json!({"method": "POST", "path_prefix": authorize_path,
                        "drop_connection": true, "count": 20}),
            );
            env.run(env.cmd().args(["resume", &containment, "--yes"]));
        } else {
            emulator::add_fault(
                env.url(),
                &json!({"method": "GET", "path_prefix": format!("/api/v2/device/{evil0}"),
                        "status": 503, "count": 50}),
            );
            env.run(env.cmd().args(["rollback", &containment, "--yes"]))
                .expect(1);
        }
        emulator::clear_faults(env.url());
        api(
            env.url(),
            &env.emu.bootstrap().api_key,
            "POST",
            &authorize_path,
            Some(&json!({"authorized": false})),
        );
        let undone = env.run(env.cmd().args(["rollback", &containment, "--yes"]));
        assert!(
            !authorized(&env, "evil-0"),
            "{later}: rollback freed evil-0\n{}\n{}",
            undone.stdout,
            undone.stderr
        );
        env.assert_state_clean();
    }
}
