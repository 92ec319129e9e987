//! `countersign check-config` against files on disk: the shipped example (with its `gates.d`)
//! is valid, and every problem is reported as `<file>:<line>: <key>: …` with exit code 1.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::run_cli_blocking;

/// The repository's `examples/` folder.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Copies `examples/countersign.toml` and `examples/gates.d/*.toml` into `dir`; returns the
/// path of the copied main file.
fn copy_example(dir: &Path) -> PathBuf {
    let main = dir.join("countersign.toml");
    fs::copy(examples().join("countersign.toml"), &main).expect("copy countersign.toml");
    let gates = dir.join("gates.d");
    fs::create_dir(&gates).expect("create gates.d");
    for entry in fs::read_dir(examples().join("gates.d")).expect("read examples/gates.d") {
        let entry = entry.expect("a directory entry");
        fs::copy(entry.path(), gates.join(entry.file_name())).expect("copy a gates file");
    }
    main
}

fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let path = config.to_str().expect("a UTF-8 temp path");
    run_cli_blocking(&["check-config", "--config", path], env, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stderr line that starts with `<file>:<line>: <key>:`.
fn problem_line<'a>(stderr: &'a str, file: &Path, line: usize, key: &str) -> &'a str {
    let prefix = format!("{}:{line}: {key}: ", file.display());
    stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in stderr:\n{stderr}"))
}

#[test]
fn the_shipped_example_is_valid_with_its_gates_dir() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = copy_example(dir.path());
    let out = check(&config, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(stdout.contains(&config.display().to_string()), "{stdout}");
    // deploy-prod from the main file and db-session from gates.d.
    assert!(stdout.contains("3 issuers, 2 gates"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// The shipped example with two mistakes written into it: an unknown key (`lisen`) on the line
/// after `[server]`, and a CEL typo (`aprover.groups`) in deploy-prod's `sre` rule. Everything
/// else stays as shipped, so it is valid (see above) whatever keys become required. Returns the
/// text and the 1-based lines of the two mistakes.
fn broken_example() -> (String, usize, usize) {
    let example =
        fs::read_to_string(examples().join("countersign.toml")).expect("read the example");
    let mut lines: Vec<String> = example.lines().map(str::to_string).collect();
    let server = lines
        .iter()
        .position(|l| l.trim() == "[server]")
        .expect("the example has a [server] section");
    lines.insert(server + 1, r#"lisen = "127.0.0.1:8080""#.to_string());
    let typo = lines
        .iter()
        .position(|l| l.contains(r#"approvers = '"sre" in approver.groups'"#))
        .expect("deploy-prod has an sre rule");
    lines[typo] = lines[typo].replace("approver.groups", "aprover.groups");
    (lines.join("\n") + "\n", server + 2, typo + 1)
}

#[test]
fn an_unknown_key_and_a_cel_typo_are_both_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("countersign.toml");
    let (text_written, unknown_line, typo_line) = broken_example();
    fs::write(&config, &text_written).expect("write the config");
    // The lines really hold what is asserted below.
    let written: Vec<&str> = text_written.lines().collect();
    assert!(written[unknown_line - 1].starts_with("lisen ="));
    assert!(written[typo_line - 1].contains("aprover.groups"));

    let out = check(&config, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("valid"), "{stdout}");

    let unknown = problem_line(&stderr, &config, unknown_line, "server.lisen");
    assert!(unknown.contains("unknown key 'lisen'"), "{unknown}");
    assert!(unknown.contains("did you mean 'listen'"), "{unknown}");

    let cel = problem_line(
        &stderr,
        &config,
        typo_line,
        "gates[deploy-prod].rules[sre].approvers",
    );
    assert!(cel.contains("unknown variable 'aprover'"), "{cel}");

    // Both in one run, nothing else, and a summary that counts them.
    assert!(
        stderr.contains(&format!("{}: 2 problem(s) found", config.display())),
        "{stderr}"
    );
}

#[test]
fn a_problem_in_the_gates_dir_names_that_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = copy_example(dir.path());
    let gate_file = dir.path().join("gates.d").join("db-session.toml");
    let original = fs::read_to_string(&gate_file).expect("read db-session.toml");
    let (line, _) = original
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("approver.groups"))
        .expect("db-session.toml has an approvers condition");
    fs::write(
        &gate_file,
        original.replacen("approver.groups", "aprover.groups", 1),
    )
    .expect("write db-session.toml");
    let out = check(&config, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let cel = problem_line(
        &stderr,
        &gate_file,
        line + 1,
        "gates[db-session].rules[dba].approvers",
    );
    assert!(cel.contains("aprover"), "{cel}");
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = copy_example(dir.path());
    let out = check(&config, &[("COUNTERSIGN_SERVER__LISTEN", "not-an-address")]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("COUNTERSIGN_SERVER__LISTEN"))
        .unwrap_or_else(|| panic!("the variable is not named:\n{stderr}"));
    assert!(line.contains("not-an-address"), "{line}");
    assert!(line.starts_with("environment: "), "{line}");
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("nope.toml");
    let out = check(&config, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}
