//! Unit and golden-file tests of the workflow rewrite.
#![allow(clippy::disallowed_methods)] // fixtures are written with std::fs

use std::path::PathBuf;

use super::*;
use crate::federation::subject;

const SECRET: &str = "TAILSCALE_AUTHKEY";

fn identity() -> Identity {
    Identity {
        client_id: "kFED123CNTRL".into(),
        audience: "api.tailscale.com/T1234CNTRL-kFED123CNTRL".into(),
    }
}

fn options() -> Options {
    Options {
        repo: "acme/app".parse().unwrap(),
        default_branch: "main".into(),
    }
}

fn file(text: &str) -> WorkflowFile {
    WorkflowFile::new(
        PathBuf::from("w.yml"),
        ".github/workflows/w.yml",
        text.into(),
    )
}

fn migrated(text: &str) -> Migration {
    migrate(&file(text), SECRET, &identity(), &options())
        .unwrap()
        .expect("the file mentions the secret")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/federation/workflows")
}

/// The three-workflow fixture (step input without permissions, job env under workflow
/// permissions, environment with a job permissions block) migrates to the committed files
/// byte for byte; the workflow that does not use the secret is left alone.
#[test]
fn golden_three_workflows_migrate_byte_exactly() {
    let input = fixtures().join("input");
    let mut names: Vec<_> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["deploy.yml", "lint.yml", "nightly.yml", "release.yml"]
    );
    let mut needs = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(input.join(name)).unwrap();
        let relative = format!(".github/workflows/{name}");
        let result = migrate(
            &WorkflowFile::new(input.join(name), &relative, text),
            SECRET,
            &identity(),
            &options(),
        )
        .unwrap();
        let expected = fixtures().join("expected").join(name);
        match result {
            None => assert!(!expected.exists(), "{name} should have been migrated"),
            Some(m) => {
                let want = std::fs::read_to_string(&expected).unwrap();
                assert_eq!(m.after, want, "{name}");
                assert!(m.manual.is_empty(), "{name}: {:?}", m.manual);
                assert_eq!(m.sites.len(), 1, "{name}");
                needs.extend(m.needs);
            }
        }
    }
    let patterns: Vec<&str> = needs.iter().map(|n| n.pattern.as_str()).collect();
    assert_eq!(
        patterns,
        [
            "repo:acme/app:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/main",
            "repo:acme/app:environment:production",
        ]
    );
    let folded = subject::fold(&needs).unwrap();
    assert_eq!(folded.pattern, "repo:acme/app:*");
    assert!(
        folded.reasons[0].contains("environment:production"),
        "{folded:?}"
    );
}

#[test]
fn oauth_client_inputs_become_the_identity_and_audience() {
    let m = migrated(
        "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: x\n    permissions:\n      id-token: write\n    steps:\n      - uses: tailscale/github-action@v3\n        with:\n          oauth-client-id: ${{ secrets.TS_OAUTH_CLIENT_ID }}\n          oauth-secret: ${{ secrets.TAILSCALE_AUTHKEY }}\n          tags: tag:ci\n",
    );
    assert_eq!(
        m.after,
        "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: x\n    permissions:\n      id-token: write\n    steps:\n      - uses: tailscale/github-action@v3\n        with:\n          oauth-client-id: kFED123CNTRL\n          audience: api.tailscale.com/T1234CNTRL-kFED123CNTRL\n          tags: tag:ci\n"
    );
    assert_eq!(m.sites[0].kind, SiteKind::ActionOAuthSecret);
    assert!(m.notes.is_empty());
}

#[test]
fn crlf_files_keep_crlf() {
    let text = "on: push\r\njobs:\r\n  a:\r\n    runs-on: x\r\n    steps:\r\n      - uses: tailscale/github-action@v4\r\n        with:\r\n          authkey: ${{ secrets.TAILSCALE_AUTHKEY }}\r\n";
    let m = migrated(text);
    assert!(!m.after.replace("\r\n", "").contains('\n'), "{:?}", m.after);
    assert!(
        m.after
            .contains("          audience: api.tailscale.com/T1234CNTRL-kFED123CNTRL\r\n")
    );
    assert!(m.after.contains(
        "    permissions:\r\n      contents: read\r\n      id-token: write\r\n    steps:\r\n"
    ));
}

#[test]
fn other_uses_of_the_secret_are_manual_changes_with_their_line() {
    let m = migrated(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: tailscale up --authkey=${{ secrets.TAILSCALE_AUTHKEY }}\n      - run: echo ${{ secrets.TAILSCALE_AUTHKEY_OLD }}\n",
    );
    assert!(m.sites.is_empty());
    assert_eq!(m.manual.len(), 1, "{:?}", m.manual);
    assert_eq!(m.manual[0].line, 6);
    assert!(m.manual[0].change.contains("kFED123CNTRL"));
    assert_eq!(
        m.after,
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: tailscale up --authkey=${{ secrets.TAILSCALE_AUTHKEY }}\n      - run: echo ${{ secrets.TAILSCALE_AUTHKEY_OLD }}\n"
    );
}

