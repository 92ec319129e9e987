//! The demo gates (`DEMO_GATES`): they load through the normal loader after a server and an
//! issuer, and their rules say what the sandbox and the test suites rely on.

mod common;

use common::{BASE, load};
use countersign_config::DEMO_GATES;
use countersign_core::{ParamType, Requirement};
use serde_json::{Value, json};

fn principal(kind: &str, groups: &[&str], claims: Value) -> Value {
    json!({"issuer": "idp", "subject": "x", "kind": kind, "groups": groups, "claims": claims})
}

#[test]
fn the_demo_gates_load_after_a_server_and_an_issuer() {
    let s = load(&format!("{BASE}{DEMO_GATES}"));
    let names: Vec<&str> = s.gates.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["db-session", "deploy-prod", "deploy-staging"]);

    let deploy = s.gates.get("deploy-prod").unwrap();
    assert_eq!(deploy.reason, Requirement::Required);
    assert_eq!(deploy.pending_ttl, chrono::Duration::hours(2));
    assert_eq!(deploy.grant.audience, "deployer");
    assert_eq!(deploy.grant.ttl, chrono::Duration::minutes(15));
    assert_eq!(deploy.grant.max_ttl, chrono::Duration::hours(1));
    assert!(!deploy.grant.single_use);
    assert!(deploy.params["service"].required && deploy.params["version"].required);
    assert!(!deploy.params["replicas"].required);
    assert!(deploy.params["version"].validate(&"1.4.2".into()).is_ok());
    assert!(deploy.params["version"].validate(&"1 4".into()).is_err());
    let rules: Vec<&str> = deploy.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, ["sre", "security"]);

    let db = s.gates.get("db-session").unwrap();
    assert_eq!(db.grant.max_ttl, chrono::Duration::hours(4));
    let ParamType::Enum { values } = &db.params["database"].ty else {
        panic!("database is an enum")
    };
    assert_eq!(values, &["orders", "billing", "users"]);

    let staging = s.gates.get("deploy-staging").unwrap();
    let auto = staging.auto_approve.as_ref().expect("auto-approved");
    let alice = principal("human", &["dev"], json!({"team": "payments"}));
    let bob = principal("human", &["sre"], json!({"team": "platform"}));
    assert!(auto.evaluate(&[("principal", &alice)]).value);
    assert!(!auto.evaluate(&[("principal", &bob)]).value);
}

#[test]
fn security_approves_another_team_or_a_workload() {
    let s = load(&format!("{BASE}{DEMO_GATES}"));
    let security = &s.gates.get("deploy-prod").unwrap().rules[1].approvers;
    let carol = principal("human", &["security"], json!({"team": "security"}));
    let payments = principal("human", &["security"], json!({"team": "payments"}));
    let by = |requester: Value| json!({"requester": requester, "params": {}});
    let alice = by(principal("human", &["dev"], json!({"team": "payments"})));
    let ci = by(principal(
        "workload",
        &[],
        json!({"repository": "acme/app"}),
    ));
    let check = |approver: &Value, request: &Value| {
        let e = security.evaluate(&[("approver", approver), ("request", request)]);
        assert_eq!(e.error, None);
        e.value
    };
    assert!(check(&carol, &alice));
    assert!(
        !check(&payments, &alice),
        "not from the requester's own team"
    );
    assert!(check(&carol, &ci), "a workload has no team");
}
