//! The S4 data set: a year of requests (nearly all decided, a few thousand still pending) and
//! their chained audit events, written straight into a SQLite file with multi-row inserts in
//! large transactions.
//!
//! Rows are built from the core's own types and encoded as the store encodes them (timestamps
//! in Unix milliseconds, JSON as text), and every event is chained with `AuditEvent::chain`, the
//! chain head row included, so the server reads the file like one it wrote itself and
//! `countersign audit verify` accepts it. The schema is the store's: its migrations run first;
//! the secondary indexes are dropped while loading and recreated from their own SQL afterwards.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use countersign_core::audit::{Actor, AuditAction, AuditEvent, GENESIS_HASH, NewAuditEvent};
use countersign_core::principal::VerifiedClaims;
use countersign_core::request::content_digest;
use countersign_core::time::{from_millis, rfc3339};
use countersign_core::{Digest, Identity, Principal, PrincipalKind, RequestId, Timestamp};
use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput};
use serde_json::{Map, Value, json};

/// The configured name of the people's issuer (the bench configuration's `[[issuers]]`).
pub const ISSUER: &str = "idp";
/// How long a request may stay pending (the `pending_ttl` of every gate seeded).
const PENDING_TTL_MS: i64 = 2 * 3600 * 1000;
/// Rows per INSERT statement: well under SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 256;
/// Requests per generated batch, written in one transaction.
const BATCH: usize = 10_000;

/// How much to seed.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Requests in all.
    pub requests: usize,
    /// Audit events in all (at least what the requests' histories need).
    pub events: usize,
    /// Requests still pending, the newest ones.
    pub pending: usize,
}

/// What was written.
#[derive(Debug)]
pub struct Seeded {
    /// Every request id, oldest first.
    pub ids: Vec<RequestId>,
    /// Row counts per table.
    pub requests: usize,
    pub pending: usize,
    pub decisions: usize,
    pub events: usize,
    pub grants: usize,
    /// Wall time, migrations and index builds included.
    pub elapsed: Duration,
    /// Of which: building rows and chaining events (one thread, alongside the inserts),
    /// inserting, and building the secondary indexes afterwards.
    pub generating: Duration,
    pub inserting: Duration,
    pub indexing: Duration,
    /// The database file's size afterwards.
    pub file_bytes: u64,
}

/// The gates the data set uses, as the bench configuration defines them (`deploy-prod` from
/// the demo gates); see [`crate::scenarios::config`].
#[derive(Debug, Clone, Copy)]
enum Gate {
    DeployProd,
    DbMigrate,
    ProdShell,
}

impl Gate {
    fn name(self) -> &'static str {
        match self {
            Gate::DeployProd => "deploy-prod",
            Gate::DbMigrate => "db-migrate",
            Gate::ProdShell => "prod-shell",
        }
    }

    /// The grant's default window (the gate's `grant.ttl`), in seconds.
    fn ttl_secs(self) -> i64 {
        match self {
            Gate::DeployProd => 900,
            Gate::DbMigrate => 1800,
            Gate::ProdShell => 3600,
        }
    }

    fn audience(self) -> &'static str {
        match self {
            Gate::DeployProd => "deployer",
            Gate::DbMigrate => "dba",
            Gate::ProdShell => "bastion",
        }
    }

    /// Parameters, reason and the grant's scope, varied by `r`.
    fn content(self, r: u64) -> (BTreeMap<String, Value>, String, String) {
        const SERVICES: [&str; 8] = [
            "api", "billing", "search", "checkout", "auth", "ledger", "mailer", "web",
        ];
        const DATABASES: [&str; 4] = ["orders", "users", "payments", "inventory"];
        let pick = |n: usize| (r >> 16) as usize % n;
        let mut params = BTreeMap::new();
        match self {
            Gate::DeployProd => {
                let service = SERVICES[pick(SERVICES.len())];
                let version = format!("1.{}.{}", (r >> 24) % 40, (r >> 32) % 20);
                let reason = format!("release {version} of {service}");
                params.insert("service".into(), Value::from(service));
                params.insert("version".into(), Value::from(version));
                (params, reason, format!("deploy:{service}"))
            }
            Gate::DbMigrate => {
                let database = DATABASES[pick(DATABASES.len())];
                let migration = format!("{:04}_schema_change", (r >> 24) % 5000);
                let reason = format!("apply {migration} to {database}");
                params.insert("database".into(), Value::from(database));
                params.insert("migration".into(), Value::from(migration));
                (params, reason, format!("migrate:{database}"))
            }
            Gate::ProdShell => {
                let host = format!("web-{:02}", pick(24));
                let reason = format!("investigate incident on {host}");
                params.insert("host".into(), Value::from(host.clone()));
                (params, reason, format!("shell:{host}"))
            }
        }
    }
}

