//! The `countersign` binary: the server (`serve`), the one-command sandbox (`dev`), the
//! client that talks to a server (`login`, `request`, `approve`, `run`, …), and the offline
//! tools (`check-config`, `explain`, `audit verify`, `migrate`, `keys`).

mod api;
mod auth;
mod clock;
mod commands;
mod dev;
mod failure;
mod http;
mod output;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use countersign_config::{Env, Settings};

use commands::{decide, explain, gates, login, requests, run, wait};
use failure::{EXIT_CODES_HELP, Outcome};

/// mimalloc instead of the system allocator: a server's requests allocate many small,
/// short-lived values across threads, where glibc's allocator spent about a sixth of the
/// server's CPU in the inbox benchmark (S4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// countersign: approvals for risky actions, decided by the people your identity provider
/// vouches for.
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about, long_about = None, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Run a sandbox on loopback: a fresh database, a built-in OpenID provider with demo users,
    /// and demo gates.
    Dev(dev::DevArgs),
    /// Sign in to a server (device flow, or a browser on this machine); the login is cached.
    Login(login::LoginArgs),
    /// Forget the cached login to a server.
    Logout(login::LogoutArgs),
    /// List the gates and what you may do with each, or show one gate in full.
    Gates(gates::GatesArgs),
    /// Ask for approval on a gate; with --wait, wait for the decision.
    #[command(after_help = EXIT_CODES_HELP)]
    Request(requests::RequestArgs),
    /// List requests you can see.
    Ls(requests::LsArgs),
    /// Show a request: what is asked, by whom, and where its rules stand.
    Show(requests::OneArgs),
    /// Approve a request, after showing exactly what is approved.
    Approve(decide::ApproveArgs),
    /// Reject a request, after showing exactly what is rejected.
    Reject(decide::RejectArgs),
    /// Withdraw your pending request.
    Cancel(requests::EndArgs),
    /// Revoke an approved request: its grant stops being valid.
    Revoke(requests::EndArgs),
    /// Print the grant token of your approved request.
    Token(requests::OneArgs),
    /// Wait for a request to be decided.
    #[command(after_help = EXIT_CODES_HELP)]
    Wait(wait::WaitArgs),
    /// Request, wait for approval, then run a command with the grant token in its environment
    /// (COUNTERSIGN_TOKEN, COUNTERSIGN_REQUEST_ID).
    #[command(after_help = EXIT_CODES_HELP)]
    Run(run::RunArgs),
    /// Validate a configuration file: every key, every condition. Exit code 0 only when valid.
    CheckConfig {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
    },
    /// For a gate and a set of claims: may they request, would it be approved automatically,
    /// which approval rules could they fill, and why (each condition and its result). Offline.
    Explain(explain::ExplainArgs),
    /// Apply database migrations and exit.
    Migrate {
        /// The configuration file (its `server.database` is used).
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
    },
    /// Work with notification channels.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Manage countersign's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a shell completion script (e.g. `countersign completions bash > /etc/bash_completion.d/countersign`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Send a sample message to a configured channel (Slack, Teams, e-mail, webhook), to check
    /// its URL, token or mail server. The message says it is a test and links to nothing real.
    Test {
        /// The channel's name (`[[notifications.channels]]`).
        channel: String,
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
        /// For an e-mail channel whose `to` is only "eligible": where to send the sample.
        #[arg(long, value_name = "ADDRESS")]
        to: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Publish a new signing key now; it starts signing after the delay (default: the
    /// configured `server.key_rotation_delay`), and the current key stays published until
    /// every token it signed has expired.
    Rotate {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
        /// How long to publish the new key before it signs, e.g. 1h (0s: at once).
        #[arg(long)]
        delay: Option<String>,
    },
    /// List the signing keys: which signs, which are published, until when.
    List {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "COUNTERSIGN_CONFIG",
            default_value = "countersign.toml"
        )]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and name the first bad event. Exit code 0 only when intact.
    Verify {
        /// The database URL, e.g. sqlite://countersign.db or postgres://user@host/db.
        #[arg(long)]
        database: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, json_logs } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logs(
                json_logs || settings.server.log_format == countersign_config::LogFormat::Json,
            );
            result(serve(settings).await)
        }
        Command::Dev(args) => {
            init_logs(false);
            result(dev::run(args).await)
        }
        Command::Login(args) => client(login::login(args).await),
        Command::Logout(args) => client(login::logout(args).await),
        Command::Gates(args) => client(gates::run(args).await),
        Command::Request(args) => client(requests::request(args).await),
        Command::Ls(args) => client(requests::ls(args).await),
        Command::Show(args) => client(requests::show(args).await),
        Command::Approve(args) => client(decide::approve(args).await),
        Command::Reject(args) => client(decide::reject(args).await),
        Command::Cancel(args) => client(requests::end(args, "cancel").await),
        Command::Revoke(args) => client(requests::end(args, "revoke").await),
        Command::Token(args) => client(requests::token(args).await),
        Command::Wait(args) => client(wait::run(args).await),
        Command::Run(args) => client(run::run(args).await),
        Command::Explain(args) => client(explain::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "countersign",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match load(&config) {
            Ok(settings) => {
                let channels = settings.notifications.channels.iter().count();
                say(&format!(
                    "{}: valid ({} issuers, {} gates, {} notification channels)",
                    config.display(),
                    settings.issuers.len(),
                    settings.gates.len(),
                    channels
                ));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Notify {
            command:
                NotifyCommand::Test {
                    channel,
                    config,
                    to,
                },
        } => match load(&config) {
            Ok(settings) => result(notify_test(&settings, &channel, &to).await),
            Err(code) => code,
        },
        Command::Migrate { config } => match load(&config) {
            Ok(settings) => match countersign_store::open(&settings.server.database).await {
                Ok(_) => {
                    say("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot migrate: {e}")),
            },
            Err(code) => code,
        },
        Command::Audit {
            command: AuditCommand::Verify { database },
        } => audit_verify(&database).await,
        Command::Keys { command } => {
            let (config, delay) = match &command {
                KeysCommand::Rotate { config, delay } => (config, delay.clone()),
                KeysCommand::List { config } => (config, None),
            };
            let settings = match load(config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rotate = matches!(command, KeysCommand::Rotate { .. });
            result(keys(settings, rotate, delay).await)
        }
    }
}

/// `countersign notify test CHANNEL`: one sample message, sent now, without the server.
async fn notify_test(settings: &Settings, name: &str, to: &[String]) -> anyhow::Result<()> {
    let channels = &settings.notifications.channels;
    let Some(spec) = channels.get(name) else {
        let known: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no channel '{name}' in [[notifications.channels]] (configured: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let public_url = settings.server.public_url.as_str();
    let clock: std::sync::Arc<dyn countersign_core::Clock> =
        std::sync::Arc::new(countersign_server::SystemClock);
    let notice = countersign_notify::channels::sample_notice(public_url, clock.now());
    let timeout = settings
        .webhooks
        .timeout
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(10));
    let sender = countersign_notify::channels::Sender::new(timeout, clock)
        .map_err(|e| anyhow::anyhow!(e))?;
    let domain = settings
        .server
        .public_url
        .host_str()
        .unwrap_or("countersign.invalid");
    let out = countersign_notify::channels::Outgoing {
        notice: &notice,
        thread: None,
        recipients: to,
        to_requester: false,
        mail_domain: domain,
    };
    sender
        .send(spec, out)
        .await
        .map_err(|e| anyhow::anyhow!("channel '{name}' ({}): {e}", spec.kind.as_str()))?;
    say(&format!(
        "sent a sample message to '{name}' ({})",
        spec.kind.as_str()
    ));
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Signal handlers first, so a SIGTERM during start-up is a graceful stop.
    let shutdown = countersign_server::app::shutdown_signal();
    let app = countersign_server::Application::build(settings, Default::default()).await?;
    tracing::info!(addr = %app.local_addr(), "countersign listening");
    app.run_until(shutdown).await
}

async fn keys(settings: Settings, rotate: bool, delay: Option<String>) -> anyhow::Result<()> {
    use countersign_core::Clock as _;
    use countersign_core::time::rfc3339;
    let stores = countersign_store::open_stores(&settings.server.database).await?;
    let kek = countersign_tokens::Kek::parse(settings.server.key_encryption_key.expose())
        .map_err(|e| anyhow::anyhow!("server.key_encryption_key: {e}"))?;
    let alg = settings
        .server
        .signing_alg
        .parse()
        .map_err(|e| anyhow::anyhow!("server.signing_alg: {e}"))?;
    let clock = std::sync::Arc::new(countersign_server::SystemClock);
    let issuer = settings
        .server
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let ring =
        countersign_tokens::KeyRing::load(stores.keys.clone(), kek, alg, issuer, clock.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    if rotate {
        let delay = match delay {
            Some(text) if text == "0" || text == "0s" => chrono::Duration::zero(),
            Some(text) => countersign_core::time::parse_duration(&text)
                .map_err(|e| anyhow::anyhow!("--delay: {e}"))?,
            None => settings.server.key_rotation_delay,
        };
        let key = ring
            .rotate(delay, settings.max_grant_ttl())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        say(&format!(
            "published key {} ({}); it signs from {}",
            key.kid,
            key.alg,
            rfc3339(&key.signs_from)
        ));
    }
    let now = clock.now();
    let signing = ring.signing_kid(now);
    for key in stores.keys.signing_keys().await? {
        let role = if signing.as_deref() == Some(key.kid.as_str()) {
            "signing".to_string()
        } else if key.signs_from > now {
            format!("published, signs from {}", rfc3339(&key.signs_from))
        } else {
            match key.publish_until {
                Some(t) if t <= now => "retired".to_string(),
                Some(t) => format!("published until {}", rfc3339(&t)),
                None => "published".to_string(),
            }
        };
        say(&format!(
            "{}  {}  created {}  {}",
            key.kid,
            key.alg,
            rfc3339(&key.created_at),
            role
        ));
    }
    Ok(())
}

async fn audit_verify(database: &str) -> ExitCode {
    // Verifying must not create an empty database where a file was mistyped.
    if let Some(path) = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        && !path.starts_with(':')
        && !std::path::Path::new(path.split('?').next().unwrap_or(path)).exists()
    {
        return fail(&format!("no database file at {path}; check --database"));
    }
    let store = match countersign_store::open(database).await {
        Ok(s) => s,
        Err(e) => {
            return fail(&format!(
                "cannot open {}: {e}",
                countersign_server::app::redact_url(database)
            ));
        }
    };
    match countersign_store::verify_audit(store.as_ref()).await {
        Ok(n) => {
            say(&format!("audit chain intact: {n} events verified"));
            ExitCode::SUCCESS
        }
        Err(brk) => {
            eprintln_line(&format!(
                "audit chain BROKEN at seq {}: {}",
                brk.seq, brk.reason
            ));
            ExitCode::from(1)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Settings, ExitCode> {
    countersign_config::load(path, &Env::from_process()).map_err(|errors| {
        for problem in &errors.0 {
            eprintln_line(&problem.to_string());
        }
        eprintln_line(&format!(
            "{}: {} problem(s) found",
            path.display(),
            errors.0.len()
        ));
        ExitCode::from(1)
    })
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A client command's outcome as the process's exit code; a failure is printed as one line.
fn client(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            output::error(&failure.message);
            ExitCode::from(failure.exit)
        }
    }
}

/// Bad arguments: clap's first line, a pointer to the right `--help`, exit code 1 (clap's own 2
/// would read as "rejected"). Help and version are printed as clap writes them.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(failure::exit::ERROR)
        }
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim()
                .trim_start_matches("error:")
                .trim()
                .to_string();
            // "the following required arguments were not provided:" lists them below.
            if first.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                first = format!("{} {}", first, listed.join(", "));
            }
            // The subcommands named on the command line, to point at the right help.
            let mut command = Cli::command();
            let mut path = vec!["countersign".to_string()];
            for arg in std::env::args().skip(1) {
                match command.find_subcommand(&arg) {
                    Some(sub) => {
                        path.push(sub.get_name().to_string());
                        command = sub.clone();
                    }
                    None if arg.starts_with('-') => {}
                    None => break,
                }
            }
            output::error(&format!("{first}; see `{} --help`", path.join(" ")));
            ExitCode::from(failure::exit::ERROR)
        }
    }
}

fn result(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    output::error(message);
    ExitCode::from(1)
}

/// Prints a result line for the user.
fn say(line: &str) {
    output::out(line);
}

/// Prints a diagnostic line for the user.
fn eprintln_line(line: &str) {
    output::note(line);
}
