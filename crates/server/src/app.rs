//! Start-up: from resolved settings to a listening server with its workers.
//! `Application::build` binds first (port 0 in tests), so callers learn the address before
//! serving starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use countersign_config::Settings;
use countersign_core::{Clock, Engine};
use countersign_identity::Verifier;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use countersign_notify::{Deliverer, Notifier, RetryPolicy};
use countersign_tokens::{Kek, KeyRing, SigningAlg};

pub use crate::issuers::issuer_settings;

use crate::changes::Changes;
use crate::clock::SystemClock;
use crate::session::Sessions;
use crate::state::{AppState, Shared};

/// Knobs that are not configuration: what tests and the dev sandbox inject.
pub struct BuildOptions {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Extra routes merged into the app (the dev sandbox mounts its issuer here).
    pub extra_routes: Option<axum::Router>,
    /// An already-bound listener to serve on instead of `server.listen`.
    pub listener: Option<TcpListener>,
    /// How often the expiry sweeper runs; `None` disables it (tests call it directly).
    pub sweep_every: Option<Duration>,
    /// How often the webhook worker looks for due deliveries; `None` disables it.
    pub deliver_every: Option<Duration>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("sweep_every", &self.sweep_every)
            .finish_non_exhaustive()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            extra_routes: None,
            listener: None,
            sweep_every: Some(Duration::from_secs(5)),
            deliver_every: Some(Duration::from_millis(500)),
        }
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    sweep_every: Option<Duration>,
    deliverer: Deliverer,
    deliver_every: Option<Duration>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store (applying migrations), builds the verifier and the engine, and binds.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let stores = countersign_store::open_stores(&settings.server.database)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    redact_url(&settings.server.database)
                )
            })?;
        let issuers = settings
            .issuers
            .iter()
            .map(issuer_settings)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let verifier = Verifier::new(issuers, countersign_identity::http_client())
            .map_err(|e| anyhow::anyhow!("issuers: {e}"))?;
        let kek = Kek::parse(settings.server.key_encryption_key.expose())
            .map_err(|e| anyhow::anyhow!("server.key_encryption_key: {e}"))?;
        let alg: SigningAlg = settings
            .server
            .signing_alg
            .parse()
            .map_err(|e| anyhow::anyhow!("server.signing_alg: {e}"))?;
        let issuer = settings
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let sessions = Sessions::new(&settings, stores.sessions.clone(), kek.clone())?;
        let keys = KeyRing::load(stores.keys.clone(), kek, alg, issuer, options.clock.clone())
            .await
            .map_err(|e| anyhow::anyhow!("signing keys: {e}"))?;
        let changes = Changes::new();
        let gates = Arc::new(settings.gates.clone());
        let w = &settings.webhooks;
        let policy = RetryPolicy {
            max_attempts: w.max_attempts,
            timeout: w.timeout.to_std().unwrap_or(Duration::from_secs(10)),
            backoff_base: w.backoff_base.to_std().unwrap_or(Duration::from_secs(5)),
            backoff_max: w.backoff_max.to_std().unwrap_or(Duration::from_secs(3600)),
        };
        let notifier = Notifier::new(
            stores.notices.clone(),
            stores.store.clone(),
            gates.clone(),
            Arc::new(settings.notifications.channels.clone()),
            options.clock.clone(),
            policy,
            settings.server.public_url.as_str(),
        );
        let listener = Arc::new(Wakes {
            changes: changes.clone(),
            notifier: (!settings.notifications.channels.is_empty()).then(|| notifier.clone()),
        });
        let engine = Engine::new(stores.store, options.clock.clone(), gates.clone())
            .with_listener(listener)
            .with_audit_readers(settings.server.audit_readers.clone());
        let deliverer = Deliverer::new(stores.outbox.clone(), gates, options.clock.clone(), policy);
        let listener = match options.listener {
            Some(l) => l,
            None => TcpListener::bind(settings.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", settings.server.listen))?,
        };
        let state = AppState::new(Shared {
            engine,
            verifier,
            keys,
            outbox: stores.outbox,
            changes,
            settings: Arc::new(settings),
            sessions,
            directory: crate::directory::Directory::new(stores.notices.clone()),
            notices: stores.notices,
            notifier,
        });
        let mut router = crate::router::router(state.clone());
        if let Some(extra) = options.extra_routes {
            router = router.merge(extra);
        }
        Ok(Self {
            listener,
            router,
            state,
            sweep_every: options.sweep_every,
            deliverer,
            deliver_every: options.deliver_every,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The shared state (tests use it to reach the engine).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The notification worker (tests drive it with `run_once`).
    pub fn notifier(&self) -> &Notifier {
        &self.state.notifier
    }

    /// The webhook worker (tests drive it with `run_once`).
    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// Serves until `shutdown` resolves, then finishes in-flight calls.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sweeper = self
            .sweep_every
            .map(|every| spawn_sweeper(self.state.clone(), every));
        let worker = self
            .deliver_every
            .map(|every| self.deliverer.clone().spawn(every));
        let notifier = self
            .deliver_every
            .map(|every| self.state.notifier.clone().spawn(every));
        // Discover issuers in the background: an issuer served by this very process (the dev
        // sandbox) answers only once serving has started.
        let warm = self.state.clone();
        tokio::spawn(async move { warm.verifier.refresh_all().await });
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        for task in [sweeper, worker, notifier].into_iter().flatten() {
            task.abort();
        }
        result.context("server failed")
    }

    /// Serves in a background task (tests); the task ends when the runtime does.
    pub fn spawn(self) -> (SocketAddr, JoinHandle<anyhow::Result<()>>) {
        let addr = self.local_addr();
        (addr, tokio::spawn(self.run_until(std::future::pending())))
    }
}

/// After each committed change: wakes long polls and event streams, and the notification
/// worker (when channels are configured), so a notification leaves within moments.
struct Wakes {
    changes: Changes,
    notifier: Option<Notifier>,
}

impl countersign_core::ports::ChangeListener for Wakes {
    fn request_changed(&self, id: &countersign_core::RequestId, version: i64) {
        self.changes.request_changed(id, version);
        if let Some(n) = &self.notifier {
            n.wake();
        }
    }
}

fn spawn_sweeper(state: AppState, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.engine.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired pending requests"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
            state.sessions.purge(state.engine.now()).await;
        }
    })
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are installed when this function
/// is called, not when the future is first polled, so a signal that arrives during start-up
/// still shuts down gracefully instead of killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { () = wait(interrupt) => {}, () = wait(terminate) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down; finishing in-flight calls");
    }
}
