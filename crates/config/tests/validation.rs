//! Every validation problem names the right file, line and key, and all of them are reported
//! in one run.

mod common;

use common::{BASE, errors, expect, list, problem};

#[test]
fn server_problems() {
    let text = r#"[server]
public_url = "http://approvals.example.com"
listen = "localhost:80"
database = "mysql://root:hunter2pass@db/x"
audit_readers = '"admins" in approver.groups'
max_wait = "60"
log_format = "yaml"
approval_max_auth_age = "forever"
gates_dir = 7
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com/oauth2/default"
audiences = ["api://countersign"]
"#;
    let ps = errors(text);
    expect(&ps, "server.public_url", 2, "plain http");
    expect(
        &ps,
        "server.listen",
        3,
        "'localhost:80' is not an address to listen on",
    );
    expect(&ps, "server.database", 4, "must start with sqlite:");
    expect(
        &ps,
        "server.audit_readers",
        5,
        "unknown variable 'approver' (this condition can use: principal)",
    );
    expect(&ps, "server.max_wait", 6, "has no unit");
    expect(
        &ps,
        "server.log_format",
        7,
        "'yaml' is not one of: text, json",
    );
    expect(&ps, "server.approval_max_auth_age", 8, "is not a duration");
    expect(
        &ps,
        "server.gates_dir",
        9,
        "expected a string, found an integer",
    );
    assert_eq!(ps.len(), 8, "{}", list(&ps));
    // A database URL may carry a password: never quoted back.
    assert!(!ps.iter().any(|p| p.message.contains("hunter2pass")));
}

#[test]
fn server_section_and_public_url_are_required() {
    let ps = errors(
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[[issuers]]\nname = \"a\"\nurl = \"https://a.example.com\"\naudiences = [\"x\"]\n",
    );
    expect(&ps, "server.public_url", 1, "missing");
    let ps = errors(
        "\n[[issuers]]\nname = \"a\"\nurl = \"https://a.example.com\"\naudiences = [\"x\"]\n",
    );
    expect(&ps, "server", 1, "add a [server] section");
}

#[test]
fn issuer_problems() {
    let text = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "Okta"
url = "http://okta.example.com"
kind = "robot"
audiences = []

[[issuers]]
name = "google"
url = "https://accounts.google.com"
client_id = "abc"
client_secret = "s3cr3t-value-1"
client_secret_file = "/nonexistent"
audiences = ["x"]
algorithms = ["none", "HS256", "RS256", "XYZ1"]
actor_issuer = "gitlab"
jwks_ttl = "0s"

[[issuers]]
name = "google"
url = "https://accounts.google.com"

[[issuers]]
name = "ci"
url = "https://ci.example.com?x=1"
audiences = ["x"]
client_secret = "x-secret-value"
groups_claim = "a..b"
cli_client_id = ""
"#;
    let ps = errors(text);
    expect(
        &ps,
        "issuers[Okta].name",
        5,
        "'Okta' is not a valid issuer name",
    );
    expect(&ps, "issuers[Okta].url", 6, "plain http");
    expect(
        &ps,
        "issuers[Okta].kind",
        7,
        "'robot' is not one of: human, workload",
    );
    expect(&ps, "issuers[Okta].audiences", 8, "at least one audience");
    expect(
        &ps,
        "issuers[google].client_secret_file",
        15,
        "set either client_secret or client_secret_file, not both",
    );
    let algs: Vec<_> = ps
        .iter()
        .filter(|p| p.key == "issuers[google].algorithms")
        .collect();
    assert_eq!(algs.len(), 3, "{}", list(&ps));
    assert!(algs.iter().all(|p| p.line == Some(17)));
    assert!(
        algs[0].message.starts_with("'none' is never accepted"),
        "{}",
        algs[0]
    );
    assert!(
        algs[1].message.starts_with("'HS256' is never accepted"),
        "{}",
        algs[1]
    );
    assert!(
        algs[2]
            .message
            .starts_with("'XYZ1' is not a supported algorithm"),
        "{}",
        algs[2]
    );
    assert!(algs.iter().all(|p| {
        p.message
            .contains("(allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)")
    }));
    expect(
        &ps,
        "issuers[google].actor_issuer",
        18,
        "no issuer named 'gitlab' (configured: Okta, google, ci)",
    );
    expect(
        &ps,
        "issuers[google].jwks_ttl",
        19,
        "must be longer than zero",
    );
    expect(
        &ps,
        "issuers[google].name",
        22,
        "issuer 'google' is already defined at countersign.toml:11",
    );
    expect(&ps, "issuers[google].audiences", 21, "missing");
    expect(&ps, "issuers[ci].url", 27, "must not have a ?query");
    expect(&ps, "issuers[ci].client_secret", 29, "needs a client_id");
    expect(
        &ps,
        "issuers[ci].groups_claim",
        30,
        "'a..b' is not a claim name",
    );
    expect(&ps, "issuers[ci].cli_client_id", 31, "must not be empty");
    assert_eq!(ps.len(), 16, "{}", list(&ps));
    // Secrets are never quoted.
    let all = list(&ps);
    assert!(
        !all.contains("s3cr3t-value-1") && !all.contains("x-secret-value"),
        "{all}"
    );
}

