//! Waiting for a decision (`wait`, `request --wait`, `run`): long polls on
//! `GET /requests/{id}?wait=30s&version=N`, so a change shows within moments. On a terminal a
//! spinner shows the request URL, the time waited, the time left and which rules still wait
//! for whom; elsewhere one line is printed per change.

use std::time::{Duration, Instant};

use clap::Args;
use countersign_api::{Gate, Request, RequestState, Verdict};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{Api, ServerArgs};
use crate::failure::{Failure, Outcome, exit};
use crate::output::{self, Format};
use crate::render;

/// How long one long poll asks the server to hold on.
const POLL: Duration = Duration::from_secs(30);
/// How many failed polls in a row are retried before giving up.
const RETRIES: u32 = 5;

/// Options of `countersign wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The request, e.g. req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3.
    #[arg(value_parser = super::parse_request_id)]
    id: String,
    /// Give up after this long (e.g. 10m); the request stays pending. Default: until it is
    /// decided or expires.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign wait`.
pub async fn run(args: WaitArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let request = api.get(&args.id).await?;
    let last = until_decided(&api, request, args.timeout).await?;
    print_final(&api, &last, args.output);
    Ok(exit_code(&last))
}

/// The exit code for a request's state: 0 approved, 2 rejected, 3 any other end.
pub fn exit_code(request: &Request) -> u8 {
    match request.state {
        RequestState::Approved => exit::OK,
        RequestState::Rejected => exit::REJECTED,
        RequestState::Pending => exit::ERROR,
        RequestState::Expired | RequestState::Cancelled | RequestState::Revoked => exit::ENDED,
    }
}

/// Prints the request a wait ended with, on stdout.
pub fn print_final(api: &Api, request: &Request, format: Format) {
    match format {
        Format::Json => output::json(request),
        Format::Text => {
            let url = api.page_url(&request.id);
            render::request(request, &url, output::stdout_paint())
                .iter()
                .for_each(|l| output::out(l));
        }
    }
}

fn is_final(request: &Request) -> bool {
    request.state != RequestState::Pending
}

/// Waits until `request` leaves `pending` (or `timeout` passes, or Ctrl-C), showing progress
/// on stderr; returns the request as it ended.
pub async fn until_decided(
    api: &Api,
    mut request: Request,
    timeout: Option<Duration>,
) -> Result<Request, Failure> {
    let id = request.id.clone();
    if is_final(&request) {
        output::note(&final_line(&request));
        return Ok(request);
    }
    // The gate's rules say who can fill what; a caller who may not list gates just sees names.
    let gate = api
        .gates()
        .await
        .ok()
        .and_then(|page| page.items.into_iter().find(|g| g.name == request.gate));
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut progress = Progress::start(api.page_url(&id), gate);
    progress.first(&request, started, deadline);

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut failures = 0;
    while !is_final(&request) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            progress.clear();
            return Err(Failure::error(format!(
                "{id} is still pending after {}; `countersign wait {id}` waits again",
                render::span(timeout.map_or(0, |t| t.as_secs() as i64))
            )));
        }
        let poll_for = left
            .map_or(POLL, |l| l.min(POLL))
            .max(Duration::from_secs(1));
        let version = request.version;
        let poll = api.wait(&id, version, poll_for);
        let mut poll = std::pin::pin!(poll);
        let result = loop {
            tokio::select! {
                result = &mut poll => break result,
                _ = ticker.tick() => progress.tick(&request, started, deadline),
                _ = &mut ctrl_c => {
                    progress.clear();
                    return Err(Failure::with_exit(exit::INTERRUPTED, format!(
                        "stopped waiting; {id} is still pending: `countersign wait {id}` waits again, `countersign cancel {id}` withdraws it"
                    )));
                }
            }
        };
        match result {
            Ok(next) => {
                failures = 0;
                if next.version != request.version || next.state != request.state {
                    progress.changed(&request, &next, started, deadline);
                }
                request = next;
            }
            Err(failure) if transient(&failure) && failures < RETRIES => {
                failures += 1;
                progress.line(&format!("{} (retrying)", failure.message));
                tokio::time::sleep(Duration::from_secs(1 << failures.min(4))).await;
            }
            Err(failure) => {
                progress.clear();
                return Err(failure);
            }
        }
    }
    progress.finish(&request);
    Ok(request)
}

