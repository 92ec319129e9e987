//! `request`, `ls`, `show`, `cancel`, `revoke` and `token`: asking, looking, withdrawing and
//! collecting the grant.

use std::time::Duration;

use clap::Args;
use countersign_api::{CreateRequest, Request, RequestPage};

use super::wait;
use crate::api::{Api, ServerArgs};
use crate::failure::{Failure, Outcome, exit};
use crate::output::{self, Format};
use crate::render;

/// What to ask for: shared by `request` and `run`.
#[derive(Debug, Args)]
pub struct Ask {
    /// The gate to request, e.g. deploy-prod (see `countersign gates`).
    pub gate: String,
    /// A parameter of the gate, as KEY=VALUE; repeat for each.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
    /// Why (some gates require it).
    #[arg(long)]
    pub reason: Option<String>,
    /// A ticket reference (some gates require it).
    #[arg(long)]
    pub ticket: Option<String>,
    /// How long the grant should last once approved, e.g. 30m (default: the gate's).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
}

impl Ask {
    /// The body of `POST /requests`.
    pub fn body(&self) -> Result<CreateRequest, Failure> {
        Ok(CreateRequest {
            gate: self.gate.clone(),
            params: super::params_object(&self.params)?,
            reason: self.reason.clone(),
            ticket: self.ticket.clone(),
            duration: self.duration.clone(),
        })
    }
}

/// Options of `countersign request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    ask: Ask,
    /// Wait until the request is decided; the exit code says how (0 approved, 2 rejected,
    /// 3 expired or cancelled).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (the request stays pending).
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = super::parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign request`.
pub async fn request(args: RequestArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let created = api.create(&args.ask.body()?).await?;
    if !args.wait {
        wait::print_final(&api, &created, args.output);
        return Ok(exit::OK);
    }
    let last = wait::until_decided(&api, created, args.timeout).await?;
    wait::print_final(&api, &last, args.output);
    Ok(wait::exit_code(&last))
}

/// Options of `countersign ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only pending requests.
    #[arg(long, conflicts_with = "state")]
    pending: bool,
    /// Only requests you made.
    #[arg(long, conflicts_with = "inbox")]
    mine: bool,
    /// Only requests you can still decide (your approver inbox).
    #[arg(long)]
    inbox: bool,
    /// Only requests of this gate.
    #[arg(long, value_name = "GATE")]
    gate: Option<String>,
    /// Only requests in this state (pending, approved, rejected, expired, cancelled, revoked).
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// At most this many requests, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign ls`.
pub async fn ls(args: LsArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if args.pending {
        query.push(("state", "pending".into()));
    } else if let Some(state) = &args.state {
        query.push(("state", state.clone()));
    }
    if args.mine {
        query.push(("role", "requester".into()));
    } else if args.inbox {
        query.push(("role", "approver".into()));
    }
    if let Some(gate) = &args.gate {
        query.push(("gate", gate.clone()));
    }
    let limit = args.limit as usize;
    let mut items: Vec<Request> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.push(("limit", (limit - items.len()).min(200).to_string()));
        if let Some(c) = &cursor {
            page_query.push(("cursor", c.clone()));
        }
        let page = api.list(&page_query).await?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() || items.len() >= limit {
            break;
        }
    }
    items.truncate(limit);
    match args.output {
        Format::Json => output::json(&RequestPage {
            items,
            next_cursor: cursor,
        }),
        Format::Text => render::request_table(&items, output::stdout_paint())
            .iter()
            .for_each(|l| output::out(l)),
    }
    Ok(exit::OK)
}

/// Options of commands that take one request: `show`, `token`.
#[derive(Debug, Args)]
pub struct OneArgs {
    /// The request, e.g. req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3.
    #[arg(value_parser = super::parse_request_id)]
    id: String,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign show`.
pub async fn show(args: OneArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let request = api.get(&args.id).await?;
    wait::print_final(&api, &request, args.output);
    Ok(exit::OK)
}

/// `countersign token`: prints the grant token (its job), and nothing else.
pub async fn token(args: OneArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let grant = api.grant_token(&args.id).await?;
    match args.output {
        Format::Json => output::json(&grant),
        Format::Text => output::out(&grant.token),
    }
    Ok(exit::OK)
}

/// Options of `cancel` and `revoke`.
#[derive(Debug, Args)]
pub struct EndArgs {
    /// The request, e.g. req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3.
    #[arg(value_parser = super::parse_request_id)]
    id: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign cancel` (a pending request, by its requester) or `revoke` (an approved one).
pub async fn end(args: EndArgs, action: &str) -> Outcome {
    let api = Api::new(&args.server)?;
    let request = api.end(&args.id, action, args.reason.as_deref()).await?;
    match args.output {
        Format::Json => output::json(&request),
        Format::Text => output::out(&format!(
            "{} {}",
            request.id,
            output::stdout_paint().state(request.state.as_str())
        )),
    }
    Ok(exit::OK)
}