#[test]
fn issuers_are_required_and_actor_issuer_needs_actor_claim() {
    let ps = errors("[server]\npublic_url = \"https://a.example.com\"\n");
    expect(&ps, "issuers", 1, "configure at least one [[issuers]]");
    let text = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com"
audiences = ["x"]
actor_issuer = "okta"
"#;
    expect(
        &errors(text),
        "issuers[okta].actor_issuer",
        8,
        "actor_issuer needs actor_claim",
    );
}

#[test]
fn unreadable_secret_file_names_the_path() {
    let text = format!(
        "{BASE}[[issuers]]\nname = \"corp\"\nurl = \"https://corp.example.com\"\nclient_id = \"x\"\nclient_secret_file = \"/nonexistent/corp-secret\"\naudiences = [\"a\"]\n"
    );
    expect(
        &errors(&text),
        "issuers[corp].client_secret_file",
        13,
        "cannot read '/nonexistent/corp-secret'",
    );
}

#[test]
fn gate_problems_are_all_reported_at_once() {
    let text = format!(
        "{BASE}{}",
        r#"[[gates]]
name = "Deploy_Prod"
requesters = 'true'
auto_approve = 'true'

[[gates]]
name = "db"
description = "no requesters"
reason = "must"
ticket = "optional"
pending_ttl = "2 hours"
grant = { scope = "db:{{params.database}}:{{params.role}}", ttl = "1h", max_ttl = "30m" }
params.database = { type = "enum", values = [] }
params.Role = { type = "string" }
params.rows = { type = "int", min = 10, max = 5, pattern = "x" }
params.name = { type = "string", pattern = "([a-z]", max_length = 0 }
params.flag = { required = true }
params.kind = { type = "float" }

  [[gates.rules]]
  name = "dba"
  approvers = '"dba" in approver.groups'
  min_approvals = 0

  [[gates.rules]]
  name = "dba"
  stage = 3
  reject_threshold = 0

  [[gates.rules]]
  name = "lead"
  approvers = 'true'
  min_approvals = 51

  [[gates.webhooks]]
  url = "ftp://hooks.example.com/x"
  secret = "not-a-whsec-secret"
  events = ["request.approved", "request.exploded"]

  [[gates.webhooks]]
  url = "https://hooks.example.com/y"
  secret = "whsec_abc"
  secret_file = "/run/secrets/hook"

[[gates]]
name = "db"
requesters = 'true'

[[gates]]
name = "lonely"
requesters = 'true'
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "gates[Deploy_Prod].name",
        10,
        "'Deploy_Prod' is not a valid gate name",
    );
    expect(
        &ps,
        "gates[db].requesters",
        14,
        "write requesters = 'true' to let anyone signed in request",
    );
    expect(
        &ps,
        "gates[db].reason",
        17,
        "'must' is not one of: required, optional",
    );
    expect(
        &ps,
        "gates[db].pending_ttl",
        19,
        "'2 hours' is not a duration",
    );
    expect(
        &ps,
        "gates[db].grant.scope",
        20,
        "{{params.role}} names no declared parameter",
    );
    expect(
        &ps,
        "gates[db].grant.max_ttl",
        20,
        "max_ttl (30m) must be at least ttl (1h)",
    );
    expect(
        &ps,
        "gates[db].params.database.values",
        21,
        "at least one value",
    );
    expect(
        &ps,
        "gates[db].params.Role",
        22,
        "'Role' is not a valid parameter name",
    );
    expect(
        &ps,
        "gates[db].params.rows.pattern",
        23,
        "pattern applies only to string parameters (this one is int)",
    );
    expect(
        &ps,
        "gates[db].params.rows.max",
        23,
        "max (5) is smaller than min (10)",
    );
    expect(
        &ps,
        "gates[db].params.name.pattern",
        24,
        "'([a-z]' is not a valid regular expression: unclosed group",
    );
    expect(
        &ps,
        "gates[db].params.name.max_length",
        24,
        "0 is too small: it must be at least 1",
    );
    expect(
        &ps,
        "gates[db].params.flag.type",
        25,
        "missing: one of string, int, bool or enum",
    );
    expect(
        &ps,
        "gates[db].params.kind.type",
        26,
        "'float' is not one of: string, int, bool, enum",
    );
    expect(
        &ps,
        "gates[db].rules[dba].min_approvals",
        31,
        "0 is too small: it must be at least 1",
    );
    expect(
        &ps,
        "gates[db].rules[dba].name",
        34,
        "rule 'dba' is already defined in this gate at countersign.toml:29",
    );
    expect(
        &ps,
        "gates[db].rules[dba].approvers",
        33,
        "missing: who may approve",
    );
    expect(
        &ps,
        "gates[db].rules[dba].stage",
        35,
        "stage 3 has rules but stage 2 has none",
    );
    expect(
        &ps,
        "gates[db].rules[dba].reject_threshold",
        36,
        "0 is too small",
    );
    expect(
        &ps,
        "gates[db].rules[lead].min_approvals",
        41,
        "51 is too large: it must be at most 50",
    );
    expect(
        &ps,
        "gates[db].webhooks[0].url",
        44,
        "the URL must use http or https, not ftp",
    );
    expect(
        &ps,
        "gates[db].webhooks[0].secret",
        45,
        "must start with whsec_",
    );
    expect(
        &ps,
        "gates[db].webhooks[0].events",
        46,
        "'request.exploded' is not an event",
    );
    expect(
        &ps,
        "gates[db].webhooks[1].secret_file",
        51,
        "set either secret or secret_file, not both",
    );
    expect(
        &ps,
        "gates[db].webhooks[1].events",
        48,
        "missing: the events to send",
    );
    expect(
        &ps,
        "gates[db].name",
        54,
        "gate 'db' is already defined at countersign.toml:15",
    );
    expect(
        &ps,
        "gates[db].rules",
        53,
        "a gate needs at least one [[gates.rules]]",
    );
    expect(
        &ps,
        "gates[lonely].rules",
        57,
        "a gate needs at least one [[gates.rules]]",
    );
    assert_eq!(ps.len(), 28, "{}", list(&ps));

    // In line order, and no secret or webhook URL quoted.
    let lines: Vec<usize> = ps.iter().map(|p| p.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let all = list(&ps);
    assert!(!all.contains("not-a-whsec-secret"), "{all}");
    assert!(!all.contains("hooks.example.com"), "{all}");
}

#[test]
fn unknown_keys_at_every_level() {
    let text = r#"titel = "x"
[server]
public_url = "https://approvals.example.com"
lisen = "127.0.0.1:1"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com"
audiences = ["a"]
group_claim = "groups"

[[gates]]
name = "g"
requesters = 'true'
aproval = 1
grant = { ttl = "1m", audeince = "x" }
params.p = { type = "string", requird = true }

  [[gates.rules]]
  name = "r"
  approvers = 'true'
  quorum = 2

  [[gates.webhooks]]
  url = "https://h.example.com"
  events = ["request.created"]
  headers = { a = "b" }
"#;
    let ps = errors(text);
    expect(
        &ps,
        "titel",
        1,
        "unknown key 'titel' (expected one of: server, webhooks, notifications, issuers, resource_servers, gates)",
    );
    expect(
        &ps,
        "server.lisen",
        4,
        "unknown key 'lisen' (did you mean 'listen'?)",
    );
    expect(
        &ps,
        "issuers[okta].group_claim",
        10,
        "(did you mean 'groups_claim'?)",
    );
    expect(&ps, "gates[g].aproval", 15, "unknown key 'aproval'");
    expect(
        &ps,
        "gates[g].grant.audeince",
        16,
        "(did you mean 'audience'?)",
    );
    expect(
        &ps,
        "gates[g].params.p.requird",
        17,
        "(did you mean 'required'?)",
    );
    expect(&ps, "gates[g].rules[r].quorum", 22, "unknown key 'quorum'");
    expect(
        &ps,
        "gates[g].webhooks[0].headers",
        27,
        "unknown key 'headers'",
    );
    assert_eq!(ps.len(), 8, "{}", list(&ps));
}

#[test]
fn cel_syntax_errors_and_unknown_variables() {
    let text = format!(
        "{BASE}{}",
        r#"[[gates]]
name = "deploy-prod"
requesters = 'principal.issuer == '
break_glass = 'approver.groups == []'
  [[gates.rules]]
  name = "security"
  approvers = '"security" in aprover.groups'
  [[gates.rules]]
  name = "multi"
  approvers = '''
    "sre" in approver.groups &&
    approver.claims.team != request.requester.claims.team
  '''
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "gates[deploy-prod].requesters",
        11,
        "not a valid CEL expression",
    );
    expect(
        &ps,
        "gates[deploy-prod].break_glass",
        12,
        "unknown variable 'approver' (this condition can use: principal, request, now)",
    );
    let p = problem(&ps, "gates[deploy-prod].rules[security].approvers");
    assert_eq!(
        p.to_string(),
        "countersign.toml:15: gates[deploy-prod].rules[security].approvers: unknown variable 'aprover' (this condition can use: approver, request, now)"
    );
    assert_eq!(ps.len(), 3, "{}", list(&ps));
}

#[test]
fn a_syntax_error_stops_with_its_line() {
    let text = format!("{BASE}[[gates]]\nname = \"a\"\nrequesters = \n");
    let ps = errors(&text);
    assert_eq!(ps.len(), 1, "{}", list(&ps));
    assert_eq!(ps[0].line, Some(11));
    assert_eq!(ps[0].key, "");
    assert_eq!(ps[0].file.to_str(), Some("countersign.toml"));
}

#[test]
fn wrong_shapes_are_reported_not_ignored() {
    let text = format!(
        "{BASE}{}",
        r#"[gates]
name = "g"
"#
    );
    expect(&errors(&text), "gates", 9, "expected [[gates]] sections");

    let text = format!(
        "{BASE}{}",
        r#"[[gates]]
name = "g"
requesters = true
params = "none"
grant = "soon"
rules = { name = "x" }
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "gates[g].requesters",
        11,
        "expected a string, found a boolean",
    );
    expect(&ps, "gates[g].params", 12, "expected a table of parameters");
    expect(
        &ps,
        "gates[g].grant",
        13,
        "expected a table, found a string",
    );
    expect(
        &ps,
        "gates[g].rules",
        14,
        "expected [[gates.rules]] sections",
    );
}

#[test]
fn defaults_and_constraints_that_pass() {
    let text = format!(
        "{BASE}{}",
        r#"[[gates]]
name = "g"
requesters = 'true'
params.n = { type = "int" }
params.s = { type = "string", pattern = "a|b", description = "either" }
  [[gates.rules]]
  name = "r"
  approvers = 'approver.groups.exists(g, g == "sre")'
  [[gates.rules]]
  name = "later"
  approvers = 'true'
  stage = 2
"#
    );
    let s = common::load(&text);
    let g = s.gates.get("g").unwrap();
    assert_eq!(g.grant.audience, "g");
    assert_eq!(g.grant.ttl, chrono::Duration::minutes(15));
    assert_eq!(g.grant.max_ttl, g.grant.ttl);
    assert!(g.params["s"].validate(&"a".into()).is_ok());
    // Anchored: the whole value must match.
    assert!(g.params["s"].validate(&"ab".into()).is_err());
    assert_eq!(g.params["s"].description.as_deref(), Some("either"));
    assert_eq!(g.rules[1].stage, 2);
}

#[test]
fn smaller_checks() {
    let text = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com"
audiences = ["a", 7]
scopes = ["openid", "open id"]
subject_claim = ""
token_types = []

[[gates]]
name = "g"
description = 5
requesters = 'true'
grant = { audience = "", single_use = "yes" }
params.region = { type = "enum" }
params.tier = { type = "enum", values = ["a", "a"] }
params.flat = "string"
  [[gates.rules]]
  name = "r"
  approvers = ''
  [[gates.webhooks]]
  events = ["request.approved"]
"#;
    let ps = errors(text);
    expect(
        &ps,
        "issuers[okta].audiences[1]",
        7,
        "expected a string, found an integer",
    );
    expect(&ps, "issuers[okta].scopes", 8, "'open id' is not a scope");
    expect(
        &ps,
        "issuers[okta].subject_claim",
        9,
        "'' is not a claim name",
    );
    expect(
        &ps,
        "issuers[okta].token_types",
        10,
        "at least one non-empty token type",
    );
    expect(
        &ps,
        "gates[g].description",
        14,
        "expected a string, found an integer",
    );
    expect(&ps, "gates[g].grant.audience", 16, "must not be empty");
    expect(
        &ps,
        "gates[g].grant.single_use",
        16,
        "expected true or false, found a string",
    );
    expect(
        &ps,
        "gates[g].params.region.values",
        17,
        "missing: an enum parameter lists its values",
    );
    expect(
        &ps,
        "gates[g].params.tier.values",
        18,
        "'a' is listed twice",
    );
    expect(
        &ps,
        "gates[g].params.flat",
        19,
        "expected a table, found a string",
    );
    expect(
        &ps,
        "gates[g].rules[r].approvers",
        22,
        "the condition is empty",
    );
    expect(
        &ps,
        "gates[g].webhooks[0].url",
        23,
        "missing: where to POST",
    );
    assert_eq!(ps.len(), 12, "{}", list(&ps));
}

/// The event of an issued grant had another name in webhooks once: a gate still using it is
/// refused, and the message names the event it is now.
#[test]
fn the_old_name_of_the_grant_event_points_to_the_new_one() {
    let text = format!(
        "{BASE}\n[[gates]]\nname = \"g\"\nrequesters = 'true'\n  [[gates.webhooks]]\n  url = \"https://hooks.example.com/x\"\n  events = [\"grant.redeemed\"]\n"
    );
    let ps = errors(&text);
    let p = problem(&ps, "gates[g].webhooks[0].events");
    assert!(
        p.message.contains("'grant.redeemed' is not an event"),
        "{p}"
    );
    assert!(p.message.contains("it is called grant.issued now"), "{p}");
}
