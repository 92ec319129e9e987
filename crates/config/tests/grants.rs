//! Verifiable grants (SPEC §3, standards endpoints): the key-encryption key and signing
//! settings of `[server]`, webhook delivery (`[webhooks]`), `[[resource_servers]]` and the
//! grant-token lifetime bound — each checked with file, line and key, secrets never quoted.

mod common;

use std::fs;

use chrono::Duration;
use countersign_config::{ENVIRONMENT, Env, Problem, WebhookSettings, load, load_str};

use common::{BASE, KEK, errors, errors_with, expect, list, problem};

/// `[server]` without a key, then an issuer: 7 lines, the server's keys go after line 2.
fn server(extra: &str) -> String {
    format!(
        "[server]\npublic_url = \"https://approvals.example.com\"\n{extra}[[issuers]]\nname = \"okta\"\nurl = \"https://acme.okta.com\"\naudiences = [\"a\"]\n"
    )
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

/// The one problem set by environment variable `var`.
fn env_problem<'a>(ps: &'a [Problem], var: &str) -> &'a Problem {
    let p = problem(ps, var);
    assert_eq!(p.file.to_str(), Some(ENVIRONMENT), "{p}");
    assert_eq!(p.line, None, "{p}");
    p
}

/// Like `expect`, for a key that has problems on several lines.
fn expect_at(ps: &[Problem], key: &str, line: usize, text: &str) {
    let found: Vec<&Problem> = ps
        .iter()
        .filter(|p| p.key == key && p.line == Some(line))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem with key {key} on line {line}, got:\n{}",
        list(ps)
    );
    assert!(
        found[0].message.contains(text),
        "message of {key} lacks {text:?}: {}",
        found[0]
    );
}

fn assert_not_leaked(ps: &[Problem], secrets: &[&str]) {
    let all = list(ps);
    for s in secrets {
        assert!(!all.contains(s), "{s} leaked into:\n{all}");
    }
}

// ---------------------------------------------------------------- [server]: grant keys

#[test]
fn server_grant_key_settings_have_defaults() {
    let s = common::load(BASE);
    assert!(s.server.key_encryption_key.ct_eq(KEK));
    assert_eq!(s.server.signing_alg, "ES256");
    assert_eq!(s.server.key_rotation_delay, Duration::hours(1));
    assert_eq!(
        countersign_config::GRANT_SIGNING_ALGORITHMS,
        ["ES256", "EdDSA", "RS256"]
    );
    // The key is a secret: it never prints.
    assert!(!format!("{:?}", s.server).contains(KEK));
}

#[test]
fn server_grant_key_settings_are_read() {
    for alg in ["ES256", "EdDSA", "RS256"] {
        let s = common::load(&server(&format!(
            "key_encryption_key = \"{KEK}\"\nsigning_alg = \"{alg}\"\nkey_rotation_delay = \"30m\"\n"
        )));
        assert_eq!(s.server.signing_alg, alg);
        assert_eq!(s.server.key_rotation_delay, Duration::minutes(30));
    }
    // Every accepted form of 32 bytes, kept as written (the tokens crate decodes it).
    for key in [
        KEK,
        KEK.trim_end_matches('='),
        "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s",
        "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s=",
        "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f",
    ] {
        let s = common::load(&server(&format!("key_encryption_key = \"{key}\"\n")));
        assert!(s.server.key_encryption_key.ct_eq(key), "{key}");
    }
}

#[test]
fn server_grant_key_problems() {
    let text = server(&format!(
        "key_encryption_key = \"{KEK}\"\nkey_encryption_key_file = \"kek\"\nsigning_alg = \"HS256\"\nkey_rotation_delay = \"soon\"\n"
    ));
    let ps = errors(&text);
    expect(
        &ps,
        "server.key_encryption_key_file",
        4,
        "set only one of key_encryption_key and key_encryption_key_file",
    );
    expect(
        &ps,
        "server.signing_alg",
        5,
        "'HS256' is not one of: ES256, EdDSA, RS256",
    );
    expect(&ps, "server.key_rotation_delay", 6, "is not a duration");
    assert_eq!(ps.len(), 3, "{}", list(&ps));
    assert_not_leaked(&ps, &[KEK]);
}

