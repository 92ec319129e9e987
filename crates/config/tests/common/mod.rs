//! Helpers shared by the configuration tests.
#![allow(
    dead_code,
    reason = "shared by several test binaries, each using its own subset"
)]

use countersign_config::{Env, Problem, Settings, load_str};

/// A key-encryption key for tests: 32 bytes (0x00, 0x01, …, 0x1f) as base64. The texts below
/// spell it out, since a constant cannot be spliced into another.
pub const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A valid server and issuer, 8 lines long: whatever is appended starts on line 9.
pub const BASE: &str = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com/oauth2/default"
audiences = ["api://countersign"]

"#;

/// Loads `text` as `countersign.toml` with no environment.
pub fn load(text: &str) -> Settings {
    match load_str(text, "countersign.toml", &Env::empty()) {
        Ok(s) => s,
        Err(e) => panic!("expected the configuration to load, got:\n{e}"),
    }
}

/// The problems of `text`, which must not load.
pub fn errors(text: &str) -> Vec<Problem> {
    errors_with(text, &Env::empty())
}

pub fn errors_with(text: &str, env: &Env) -> Vec<Problem> {
    match load_str(text, "countersign.toml", env) {
        Ok(_) => panic!("expected problems, but the configuration loaded"),
        Err(e) => e.0,
    }
}

/// The one problem about `key`; fails listing every problem otherwise.
pub fn problem<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.key == key).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem with key {key}, got:\n{}",
        list(problems)
    );
    found[0]
}

/// Asserts a problem about `key` in countersign.toml at `line` whose message contains `text`.
pub fn expect(problems: &[Problem], key: &str, line: usize, text: &str) {
    let p = problem(problems, key);
    assert_eq!(p.file.to_str(), Some("countersign.toml"), "{p}");
    assert_eq!(
        p.line,
        Some(line),
        "wrong line for {key}:\n{}",
        list(problems)
    );
    assert!(
        p.message.contains(text),
        "message of {key} lacks {text:?}: {p}"
    );
}

pub fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}
