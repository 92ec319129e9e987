//! The askama templates (`crates/server/templates/`) and the plain view models they render.
//! Templates receive text that is already formatted; askama escapes all of it.

use askama::Template;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// What the frame of every page shows.
#[derive(Debug, Default)]
pub(super) struct Layout {
    /// The page title (before "· countersign").
    pub title: String,
    /// Who is signed in.
    pub user: Option<UserView>,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: String,
    /// The active navigation entry: `inbox`, `mine`, `new` or empty.
    pub nav: &'static str,
    /// Live updates: the event stream to follow.
    pub live: Option<Live>,
}

/// The signed-in person.
#[derive(Debug)]
pub(super) struct UserView {
    /// Their name.
    pub name: String,
    /// E-mail and identity, for a tooltip.
    pub detail: String,
}

/// The event stream a page follows.
#[derive(Debug)]
pub(super) struct Live {
    /// Its URL.
    pub events: String,
    /// The version of the request shown (request pages).
    pub version: i64,
}

/// Renders a template to an HTML response (a 500 page if rendering fails, which is a bug).
pub(super) fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has details",
            )
                .into_response()
        }
    }
}

/// An error page.
#[derive(Template, Debug)]
#[template(path = "error.html")]
pub(super) struct ErrorPage<'a> {
    pub title: &'static str,
    pub message: &'a str,
    pub status: u16,
    pub sign_in: bool,
}

/// The sign-in page: one button per issuer.
#[derive(Template, Debug)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    pub layout: Layout,
    pub issuers: Vec<IssuerChoice>,
    pub signed_out: bool,
}

/// One issuer on the sign-in page.
#[derive(Debug)]
pub(super) struct IssuerChoice {
    pub name: String,
    pub host: String,
    pub href: String,
}

/// The sign-out confirmation.
#[derive(Template, Debug)]
#[template(path = "logout.html")]
pub(super) struct LogoutPage {
    pub layout: Layout,
}

/// One request in a list.
#[derive(Debug)]
pub(super) struct ListItem {
    pub id: String,
    pub gate: String,
    pub state: &'static str,
    pub reason: String,
    pub requester: String,
    pub age: String,
    pub created_abs: String,
    pub left: String,
    pub left_abs: String,
    pub urgency: &'static str,
    pub waiting: String,
}

/// The approver inbox, with the signed-in person's own open requests below.
#[derive(Template, Debug)]
#[template(path = "inbox.html")]
pub(super) struct InboxPage {
    pub layout: Layout,
    pub items: Vec<ListItem>,
    pub mine: Vec<ListItem>,
}

/// My requests.
#[derive(Template, Debug)]
#[template(path = "mine.html")]
pub(super) struct MinePage {
    pub layout: Layout,
    pub items: Vec<ListItem>,
    pub next: Option<String>,
}

/// One approval filling a rule.
#[derive(Debug)]
pub(super) struct ApprovalView {
    pub who: String,
    pub who_detail: String,
    pub comment: String,
    pub at: String,
}

/// One rule of a request's gate, with where it stands.
#[derive(Debug)]
pub(super) struct RuleView {
    pub name: String,
    pub stage: u32,
    pub needed: u32,
    pub have: usize,
    pub status: &'static str,
    pub status_label: &'static str,
    pub who_can: String,
    pub approvals: Vec<ApprovalView>,
}

/// One decision in the history.
#[derive(Debug)]
pub(super) struct DecisionView {
    pub who: String,
    pub who_detail: String,
    pub verdict: &'static str,
    pub comment: String,
    pub rule: String,
    pub at: String,
    pub at_abs: String,
}

/// A request page.
#[derive(Template, Debug)]
#[template(path = "request.html")]
pub(super) struct RequestPage {
    pub layout: Layout,
    pub id: String,
    pub gate: String,
    pub gate_description: String,
    pub state: &'static str,
    pub state_label: String,
    pub summary: String,
    pub params: Vec<(String, String)>,
    pub reason: String,
    pub ticket: String,
    pub requester: String,
    pub requester_detail: String,
    pub created: String,
    pub created_abs: String,
    pub deadline: String,
    pub deadline_abs: String,
    pub duration: String,
    pub digest: String,
    pub rules: Vec<RuleView>,
    pub history: Vec<DecisionView>,
    pub can_decide: bool,
    pub needs_fresh_sign_in: bool,
    pub fresh_sign_in_note: String,
    pub confirm: &'static str,
    pub comment: String,
    pub can_cancel: bool,
    pub can_revoke: bool,
    pub notice: String,
    pub error: String,
    pub own_decision: String,
}

/// One audit event.
#[derive(Debug)]
pub(super) struct EventView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub hash: String,
}

/// A request's audit trail.
#[derive(Template, Debug)]
#[template(path = "audit.html")]
pub(super) struct AuditPage {
    pub layout: Layout,
    pub id: String,
    pub gate: String,
    pub events: Vec<EventView>,
}

/// A gate the person may request.
#[derive(Debug)]
pub(super) struct GateChoice {
    pub name: String,
    pub description: String,
    pub approvals: String,
}

/// The list of gates to request.
#[derive(Template, Debug)]
#[template(path = "new.html")]
pub(super) struct NewPage {
    pub layout: Layout,
    pub gates: Vec<GateChoice>,
}

/// One input of a gate's form.
#[derive(Debug)]
pub(super) struct FieldView {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub required: bool,
    pub value: String,
    pub options: Vec<String>,
    pub min: String,
    pub max: String,
    pub hint: String,
}

/// A gate's request form.
#[derive(Template, Debug)]
#[template(path = "gate_form.html")]
pub(super) struct GateFormPage {
    pub layout: Layout,
    pub gate: String,
    pub description: String,
    pub fields: Vec<FieldView>,
    pub reason_required: bool,
    pub reason: String,
    pub ticket_required: bool,
    pub ticket: String,
    pub duration: String,
    pub duration_hint: String,
    pub error: String,
}

/// The sandbox's outbox viewer: what notifications would be sent.
#[derive(Template, Debug)]
#[template(path = "dev_notifications.html")]
pub(super) struct DevNotificationsPage {
    pub layout: Layout,
    pub previews: Vec<PreviewView>,
}

/// One previewed notification, its payloads pretty-printed.
#[derive(Debug)]
pub(super) struct PreviewView {
    pub channel: String,
    pub request_id: String,
    pub kind: String,
    pub version: i64,
    pub slack: String,
    pub teams: String,
    pub email_subject: String,
    pub email_text: String,
    pub email_html: String,
}