/// Worth another try: the server could not be reached, failed, or was busy.
fn transient(failure: &Failure) -> bool {
    failure.exit == exit::ERROR
        && matches!(failure.code.as_deref(), None | Some("internal" | "busy"))
}

/// The spinner (on a terminal) or the lines (elsewhere).
struct Progress {
    bar: Option<ProgressBar>,
    url: String,
    gate: Option<Gate>,
}

impl Progress {
    fn start(url: String, gate: Option<Gate>) -> Self {
        let bar = output::stderr_is_tty().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self { bar, url, gate }
    }

    /// A line above the spinner, or on its own.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| output::note(text)),
            None => output::note(text),
        }
    }

    fn first(&mut self, request: &Request, started: Instant, deadline: Option<Instant>) {
        let paint = output::stderr_paint();
        self.line(&format!(
            "{} {}: waiting for {} — {}",
            request.id,
            paint.state("pending"),
            render::waiting(request, self.gate.as_ref()),
            self.url
        ));
        self.tick(request, started, deadline);
    }

    fn tick(&self, request: &Request, started: Instant, deadline: Option<Instant>) {
        let Some(bar) = &self.bar else { return };
        let waited = started.elapsed().as_secs() as i64;
        let mut left = render::seconds_until(&request.expires_at);
        if let Some(d) = deadline {
            let until_timeout = d.saturating_duration_since(Instant::now()).as_secs() as i64;
            left = Some(left.map_or(until_timeout, |l| l.min(until_timeout)));
        }
        let left = left
            .map(|l| format!(" · {} left", render::span(l)))
            .unwrap_or_default();
        let names: Vec<String> = request
            .rules
            .iter()
            .filter(|r| request.waiting_for.contains(&r.name))
            .map(|r| format!("{} {}/{}", r.name, r.approvals.len(), r.min_approvals))
            .collect();
        bar.set_message(format!(
            "waiting {}{left} · for {} · {}",
            render::span(waited),
            names.join(", "),
            self.url
        ));
    }

    fn changed(
        &mut self,
        old: &Request,
        new: &Request,
        started: Instant,
        deadline: Option<Instant>,
    ) {
        for decision in new.decisions.iter().skip(old.decisions.len()) {
            let verdict = match decision.verdict {
                Verdict::Approve => "approved",
                Verdict::Reject => "rejected",
            };
            let rule = decision
                .rule
                .as_deref()
                .map(|r| format!(" for {r}"))
                .unwrap_or_default();
            let comment = decision
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            self.line(&format!(
                "{} {verdict}{rule}{comment}",
                render::approver(&decision.approver)
            ));
        }
        if new.state == RequestState::Pending {
            self.line(&format!(
                "{} {}: waiting for {}",
                new.id,
                output::stderr_paint().state("pending"),
                render::waiting(new, self.gate.as_ref())
            ));
            self.tick(new, started, deadline);
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn finish(&mut self, request: &Request) {
        self.clear();
        output::note(&final_line(request));
    }
}

/// `req_… approved`, `req_… rejected by Carol (idp:carol): not now`, `req_… expired`.
fn final_line(request: &Request) -> String {
    let painted = output::stderr_paint().state(request.state.as_str());
    let id = &request.id;
    if request.state == RequestState::Rejected {
        let by = request
            .decisions
            .iter()
            .rfind(|d| d.verdict == Verdict::Reject)
            .map(|d| {
                let comment = d
                    .comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                format!(" by {}{comment}", render::approver(&d.approver))
            })
            .unwrap_or_default();
        return format!("{id} {painted}{by}");
    }
    format!("{id} {painted}")
}
