//! Unit and property tests of eligibility, matching and outcomes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::condition::Condition;
use crate::gate::{APPROVER_VARIABLES, GrantSpec, REQUESTER_VARIABLES, Requirement};
use crate::principal::Identity;

fn rule(name: &str, group: &str, min: u32, stage: u32) -> Rule {
    Rule {
        name: name.into(),
        approvers: Condition::compile(&format!("{group:?} in approver.groups"), APPROVER_VARIABLES)
            .unwrap(),
        min_approvals: min,
        stage,
        reject_threshold: 1,
        notify: Vec::new(),
    }
}

fn gate(rules: Vec<Rule>) -> Gate {
    Gate {
        name: "deploy".into(),
        description: String::new(),
        params: BTreeMap::new(),
        requesters: Condition::compile("true", REQUESTER_VARIABLES).unwrap(),
        reason: Requirement::Optional,
        ticket: Requirement::Optional,
        pending_ttl: chrono::Duration::hours(1),
        grant: GrantSpec {
            audience: "deploy".into(),
            scope: None,
            ttl: chrono::Duration::minutes(15),
            max_ttl: chrono::Duration::minutes(15),
            single_use: false,
        },
        rules,
        auto_approve: None,
        break_glass: None,
        webhooks: Vec::new(),
        notify: Default::default(),
    }
}

fn t0() -> Timestamp {
    crate::time::from_millis(1_800_000_000_000).unwrap()
}

fn person(subject: &str, groups: &[&str]) -> Principal {
    let mut p = Principal::human("idp", subject);
    p.testing_mut().groups = groups.iter().map(|g| g.to_string()).collect();
    p.testing_mut().email = Some(format!("{subject}@example.com"));
    p
}

fn request(requester: &Principal) -> Request {
    let params = BTreeMap::new();
    Request {
        id: crate::ids::RequestId::generate(t0()),
        gate: "deploy".into(),
        params: params.clone(),
        reason: None,
        ticket: None,
        requester: requester.clone(),
        duration_secs: 900,
        digest: crate::request::content_digest("deploy", &params, None, None, 900, requester),
        state: State::Pending,
        approval: None,
        version: 1,
        created_at: t0(),
        expires_at: t0() + chrono::Duration::hours(1),
        decided_at: None,
        updated_at: t0(),
        decisions: Vec::new(),
    }
}

/// Authorizes and applies one decision, returning the new request or the refusal code.
fn act(g: &Gate, r: &Request, who: &Principal, verdict: Verdict) -> Result<Request, &'static str> {
    let permit = authorize_decision(g, r, who, verdict, t0() + chrono::Duration::minutes(1))
        .map_err(|(f, _)| f.code())?;
    Ok(decide(g, r, permit, &r.digest, None)
        .map_err(|_| "digest_mismatch")?
        .request)
}

fn two_teams() -> Gate {
    gate(vec![
        rule("sre", "sre", 1, 1),
        rule("security", "security", 1, 1),
    ])
}

#[test]
fn two_teams_need_one_each() {
    let g = two_teams();
    let alice = person("alice", &["dev"]);
    let r = request(&alice);
    let r = act(&g, &r, &person("bob", &["sre"]), Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Pending);
    assert_eq!(
        evaluate(&g.rules, &r.decisions).waiting_for(),
        vec!["security"]
    );
    let r = act(&g, &r, &person("carol", &["security"]), Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Approved);
    assert_eq!(r.approval, Some(ApprovalPath::Quorum));
    assert_eq!(r.version, 3);
}

#[test]
fn one_person_in_both_teams_fills_one_slot() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let dave = person("dave", &["sre", "security"]);
    let r = act(&g, &r, &dave, Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Pending);
    let ev = evaluate(&g.rules, &r.decisions);
    assert_eq!(ev.rules.iter().filter(|s| s.satisfied).count(), 1);
    // The same person again, and under a second identity with the same verified e-mail.
    assert_eq!(
        act(&g, &r, &dave, Verdict::Approve).unwrap_err(),
        "already_decided"
    );
    let mut dave2 = person("dave-alt", &["sre", "security"]);
    dave2.testing_mut().identity = Identity::new("other-idp", "d");
    dave2.testing_mut().email = Some("DAVE@example.com".into());
    assert_eq!(
        act(&g, &r, &dave2, Verdict::Approve).unwrap_err(),
        "already_decided"
    );
    // An SRE arriving later pushes dave onto the security slot: the matching is recomputed.
    let r = act(&g, &r, &person("bob", &["sre"]), Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Approved);
    let ev = evaluate(&g.rules, &r.decisions);
    assert_eq!(ev.rule_of(0), Some("security"));
    assert_eq!(ev.rule_of(1), Some("sre"));
}

