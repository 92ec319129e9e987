//! `approve` and `reject`: show exactly what is being decided (gate, parameters, reason,
//! requester, digest), ask for confirmation on a terminal unless `--yes`, and send the digest
//! that was shown — so a request that changed in between is refused by the server, not
//! silently decided.

use clap::Args;
use countersign_api::RequestState;

use crate::api::{Api, ServerArgs, Verdict};
use crate::failure::{Failure, Outcome, exit};
use crate::output::{self, Format};
use crate::render;

/// Options of `countersign approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request, e.g. req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3.
    #[arg(value_parser = super::parse_request_id)]
    id: String,
    /// A comment for the requester and the audit log.
    #[arg(long)]
    comment: Option<String>,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short)]
    yes: bool,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// Options of `countersign reject`.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The request, e.g. req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3.
    #[arg(value_parser = super::parse_request_id)]
    id: String,
    /// Why it is rejected (required: the requester needs to know).
    #[arg(long)]
    comment: String,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short)]
    yes: bool,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign approve`.
pub async fn approve(args: ApproveArgs) -> Outcome {
    let ApproveArgs {
        id,
        comment,
        yes,
        server,
        output,
    } = args;
    decide(
        Verdict::Approve,
        &id,
        comment.as_deref(),
        yes,
        &server,
        output,
    )
    .await
}

/// `countersign reject`.
pub async fn reject(args: RejectArgs) -> Outcome {
    let RejectArgs {
        id,
        comment,
        yes,
        server,
        output,
    } = args;
    decide(Verdict::Reject, &id, Some(&comment), yes, &server, output).await
}

async fn decide(
    verdict: Verdict,
    id: &str,
    comment: Option<&str>,
    yes: bool,
    server: &ServerArgs,
    format: Format,
) -> Outcome {
    let (verb, done) = match verdict {
        Verdict::Approve => ("approve", "approved"),
        Verdict::Reject => ("reject", "rejected"),
    };
    if !yes && !output::stdin_is_tty() {
        return Err(Failure::error(format!(
            "not {done}: confirmation is needed and stdin is not a terminal; pass --yes to {verb} without being asked"
        )));
    }
    let api = Api::new(server)?;
    let request = api.get(id).await?;
    if request.state != RequestState::Pending {
        return Err(Failure::error(format!(
            "{id} is {}; only pending requests can be decided",
            request.state.as_str()
        )));
    }
    let digest = request.digest.clone();

    // What is being decided, on stderr: stdout stays for the result.
    let paint = output::stderr_paint();
    output::note(&format!(
        "You are about to {} this request:",
        paint.bold(verb)
    ));
    for line in render::request(&request, &api.page_url(id), paint) {
        output::note(&line);
    }
    if !yes {
        let answer = output::ask(&format!("{verb} {id} as shown? [y/N] ")).unwrap_or_default();
        if !matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(Failure::error(format!("not {done}; nothing was sent")));
        }
    }

    let decided = api
        .decide(id, verdict, &digest, comment)
        .await
        .map_err(|failure| {
            if failure.code.as_deref() == Some("digest_mismatch") {
                let message = format!(
                    "the request changed after it was shown (digest mismatch); nothing was {done}; run `countersign show {id}` and decide again"
                );
                failure.reworded(message)
            } else {
                failure
            }
        })?;
    match format {
        Format::Json => output::json(&decided),
        Format::Text => {
            let now = if decided.state == RequestState::Pending {
                format!("it still waits for {}", render::waiting(&decided, None))
            } else {
                format!(
                    "the request is now {}",
                    output::stdout_paint().state(decided.state.as_str())
                )
            };
            output::out(&format!("{done} {id}; {now}"));
        }
    }
    Ok(exit::OK)
}
