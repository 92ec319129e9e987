//! `countersign dev`: the one-command sandbox. A fresh SQLite database, the built-in
//! development OpenID provider (demo people at `/dev-idp`, a demo CI workload at `/dev-ci`),
//! and demo gates, all on loopback. The server verifies the sandbox's tokens through the same
//! discovery + JWKS code as any real issuer.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use countersign_config::Env;
use countersign_dev_idp::{DevIdpConfig, demo_users};

/// Options of `countersign dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(subcommand)]
    command: Option<DevCommand>,
    /// The port to serve on (loopback only).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The loopback address to bind; anything else is refused.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// A database URL to use instead of a fresh SQLite file in a temporary folder.
    #[arg(long)]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Print a bearer token for a demo user (alice, bob, carol, dave, erin) or the demo CI
    /// workload (ci), from a running sandbox.
    Token {
        /// The demo user, or `ci`.
        user: String,
        /// The sandbox's URL.
        #[arg(
            long,
            env = "COUNTERSIGN_SERVER",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
    },
}

/// The API audience of sandbox tokens.
const AUDIENCE: &str = "countersign";

/// The sandbox configuration, the same format a deployment uses: the server, its two
/// issuers and the demo gates.
fn config_text(port: u16, bind: IpAddr) -> String {
    let listen = SocketAddr::new(bind, port);
    let server = format!(
        r#"
[server]
public_url = "http://{bind}:{port}"
listen = "{listen}"
audit_readers = '"admin" in principal.groups'
key_encryption_key = "Y291bnRlcnNpZ24gZGV2IHNhbmRib3ggb25seSBrZXk="

[[issuers]]
name = "dev"
url = "http://{bind}:{port}/dev-idp"
client_id = "countersign-web"
client_secret = "dev-web-secret"
cli_client_id = "countersign-cli"
audiences = ["{AUDIENCE}"]
groups_claim = "groups"

[[issuers]]
name = "dev-ci"
url = "http://{bind}:{port}/dev-ci"
kind = "workload"
audiences = ["{AUDIENCE}"]
actor_claim = "actor_sub"
actor_issuer = "dev"

# What would be sent to Slack, Teams and e-mail, shown at /dev/notifications.
[notifications]
[[notifications.channels]]
name = "outbox-viewer"
kind = "preview"
"#
    );
    format!("{server}\n{}", countersign_config::DEMO_GATES)
}

/// Runs the sandbox, or `dev token`.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if let Some(DevCommand::Token { user, server }) = args.command {
        return print_token(&user, &server).await;
    }
    if !args.bind.is_loopback() {
        anyhow::bail!(
            "the sandbox binds only loopback addresses (127.0.0.1 or ::1), not {}",
            args.bind
        );
    }
    // Install the signal handlers first: a Ctrl-C during start-up still cleans up.
    let shutdown = countersign_server::app::shutdown_signal();
    let temp = tempfile::tempdir().context("cannot create a temporary folder for the database")?;
    let database = match &args.database {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", temp.path().join("countersign.db").display()),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (try --port)", args.bind, args.port))?;
    let port = listener.local_addr()?.port();
    let host = match args.bind {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let text = config_text(port, args.bind).replace(
        &format!("http://{}:", args.bind),
        &format!("http://{host}:"),
    );
    // The database URL goes in through the environment layer, not pasted into TOML, so any
    // character in it stays what it was.
    let settings = countersign_config::load_str(
        &text,
        "dev sandbox",
        &Env::from_pairs([("COUNTERSIGN_SERVER__DATABASE".to_string(), database.clone())]),
    )
    .map_err(|e| anyhow::anyhow!("the sandbox configuration is invalid (a bug):\n{e}"))?;
    let settings = with_outbox_viewer(settings);
    let base = format!("http://{host}:{port}");
    let people = DevIdpConfig::new(format!("{base}/dev-idp"), AUDIENCE)
        .with_web_redirect_uri(format!("{base}/auth/callback"))
        .with_web_post_logout_redirect_uri(format!("{base}/login"));
    let ci = DevIdpConfig::new(format!("{base}/dev-ci"), AUDIENCE);
    let routes = axum::Router::new()
        .nest("/dev-idp", countersign_dev_idp::router(people))
        .nest("/dev-ci", countersign_dev_idp::router(ci));
    let options = countersign_server::BuildOptions {
        listener: Some(listener),
        extra_routes: Some(routes),
        ..Default::default()
    };
    let app = countersign_server::Application::build(settings, options).await?;
    banner(&base, &database, args.database.is_none(), port);
    let result = app.run_until(shutdown).await;
    drop(temp);
    result
}

