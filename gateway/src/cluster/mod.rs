//! Several gateway instances on one PostgreSQL database: each registers with a heartbeat,
//! divides the rate limits by the live dispatching instances, and one of them (the leader,
//! holding a lease in the database that it renews every heartbeat) runs the periodic jobs.
//!
//! The share is what keeps the cluster under a provider's rate: every instance takes `1/N`
//! of it, `N` read from the database at every heartbeat. A joining instance waits one and a
//! half heartbeats before it sends, so the others have shrunk their shares first; one that
//! cannot record its heartbeat stops sending before the others could take it for dead and
//! grow theirs.

mod leader;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::DispatchControl;
use crate::store::{ClusterStore, NewInstance, StoreResult};

/// What an instance runs: `gateway serve --role all|api|worker`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API and a dispatch worker.
    #[default]
    All,
    /// The API only (and the periodic jobs, if it leads).
    Api,
    /// A dispatch worker, with only `/healthz`, `/readyz` and `/metrics` served.
    Worker,
}

impl Role {
    /// The role's name as stored in `instances.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    /// Whether it serves the HTTP API (and resumes interrupted fan-outs).
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    /// Whether it runs a dispatch worker (unless `[dispatch] enabled` is false).
    pub fn dispatches(self) -> bool {
        self != Role::Api
    }
}

/// The timings every instance derives from `[cluster]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Time between heartbeats.
    pub beat: Duration,
    /// Heartbeats missed before the others take an instance for dead.
    pub missed_beats: u32,
}

impl Timing {
    /// From the `[cluster]` settings.
    pub fn from_config(config: &Config) -> Self {
        Self {
            beat: Duration::from_secs(config.cluster.heartbeat_seconds),
            missed_beats: config.cluster.missed_beats,
        }
    }

    /// An instance whose last heartbeat is older than this is dead.
    pub fn stale_after(&self) -> Duration {
        self.beat * self.missed_beats
    }

    /// How long a joining instance waits before sending: every other instance has had a
    /// heartbeat (and re-shared its limits) since this one registered.
    pub fn join_wait(&self) -> Duration {
        self.beat * 3 / 2
    }

    /// Without a recorded heartbeat for this long, an instance stops sending: half a beat
    /// before the others could take it for dead and grow their shares.
    pub fn fence_after(&self) -> Duration {
        self.stale_after().saturating_sub(self.beat / 2)
    }
}

/// This instance's membership: its heartbeat and its part in leader election, running
/// until [`Cluster::leave`].
pub struct Cluster {
    id: String,
    store: Arc<dyn ClusterStore>,
    ready_at: Instant,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    leading: watch::Receiver<bool>,
}

impl Cluster {
    /// Registers this instance, sets this process's share of the limits (held until the
    /// others have shrunk theirs, if there are others), and starts its heartbeat and its
    /// bid for leadership.
    pub async fn join(
        store: Arc<dyn ClusterStore>,
        control: Arc<DispatchControl>,
        config: &Config,
        role: Role,
        dispatches: bool,
    ) -> StoreResult<Self> {
        let timing = Timing::from_config(config);
        let host = host_name();
        let instance = NewInstance {
            id: format!(
                "{host}-{}-{:06x}",
                std::process::id(),
                rand::thread_rng().gen::<u32>() & 0xff_ffff
            ),
            role: role.as_str().to_string(),
            dispatches,
            host,
            pid: std::process::id(),
        };
        let others = store
            .register_instance(&instance, timing.stale_after())
            .await?;
        let ready_at = if dispatches && others > 0 {
            Instant::now() + timing.join_wait()
        } else {
            Instant::now()
        };
        if dispatches {
            control.limits.reshare(others + 1);
            control.limits.hold(Some(ready_at.into_std()));
        }
        tracing::info!(instance = %instance.id, role = role.as_str(), others, "joined the cluster");
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let heartbeat = Heartbeat {
            store: store.clone(),
            instance: instance.clone(),
            control,
            timing,
        };
        tasks.spawn(heartbeat.run(stop.clone()));
        let (leads, leading) = watch::channel(false);
        tasks.spawn(leader::run(
            store.clone(),
            instance.id.clone(),
            timing,
            config.retention.days,
            leads,
            stop.clone(),
        ));
        Ok(Self {
            id: instance.id,
            store,
            ready_at,
            stop,
            tasks,
            leading,
        })
    }

