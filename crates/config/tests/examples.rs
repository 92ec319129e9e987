//! Whole configurations that must load: the SPEC §2 example and a dev-like setup.

mod common;

use std::fs;

use countersign_config::{Env, LogFormat, WebhookSettings, load};
use countersign_core::audit::AuditAction;
use countersign_core::{ParamType, PrincipalKind, Requirement};

/// SPEC §2, verbatim except for the secret paths, which point into a temporary directory.
const SPEC_EXAMPLE: &str = r#"[server]
public_url = "https://approvals.example.com"
listen = "0.0.0.0:8080"
database = "sqlite://countersign.db"        # or "postgres://user@host/db"
key_encryption_key_file = "/run/secrets/countersign-kek"

[[issuers]]
name = "okta"
url = "https://acme.okta.com/oauth2/default"
client_id = "0oa…"
client_secret_file = "/run/secrets/okta"
audiences = ["api://countersign"]
groups_claim = "groups"

[[issuers]]
name = "github"
url = "https://token.actions.githubusercontent.com"
kind = "workload"
audiences = ["https://approvals.example.com"]

[[gates]]
name = "deploy-prod"
description = "Deploy a service to production"
requesters = 'principal.issuer == "github" && principal.claims.repository_owner == "acme"'
reason = "required"
pending_ttl = "2h"
grant = { audience = "deployer", scope = "deploy:{{params.service}}", ttl = "15m", single_use = true }
params.service = { type = "string", pattern = "^[a-z][a-z0-9-]{1,40}$", required = true }
params.version = { type = "string", required = true }

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
  min_approvals = 1

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups && approver.claims.team != request.requester.claims.team'
  min_approvals = 1

  [[gates.webhooks]]
  url = "https://ci.example.com/hooks/countersign"
  secret_file = "/run/secrets/ci-hook"
  events = ["request.approved"]
"#;