#[test]
fn self_approval_is_refused_under_every_identity() {
    let g = two_teams();
    let alice = person("alice", &["sre", "security"]);
    let r = request(&alice);
    assert_eq!(
        act(&g, &r, &alice, Verdict::Approve).unwrap_err(),
        "self_approval"
    );
    assert_eq!(
        act(&g, &r, &alice, Verdict::Reject).unwrap_err(),
        "self_approval"
    );
    let mut alias = person("alice2", &["sre"]);
    alias.testing_mut().email = Some("alice@example.com".into());
    assert_eq!(
        act(&g, &r, &alias, Verdict::Approve).unwrap_err(),
        "self_approval"
    );
    // A CI run started by alice: alice cannot approve it.
    let mut ci = Principal::human("github", "repo:acme/app");
    ci.testing_mut().kind = PrincipalKind::Workload;
    ci.testing_mut().actor = Some(alice.identity().clone());
    let r = request(&ci);
    assert_eq!(
        act(&g, &r, &alice, Verdict::Approve).unwrap_err(),
        "self_approval"
    );
}

#[test]
fn workloads_never_decide() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let mut bot = person("bot", &["sre"]);
    bot.testing_mut().kind = PrincipalKind::Workload;
    assert_eq!(
        act(&g, &r, &bot, Verdict::Approve).unwrap_err(),
        "workload_cannot_approve"
    );
    assert_eq!(
        act(&g, &r, &bot, Verdict::Reject).unwrap_err(),
        "workload_cannot_approve"
    );
}

#[test]
fn ineligible_people_are_refused_with_reasons() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let err = authorize_decision(&g, &r, &person("mallory", &["dev"]), Verdict::Approve, t0())
        .unwrap_err();
    assert_eq!(err.0.code(), "not_eligible");
    assert_eq!(err.1.len(), 2);
    assert!(err.1.iter().all(|c| !c.eligible));
}

#[test]
fn any_eligible_reject_vetoes_unless_threshold_is_higher() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let r = act(&g, &r, &person("bob", &["sre"]), Verdict::Approve).unwrap();
    let r = act(&g, &r, &person("carol", &["security"]), Verdict::Reject).unwrap();
    assert_eq!(r.state, State::Rejected);
    assert_eq!(
        act(&g, &r, &person("frank", &["sre"]), Verdict::Approve).unwrap_err(),
        "not_pending"
    );

    let mut lenient = two_teams();
    lenient.rules[1].reject_threshold = 2;
    let r = request(&person("alice", &["dev"]));
    let r = act(
        &lenient,
        &r,
        &person("carol", &["security"]),
        Verdict::Reject,
    )
    .unwrap();
    assert_eq!(r.state, State::Pending);
    let r = act(
        &lenient,
        &r,
        &person("carl", &["security"]),
        Verdict::Reject,
    )
    .unwrap();
    assert_eq!(r.state, State::Rejected);
}

#[test]
fn later_stages_open_only_when_earlier_ones_are_met() {
    let g = gate(vec![rule("lead", "lead", 1, 1), rule("cab", "cab", 1, 2)]);
    let r = request(&person("alice", &["dev"]));
    let cab = person("cab1", &["cab"]);
    let (refusal, _) = authorize_decision(&g, &r, &cab, Verdict::Approve, t0()).unwrap_err();
    assert_eq!(refusal, Refusal::NotEligible { later_stage: true });
    // A later-stage approver may still veto.
    assert!(authorize_decision(&g, &r, &cab, Verdict::Reject, t0()).is_ok());
    let r = act(&g, &r, &person("lead1", &["lead"]), Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Pending);
    let r = act(&g, &r, &cab, Verdict::Approve).unwrap();
    assert_eq!(r.state, State::Approved);
}