    /// This instance's name (its dispatch worker's lease owner).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this instance leads now: true from when it takes the leader's lease until a
    /// round of the leader's jobs fails (the lease may be lost) or the instance leaves. Work
    /// only the leader does (polling supplier status sources) waits on it. A leader frozen
    /// past its lease still reads true until its next round, so such work must be harmless
    /// to repeat.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// When this instance may start sending.
    pub fn ready_at(&self) -> Instant {
        self.ready_at
    }

    /// Stops the heartbeat (giving up leadership, if held) and removes this instance, so
    /// the others grow their shares at their next heartbeat.
    pub async fn leave(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        match self.store.deregister_instance(&self.id).await {
            Ok(()) => tracing::info!(instance = %self.id, "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "could not deregister; the others will find this instance dead")
            }
        }
    }
}

/// Keeps this instance's row fresh and its share of the limits in step with the count.
struct Heartbeat {
    store: Arc<dyn ClusterStore>,
    instance: NewInstance,
    control: Arc<DispatchControl>,
    timing: Timing,
}

impl Heartbeat {
    async fn run(self, stop: CancellationToken) {
        let limits = &self.control.limits;
        let mut last_recorded = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.beat) => {}
                _ = stop.cancelled() => return,
            }
            let beat = tokio::time::timeout(self.timing.beat, self.store.beat(&self.instance.id));
            let rejoin = match beat.await {
                Ok(Ok(true)) => last_recorded.elapsed() >= self.timing.fence_after(),
                Ok(Ok(false)) => {
                    tracing::warn!(instance = %self.instance.id, "the others took this instance for dead; registering again");
                    true
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not record the heartbeat");
                    self.fence_if_late(last_recorded);
                    continue;
                }
                Err(_) => {
                    tracing::warn!("recording the heartbeat took longer than a beat");
                    self.fence_if_late(last_recorded);
                    continue;
                }
            };
            last_recorded = Instant::now();
            if rejoin {
                // The others may have counted this instance out and grown their shares: wait
                // for them to count it in again, as a new instance does.
                let stale = self.timing.stale_after();
                match self.store.register_instance(&self.instance, stale).await {
                    Ok(others) if self.instance.dispatches && others > 0 => {
                        limits.reshare(others + 1);
                        let until = Instant::now() + self.timing.join_wait();
                        limits.hold(Some(until.into_std()));
                    }
                    Ok(_) => limits.hold(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not register again");
                        continue;
                    }
                }
            }
            if !self.instance.dispatches {
                continue;
            }
            match self.store.live_workers(self.timing.stale_after()).await {
                Ok(live) => {
                    if limits.reshare(live) {
                        tracing::info!(instances = limits.instances(), "rate limits re-shared");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not count live instances"),
            }
        }
    }

    /// Stops this instance's sends once its heartbeat has been missing long enough that the
    /// others may soon take it for dead.
    fn fence_if_late(&self, last_recorded: Instant) {
        if self.instance.dispatches && last_recorded.elapsed() >= self.timing.fence_after() {
            let until = std::time::Instant::now() + Duration::from_secs(3600);
            self.control.limits.hold(Some(until));
            tracing::warn!("no heartbeat recorded for too long: sending stops until it is");
        }
    }
}

/// The machine's name, for operators reading `instances`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lone_instance_leads_until_it_leaves() {
        use figment::providers::{Format, Toml};
        let folder = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gateway.db", folder.path().display());
        let store = crate::store::connect(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let config = Config::from_figment(figment::Figment::from(Toml::string(
            crate::config::DEFAULT_TOML,
        )))
        .unwrap();
        let providers = crate::providers::ProviderRegistry::from_config(&[]).unwrap();
        let control = Arc::new(DispatchControl::new(&providers, &config));
        let cluster = Cluster::join(store, control, &config, Role::Api, false)
            .await
            .unwrap();
        let mut leading = cluster.leading();
        tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|leads| *leads))
            .await
            .expect("the one SQLite instance leads")
            .unwrap();
        cluster.leave().await;
        assert!(!*leading.borrow(), "still leading after leaving");
    }

    #[test]
    fn an_instance_stops_sending_before_the_others_count_it_out() {
        let t = Timing {
            beat: Duration::from_secs(2),
            missed_beats: 3,
        };
        assert_eq!(t.stale_after(), Duration::from_secs(6));
        assert_eq!(t.fence_after(), Duration::from_secs(5));
        assert_eq!(t.join_wait(), Duration::from_secs(3));
        assert!(
            t.join_wait() > t.beat,
            "the others beat once before a joiner sends"
        );
        let quick = Timing {
            beat: Duration::from_secs(1),
            missed_beats: 2,
        };
        assert!(quick.fence_after() > quick.beat && quick.fence_after() < quick.stale_after());
    }
}
