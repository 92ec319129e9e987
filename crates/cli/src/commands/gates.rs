//! `countersign gates [NAME]`: the gates, with what the caller may do with each; or one gate
//! in full (parameters, rules).

use clap::Args;

use crate::api::{Api, ServerArgs};
use crate::failure::{Failure, Outcome, exit};
use crate::output::{self, Format};
use crate::render;

/// Options of `countersign gates`.
#[derive(Debug, Args)]
pub struct GatesArgs {
    /// Show this gate in full: its parameters and approval rules.
    name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign gates`.
pub async fn run(args: GatesArgs) -> Outcome {
    let api = Api::new(&args.server)?;
    let page = api.gates().await?;
    let items = &page.items;
    let paint = output::stdout_paint();
    match &args.name {
        None => match args.output {
            Format::Json => output::json(&page),
            Format::Text => render::gate_table(items, paint)
                .iter()
                .for_each(|l| output::out(l)),
        },
        Some(name) => {
            let gate = items.iter().find(|g| g.name == *name).ok_or_else(|| {
                Failure::error(format!(
                    "unknown gate '{name}'; run `countersign gates` to see the gates you may request"
                ))
            })?;
            match args.output {
                Format::Json => output::json(gate),
                Format::Text => render::gate(gate, paint)
                    .iter()
                    .for_each(|l| output::out(l)),
            }
        }
    }
    Ok(exit::OK)
}