#[test]
fn expiry_is_evaluated_at_decision_time() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let late = r.expires_at;
    let (refusal, _) =
        authorize_decision(&g, &r, &person("bob", &["sre"]), Verdict::Approve, late).unwrap_err();
    assert_eq!(refusal, Refusal::NotPending(State::Expired));
}

#[test]
fn a_stale_digest_is_refused() {
    let g = two_teams();
    let r = request(&person("alice", &["dev"]));
    let permit =
        authorize_decision(&g, &r, &person("bob", &["sre"]), Verdict::Approve, t0()).unwrap();
    let other = Digest::of_json(&serde_json::json!({"something": "else"}));
    assert!(decide(&g, &r, permit, &other, None).is_err());
}

#[test]
fn a_failing_condition_counts_as_not_eligible() {
    let mut g = two_teams();
    g.rules[0].approvers =
        Condition::compile("approver.claims.team == 'platform'", APPROVER_VARIABLES).unwrap();
    let r = request(&person("alice", &["dev"]));
    let (refusal, checks) =
        authorize_decision(&g, &r, &person("bob", &["sre"]), Verdict::Approve, t0()).unwrap_err();
    assert_eq!(refusal.code(), "not_eligible");
    assert!(checks[0].error.is_some());
}

#[test]
fn a_prepared_approver_answers_as_authorize_decision_does() {
    let mut g = gate(vec![
        rule("lead", "lead", 1, 1),
        rule("sre", "sre", 2, 1),
        rule("cab", "cab", 1, 2),
    ]);
    g.rules[1].approvers = Condition::compile(
        r#""sre" in approver.groups && approver.claims.oncall == true"#,
        APPROVER_VARIABLES,
    )
    .unwrap();
    let alice = person("alice", &["dev"]);
    let fresh = request(&alice);
    let led = act(&g, &fresh, &person("lead1", &["lead"]), Verdict::Approve).unwrap();
    let mut bot = person("bot", &["lead"]);
    bot.testing_mut().kind = PrincipalKind::Workload;
    let mut alias = person("alice2", &["lead"]);
    alias.testing_mut().email = Some("alice@example.com".into());
    let mut oncall = person("sam", &["sre"]);
    oncall
        .testing_mut()
        .claims
        .insert("oncall".into(), Value::Bool(true));
    let people = [
        person("lead2", &["lead"]),
        person("lead1", &["lead"]),
        person("cab1", &["cab"]),
        person("sid", &["sre"]),
        oncall,
        person("mallory", &["dev"]),
        bot,
        alias,
    ];
    let t1 = t0() + chrono::Duration::minutes(1);
    for now in [t1, fresh.expires_at] {
        for r in [&fresh, &led] {
            for who in &people {
                let prepared = Approver::new(who, now);
                assert_eq!(
                    prepared.may_approve(&g, r),
                    authorize_decision(&g, r, who, Verdict::Approve, now).is_ok(),
                    "{} at {now} with {} decisions",
                    who.identity(),
                    r.decisions.len()
                );
                assert_eq!(
                    prepared.checks(&g, r),
                    approver_checks(&g, r, who, now),
                    "{}",
                    who.identity()
                );
            }
        }
    }
    // The same prepared approver serves several requests.
    let carol = person("carol", &["lead", "cab"]);
    let prepared = Approver::new(&carol, t1);
    assert!(prepared.may_approve(&g, &fresh));
    assert!(prepared.may_approve(&g, &led));
    assert!(!prepared.may_approve(&g, &request(&carol)));
}

// ---- properties of the matching ----

fn rules_strategy() -> impl Strategy<Value = Vec<(u32, u32)>> {
    // (min_approvals, stage) per rule
    prop::collection::vec((1u32..=3, 1u32..=2), 1..=4)
}

fn decisions_strategy(n_rules: usize) -> impl Strategy<Value = Vec<(Vec<bool>, bool)>> {
    // per decision: eligibility per rule, approve?
    prop::collection::vec(
        (
            prop::collection::vec(any::<bool>(), n_rules),
            prop::bool::weighted(0.85),
        ),
        0..=7,
    )
}

