//! Environment overrides: applied before validation, reported against the variable, and never
//! leaking a secret.

mod common;

use std::fs;

use common::{BASE, KEK, errors_with, list};
use countersign_config::{Env, Problem, load, load_str};

const CONFIG: &str = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "my-okta"
url = "https://acme.okta.com/oauth2/default"
client_id = "file-client"
client_secret_file = "/does/not/exist"
audiences = ["api://countersign"]

[[issuers]]
name = "github"
url = "https://token.actions.githubusercontent.com"
kind = "workload"
audiences = ["https://approvals.example.com"]

[[gates]]
name = "deploy-prod"
requesters = 'true'
  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
"#;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

fn env_problem<'a>(ps: &'a [Problem], var: &str) -> &'a Problem {
    let p = ps
        .iter()
        .find(|p| p.key == var)
        .unwrap_or_else(|| panic!("no problem for {var}:\n{}", list(ps)));
    assert_eq!(p.file.to_str(), Some("environment"), "{p}");
    assert_eq!(p.line, None, "{p}");
    p
}

#[test]
fn overrides_set_server_issuer_and_gate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("okta");
    fs::write(&secret, "  from-a-file-secret \n").unwrap();
    let e = env(&[
        ("COUNTERSIGN_SERVER__LISTEN", "0.0.0.0:9000"),
        ("COUNTERSIGN_SERVER__LOG_FORMAT", "json"),
        // The file's client_secret_file is replaced, not in conflict.
        (
            "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET_FILE",
            secret.to_str().unwrap(),
        ),
        // Looks like a number; the key wants a string and gets the text.
        ("COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_ID", "0012345"),
        ("COUNTERSIGN_ISSUERS__GITHUB__AUDIENCES", "[\"a\", \"b\"]"),
        ("COUNTERSIGN_ISSUERS__github__ALGORITHMS", "RS256, ES256"),
        ("COUNTERSIGN_GATES__DEPLOY_PROD__PENDING_TTL", "1h"),
        ("COUNTERSIGN_GATES__DEPLOY_PROD__GRANT__SINGLE_USE", "true"),
        (
            "COUNTERSIGN_GATES__DEPLOY_PROD__RULES__SRE__MIN_APPROVALS",
            "2",
        ),
        // The CLI's own variables are not overrides.
        ("COUNTERSIGN_SERVER", "https://elsewhere.example.com"),
        ("COUNTERSIGN_TOKEN", "eyJhbGciOi.secret.token"),
        ("PATH", "/usr/bin"),
    ]);
    let s = load_str(CONFIG, "countersign.toml", &e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(s.server.log_format, countersign_config::LogFormat::Json);
    assert_eq!(
        s.server.public_url.as_str(),
        "https://approvals.example.com/"
    );
    let okta = s.issuer("my-okta").unwrap();
    assert!(
        okta.client_secret
            .as_ref()
            .unwrap()
            .ct_eq("from-a-file-secret")
    );
    assert_eq!(okta.client_id.as_deref(), Some("0012345"));
    let github = s.issuer("github").unwrap();
    assert_eq!(github.audiences, ["a", "b"]);
    assert_eq!(github.algorithms, ["RS256", "ES256"]);
    let gate = s.gates.get("deploy-prod").unwrap();
    assert_eq!(gate.pending_ttl, chrono::Duration::hours(1));
    assert!(gate.grant.single_use);
    assert_eq!(gate.rules[0].min_approvals, 2);
}

#[test]
fn overrides_reach_gates_in_the_gates_directory() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("countersign.toml");
    fs::write(&main, BASE).unwrap();
    fs::create_dir(dir.path().join("gates.d")).unwrap();
    fs::write(
        dir.path().join("gates.d/team.toml"),
        "[[gates]]\nname = \"team-gate\"\nrequesters = 'true'\nauto_approve = 'true'\n",
    )
    .unwrap();
    let e = env(&[(
        "COUNTERSIGN_GATES__TEAM_GATE__DESCRIPTION",
        "set from the environment",
    )]);
    let s = load(&main, &e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.gates.get("team-gate").unwrap().description,
        "set from the environment"
    );
}

#[test]
fn overrides_create_missing_sections() {
    let text =
        "[[issuers]]\nname = \"okta\"\nurl = \"https://acme.okta.com\"\naudiences = [\"a\"]\n";
    let e = env(&[
        (
            "COUNTERSIGN_SERVER__PUBLIC_URL",
            "https://from-env.example.com",
        ),
        ("COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY", KEK),
        ("COUNTERSIGN_WEBHOOKS__MAX_ATTEMPTS", "3"),
    ]);
    let s = load_str(text, "countersign.toml", &e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.server.public_url.as_str(),
        "https://from-env.example.com/"
    );
    assert!(s.server.key_encryption_key.ct_eq(KEK));
    // The top-level [webhooks] is a table, not a gate's [[gates.webhooks]].
    assert_eq!(s.webhooks.max_attempts, 3);
}