/// How a request ends up. A cycle of 20 decided requests carries 80 events (4 on average):
/// 10 approved and redeemed, 3 approved, 2 rejected, 3 expired, 2 cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// created, approve (sre), approve (security), approved, grant issued.
    Redeemed,
    /// created, approve, approve, approved.
    Approved,
    /// created, approve (sre), reject (security), rejected.
    Rejected,
    /// created, expired.
    Expired,
    /// created, cancelled.
    Cancelled,
    /// created; still pending.
    Waiting,
    /// created, approve (sre); still pending, waiting for security.
    HalfApproved,
}

const CYCLE: [Fate; 20] = {
    use Fate::{Approved as A, Cancelled as C, Expired as E, Redeemed as G, Rejected as R};
    [G, G, A, G, R, G, E, G, C, G, G, A, G, E, G, R, G, C, A, E]
};

impl Fate {
    fn of(i: usize, size: &Size) -> Fate {
        if i >= size.requests - size.pending {
            if i.is_multiple_of(3) {
                Fate::HalfApproved
            } else {
                Fate::Waiting
            }
        } else {
            CYCLE[i % CYCLE.len()]
        }
    }

    fn events(self) -> usize {
        match self {
            Fate::Redeemed => 5,
            Fate::Approved | Fate::Rejected => 4,
            Fate::Expired | Fate::Cancelled | Fate::HalfApproved => 2,
            Fate::Waiting => 1,
        }
    }
}

/// A well-mixed 64-bit value of `x` (splitmix64): the data set is the same on every run.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A person as the people's issuer vouches for them, with the claims of an access token.
#[derive(Debug)]
struct Person {
    principal: Principal,
    /// `principal` as stored with a request (claims kept).
    json: String,
    /// Its summary as stored with a decision (claims dropped).
    summary_json: String,
}

fn person(issuer_url: &str, sub: &str, name: &str, groups: &[&str], team: &str) -> Person {
    let email = format!("{sub}@example.com");
    let mut claims = Map::new();
    for (k, v) in [
        ("iss", json!(issuer_url)),
        ("sub", json!(sub)),
        ("aud", json!("api://countersign")),
        ("client_id", json!("countersign-cli")),
        ("scope", json!("openid countersign")),
        ("name", json!(name)),
        ("preferred_username", json!(sub)),
        ("email", json!(email)),
        ("email_verified", json!(true)),
        ("groups", json!(groups)),
        ("team", json!(team)),
    ] {
        claims.insert(k.into(), v);
    }
    let principal = Principal::from_verified(VerifiedClaims {
        identity: Identity::new(ISSUER, sub),
        kind: PrincipalKind::Human,
        name: Some(name.into()),
        email: Some(email),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        claims,
        auth_time: None,
        actor: None,
    });
    let json = serde_json::to_string(&principal).unwrap_or_default();
    let summary_json = serde_json::to_string(&principal.summary()).unwrap_or_default();
    Person {
        principal,
        json,
        summary_json,
    }
}

/// One stored value.
#[derive(Debug)]
enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_owned())
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell::Null, Into::into)
    }
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Cell::Int(v) => v.to_sql(),
            Cell::Text(v) => v.to_sql(),
            Cell::Null => rusqlite::types::Null.to_sql(),
        }
    }
}

/// A table as loaded: its name and columns, in the order rows are pushed.
#[derive(Debug)]
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

const REQUESTS: Table = Table {
    name: "requests",
    columns: &[
        "id",
        "gate",
        "state",
        "approval",
        "version",
        "params",
        "reason",
        "ticket",
        "requester",
        "requester_issuer",
        "requester_subject",
        "duration_secs",
        "digest",
        "created_at",
        "expires_at",
        "decided_at",
        "updated_at",
    ],
};

const DECISIONS: Table = Table {
    name: "decisions",
    columns: &[
        "request_id",
        "ordinal",
        "approver_issuer",
        "approver_subject",
        "approver",
        "verdict",
        "comment",
        "digest",
        "at",
        "eligible_rules",
    ],
};