#[test]
fn the_key_encryption_key_is_required() {
    let ps = errors(&server(""));
    expect(
        &ps,
        "server.key_encryption_key",
        1,
        "missing: set key_encryption_key or key_encryption_key_file",
    );
    let p = problem(&ps, "server.key_encryption_key");
    for name in [
        "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY ",
        "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE",
        "openssl rand -base64 32",
    ] {
        assert!(p.message.contains(name), "{name} not in {p}");
    }
    assert_eq!(ps.len(), 1, "{}", list(&ps));
}

#[test]
fn a_malformed_key_is_reported_never_quoted() {
    for (key, why) in [
        // "short-key-value": 15 bytes.
        ("c2hvcnQta2V5LXZhbHVl", "it decodes to 15 bytes as base64"),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
            "it has 62 hex characters",
        ),
        ("correct horse battery staple, really", "not a valid key"),
        // Both alphabets at once.
        (
            "+_v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s=",
            "not a valid key",
        ),
        // 32 bytes with a second '='.
        (
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==",
            "not a valid key",
        ),
    ] {
        let ps = errors(&server(&format!("key_encryption_key = \"{key}\"\n")));
        expect(&ps, "server.key_encryption_key", 3, why);
        let p = problem(&ps, "server.key_encryption_key");
        assert!(
            p.message
                .contains("expected 32 bytes as base64 (standard or URL-safe, padding optional) or as 64 hex characters"),
            "{p}"
        );
        assert_eq!(ps.len(), 1, "{}", list(&ps));
        assert_not_leaked(&ps, &[key]);
    }
    let ps = errors(&server("key_encryption_key = 42\n"));
    expect(
        &ps,
        "server.key_encryption_key",
        3,
        "expected a string, found an integer",
    );
    let ps = errors(&server("key_encryption_key = \"  \"\n"));
    expect(&ps, "server.key_encryption_key", 3, "must not be empty");
}

#[test]
fn the_key_file_resolves_against_the_config_file_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    fs::write(dir.path().join("secrets/kek"), format!("\n  {KEK}  \n")).unwrap();
    let main = dir.path().join("countersign.toml");
    fs::write(&main, server("key_encryption_key_file = \"secrets/kek\"\n")).unwrap();
    let s = load(&main, &Env::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.server.key_encryption_key.ct_eq(KEK));
    // The key file is a secret, not a configuration source.
    assert_eq!(s.sources, vec![main.clone()]);

    // Its content is checked like an inline key, and never quoted.
    fs::write(
        dir.path().join("secrets/kek"),
        "not-a-key-but-a-secret-5e6f\n",
    )
    .unwrap();
    let e = load(&main, &Env::empty()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, main);
    assert_eq!(e.0[0].line, Some(3));
    assert_eq!(e.0[0].key, "server.key_encryption_key_file");
    assert!(e.0[0].message.starts_with("not a valid key"), "{e}");
    assert!(
        !e.to_string().contains("not-a-key-but-a-secret-5e6f"),
        "{e}"
    );

    // An empty or missing file names the path.
    fs::write(dir.path().join("secrets/kek"), "\n").unwrap();
    let e = load(&main, &Env::empty()).unwrap_err();
    assert!(e.0[0].message.ends_with("secrets/kek' is empty"), "{e}");
    fs::write(&main, server("key_encryption_key_file = \"nope\"\n")).unwrap();
    let e = load(&main, &Env::empty()).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].key, "server.key_encryption_key_file");
    assert!(
        e.0[0].message.contains(&format!(
            "cannot read '{}'",
            dir.path().join("nope").display()
        )),
        "{e}"
    );
}

