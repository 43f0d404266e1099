//! Issue 11 item 12: names and values from outside are printed escaped, so that a file name
//! cannot forge lines of the plan a person confirms, nor drive the terminal.

use crate::support::{Run, TestEnv, credentials_in, values_of};

/// A name that, printed raw, adds a plan line for a file that does not exist.
const FORGING: &str = "a.env\n    ./forged.env:1:1";
/// A name that, printed raw, clears the screen and turns the text red.
const DRIVING: &str = "b\u{1b}[2J\u{1b}[31m.env";

fn plant(env: &TestEnv, key: &str) {
    env.write(FORGING, format!("TS_AUTHKEY={key}\n"));
    env.write(DRIVING, format!("TS_AUTHKEY={key}\n"));
}

#[track_caller]
fn assert_not_forged(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains('\u{1b}'),
            "an escape sequence reached the terminal:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("./forged.env")),
            "a file name forged a line:\n{text}"
        );
    }
}

#[test]
fn file_names_cannot_forge_lines_of_the_plan_or_drive_the_terminal() {
    let mut env = TestEnv::new();
    let (old_id, old) = env.mint_default();
    plant(&env, &old);
    let dry = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--dry-run", "--in"])
                .arg(env.work.path()),
        )
        .expect(0);
    assert_not_forged(&dry);
    let shown = &dry.stdout;
    assert!(
        shown.contains("a.env\\n    ./forged.env:1:1") && shown.contains("b\\u{1b}[2J"),
        "the names are shown escaped:\n{shown}"
    );

    let run = env
        .run(
            env.cmd()
                .args(["rotate", &old_id, "--yes", "--in"])
                .arg(env.work.path()),
        )
        .expect(0);
    for (path, id) in credentials_in(env.work.path()) {
        for value in values_of(&std::fs::read(&path).unwrap(), &id) {
            env.canary(&value);
        }
    }
    env.assert_clean(&run.stdout);
    env.assert_clean(&run.stderr);
    assert_not_forged(&run);
}

#[test]
fn scan_output_escapes_file_names() {
    let mut env = TestEnv::new();
    let (_, old) = env.mint_default();
    plant(&env, &old);
    let run = env
        .run(env.cmd().args(["scan"]).arg(env.work.path()))
        .expect(1);
    assert_not_forged(&run);
    assert!(run.stdout.contains("a.env\\n"), "{}", run.stdout);
}

#[test]
fn error_messages_escape_the_paths_they_quote() {
    let env = TestEnv::new();
    let missing = env.work.path().join("gone\n\u{1b}[31merror: forged");
    let run = env.run(env.cmd().args(["scan"]).arg(&missing)).expect(2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    let run = env
        .run(
            env.cmd()
                .args(["rotate", "kAbCdEf1CNTRL", "--dry-run", "--in"])
                .arg(&missing),
        )
        .expect(2);
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("error: forged")),
        "{}",
        run.stderr
    );
}