#[test]
fn a_file_without_the_secret_is_not_touched() {
    let f = file(
        "on: push\njobs:\n  a:\n    runs-on: x\n    env:\n      TS_AUTHKEY: ${{ secrets.OTHER }}\n    steps:\n      - run: 'true'\n",
    );
    assert!(
        migrate(&f, SECRET, &identity(), &options())
            .unwrap()
            .is_none()
    );
    let all = sites(&f).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].secret, "OTHER");
    assert_eq!(all[0].line, 6);
}

#[test]
fn workflow_env_gives_every_job_the_permission_and_terraform_names() {
    let m = migrated(
        "on:\n  push:\n    branches: [main]\nenv:\n  TAILSCALE_OAUTH_CLIENT_ID: ${{ secrets.ID }}\n  TAILSCALE_OAUTH_CLIENT_SECRET: ${{ secrets.TAILSCALE_AUTHKEY }}\njobs:\n  plan:\n    runs-on: x\n    steps:\n      - run: terraform plan\n  apply:\n    runs-on: x\n    permissions: write-all\n    steps:\n      - run: terraform apply\n",
    );
    assert_eq!(
        m.after,
        "on:\n  push:\n    branches: [main]\nenv:\n  TAILSCALE_OAUTH_CLIENT_ID: kFED123CNTRL\n  TAILSCALE_AUDIENCE: api.tailscale.com/T1234CNTRL-kFED123CNTRL\njobs:\n  plan:\n    runs-on: x\n    permissions:\n      contents: read\n      id-token: write\n    steps:\n      - run: terraform plan\n  apply:\n    runs-on: x\n    permissions: write-all\n    steps:\n      - run: terraform apply\n"
    );
    assert_eq!(m.needs.len(), 2);
}

#[test]
fn permissions_the_rewrite_cannot_merge_are_manual() {
    let m = migrated(
        "on: push\npermissions: read-all\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: tailscale/github-action@v4\n        with: \n          authkey: ${{ secrets.TAILSCALE_AUTHKEY }}\n  b:\n    runs-on: x\n    permissions: { contents: read }\n    env:\n      TS_AUTHKEY: ${{ secrets.TAILSCALE_AUTHKEY }}\n    steps:\n      - run: x\n",
    );
    let lines: Vec<usize> = m.manual.iter().map(|x| x.line).collect();
    assert_eq!(lines, [4, 12], "{:?}", m.manual);
    assert!(m.manual[0].change.contains("job `a`"));
}

#[test]
fn flow_style_inputs_are_refused_with_the_line() {
    let err = migrate(
        &file("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: tailscale/github-action@v4\n        with: { authkey: \"${{ secrets.TAILSCALE_AUTHKEY }}\" }\n"),
        SECRET,
        &identity(),
        &options(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unsupported { line: 7, .. }), "{err}");
    assert!(err.to_string().contains("by hand"));
}

#[test]
fn an_existing_audience_is_refused() {
    let err = migrate(
        &file("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: tailscale/github-action@v4\n        with:\n          audience: x\n          authkey: ${{ secrets.TAILSCALE_AUTHKEY }}\n"),
        SECRET,
        &identity(),
        &options(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unsupported { line: 9, .. }), "{err}");
}

#[test]
fn values_that_yaml_would_misread_are_quoted() {
    assert_eq!(scalar("kABC1CNTRL"), "kABC1CNTRL");
    assert_eq!(scalar("api.tailscale.com/T1-k2"), "api.tailscale.com/T1-k2");
    assert_eq!(scalar("123"), "'123'");
    assert_eq!(scalar("yes"), "'yes'");
    assert_eq!(scalar("a: b"), "'a: b'");
    assert_eq!(scalar("it's"), "'it''s'");
    let weird = Identity {
        client_id: "0123".into(),
        audience: "on".into(),
    };
    let m = migrate(
        &file("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: tailscale/github-action@v4\n        with:\n          authkey: ${{ secrets.TAILSCALE_AUTHKEY }}\n"),
        SECRET,
        &weird,
        &options(),
    )
    .unwrap()
    .unwrap();
    assert!(
        m.after
            .contains("oauth-client-id: '0123'\n          audience: 'on'\n")
    );
}