const EVENTS: Table = Table {
    name: "audit_events",
    columns: &[
        "seq",
        "at",
        "actor_issuer",
        "actor_subject",
        "action",
        "request_id",
        "digest",
        "detail",
        "prev_hash",
        "hash",
    ],
};

const GRANTS: Table = Table {
    name: "grants",
    columns: &[
        "jti",
        "request_id",
        "kid",
        "issued_at",
        "expires_at",
        "revoked_at",
        "single_use_request",
    ],
};

/// The rows of a run of requests, ready to insert.
#[derive(Debug, Default)]
struct Batch {
    requests: Vec<Cell>,
    decisions: Vec<Cell>,
    events: Vec<Cell>,
    grants: Vec<Cell>,
}

/// Builds the requests one after the other, chaining their events as it goes.
#[derive(Debug)]
struct Generator {
    size: Size,
    requesters: Vec<Person>,
    sre: Vec<Person>,
    security: Vec<Person>,
    /// The first request's creation, and the spacing of decided and pending requests.
    start_ms: i64,
    decided_step_ms: i64,
    pending_start_ms: i64,
    pending_step_ms: i64,
    /// Filler events (failed sign-ins) to spread between requests to reach `size.events`.
    filler: usize,
    seq: i64,
    head: String,
    ids: Vec<RequestId>,
    decisions: usize,
    grants: usize,
}