/// Every demo gate announces its requests, progress and outcome to the outbox viewer, with a
/// reminder 5 minutes before a request expires.
fn with_outbox_viewer(mut settings: countersign_config::Settings) -> countersign_config::Settings {
    let gates = settings.gates.iter().map(|gate| {
        let mut gate = (**gate).clone();
        gate.notify.channels = vec!["outbox-viewer".to_owned()];
        if gate.pending_ttl > chrono::Duration::minutes(5) {
            gate.notify.remind = vec![chrono::Duration::minutes(5)];
        }
        gate
    });
    settings.gates = countersign_core::GateSet::new(gates.collect::<Vec<_>>());
    settings
}

async fn print_token(user: &str, server: &str) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/');
    let issuer = if user == "ci" {
        format!("{server}/dev-ci")
    } else {
        format!("{server}/dev-idp")
    };
    let token = countersign_dev_idp::client::token_for(&issuer, user)
        .await
        .with_context(|| format!("cannot get a token for '{user}' from the sandbox at {server} (is `countersign dev` running?)"))?;
    say(&token);
    Ok(())
}

fn banner(base: &str, database: &str, temporary: bool, port: u16) {
    let users: Vec<String> = demo_users()
        .iter()
        .map(|u| {
            format!(
                "    {:<6} {:<28} groups: {}",
                u.username,
                u.description,
                u.groups.join(", ")
            )
        })
        .collect();
    let port_flag = if port == 8080 {
        String::new()
    } else {
        format!(" --server {base}")
    };
    say(&format!(
        r#"
countersign sandbox is running at {base}   (loopback only; Ctrl-C stops it)

  database      {database}{temp}
  web UI        {base}/   (sign in as one demo person here, as another in a private window)
  API           {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)
  notifications {base}/dev/notifications   (what Slack, Teams and e-mail would receive)
  issuers       {base}/dev-idp  (people)   {base}/dev-ci  (the demo CI workload)
  gates         deploy-prod (SRE + security), db-session (one SRE, grant up to 4h),
                deploy-staging (auto-approved for developers and CI)

  demo people:
{users}
    ci     the demo CI workload (its runs are started by alice)

Try it from another terminal:

  ALICE=$(countersign dev token alice{port_flag}); BOB=$(countersign dev token bob{port_flag}); CAROL=$(countersign dev token carol{port_flag})
  curl -s -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' \
       -d '{{"gate":"deploy-prod","params":{{"service":"api","version":"1.4.2"}},"reason":"hotfix INC-42"}}' \
       {base}/api/v1/requests
  curl -s -H "Authorization: Bearer $BOB" '{base}/api/v1/requests?role=approver'
  curl -s -H "Authorization: Bearer $BOB" -H 'content-type: application/json' \
       -d '{{"digest":"<digest from the request>"}}' {base}/api/v1/requests/<id>/approve
  (then the same as carol: the request is approved once both teams have approved)

Or with the CLI (sign in as alice in the browser, then approve as bob and carol):

  export COUNTERSIGN_SERVER={base}
  countersign login
  countersign request deploy-prod -p service=api -p version=1.4.2 --reason "hotfix INC-42" --wait
  COUNTERSIGN_ID_TOKEN=$(countersign dev token bob) countersign approve <id>     # another terminal
  COUNTERSIGN_ID_TOKEN=$(countersign dev token carol) countersign approve <id>
"#,
        temp = if temporary {
            "   (temporary; gone when the sandbox stops)"
        } else {
            ""
        },
        users = users.join("\n"),
    ));
}

/// The sandbox's banner and `dev token` are its interface, on stdout.
fn say(text: &str) {
    crate::output::out(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn sandbox_configuration_is_valid() {
        let text = config_text(8080, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let settings = countersign_config::load_str(
            &text,
            "dev",
            &Env::from_pairs(Vec::<(String, String)>::new()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.gates.len(), 3);
        assert_eq!(settings.issuers.len(), 2);
    }
}
