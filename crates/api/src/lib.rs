//! The wire contract of countersign's HTTP API: every request and response body of
//! `/api/v1` and the health endpoints, as plain data. The server answers with them, the
//! command line and the benchmark parse them, and the OpenAPI document is generated from
//! them (their doc comments are its descriptions), so the three cannot drift apart.
//!
//! Timestamps are RFC 3339 strings in UTC with milliseconds, as the server writes them;
//! fields are declared in byte order of their names, the order the server writes them in.
//! The crate knows nothing of the domain: the server converts its types into these.

mod audit;
mod error;
mod gates;
mod health;
mod notifications;
mod requests;
mod webhooks;

pub use audit::{Actor, AuditEvent, AuditPage, AuditQuery};
pub use error::{ErrorBody, ErrorDetail};
pub use gates::{Gate, GatePage, GateRule, GrantSettings, Param, ParamKind, Requirement};
pub use health::{AuthConfig, AuthIssuer, DatabaseStatus, Health, IssuerStatus, Readiness};
pub use notifications::{
    ListNotificationsQuery, Notification, NotificationPage, NotificationRetry, NotificationState,
};
pub use requests::{
    Approval, ApprovalPath, Approver, CreateRequest, Decision, DecisionBody, GetRequestQuery,
    GrantToken, InboxChange, ListRequestsQuery, Principal, PrincipalKind, ReasonBody, Request,
    RequestPage, RequestState, RuleStatus, Verdict,
};
pub use webhooks::{Delivery, DeliveryPage, DeliveryRetry, DeliveryState, ListDeliveriesQuery};
