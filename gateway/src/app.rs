//! Wiring: builds the shared state from config, and runs the API and dispatch together.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Role};
use crate::config::Config;
use crate::dispatch::{DispatchControl, Dispatcher};
use crate::domain::{Channel, PhoneNumber};
use crate::fallback::{FallbackPolicy, FollowUps};
use crate::fanout::{Fanout, FanoutError};
use crate::intake::appointments::change::AppointmentChanges;
use crate::intake::approval::texts::StaffTexts;
use crate::intake::approval::Approvals;
use crate::intake::invite::{vapid_public_key, Invitations};
use crate::intake::scheduled::Schedules;
use crate::intake::sources::poller::{spawn_pollers, Source, SourcesHealth};
use crate::intake::sources::watch::SourceWatch;
use crate::intake::staff::inbox::{CommandLimits, StaffInbox};
use crate::intake::status::StatusChanges;
use crate::links::{NoSecret, SignedLinks};
use crate::providers::{ProviderError, ProviderRegistry};
use crate::render::{LoadError, RenderBudget, RenderError, TemplateRegistry};
use crate::schedule::{system_clock, Clock};
use crate::store::{self, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Propagation;
use crate::web::follows::FollowLimits;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A shipped template is broken.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A provider could not be built.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The message templates could not be loaded.
    #[error(transparent)]
    Templates(#[from] LoadError),
    /// An interrupted fan-out could not be resumed.
    #[error(transparent)]
    Fanout(#[from] FanoutError),
    /// A status source cannot be polled.
    #[error(transparent)]
    Source(#[from] crate::intake::sources::poller::BadSource),
    /// The status source pollers could not start.
    #[error(transparent)]
    Pollers(#[from] crate::intake::sources::poller::StartError),
    /// The listener failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler and worker shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Turns triggers into messages.
    pub fanout: Arc<Fanout>,
    /// Message wording.
    pub templates: Arc<TemplateRegistry>,
    /// Ways out.
    pub providers: Arc<ProviderRegistry>,
    /// Settings.
    pub config: Arc<Config>,
    /// Pokes idle dispatch workers when new messages land.
    pub wake: Arc<Notify>,
    /// Prometheus metrics: recorded by dispatch, served at `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Rate limiters and provider circuits, shared by this process's dispatch workers.
    pub dispatch: Arc<DispatchControl>,
    /// Where fan-out and dispatch read "now" for quiet hours (tests set the time of day).
    pub clock: Clock,
    /// The per-address rate of anonymous push follows.
    pub follow_limits: Arc<FollowLimits>,
    /// The per-address rate of push receipts: the same kind of allowance as follows, with
    /// its own budget (`[push] receipts_per_address_per_minute`).
    pub receipt_limits: Arc<FollowLimits>,
    /// Console sign-in throttle and password-check limit.
    pub signin: Arc<crate::web::signin_guard::SigninGuard>,
    /// Text commands per staff number.
    pub staff_limits: Arc<CommandLimits>,
    /// The supplier status sources the leader polls (from `[[sources]]`).
    pub sources: Arc<Vec<Source>>,
    /// Each status source's state, as its poller records it.
    pub sources_health: SourcesHealth,
}

impl AppState {
    /// Connects to and migrates the database, compiles templates and builds providers.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let store = store::connect(&config.database.url, config.database.max_connections).await?;
        store.migrate().await?;
        let providers = Arc::new(ProviderRegistry::for_gateway(&config)?);
        Self::with_parts(config, store, providers).await
    }

    /// Builds the state around an already migrated store and a given set of providers,
    /// loading the message templates (the shipped ones on first start).
    pub async fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        providers: Arc<ProviderRegistry>,
    ) -> Result<Self, StartError> {
        PhoneNumber::load_metadata();
        let templates = Arc::new(
            TemplateRegistry::load_within(
                store.as_ref(),
                RenderBudget::from_config(&config.templates),
            )
            .await?,
        );
        let wake = Arc::new(Notify::new());
        let dispatch = Arc::new(DispatchControl::new(&providers, &config));
        let fanout = Arc::new(
            Fanout::new(
                store.clone(),
                templates.clone(),
                config.fanout.batch_size,
                wake.clone(),
            )
            .with_concurrency(fanout_places(&config))
            .with_quiet_hours(config.quiet_hours())
            .with_nhs_app(!providers.for_channel(Channel::NhsApp).is_empty()),
        );
        let metrics = Arc::new(Metrics::new());
        let follows_per_minute = config.push.follows_per_address_per_minute;
        let receipts_per_minute = config.push.receipts_per_address_per_minute;
        for channel in Channel::ALL {
            for provider in providers.for_channel(channel) {
                metrics.add_provider(channel, provider.name());
            }
        }
        let signin = Arc::new(crate::web::signin_guard::SigninGuard::new(
            config.signin.clone(),
        ));
        let sources = config
            .sources
            .iter()
            .map(Source::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let staff_limits = Arc::new(CommandLimits::new(
            config.approval.commands_per_number_per_hour,
        ));
        Ok(Self {
            signin,
            staff_limits,
            sources: Arc::new(sources),
            sources_health: SourcesHealth::default(),
            store,
            fanout,
            templates,
            providers,
            config: Arc::new(config),
            wake,
            metrics,
            dispatch,
            clock: system_clock(),
            follow_limits: Arc::new(FollowLimits::new(follows_per_minute)),
            receipt_limits: Arc::new(FollowLimits::new(receipts_per_minute)),
        })
    }

    /// The same state with fan-out and dispatch judging quiet hours by `clock` (tests set
    /// the time of day).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock.clone();
        let fanout = Fanout::new(
            self.store.clone(),
            self.templates.clone(),
            self.config.fanout.batch_size,
            self.wake.clone(),
        )
        .with_concurrency(fanout_places(&self.config))
        .with_quiet_hours(self.config.quiet_hours())
        .with_nhs_app(self.nhs_app())
        .with_clock(clock);
        self.fanout = Arc::new(fanout);
        self
    }

    /// A new dispatch worker over this state.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            self.dispatch.clone(),
            self.config.dispatch.clone(),
            self.wake.clone(),
        )
        .with_unsubscribe_links(self.signed_links().ok())
        .with_quiet_hours(self.config.quiet_hours(), self.clock.clone())
        .with_metrics(self.metrics.clone())
        .with_rerouting(self.fanout.clone())
        .with_fallback(FallbackPolicy::from_config(&self.config.fallback))
        .with_propagation(self.propagation())
    }

    /// Whether trace context is recorded with work and continued by it (spans are exported).
    pub fn propagation(&self) -> Propagation {
        Propagation::from_config(&self.config.telemetry)
    }

    /// What posting a status change takes.
    pub fn status_changes(&self) -> StatusChanges {
        StatusChanges {
            store: self.store.clone(),
            fanout: self.fanout.clone(),
            dispatch: self.dispatch.clone(),
            answer_within: self.config.fanout.answer_within(),
            propagation: self.propagation(),
        }
    }

    /// What proposing, previewing and approving status changes takes.
    pub fn approvals(&self) -> Approvals {
        Approvals {
            store: self.store.clone(),
            status_changes: self.status_changes(),
            texts: StaffTexts::new(
                self.providers.clone(),
                Duration::from_secs(self.config.approval.answer_timeout_seconds),
            ),
            config: self.config.approval.clone(),
        }
    }

    /// What planning status changes ahead, and posting them when due, takes.
    pub fn schedules(&self) -> Schedules {
        Schedules {
            store: self.store.clone(),
            status_changes: self.status_changes(),
            clock: self.clock.clone(),
            config: self.config.schedule.clone(),
        }
    }

    /// What reading and answering staff texts takes.
    pub fn staff_inbox(&self) -> StaffInbox {
        StaffInbox {
            approvals: self.approvals(),
            limits: self.staff_limits.clone(),
        }
    }

    /// The same state polling `sources` instead of the configured ones (tests poll loopback
    /// suppliers more often than the configuration allows).
    pub fn with_sources(mut self, sources: Vec<Source>) -> Self {
        self.sources = Arc::new(sources);
        self
    }

    /// Each status source's state: last success, last error, failures in a row.
    pub fn sources_health(&self) -> SourcesHealth {
        self.sources_health.clone()
    }

    /// What making an appointment change takes.
    pub fn appointment_changes(&self) -> AppointmentChanges {
        AppointmentChanges {
            store: self.store.clone(),
            templates: self.templates.clone(),
            wake: self.wake.clone(),
            propagation: self.propagation(),
            nhs_app: self.nhs_app(),
        }
    }

    /// Whether an NHS App provider is configured, so patients have an NHS App contact.
    pub fn nhs_app(&self) -> bool {
        !self.providers.for_channel(Channel::NhsApp).is_empty()
    }

    /// What following up messages not confirmed by their deadline takes.
    pub fn follow_ups(&self) -> FollowUps {
        FollowUps::new(
            &self.config.fallback,
            self.fanout.clone(),
            self.appointment_changes(),
        )
    }

    /// What sending push invitations takes (the link secret as the environment holds it now).
    pub fn invitations(&self) -> Invitations {
        Invitations {
            store: self.store.clone(),
            templates: self.templates.clone(),
            wake: self.wake.clone(),
            links: self.signed_links(),
            vapid_public_key: vapid_public_key(&self.config.providers),
        }
    }

    /// Unsubscribe and invitation links, with the secret as the environment holds it now.
    pub fn signed_links(&self) -> Result<SignedLinks, NoSecret> {
        SignedLinks::from_config(&self.config.receipts)
    }
}

