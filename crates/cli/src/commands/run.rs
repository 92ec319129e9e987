//! `countersign run GATE -p … -- COMMAND ARGS…`: request, wait for the decision, fetch the
//! grant token and run the command with `COUNTERSIGN_TOKEN` and `COUNTERSIGN_REQUEST_ID` in
//! its environment; exit with the command's exit code. Without an approval the command never
//! runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::requests::Ask;
use super::wait;
use crate::api::{Api, ServerArgs};
use crate::failure::{Failure, Outcome, exit};
use crate::output;

/// Options of `countersign run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    ask: Ask,
    /// Give up waiting after this long (the request stays pending, the command does not run).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    server: ServerArgs,
    /// The command to run once approved, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `countersign run`.
pub async fn run(args: RunArgs) -> Outcome {
    let (program, program_args) = match args.command.split_first() {
        Some((program, rest)) => (program.clone(), rest.to_vec()),
        None => return Err(Failure::error("no command given; put it after --")),
    };
    // Fail before asking anyone to approve a command that cannot start.
    let resolved = resolve(&program).ok_or_else(|| {
        Failure::error(format!(
            "cannot run '{program}': no such command; nothing was requested"
        ))
    })?;

    let api = Api::new(&args.server)?;
    let created = api.create(&args.ask.body()?).await?;
    let id = created.id.clone();
    let last = wait::until_decided(&api, created, args.timeout).await?;
    let code = wait::exit_code(&last);
    if code != exit::OK {
        output::note(&format!("{program} was not run"));
        return Ok(code);
    }

    let grant = api.grant_token(&id).await?;
    let token = grant.token;
    // From here on an interrupt is the command's to handle: the terminal sends it to the whole
    // process group, and we report how the command ended rather than dying first.
    #[cfg(unix)]
    let _interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    output::note(&format!("{id} approved; running {program}"));
    let status = tokio::process::Command::new(&resolved)
        .args(&program_args)
        .env("COUNTERSIGN_TOKEN", &token)
        .env("COUNTERSIGN_REQUEST_ID", &id)
        .status()
        .await
        .map_err(|e| Failure::error(format!("cannot run '{program}': {e}")))?;
    Ok(exit_status_code(&status))
}

/// The command's exit code; for a command killed by a signal, 128 + the signal, as shells do.
fn exit_status_code(status: &std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(exit::ERROR);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + (signal & 0x7f)).unwrap_or(exit::ERROR);
        }
    }
    exit::ERROR
}

/// Where `program` is: a path as given, or the first match on `PATH`.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains(std::path::MAIN_SEPARATOR) || program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

fn executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_on_path() {
        assert!(resolve("sh").is_some());
        assert!(resolve("/bin/sh").is_some());
        assert!(resolve("no-such-command-countersign").is_none());
        assert!(resolve("./no/such/script.sh").is_none());
    }
}