#[test]
fn spec_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let okta = dir.path().join("okta");
    let hook = dir.path().join("ci-hook");
    let kek = dir.path().join("kek");
    fs::write(&okta, "okta-client-secret\n").unwrap();
    fs::write(&hook, "  whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    fs::write(&kek, format!("{}\n", common::KEK)).unwrap();
    let text = SPEC_EXAMPLE
        .replace("/run/secrets/okta", okta.to_str().unwrap())
        .replace("/run/secrets/ci-hook", hook.to_str().unwrap())
        .replace("/run/secrets/countersign-kek", kek.to_str().unwrap());
    let path = dir.path().join("countersign.toml");
    fs::write(&path, text).unwrap();

    let s = load(&path, &Env::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.sources, vec![path.clone()]);

    assert_eq!(
        s.server.public_url.as_str(),
        "https://approvals.example.com/"
    );
    assert_eq!(s.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.server.database, "sqlite://countersign.db");
    assert_eq!(s.server.max_wait, chrono::Duration::seconds(60));
    assert_eq!(
        s.server.approval_max_auth_age,
        chrono::Duration::minutes(10)
    );
    assert_eq!(s.server.log_format, LogFormat::Text);
    assert!(s.server.audit_readers.is_none());
    assert_eq!(s.server.gates_dir, None);
    // Read from its file, trimmed; the defaults of the grant-signing keys.
    assert!(s.server.key_encryption_key.ct_eq(common::KEK));
    assert_eq!(s.server.signing_alg, "ES256");
    assert_eq!(s.server.key_rotation_delay, chrono::Duration::hours(1));
    assert_eq!(s.webhooks, WebhookSettings::default());
    assert!(s.resource_servers.is_empty());
    assert_eq!(s.max_grant_ttl(), chrono::Duration::minutes(15));

    assert_eq!(s.issuers.len(), 2);
    let okta = s.issuer("okta").unwrap();
    assert_eq!(okta.url, "https://acme.okta.com/oauth2/default");
    assert_eq!(okta.kind, PrincipalKind::Human);
    assert_eq!(okta.client_id.as_deref(), Some("0oa…"));
    assert!(
        okta.client_secret
            .as_ref()
            .unwrap()
            .ct_eq("okta-client-secret")
    );
    assert_eq!(okta.scopes, ["openid", "profile", "email"]);
    assert_eq!(okta.audiences, ["api://countersign"]);
    assert_eq!(okta.algorithms, ["RS256", "ES256", "EdDSA"]);
    assert_eq!(okta.subject_claim, "sub");
    assert_eq!(okta.groups_claim.as_deref(), Some("groups"));
    assert_eq!(okta.jwks_ttl, chrono::Duration::minutes(10));
    let github = s.issuer("github").unwrap();
    assert_eq!(github.kind, PrincipalKind::Workload);
    assert!(github.client_id.is_none() && github.client_secret.is_none());
    assert_eq!(github.url, "https://token.actions.githubusercontent.com");

    assert_eq!(s.gates.len(), 1);
    let g = s.gates.get("deploy-prod").unwrap();
    assert_eq!(g.description, "Deploy a service to production");
    assert_eq!(g.reason, Requirement::Required);
    assert_eq!(g.ticket, Requirement::Optional);
    assert_eq!(g.pending_ttl, chrono::Duration::hours(2));
    assert_eq!(g.grant.audience, "deployer");
    assert_eq!(g.grant.scope.as_deref(), Some("deploy:{{params.service}}"));
    assert_eq!(g.grant.ttl, chrono::Duration::minutes(15));
    assert_eq!(g.grant.max_ttl, chrono::Duration::minutes(15));
    assert!(g.grant.single_use);
    let service = &g.params["service"];
    assert!(service.required);
    let ParamType::String {
        pattern,
        max_length,
    } = &service.ty
    else {
        panic!("service is a string")
    };
    assert_eq!(*max_length, 256);
    let pattern = pattern.as_ref().unwrap();
    assert!(pattern.is_match("api"));
    assert!(!pattern.is_match("API"));
    assert!(service.validate(&"api".into()).is_ok());
    assert!(g.params["version"].validate(&"1.4.2".into()).is_ok());
    let names: Vec<&str> = g.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["sre", "security"]);
    assert!(g.rules.iter().all(|r| r.min_approvals == 1 && r.stage == 1));
    assert_eq!(g.webhooks.len(), 1);
    let w = &g.webhooks[0];
    assert_eq!(w.url, "https://ci.example.com/hooks/countersign");
    assert_eq!(w.events, [AuditAction::RequestApproved]);
    assert!(
        w.secret
            .as_ref()
            .unwrap()
            .ct_eq("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    // Secrets never print.
    let debug = format!("{s:?}");
    assert!(!debug.contains("okta-client-secret"));
    assert!(!debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert!(!debug.contains(common::KEK));
}

/// Like what `countersign dev` runs: loopback everywhere, three example gates.
const DEV_LIKE: &str = r#"[server]
public_url = "http://127.0.0.1:8080"
listen = "127.0.0.1:8080"
database = "sqlite://dev.db"
audit_readers = '"admins" in principal.groups'
max_wait = "30s"
log_format = "json"
approval_max_auth_age = "5m"
key_encryption_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
signing_alg = "EdDSA"
key_rotation_delay = "1m"

[[issuers]]
name = "dev"
url = "http://127.0.0.1:8081"
client_id = "countersign"
client_secret = "dev-secret"
cli_client_id = "countersign-cli"
scopes = ["openid", "profile", "email", "groups"]
audiences = ["countersign"]
algorithms = ["ES256"]
groups_claim = "groups"
jwks_ttl = "1m"

[[issuers]]
name = "dev-ci"
url = "http://localhost:8081/ci"
kind = "workload"
audiences = ["countersign"]
actor_claim = "actor_id"
actor_issuer = "dev"
token_types = ["JWT"]

[[gates]]
name = "deploy-prod"
description = "Deploy to production: SRE, then security"
requesters = 'true'
reason = "required"
ticket = "required"
params.service = { type = "enum", values = ["api", "web"], required = true }
params.version = { type = "string", max_length = 32 }
grant = { scope = "deploy:{{params.service}}" }

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups'
  stage = 2

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
  min_approvals = 2
  reject_threshold = 2

  [[gates.rules]]
  name = "platform"
  approvers = '"platform" in approver.groups'

[[gates]]
name = "db-session"
description = "A session on the production database"
requesters = '"dev" in principal.groups'
params.database = { type = "enum", values = ["orders", "users"], required = true }
params.rows = { type = "int", min = 1, max = 1000 }
params.read_only = { type = "bool" }
break_glass = '"oncall" in principal.groups'

  [gates.grant]
  audience = "db-proxy"
  ttl = "30m"
  max_ttl = "4h"

  [[gates.rules]]
  name = "dba"
  approvers = '"dba" in approver.groups'

[[gates]]
name = "deploy-staging"
requesters = 'true'
auto_approve = 'request.params.env == "staging"'
params.env = { type = "enum", values = ["staging"] }
"#;

#[test]
fn dev_like_config_loads() {
    let s = common::load(DEV_LIKE);
    assert!(s.sources.is_empty());
    assert_eq!(s.server.public_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(s.server.database, "sqlite://dev.db");
    assert!(s.server.audit_readers.is_some());
    assert_eq!(s.server.max_wait, chrono::Duration::seconds(30));
    assert_eq!(s.server.log_format, LogFormat::Json);
    assert_eq!(s.server.approval_max_auth_age, chrono::Duration::minutes(5));
    assert!(
        s.server
            .key_encryption_key
            .ct_eq("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
    );
    assert_eq!(s.server.signing_alg, "EdDSA");
    assert_eq!(s.server.key_rotation_delay, chrono::Duration::minutes(1));
    // db-session's max_ttl, the longest of the three gates'.
    assert_eq!(s.max_grant_ttl(), chrono::Duration::hours(4));

    let dev = s.issuer("dev").unwrap();
    assert!(dev.client_secret.as_ref().unwrap().ct_eq("dev-secret"));
    assert_eq!(dev.cli_client_id.as_deref(), Some("countersign-cli"));
    assert_eq!(dev.algorithms, ["ES256"]);
    assert_eq!(dev.jwks_ttl, chrono::Duration::minutes(1));
    let ci = s.issuer("dev-ci").unwrap();
    assert_eq!(ci.actor_claim.as_deref(), Some("actor_id"));
    assert_eq!(ci.actor_issuer.as_deref(), Some("dev"));
    assert_eq!(ci.token_types.as_deref(), Some(&["JWT".to_string()][..]));

    assert_eq!(s.gates.len(), 3);
    let deploy = s.gates.get("deploy-prod").unwrap();
    // Sorted by stage, otherwise as written.
    let order: Vec<(&str, u32)> = deploy
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.stage))
        .collect();
    assert_eq!(order, [("sre", 1), ("platform", 1), ("security", 2)]);
    assert_eq!(deploy.rules[0].min_approvals, 2);
    assert_eq!(deploy.rules[0].reject_threshold, 2);
    assert_eq!(deploy.ticket, Requirement::Required);
    assert_eq!(deploy.grant.audience, "deploy-prod");
    assert_eq!(deploy.pending_ttl, chrono::Duration::hours(24));

    let db = s.gates.get("db-session").unwrap();
    assert_eq!(db.grant.audience, "db-proxy");
    assert_eq!(db.grant.ttl, chrono::Duration::minutes(30));
    assert_eq!(db.grant.max_ttl, chrono::Duration::hours(4));
    assert!(!db.grant.single_use);
    assert!(db.break_glass.is_some());
    assert!(matches!(
        db.params["rows"].ty,
        ParamType::Int {
            min: Some(1),
            max: Some(1000)
        }
    ));
    assert!(matches!(db.params["read_only"].ty, ParamType::Bool));
    assert!(db.params["rows"].validate(&"2000".into()).is_err());

    let staging = s.gates.get("deploy-staging").unwrap();
    assert!(staging.rules.is_empty());
    assert!(staging.auto_approve.is_some());
    assert_eq!(staging.description, "");
}

#[test]
fn a_missing_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let e = load(&path, &Env::empty()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].file, path);
    assert!(e.0[0].message.contains("cannot read"), "{e}");
}

/// `examples/countersign.toml`, what `check-config` is shown on, loads as shipped.
#[test]
fn the_shipped_example_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/countersign.toml");
    let s = load(&path, &Env::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.issuers.len(), 3);
    assert!(s.gates.get("deploy-prod").is_some());
    assert_eq!(s.server.signing_alg, "ES256");
}