fn millis(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> Timestamp {
    from_millis(ms).unwrap_or_default()
}

impl Generator {
    fn new(size: Size, issuer_url: &str, now: Timestamp) -> Self {
        let p = |sub, name, groups: &[&str], team| person(issuer_url, sub, name, groups, team);
        let requesters = vec![
            p("alice", "Alice Adams", &["dev"], "payments"),
            p("hugo", "Hugo Hall", &["dev"], "payments"),
            p("ines", "Ines Ito", &["dev"], "search"),
            p("jack", "Jack Jones", &["dev"], "search"),
            p("kate", "Kate King", &["dev"], "checkout"),
            p("liam", "Liam Lee", &["dev"], "checkout"),
            p("mona", "Mona Moss", &["dev"], "data"),
            p("nick", "Nick Nash", &["dev"], "data"),
        ];
        let sre = vec![
            p("bob", "Bob Baker", &["sre"], "platform"),
            p("frank", "Frank Foster", &["sre"], "platform"),
            p("oscar", "Oscar Ortiz", &["sre"], "platform"),
        ];
        let security = vec![
            p("carol", "Carol Chen", &["security"], "security"),
            p("pia", "Pia Park", &["security"], "security"),
            p("quinn", "Quinn Quade", &["security"], "security"),
        ];
        let planned: usize = (0..size.requests)
            .map(|i| Fate::of(i, &size).events())
            .sum();
        let now_ms = millis(&now);
        let decided = (size.requests - size.pending).max(1) as i64;
        // Decided requests over the last year, up to three hours ago; pending ones over the
        // last hour, so none is past its two-hour expiry while the bench runs.
        let start_ms = now_ms - 365 * 24 * 3600 * 1000;
        let decided_span = now_ms - 3 * 3600 * 1000 - start_ms;
        let pending_start_ms = now_ms - 3600 * 1000;
        Self {
            size,
            requesters,
            sre,
            security,
            start_ms,
            decided_step_ms: (decided_span / decided).max(1),
            pending_start_ms,
            pending_step_ms: (58 * 60 * 1000 / size.pending.max(1) as i64).max(1),
            filler: size.events.saturating_sub(planned),
            seq: 0,
            head: GENESIS_HASH.to_owned(),
            ids: Vec::with_capacity(size.requests),
            decisions: 0,
            grants: 0,
        }
    }

    fn event(
        &mut self,
        b: &mut Batch,
        at_ms: i64,
        actor: Actor,
        action: AuditAction,
        request: Option<(RequestId, &Digest)>,
        detail: Value,
    ) {
        let e = AuditEvent::chain(
            NewAuditEvent {
                at: at(at_ms),
                actor,
                action,
                request_id: request.map(|(id, _)| id),
                digest: request.map(|(_, d)| d.clone()),
                detail,
            },
            self.seq,
            &self.head,
        );
        self.seq = e.seq;
        self.head.clone_from(&e.hash);
        let detail = serde_json::to_string(&e.detail).unwrap_or_default();
        b.events.extend([
            Cell::Int(e.seq),
            Cell::Int(at_ms),
            Cell::Text(e.actor.issuer),
            Cell::Text(e.actor.subject),
            Cell::Text(e.action),
            e.request_id.map(|id| id.to_string()).into(),
            e.digest.map(|d| d.to_string()).into(),
            Cell::Text(detail),
            Cell::Text(e.prev_hash),
            Cell::Text(e.hash),
        ]);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per column of the decision row it writes"
    )]
    fn decision(
        &mut self,
        b: &mut Batch,
        id: RequestId,
        digest: &Digest,
        gate: Gate,
        ordinal: i64,
        approver: &Person,
        rule: &str,
        approve: bool,
        at_ms: i64,
    ) {
        let (verdict, comment) = if approve {
            ("approve", "lgtm")
        } else {
            ("reject", "not during the release freeze")
        };
        let who = &approver.principal;
        b.decisions.extend([
            Cell::Text(id.to_string()),
            Cell::Int(ordinal),
            Cell::from(ISSUER),
            Cell::Text(who.identity().subject.clone()),
            Cell::Text(approver.summary_json.clone()),
            Cell::from(verdict),
            Cell::from(comment),
            Cell::Text(digest.to_string()),
            Cell::Int(at_ms),
            Cell::Text(format!("[\"{rule}\"]")),
        ]);
        self.decisions += 1;
        let detail = json!({
            "gate": gate.name(),
            "rule": approve.then_some(rule),
            "eligible_rules": [rule],
            "comment": comment,
            "approver_name": who.name(),
            "approver_email": who.email(),
        });
        self.event(
            b,
            at_ms,
            Actor::from(who.identity()),
            if approve {
                AuditAction::DecisionApprove
            } else {
                AuditAction::DecisionReject
            },
            Some((id, digest)),
            detail,
        );
    }

    fn request(&mut self, b: &mut Batch, i: usize) {
        let r = mix(i as u64);
        let fate = Fate::of(i, &self.size);
        let gate = match r % 20 {
            0..12 => Gate::DeployProd,
            12..17 => Gate::DbMigrate,
            _ => Gate::ProdShell,
        };
        let requester = (r >> 8) as usize % self.requesters.len();
        let sre = (r >> 12) as usize % self.sre.len();
        let security = (r >> 14) as usize % self.security.len();
        let decided = self.size.requests - self.size.pending;
        let created_ms = if i < decided {
            self.start_ms + i as i64 * self.decided_step_ms
        } else {
            self.pending_start_ms + (i - decided) as i64 * self.pending_step_ms
        };
        let (params, reason, scope) = gate.content(r);
        let duration_secs = gate.ttl_secs();
        let who = &self.requesters[requester].principal;
        let digest = content_digest(
            gate.name(),
            &params,
            Some(&reason),
            None,
            duration_secs,
            who,
        );
        let id = RequestId::generate(at(created_ms));
        self.ids.push(id);
        let requester_actor = Actor::from(who.identity());
        let requester_json = self.requesters[requester].json.clone();
        let requester_subject = who.identity().subject.clone();
        let params_json = serde_json::to_string(&params).unwrap_or_default();
        self.event(
            b,
            created_ms,
            requester_actor.clone(),
            AuditAction::RequestCreated,
            Some((id, &digest)),
            json!({
                "gate": gate.name(),
                "params": params,
                "reason": reason,
                "ticket": null,
                "duration_seconds": duration_secs,
                "requester_kind": "human",
                "requester_actor": null,
            }),
        );
        let expires_ms = created_ms + PENDING_TTL_MS;
        let sre_ms = created_ms + 5 * 60 * 1000 + (r >> 40) as i64 % 600_000;
        let security_ms = sre_ms + 7 * 60 * 1000 + (r >> 44) as i64 % 600_000;
        let quorum = |g: &Generator| {
            json!({
                "gate": gate.name(),
                "path": "quorum",
                "rules": [
                    {"name": "sre", "approvers": [{"issuer": ISSUER, "subject": g.sre[sre].principal.identity().subject}]},
                    {"name": "security", "approvers": [{"issuer": ISSUER, "subject": g.security[security].principal.identity().subject}]},
                ],
            })
        };
        let both = |g: &mut Generator, b: &mut Batch, second_approves: bool| {
            let (s, c) = (std::mem::take(&mut g.sre), std::mem::take(&mut g.security));
            g.decision(b, id, &digest, gate, 1, &s[sre], "sre", true, sre_ms);
            g.decision(
                b,
                id,
                &digest,
                gate,
                2,
                &c[security],
                "security",
                second_approves,
                security_ms,
            );
            g.sre = s;
            g.security = c;
        };
        // (state, approval, version, decided_at)
        let (state, approval, version, decided_ms): (&str, Option<&str>, i64, Option<i64>) =
            match fate {
                Fate::Redeemed | Fate::Approved => {
                    both(self, b, true);
                    let detail = quorum(self);
                    self.event(
                        b,
                        security_ms,
                        Actor::from(self.security[security].principal.identity()),
                        AuditAction::RequestApproved,
                        Some((id, &digest)),
                        detail,
                    );
                    if fate == Fate::Redeemed {
                        let issued_ms = security_ms + 60_000 + (r >> 48) as i64 % 300_000;
                        let ends_ms = issued_ms + duration_secs * 1000;
                        let jti = format!("{:016x}{:016x}", mix(r), mix(!r));
                        b.grants.extend([
                            Cell::Text(jti.clone()),
                            Cell::Text(id.to_string()),
                            Cell::from("seed-key"),
                            Cell::Int(issued_ms),
                            Cell::Int(ends_ms),
                            Cell::Null,
                            Cell::Null,
                        ]);
                        self.grants += 1;
                        self.event(
                            b,
                            issued_ms,
                            requester_actor.clone(),
                            AuditAction::GrantIssued,
                            Some((id, &digest)),
                            json!({
                                "jti": jti,
                                "kid": "seed-key",
                                "audience": gate.audience(),
                                "scope": scope,
                                "expires_at": rfc3339(&at(ends_ms)),
                                "single_use": false,
                            }),
                        );
                    }
                    ("approved", Some("quorum"), 3, Some(security_ms))
                }
                Fate::Rejected => {
                    both(self, b, false);
                    self.event(
                        b,
                        security_ms,
                        Actor::from(self.security[security].principal.identity()),
                        AuditAction::RequestRejected,
                        Some((id, &digest)),
                        json!({"gate": gate.name(), "rule": "security"}),
                    );
                    ("rejected", None, 3, Some(security_ms))
                }
                Fate::Expired => {
                    self.event(
                        b,
                        expires_ms,
                        Actor::system(),
                        AuditAction::RequestExpired,
                        Some((id, &digest)),
                        json!({"gate": gate.name(), "expires_at": rfc3339(&at(expires_ms))}),
                    );
                    ("expired", None, 2, Some(expires_ms))
                }
                Fate::Cancelled => {
                    let cancelled_ms = created_ms + 20 * 60 * 1000;
                    self.event(
                        b,
                        cancelled_ms,
                        requester_actor.clone(),
                        AuditAction::RequestCancelled,
                        Some((id, &digest)),
                        json!({"gate": gate.name(), "reason": "not needed any more"}),
                    );
                    ("cancelled", None, 2, Some(cancelled_ms))
                }
                Fate::HalfApproved => {
                    let s = std::mem::take(&mut self.sre);
                    // Pending requests were created within the hour: the approval lands a
                    // minute later, before now.
                    self.decision(
                        b,
                        id,
                        &digest,
                        gate,
                        1,
                        &s[sre],
                        "sre",
                        true,
                        created_ms + 60_000,
                    );
                    self.sre = s;
                    ("pending", None, 2, None)
                }
                Fate::Waiting => ("pending", None, 1, None),
            };
        let updated_ms = match fate {
            Fate::HalfApproved => created_ms + 60_000,
            _ => decided_ms.unwrap_or(created_ms),
        };
        b.requests.extend([
            Cell::Text(id.to_string()),
            Cell::from(gate.name()),
            Cell::from(state),
            approval.into(),
            Cell::Int(version),
            Cell::Text(params_json),
            Cell::Text(reason),
            Cell::Null,
            Cell::Text(requester_json),
            Cell::from(ISSUER),
            Cell::Text(requester_subject),
            Cell::Int(duration_secs),
            Cell::Text(digest.to_string()),
            Cell::Int(created_ms),
            Cell::Int(expires_ms),
            decided_ms.into(),
            Cell::Int(updated_ms),
        ]);
        // Failed sign-ins (expired or foreign tokens), spread evenly between requests.
        let n = self.size.requests;
        let due = (i + 1) * self.filler / n - i * self.filler / n;
        for k in 0..due {
            self.event(
                b,
                created_ms + 1 + k as i64,
                Actor::anonymous(),
                AuditAction::AuthFailed,
                None,
                json!({"reason": "invalid_token", "detail": {"error": "the token has expired"}}),
            );
        }
    }

    fn batch(&mut self, from: usize, to: usize) -> Batch {
        let mut b = Batch::default();
        for i in from..to {
            self.request(&mut b, i);
        }
        b
    }
}