#[test]
fn subjects_follow_triggers_and_say_why_they_are_broad() {
    let needs = |on: &str| {
        migrated(&format!(
            "on:\n{on}\njobs:\n  a:\n    runs-on: x\n    env:\n      TS_AUTHKEY: ${{{{ secrets.TAILSCALE_AUTHKEY }}}}\n    steps:\n      - run: x\n"
        ))
        .needs
        .into_iter()
        .map(|n| (n.pattern, n.broad.is_some()))
        .collect::<Vec<_>>()
    };
    let r = |s: &str, broad: bool| (format!("repo:acme/app:{s}"), broad);
    assert_eq!(
        needs("  push:\n    branches: [main, 'release/**']"),
        [
            r("ref:refs/heads/main", false),
            r("ref:refs/heads/release/*", true)
        ]
    );
    assert_eq!(
        needs("  push:\n    tags: [v1]"),
        [r("ref:refs/tags/v1", false)]
    );
    assert_eq!(needs("  push:"), [r("ref:*", true)]);
    assert_eq!(needs("  pull_request:"), [r("pull_request", false)]);
    assert_eq!(needs("  workflow_dispatch:"), [r("ref:*", true)]);
    assert_eq!(
        needs("  push:\n    branches-ignore: [wip]"),
        [r("ref:refs/heads/*", true)]
    );
    assert_eq!(
        needs("  push:\n    branches: ['!x']"),
        [r("ref:refs/heads/*", true)]
    );
    assert_eq!(needs("  workflow_call:"), [r("*", true)]);
}

#[test]
fn environments_decide_the_subject() {
    let m = migrated(
        "on: push\njobs:\n  a:\n    runs-on: x\n    environment:\n      name: prod\n      url: https://x\n    env:\n      TS_AUTHKEY: ${{ secrets.TAILSCALE_AUTHKEY }}\n    steps:\n      - run: x\n",
    );
    assert_eq!(m.needs[0].pattern, "repo:acme/app:environment:prod");
    assert_eq!(m.needs[0].broad, None);
}

/// Red-team finding: a literal `*` in an environment's name widened the subject silently
/// (`environment: "*"` gave `repo:acme/app:environment:*` with no word of it).
#[test]
fn a_star_in_an_environment_name_is_called_broad() {
    for name in ["'*'", "pr*d"] {
        let m = migrated(&format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    environment: {name}\n    env:\n      TS_AUTHKEY: ${{{{ secrets.TAILSCALE_AUTHKEY }}}}\n    steps:\n      - run: x\n"
        ));
        let why = m.needs[0].broad.as_deref().unwrap_or_default();
        assert!(why.contains("holds `*`"), "{name}: {:?}", m.needs[0]);
    }
}

#[test]
fn discover_reads_workflows_and_reports_links() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join(WORKFLOWS_DIR);
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(wf.join("b.yaml"), "on: push\n").unwrap();
    std::fs::write(wf.join("a.yml"), "on: push\n").unwrap();
    std::fs::write(wf.join("notes.md"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", wf.join("c.yml")).unwrap();
    let found = discover(dir.path()).unwrap();
    let names: Vec<&str> = found.files.iter().map(|f| f.relative.as_str()).collect();
    assert_eq!(
        names,
        [".github/workflows/a.yml", ".github/workflows/b.yaml"]
    );
    assert_eq!(found.skipped.len(), 1);
    assert!(
        found.skipped[0].1.contains("symbolic link"),
        "{:?}",
        found.skipped
    );
    assert!(discover(&dir.path().join("none")).unwrap().files.is_empty());
}

/// Red-team finding: a `.github` (or `.github/workflows`) that links elsewhere was followed,
/// and the workflows there were rewritten as the repository's own.
#[test]
fn discover_refuses_workflow_folders_that_link_elsewhere() {
    let elsewhere = tempfile::tempdir().unwrap();
    let theirs = elsewhere.path().join("workflows");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("ci.yml"), "on: push\n").unwrap();
    let linked_github = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), linked_github.path().join(".github")).unwrap();
    let linked_workflows = tempfile::tempdir().unwrap();
    std::fs::create_dir(linked_workflows.path().join(".github")).unwrap();
    std::os::unix::fs::symlink(&theirs, linked_workflows.path().join(WORKFLOWS_DIR)).unwrap();
    for repo in [linked_github.path(), linked_workflows.path()] {
        let error = discover(repo).unwrap_err();
        assert!(
            format!("{error}: {}", std::error::Error::source(&error).unwrap())
                .contains("not followed"),
            "{error}"
        );
    }
}

#[test]
fn repositories_parse_strictly() {
    assert_eq!("acme/app".parse::<Repo>().unwrap().to_string(), "acme/app");
    for bad in ["acme", "a/b/c", "/b", "a/", "a/..", "a b/c"] {
        assert!(bad.parse::<Repo>().is_err(), "{bad}");
    }
}

#[test]
fn a_rewrite_that_does_not_read_back_as_intended_is_refused() {
    let f = file("on: push\njobs: {}\n");
    let doc = Doc::new(&f).unwrap();
    let expected = doc.value.clone();
    assert!(doc.verify("on: push\njobs: {}\n", &expected).is_ok());
    let err = doc
        .verify("on: push\njobs: {a: 1}\n", &expected)
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(doc.verify("on: [\n", &expected).is_err());
}