#[test]
fn bad_overrides_are_reported_against_the_variable() {
    let e = env(&[
        ("COUNTERSIGN_SERVER__LISEN", "0.0.0.0:1"),
        ("COUNTERSIGN_SERVER__LISTEN", "not-an-address"),
        ("COUNTERSIGN_ISSUERS__NOPE__CLIENT_ID", "x"),
        ("COUNTERSIGN_ISSUERS__GITHUB__KIND", "robot"),
        ("COUNTERSIGN_GATES__NO_SUCH_GATE__PENDING_TTL", "1h"),
        ("COUNTERSIGN_GATES__DEPLOY_PROD__GRANT__TLL", "1h"),
        ("COUNTERSIGN_NOTHING__HERE", "1"),
        ("COUNTERSIGN_SERVER____X", "1"),
    ]);
    let ps = errors_with(
        CONFIG
            .replace("client_secret_file = \"/does/not/exist\"\n", "")
            .as_str(),
        &e,
    );
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__LISEN");
    assert_eq!(
        p.message,
        "unknown key 'lisen' in server (did you mean 'listen'?)"
    );
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__LISTEN");
    assert!(
        p.message
            .contains("'not-an-address' is not an address to listen on"),
        "{p}"
    );
    let p = env_problem(&ps, "COUNTERSIGN_ISSUERS__NOPE__CLIENT_ID");
    assert_eq!(
        p.message,
        "no issuer named 'nope' (configured: my-okta, github)"
    );
    let p = env_problem(&ps, "COUNTERSIGN_ISSUERS__GITHUB__KIND");
    assert!(
        p.message.contains("'robot' is not one of: human, workload"),
        "{p}"
    );
    let p = env_problem(&ps, "COUNTERSIGN_GATES__NO_SUCH_GATE__PENDING_TTL");
    assert!(p.message.starts_with("no gate named 'no_such_gate'"), "{p}");
    let p = env_problem(&ps, "COUNTERSIGN_GATES__DEPLOY_PROD__GRANT__TLL");
    assert!(
        p.message
            .contains("unknown key 'tll' in gates[deploy-prod].grant (did you mean 'ttl'?)"),
        "{p}"
    );
    let p = env_problem(&ps, "COUNTERSIGN_NOTHING__HERE");
    assert!(p.message.starts_with("unknown key 'nothing'"), "{p}");
    let p = env_problem(&ps, "COUNTERSIGN_SERVER____X");
    assert!(p.message.contains("not a valid override name"), "{p}");
    assert_eq!(ps.len(), 8, "{}", list(&ps));
    // Environment problems come after file problems, and display without a line.
    assert_eq!(
        ps[0].to_string(),
        format!("environment: {}: {}", ps[0].key, ps[0].message)
    );
}

#[test]
fn a_value_and_its_file_variant_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    fs::write(&secret, "value-from-file").unwrap();
    let e = env(&[
        (
            "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET",
            "value-inline",
        ),
        (
            "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET_FILE",
            secret.to_str().unwrap(),
        ),
    ]);
    let ps = errors_with(CONFIG, &e);
    let p = env_problem(&ps, "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET_FILE");
    assert!(
        p.message
            .contains("COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET already sets this key"),
        "{p}"
    );
}

#[test]
fn an_unreadable_file_variable_names_the_path() {
    let e = env(&[(
        "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET_FILE",
        "/nonexistent/okta-secret",
    )]);
    let ps = errors_with(CONFIG, &e);
    let p = env_problem(&ps, "COUNTERSIGN_ISSUERS__MY_OKTA__CLIENT_SECRET_FILE");
    assert!(
        p.message.contains("cannot read '/nonexistent/okta-secret'"),
        "{p}"
    );
}

#[test]
fn secret_values_never_appear_in_problems() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("listen");
    fs::write(&listen, "file-held-VALUE-9d2f").unwrap();
    let hook = dir.path().join("hook");
    fs::write(&hook, "plain-hook-secret-77a1").unwrap();
    let base = CONFIG.replace("client_secret_file = \"/does/not/exist\"\n", "");
    let text = format!(
        "{base}  [[gates.webhooks]]\n  url = \"https://h.example.com/T000/B000/tokenintheurl\"\n  secret = \"inline-hook-secret-5c3e\"\n  events = [\"request.approved\"]\n  [[gates.webhooks]]\n  url = \"notaurl/tokenintheurl\"\n  secret_file = \"{}\"\n  events = [\"request.approved\"]\n",
        hook.display()
    );
    let e = env(&[
        // A secret for an issuer that has no client id: refused, never quoted.
        (
            "COUNTERSIGN_ISSUERS__GITHUB__CLIENT_SECRET",
            "env-secret-value-31f0",
        ),
        // Anything read from a file counts as secret, whatever the key.
        ("COUNTERSIGN_SERVER__LISTEN_FILE", listen.to_str().unwrap()),
        // A database URL may carry a password.
        (
            "COUNTERSIGN_SERVER__DATABASE",
            "mysql://root:db-password-8e8e@db/x",
        ),
    ]);
    let ps = errors_with(&text, &e);
    let all = list(&ps);
    for leaked in [
        "env-secret-value-31f0",
        "file-held-VALUE-9d2f",
        "plain-hook-secret-77a1",
        "inline-hook-secret-5c3e",
        "db-password-8e8e",
        "tokenintheurl",
    ] {
        assert!(!all.contains(leaked), "{leaked} leaked into:\n{all}");
    }
    // Yet each of them was reported.
    env_problem(&ps, "COUNTERSIGN_ISSUERS__GITHUB__CLIENT_SECRET");
    env_problem(&ps, "COUNTERSIGN_SERVER__LISTEN_FILE");
    env_problem(&ps, "COUNTERSIGN_SERVER__DATABASE");
    assert!(
        ps.iter().filter(|p| p.message.contains("whsec_")).count() == 2,
        "{all}"
    );
    assert!(
        ps.iter()
            .any(|p| p.key == "gates[deploy-prod].webhooks[1].url"),
        "{all}"
    );
    assert_eq!(ps.len(), 6, "{all}");
    // Nor in the snapshot's debug output.
    assert!(!format!("{e:?}").contains("env-secret-value-31f0"));
}