/// Inserts `cells` (whole rows of `table`) with multi-row statements.
fn insert(conn: &Connection, table: &Table, cells: &[Cell]) -> anyhow::Result<()> {
    let width = table.columns.len();
    for rows in cells.chunks(ROWS_PER_STATEMENT * width) {
        let n = rows.len() / width;
        let row = format!("({})", vec!["?"; width].join(", "));
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            table.name,
            table.columns.join(", "),
            vec![row; n].join(", ")
        );
        // Two statement shapes per table (full chunks and the last one): both stay prepared.
        conn.prepare_cached(&sql)
            .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(rows)))
            .with_context(|| format!("inserting into {}", table.name))?;
    }
    Ok(())
}

/// Creates `path` with the store's schema and fills it; `issuer_url` is the people's issuer
/// (it appears in the stored claims), `now` the end of the simulated year.
pub async fn seed(
    path: &Path,
    size: Size,
    issuer_url: &str,
    now: Timestamp,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let url = format!("sqlite://{}", path.display());
    let store = countersign_store::SqliteStore::connect(&url).await?;
    store.migrate().await?;
    store.close().await;

    // Rows are built on one blocking thread while another writes the previous batch.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
    let issuer_url = issuer_url.to_owned();
    let generator = tokio::task::spawn_blocking(move || {
        let mut g = Generator::new(size, &issuer_url, now);
        let mut busy = Duration::ZERO;
        let mut from = 0;
        while from < size.requests {
            let to = (from + BATCH).min(size.requests);
            let t = Instant::now();
            let batch = g.batch(from, to);
            busy += t.elapsed();
            if tx.send(batch).is_err() {
                break;
            }
            from = to;
        }
        (g, busy)
    });
    let file = path.to_owned();
    let loader = tokio::task::spawn_blocking(move || load(&file, &rx));
    let (g, generating) = generator.await.context("the row generator failed")?;
    let (conn, indexes, inserting) = loader.await.context("the loader failed")??;
    conn.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
        (g.seq, &g.head),
    )?;
    let indexing = Instant::now();
    for (name, sql) in indexes {
        conn.execute_batch(&sql)
            .with_context(|| format!("recreating index {name}"))?;
    }
    let indexing = indexing.elapsed();
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.close().map_err(|(_, e)| e)?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(Seeded {
        requests: g.ids.len(),
        pending: size.pending,
        decisions: g.decisions,
        events: usize::try_from(g.seq).unwrap_or_default(),
        grants: g.grants,
        ids: g.ids,
        elapsed: started.elapsed(),
        generating,
        inserting,
        indexing,
        file_bytes,
    })
}