fn build(rules: &[(u32, u32)], decisions: &[(Vec<bool>, bool)]) -> (Vec<Rule>, Vec<Decision>) {
    let rules: Vec<Rule> = rules
        .iter()
        .enumerate()
        .map(|(i, (min, stage))| rule(&format!("r{i}"), "g", *min, *stage))
        .collect();
    let decisions = decisions
        .iter()
        .enumerate()
        .map(|(i, (elig, approve))| Decision {
            approver: person(&format!("p{i}"), &[]),
            verdict: if *approve {
                Verdict::Approve
            } else {
                Verdict::Reject
            },
            comment: None,
            digest: Digest::of_json(&serde_json::json!(null)),
            at: t0(),
            eligible_rules: elig
                .iter()
                .enumerate()
                .filter(|(_, e)| **e)
                .map(|(r, _)| format!("r{r}"))
                .collect(),
        })
        .collect();
    (rules, decisions)
}

/// The most slots any assignment can fill, by exhaustive search (small inputs only).
fn brute_force_max(rules: &[Rule], decisions: &[Decision]) -> usize {
    fn go(i: usize, rules: &[Rule], decisions: &[Decision], used: &mut Vec<u32>) -> usize {
        if i == decisions.len() {
            return 0;
        }
        let mut best = go(i + 1, rules, decisions, used);
        if decisions[i].verdict == Verdict::Approve {
            for (r, rule) in rules.iter().enumerate() {
                if decisions[i].eligible_rules.contains(&rule.name) && used[r] < rule.min_approvals
                {
                    used[r] += 1;
                    best = best.max(1 + go(i + 1, rules, decisions, used));
                    used[r] -= 1;
                }
            }
        }
        best
    }
    go(0, rules, decisions, &mut vec![0; rules.len()])
}

proptest! {
    #[test]
    fn matching_is_maximum_and_respects_eligibility(
        (rules, decisions) in rules_strategy().prop_flat_map(|r| { let n = r.len(); (Just(r), decisions_strategy(n)) })
    ) {
        let (rules, decisions) = build(&rules, &decisions);
        let ev = evaluate(&rules, &decisions);
        let filled: usize = ev.rules.iter().map(|s| s.approvals.len()).sum();
        prop_assert_eq!(filled, brute_force_max(&rules, &decisions));
        for (d, assigned) in ev.assignment.iter().enumerate() {
            if let Some(r) = assigned {
                prop_assert_eq!(decisions[d].verdict, Verdict::Approve);
                prop_assert!(decisions[d].eligible_rules.contains(&rules[*r].name));
            }
        }
        for (s, rule) in ev.rules.iter().zip(&rules) {
            prop_assert!(s.approvals.len() <= rule.min_approvals as usize);
            prop_assert_eq!(s.satisfied, s.approvals.len() == rule.min_approvals as usize);
        }
        let vetoed = ev.rules.iter().zip(&rules).any(|(s, r)| s.rejections >= r.reject_threshold);
        match ev.outcome {
            Outcome::Approved => prop_assert!(!vetoed && ev.rules.iter().all(|s| s.satisfied)),
            Outcome::Rejected { .. } => prop_assert!(vetoed),
            Outcome::Pending => prop_assert!(!vetoed && ev.rules.iter().any(|s| !s.satisfied)),
        }
    }

    #[test]
    fn order_of_decisions_does_not_change_the_outcome(
        (rules, decisions, seed) in rules_strategy().prop_flat_map(|r| { let n = r.len(); (Just(r), decisions_strategy(n), any::<u64>()) })
    ) {
        let (rules, decisions) = build(&rules, &decisions);
        let mut shuffled = decisions.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let a = evaluate(&rules, &decisions);
        let b = evaluate(&rules, &shuffled);
        prop_assert_eq!(&a.outcome, &b.outcome);
        let count = |e: &Evaluation| e.rules.iter().map(|s| s.approvals.len()).sum::<usize>();
        prop_assert_eq!(count(&a), count(&b));
    }
}

// ---- notification routing (crate::notice) ----

fn notifying() -> Gate {
    let mut lead = rule("lead", "sre", 1, 1);
    lead.notify = vec!["sre-slack".into()];
    let mut board = rule("board", "security", 2, 2);
    board.notify = vec!["board-mail".into()];
    let mut g = gate(vec![lead, board]);
    g.notify.channels = vec!["all-teams".into()];
    g.notify.remind = vec![chrono::Duration::minutes(30), chrono::Duration::minutes(5)];
    g.notify.escalate_after = Some(chrono::Duration::minutes(15));
    g.notify.escalate_to = vec!["oncall".into()];
    g.notify.notify_requester = true;
    g.notify.requester_channel = Some("board-mail".into());
    g
}