#[test]
fn the_key_and_signing_settings_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    fs::write(&kek, format!("{KEK}\n")).unwrap();
    // The file names an unreadable key file: the variable replaces it, no conflict.
    let text = server("key_encryption_key_file = \"/nonexistent/kek\"\n");
    let url_safe = "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s";
    let s = load_str(
        &text,
        "countersign.toml",
        &env(&[
            ("COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY", url_safe),
            ("COUNTERSIGN_SERVER__SIGNING_ALG", "RS256"),
            ("COUNTERSIGN_SERVER__KEY_ROTATION_DELAY", "2h"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.server.key_encryption_key.ct_eq(url_safe));
    assert_eq!(s.server.signing_alg, "RS256");
    assert_eq!(s.server.key_rotation_delay, Duration::hours(2));

    // No key in the file at all; the _FILE variable reads one (trimmed).
    let s = load_str(
        &server(""),
        "countersign.toml",
        &env(&[(
            "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE",
            kek.to_str().unwrap(),
        )]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.server.key_encryption_key.ct_eq(KEK));
    // Nor does an inline key in the file conflict with it.
    let inline = server(
        "key_encryption_key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n",
    );
    let s = load_str(
        &inline,
        "countersign.toml",
        &env(&[(
            "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE",
            kek.to_str().unwrap(),
        )]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.server.key_encryption_key.ct_eq(KEK));
}

#[test]
fn bad_key_variables_are_reported_against_them_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-kek");
    fs::write(&bad, "file-held-bad-key-0b0b\n").unwrap();

    let ps = errors_with(
        &server(""),
        &env(&[
            ("COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY", "env-bad-key-7a7a"),
            ("COUNTERSIGN_SERVER__SIGNING_ALG", "none"),
        ]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY");
    assert!(p.message.starts_with("not a valid key"), "{p}");
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__SIGNING_ALG");
    assert!(p.message.contains("'none' is not one of"), "{p}");
    assert_eq!(ps.len(), 2, "{}", list(&ps));
    assert_not_leaked(&ps, &["env-bad-key-7a7a"]);

    let ps = errors_with(
        &server(""),
        &env(&[(
            "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE",
            bad.to_str().unwrap(),
        )]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE");
    assert!(p.message.starts_with("not a valid key"), "{p}");
    assert_eq!(ps.len(), 1, "{}", list(&ps));
    assert_not_leaked(&ps, &["file-held-bad-key-0b0b"]);

    // Both variables: only one may be set.
    let ps = errors_with(
        &server(""),
        &env(&[
            ("COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY", KEK),
            (
                "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE",
                bad.to_str().unwrap(),
            ),
        ]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE");
    assert!(
        p.message
            .contains("COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY already sets this key"),
        "{p}"
    );
    assert_not_leaked(&ps, &[KEK, "file-held-bad-key-0b0b"]);
}

// ---------------------------------------------------------------- [webhooks]

#[test]
fn webhook_delivery_has_defaults() {
    let defaults = WebhookSettings {
        max_attempts: 8,
        timeout: Duration::seconds(10),
        backoff_base: Duration::seconds(5),
        backoff_max: Duration::hours(1),
    };
    assert_eq!(WebhookSettings::default(), defaults);
    assert_eq!(common::load(BASE).webhooks, defaults);
    assert_eq!(
        common::load(&format!("{BASE}[webhooks]\n")).webhooks,
        defaults
    );
    // Setting one key keeps the others' defaults.
    let s = common::load(&format!("{BASE}[webhooks]\nbackoff_base = \"1m\"\n"));
    assert_eq!(
        s.webhooks,
        WebhookSettings {
            backoff_base: Duration::minutes(1),
            ..defaults
        }
    );
}

#[test]
fn webhook_delivery_is_read() {
    let s = common::load(&format!(
        "{BASE}[webhooks]\nmax_attempts = 50\ntimeout = \"60s\"\nbackoff_base = \"30s\"\nbackoff_max = \"30s\"\n"
    ));
    assert_eq!(
        s.webhooks,
        WebhookSettings {
            max_attempts: 50,
            timeout: Duration::seconds(60),
            backoff_base: Duration::seconds(30),
            backoff_max: Duration::seconds(30),
        }
    );
    let s = common::load(&format!("{BASE}[webhooks]\nmax_attempts = 1\n"));
    assert_eq!(s.webhooks.max_attempts, 1);
}

#[test]
fn webhook_delivery_problems() {
    let ps = errors(&format!(
        "{BASE}[webhooks]\nmax_attempts = 51\ntimeout = \"2m\"\nbackoff_base = \"10m\"\nbackoff_max = \"5m\"\nretries = 3\n"
    ));
    expect(
        &ps,
        "webhooks.max_attempts",
        10,
        "51 is too large: it must be at most 50",
    );
    expect(
        &ps,
        "webhooks.timeout",
        11,
        "2m is too long: a webhook call may take at most 1m",
    );
    expect(
        &ps,
        "webhooks.backoff_max",
        13,
        "backoff_max (5m) must be at least backoff_base (10m)",
    );
    expect(
        &ps,
        "webhooks.retries",
        14,
        "unknown key 'retries' (expected one of: max_attempts, timeout, backoff_base, backoff_max)",
    );
    assert_eq!(ps.len(), 4, "{}", list(&ps));

    let ps = errors(&format!(
        "{BASE}[webhooks]\nmax_attempts = 0\ntimeout = 5\nbackoff_base = \"2h\"\n"
    ));
    expect(
        &ps,
        "webhooks.max_attempts",
        10,
        "0 is too small: it must be at least 1",
    );
    expect(
        &ps,
        "webhooks.timeout",
        11,
        "expected a string, found an integer",
    );
    expect(
        &ps,
        "webhooks.backoff_base",
        12,
        "backoff_base (2h) must be at most backoff_max (1h, the default)",
    );
    assert_eq!(ps.len(), 3, "{}", list(&ps));

    // A bad maximum is reported once, not compared as well.
    let ps = errors(&format!("{BASE}[webhooks]\nbackoff_max = \"0s\"\n"));
    expect(&ps, "webhooks.backoff_max", 10, "must be longer than zero");
    assert_eq!(ps.len(), 1, "{}", list(&ps));

    let ps = errors(&format!("webhooks = 5\n{BASE}"));
    expect(&ps, "webhooks", 1, "expected a table, found an integer");
    let ps = errors(&format!("{BASE}[[webhooks]]\nmax_attempts = 3\n"));
    expect(&ps, "webhooks", 9, "expected a table, found an array");
}

#[test]
fn webhook_delivery_comes_from_the_environment() {
    // The top-level [webhooks] is a table; a gate's [[gates.webhooks]] are picked by position.
    let text = format!(
        "{BASE}[webhooks]\nmax_attempts = 3\n\n[[gates]]\nname = \"g\"\nrequesters = 'true'\nauto_approve = 'true'\n  [[gates.webhooks]]\n  url = \"https://h.example.com\"\n  events = [\"request.created\"]\n"
    );
    let s = load_str(
        &text,
        "countersign.toml",
        &env(&[
            ("COUNTERSIGN_WEBHOOKS__MAX_ATTEMPTS", "20"),
            ("COUNTERSIGN_WEBHOOKS__BACKOFF_MAX", "6h"),
            (
                "COUNTERSIGN_GATES__G__WEBHOOKS__0__EVENTS",
                "request.approved, request.rejected",
            ),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.webhooks.max_attempts, 20);
    assert_eq!(s.webhooks.backoff_max, Duration::hours(6));
    let events: Vec<&str> = s.gates.get("g").unwrap().webhooks[0]
        .events
        .iter()
        .map(|e| e.as_str())
        .collect();
    assert_eq!(events, ["request.approved", "request.rejected"]);

    let ps = errors_with(
        BASE,
        &env(&[
            ("COUNTERSIGN_WEBHOOKS__TIMEOUT", "90s"),
            ("COUNTERSIGN_WEBHOOKS__MAX_ATEMPTS", "3"),
        ]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_WEBHOOKS__TIMEOUT");
    assert!(p.message.contains("1m30s is too long"), "{p}");
    let p = env_problem(&ps, "COUNTERSIGN_WEBHOOKS__MAX_ATEMPTS");
    assert_eq!(
        p.message,
        "unknown key 'max_atempts' in webhooks (did you mean 'max_attempts'?)"
    );
    assert_eq!(ps.len(), 2, "{}", list(&ps));
}

// ---------------------------------------------------------------- [[resource_servers]]

#[test]
fn resource_servers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    fs::write(dir.path().join("secrets/deployer"), "  deployer-secret\n").unwrap();
    let main = dir.path().join("countersign.toml");
    fs::write(
        &main,
        format!(
            "{BASE}[[resource_servers]]\nname = \"deployer\"\nclient_id = \"deployer-client\"\nclient_secret_file = \"secrets/deployer\"\n\n[[resource_servers]]\nname = \"db_proxy-2\"\nclient_id = \"db\"\nclient_secret = \"db-proxy-secret\"\n"
        ),
    )
    .unwrap();
    let s = load(&main, &Env::empty()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<(&str, &str)> = s
        .resource_servers
        .iter()
        .map(|r| (r.name.as_str(), r.client_id.as_str()))
        .collect();
    assert_eq!(
        names,
        [("deployer", "deployer-client"), ("db_proxy-2", "db")]
    );
    let deployer = s.resource_server("deployer").unwrap();
    assert!(deployer.client_secret.ct_eq("deployer-secret"));
    assert!(
        s.resource_server("db_proxy-2")
            .unwrap()
            .client_secret
            .ct_eq("db-proxy-secret")
    );
    assert!(s.resource_server("nope").is_none());
    assert!(common::load(BASE).resource_servers.is_empty());
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("deployer-secret") && !debug.contains("db-proxy-secret"),
        "{debug}"
    );
}

#[test]
fn resource_server_problems() {
    let text = format!(
        "{BASE}{}",
        r#"[[resource_servers]]
name = "Billing"
client_id = "billing"
client_secret = "rs-inline-secret-1a2b"
client_secret_file = "/nonexistent/rs"
audience = "x"

[[resource_servers]]
name = "deployer"
client_id = "billing"

[[resource_servers]]
name = "deployer"
client_secret_file = "/nonexistent/deployer-secret"

[[resource_servers]]
name = "db-proxy"
client_id = ""
client_secret = "rs-other-secret-3c4d"

[[resource_servers]]
client_id = "anonymous"
client_secret = "   "
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "resource_servers[Billing].name",
        10,
        "'Billing' is not a valid resource server name: use lowercase letters, digits, '-' and '_'",
    );
    expect(
        &ps,
        "resource_servers[Billing].client_secret_file",
        13,
        "set only one of client_secret and client_secret_file",
    );
    expect(
        &ps,
        "resource_servers[Billing].audience",
        14,
        "unknown key 'audience' (expected one of: name, client_id, client_secret, client_secret_file)",
    );
    expect_at(
        &ps,
        "resource_servers[deployer].client_id",
        18,
        "client_id 'billing' is already used by resource server 'Billing' at countersign.toml:11",
    );
    expect_at(
        &ps,
        "resource_servers[deployer].client_secret",
        16,
        "missing: set client_secret_file",
    );
    expect(
        &ps,
        "resource_servers[deployer].name",
        21,
        "resource server 'deployer' is already defined at countersign.toml:17",
    );
    expect_at(&ps, "resource_servers[deployer].client_id", 20, "missing");
    expect(
        &ps,
        "resource_servers[deployer].client_secret_file",
        22,
        "cannot read '/nonexistent/deployer-secret'",
    );
    expect(
        &ps,
        "resource_servers[db-proxy].client_id",
        26,
        "must not be empty",
    );
    expect(
        &ps,
        "resource_servers[4].name",
        29,
        "missing: every resource server needs a name",
    );
    expect(
        &ps,
        "resource_servers[4].client_secret",
        31,
        "the secret must not be empty",
    );
    assert_eq!(ps.len(), 11, "{}", list(&ps));
    assert_not_leaked(&ps, &["rs-inline-secret-1a2b", "rs-other-secret-3c4d"]);

    let ps = errors(&format!("{BASE}[resource_servers]\nname = \"x\"\n"));
    expect(
        &ps,
        "resource_servers",
        9,
        "expected [[resource_servers]] sections (an array of tables), found a table",
    );
}

#[test]
fn resource_server_secrets_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("billing");
    fs::write(&secret, "billing-secret-from-env-file\n").unwrap();
    let text = format!(
        "{BASE}[[resource_servers]]\nname = \"billing-api\"\nclient_id = \"billing\"\nclient_secret_file = \"/nonexistent/billing\"\n"
    );
    let s = load_str(
        &text,
        "countersign.toml",
        &env(&[(
            "COUNTERSIGN_RESOURCE_SERVERS__BILLING_API__CLIENT_SECRET_FILE",
            secret.to_str().unwrap(),
        )]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let billing = s.resource_server("billing-api").unwrap();
    assert!(billing.client_secret.ct_eq("billing-secret-from-env-file"));

    // Inline too, and the client id.
    let s = load_str(
        &text,
        "countersign.toml",
        &env(&[
            (
                "COUNTERSIGN_RESOURCE_SERVERS__BILLING_API__CLIENT_SECRET",
                "billing-inline-env-secret",
            ),
            (
                "COUNTERSIGN_RESOURCE_SERVERS__billing_api__CLIENT_ID",
                "12345",
            ),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let billing = s.resource_server("billing-api").unwrap();
    assert!(billing.client_secret.ct_eq("billing-inline-env-secret"));
    assert_eq!(billing.client_id, "12345");

    // An unknown name, or no resource servers at all.
    let ps = errors_with(
        &text,
        &env(&[
            (
                "COUNTERSIGN_RESOURCE_SERVERS__BILLING__CLIENT_SECRET",
                "unused-env-secret-9f9f",
            ),
            (
                "COUNTERSIGN_RESOURCE_SERVERS__BILLING_API__CLIENT_SECRT",
                "typo-env-secret-8e8e",
            ),
        ]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_RESOURCE_SERVERS__BILLING__CLIENT_SECRET");
    assert_eq!(
        p.message,
        "no resource server named 'billing' (configured: billing-api)"
    );
    let p = env_problem(
        &ps,
        "COUNTERSIGN_RESOURCE_SERVERS__BILLING_API__CLIENT_SECRT",
    );
    assert!(
        p.message
            .starts_with("unknown key 'client_secrt' in resource_servers[billing-api]"),
        "{p}"
    );
    assert_not_leaked(&ps, &["unused-env-secret-9f9f"]);
    let ps = errors_with(
        BASE,
        &env(&[(
            "COUNTERSIGN_RESOURCE_SERVERS__BILLING__CLIENT_SECRET",
            "x-secret",
        )]),
    );
    let p = env_problem(&ps, "COUNTERSIGN_RESOURCE_SERVERS__BILLING__CLIENT_SECRET");
    assert_eq!(
        p.message,
        "no resource server named 'billing' (resource_servers has none)"
    );
}

// ---------------------------------------------------------------- the grant-token lifetime

#[test]
fn max_grant_ttl_is_the_longest_gate_max_ttl() {
    assert_eq!(common::load(BASE).max_grant_ttl(), Duration::minutes(15));
    let gate = |name: &str, grant: &str| {
        format!(
            "[[gates]]\nname = \"{name}\"\nrequesters = 'true'\nauto_approve = 'true'\n{grant}\n"
        )
    };
    let text = format!(
        "{BASE}{}{}{}",
        gate("short", "grant = { ttl = \"5m\" }"),
        gate("long", "grant = { ttl = \"1h\", max_ttl = \"8h\" }"),
        gate("default", ""),
    );
    assert_eq!(common::load(&text).max_grant_ttl(), Duration::hours(8));
    // Shorter than the default: the gates' bound, not the default's.
    let text = format!("{BASE}{}", gate("short", "grant = { ttl = \"5m\" }"));
    assert_eq!(common::load(&text).max_grant_ttl(), Duration::minutes(5));
}

#[test]
fn max_grant_ttl_counts_gates_from_the_gates_directory() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("countersign.toml");
    fs::write(&main, BASE).unwrap();
    fs::create_dir(dir.path().join("gates.d")).unwrap();
    fs::write(
        dir.path().join("gates.d/team.toml"),
        "[[gates]]\nname = \"team\"\nrequesters = 'true'\nauto_approve = 'true'\ngrant = { max_ttl = \"2d\" }\n",
    )
    .unwrap();
    let s = load(&main, &Env::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.max_grant_ttl(), Duration::days(2));
}