/// The secondary indexes dropped while loading: each one's name and SQL.
type Indexes = Vec<(String, String)>;

/// Opens the seed database alone, drops its secondary indexes and writes every batch from
/// `batches` in a transaction of its own: the connection, the indexes to recreate, and the
/// time spent inserting.
fn load(
    path: &Path,
    batches: &std::sync::mpsc::Receiver<Batch>,
) -> anyhow::Result<(Connection, Indexes, Duration)> {
    // One connection, no journal, no fsync: a failed seed is thrown away anyway.
    let conn = Connection::open(path).context("opening the seed database")?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; \
         PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY; \
         PRAGMA locking_mode = EXCLUSIVE;",
    )?;
    let indexes = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
             AND tbl_name IN ('requests', 'decisions', 'audit_events', 'grants')",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Indexes, _>>()?;
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}"))?;
    }
    let mut inserting = Duration::ZERO;
    while let Ok(b) = batches.recv() {
        let started = Instant::now();
        let t = conn.unchecked_transaction()?;
        insert(&t, &REQUESTS, &b.requests)?;
        insert(&t, &DECISIONS, &b.decisions)?;
        insert(&t, &EVENTS, &b.events)?;
        insert(&t, &GRANTS, &b.grants)?;
        t.commit()?;
        inserting += started.elapsed();
    }
    Ok((conn, indexes, inserting))
}