fn routed(messages: &[crate::notice::NoticeMessage]) -> Vec<(String, &'static str, bool, i64)> {
    let mut out: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.channel.clone(),
                m.kind.as_str(),
                m.to_requester,
                (m.due_at - t0()).num_minutes(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_new_request_is_announced_to_the_open_stage_and_scheduled() {
    use crate::notice::on_create;
    let g = notifying();
    let r = request(&person("alice", &["dev"]));
    let e = evaluate(&g.rules, &r.decisions);
    let got = routed(&on_create(&g, &r, &e, t0()));
    let s = |c: &str, k, m| (c.to_owned(), k, false, m);
    assert_eq!(
        got,
        vec![
            s("all-teams", "created", 0),
            s("all-teams", "reminder", 30),
            s("all-teams", "reminder", 55),
            s("board-mail", "reminder", 30),
            s("board-mail", "reminder", 55),
            s("oncall", "escalated", 15),
            s("sre-slack", "created", 0),
            s("sre-slack", "reminder", 30),
            s("sre-slack", "reminder", 55),
        ],
        "stage 2's channel hears nothing until stage 2 opens; reminders to every channel that may still hear then"
    );
    let mut approved = r.clone();
    approved.state = State::Approved;
    assert!(
        on_create(&g, &approved, &e, t0()).is_empty(),
        "an auto-approved request announces nothing"
    );
}

#[test]
fn a_stage_opening_announces_to_its_channels_and_the_outcome_goes_everywhere() {
    use crate::notice::{hearing, on_change};
    let g = notifying();
    let alice = person("alice", &["dev"]);
    let r0 = request(&alice);
    let e0 = evaluate(&g.rules, &r0.decisions);
    let r1 = act(&g, &r0, &person("bob", &["sre"]), Verdict::Approve).unwrap();
    let e1 = evaluate(&g.rules, &r1.decisions);
    let got = routed(&on_change(&g, &e0, &r1, &e1, false, t0()));
    let s = |c: &str, k| (c.to_owned(), k, false, 0);
    assert_eq!(
        got,
        vec![
            s("all-teams", "progress"),
            s("board-mail", "created"),
            s("sre-slack", "progress")
        ],
        "the lead's channel hears its rule is met; the board's channel hears once stage 2 opens"
    );
    assert_eq!(
        hearing(&g, &e1).into_iter().collect::<Vec<_>>(),
        vec!["all-teams", "board-mail"],
        "a met rule's channel stops hearing (reminders skip it)"
    );
    let r2 = act(&g, &r1, &person("carol", &["security"]), Verdict::Approve).unwrap();
    let e2 = evaluate(&g.rules, &r2.decisions);
    let r3 = act(&g, &r2, &person("dave", &["security"]), Verdict::Approve).unwrap();
    assert_eq!(r3.state, State::Approved);
    let e3 = evaluate(&g.rules, &r3.decisions);
    let got = routed(&on_change(&g, &e2, &r3, &e3, false, t0()));
    assert_eq!(
        got,
        vec![
            s("all-teams", "decided"),
            s("board-mail", "decided"),
            ("board-mail".to_owned(), "decided", true, 0),
            s("oncall", "decided"),
            s("sre-slack", "decided"),
        ],
        "the outcome goes wherever the request may have been announced (the worker sends it \
         only where it was), and to the requester"
    );
}

#[test]
fn a_requester_who_cancels_is_not_told_and_quiet_gates_cost_nothing() {
    use crate::notice::on_change;
    let g = notifying();
    let r0 = request(&person("alice", &["dev"]));
    let e0 = evaluate(&g.rules, &r0.decisions);
    let mut cancelled = r0.clone();
    cancelled.state = State::Cancelled;
    let got = routed(&on_change(&g, &e0, &cancelled, &e0, true, t0()));
    assert!(
        got.iter()
            .all(|(_, k, to_requester, _)| *k == "decided" && !to_requester),
        "{got:?}"
    );
    assert!(!two_teams().notifies());
    assert!(g.notifies());
}