/// Serves the API on `listener` and, if enabled, runs a dispatch worker, until `shutdown`
/// (`serve_as` with the role `all`).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    serve_as(state, Role::All, listener, shutdown).await
}

/// Runs what `role` says until `shutdown`: the API (resuming fan-outs a stopped process left
/// unfinished) or only the health and metrics routes, and a dispatch worker if the role and
/// `[dispatch] enabled` allow. The instance registers in the database first (see `cluster`),
/// and deregisters once the worker has stopped.
pub async fn serve_as(
    state: AppState,
    role: Role,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    if role.serves_api() {
        // Never fatal: a broadcast that cannot be resumed is logged (and marked failed if
        // its wording cannot be rendered); the gateway still listens and dispatches.
        match state.fanout.resume_unfinished().await {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(resumed, "finished interrupted fan-outs"),
            Err(e) => tracing::error!(error = %e, "could not list interrupted fan-outs"),
        }
    }
    let tidying = role.serves_api().then(|| {
        let approvals = state.approvals();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { tidy_proposals(approvals, shutdown).await })
    });
    // Every API instance posts due scheduled notices: claims and idempotency keys keep each
    // occurrence to one broadcast.
    let scheduling = role.serves_api().then(|| {
        let schedules = state.schedules();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { schedules.run(shutdown).await })
    });
    let dispatches = role.dispatches() && state.config.dispatch.enabled;
    let cluster = Cluster::join(
        state.store.clone(),
        state.dispatch.clone(),
        &state.config,
        role,
        dispatches,
    )
    .await?;
    // Every instance runs the pollers; they poll only while this instance leads.
    let pollers = if state.sources.is_empty() {
        None
    } else {
        let watch = SourceWatch {
            approvals: state.approvals(),
        };
        Some(spawn_pollers(
            state.sources.to_vec(),
            state.config.status_sources.address_policy(),
            Arc::new(watch),
            cluster.leading(),
            state.sources_health.clone(),
            shutdown.clone(),
        )?)
    };
    let worker = dispatches.then(|| {
        let dispatcher = state.dispatcher().with_owner(cluster.id().to_string());
        let ready_at = cluster.ready_at();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // A joining instance claims nothing until the others have shrunk their shares.
            tokio::select! {
                _ = tokio::time::sleep_until(ready_at) => dispatcher.run(shutdown).await,
                _ = shutdown.cancelled() => {}
            }
        })
    });
    // Every dispatching instance follows up overdue messages: the store keeps each to one.
    let following = dispatches.then(|| {
        let follow_ups = state.follow_ups();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { follow_ups.run(shutdown).await })
    });
    let router = if role.serves_api() {
        crate::http::router(state.clone())
    } else {
        crate::http::ops_router(state.clone())
    };
    // Connections' addresses are kept for handlers that count per client (anonymous follows,
    // console sign-in).
    let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    if let Some(worker) = worker {
        // In-flight sends get a bounded time to finish; leases not given back simply expire.
        if tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .is_err()
        {
            tracing::warn!("dispatch worker did not stop within 30 s; its leases will expire");
        }
    }
    if let Some(tidying) = tidying {
        let _ = tidying.await;
    }
    if let Some(scheduling) = scheduling {
        let _ = scheduling.await;
    }
    if let Some(following) = following {
        let _ = following.await;
    }
    if let Some(pollers) = pollers {
        // A poller finishes the reading it is delivering; one stuck longer is dropped.
        if tokio::time::timeout(Duration::from_secs(30), pollers.stopped())
            .await
            .is_err()
        {
            tracing::warn!("a status source poller did not stop within 30 s");
        }
    }
    cluster.leave().await;
    Ok(served?)
}

/// Expires proposals whose time ran out and posts approved ones left unposted, every few
/// seconds until `shutdown` (every API instance does: both steps are idempotent).
async fn tidy_proposals(approvals: Approvals, shutdown: CancellationToken) {
    loop {
        if let Err(e) = approvals.tidy().await {
            tracing::warn!(error = %e, "could not tidy proposed status changes");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: no new claims; letting in-flight sends finish");
        token.cancel();
    });
}

/// Fan-outs planning at once: half the database pool, so that a storm of status changes
/// leaves connections for the API's other requests and for dispatch.
fn fanout_places(config: &Config) -> usize {
    (config.database.max_connections as usize / 2).max(1)
}
