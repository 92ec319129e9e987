//! The countersign domain: what a gate is, how a request moves through its states, who may
//! decide it, how approvals are matched to rules, and how the audit chain is hashed.
//!
//! This crate performs no I/O and never reads the clock: storage and time come in through the
//! ports in [`ports`], so every rule here can be tested with plain values.

pub mod audit;
pub mod canonical;
pub mod channel;
pub mod condition;
pub mod engine;
pub mod error;
pub mod gate;
pub mod grant;
pub mod ids;
pub mod notice;
pub mod policy;
pub mod ports;
pub mod principal;
pub mod request;
pub mod secret;
pub mod time;
pub mod view;

pub use audit::{Actor, AuditEvent, ChainBreak, NewAuditEvent};
pub use condition::{Condition, ConditionError};

pub use engine::Engine;
pub use error::EngineError;
pub use gate::{Gate, GateSet, GrantSpec, ParamSpec, ParamType, Requirement, Rule, WebhookSpec};
pub use ids::{Digest, RequestId};
pub use ports::{
    Clock, GrantSigner, KeyStore, OutboxStore, RequestFilter, SessionStore, SignError, Store,
    StoreError, Transition,
};
pub use principal::{Identity, Principal, PrincipalKind};
pub use request::{Decision, Request, State, Verdict};
pub use time::Timestamp;
