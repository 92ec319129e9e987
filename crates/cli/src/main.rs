//! The `countersign` binary: the server (`serve`), the one-command sandbox (`dev`), and the
//! offline tools (`check-config`, `audit verify`, `migrate`).

mod dev;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use countersign_config::{Env, Settings};

/// countersign: approvals for risky actions, decided by the people your identity provider
/// vouches for.
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about, long_about = None)]
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
    let cli = Cli::parse();
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
        Command::CheckConfig { config } => match load(&config) {
            Ok(settings) => {
                say(&format!(
                    "{}: valid ({} issuers, {} gates)",
                    config.display(),
                    settings.issuers.len(),
                    settings.gates.len()
                ));
                ExitCode::SUCCESS
            }
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

fn result(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln_line(&format!("error: {message}"));
    ExitCode::from(1)
}

/// Prints a result line for the user.
#[allow(clippy::print_stdout)] // the CLI's output is its interface
fn say(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr)] // diagnostics for the user
fn eprintln_line(line: &str) {
    eprintln!("{line}");
}
