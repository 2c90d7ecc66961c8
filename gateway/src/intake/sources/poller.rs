//! The poller: fetches each configured supplier status source (`[[sources]]`) and hands
//! the incidents it lists to an [`IncidentSink`] (the proposals side), on the cluster's
//! leader only.
//!
//! - **One task per source**, each on its own interval: a source that fails or hangs delays
//!   nothing but itself. All share one HTTP client, built on the outbound rules
//!   (`[status_sources]`): names resolved by the gateway and internal addresses refused at
//!   connect time, IP literals checked before the request, no proxy, no redirects.
//! - **Bounded polls.** A poll as a whole (connect, wait, read) has the source's timeout; the
//!   body is read chunk by chunk and refused as soon as it would pass
//!   [`MAX_DOCUMENT_BYTES`](super::MAX_DOCUMENT_BYTES), so a 50 MB answer costs at most
//!   the cap.
//! - **Conditional requests.** The `ETag` and `Last-Modified` of the last document delivered
//!   are sent back as `If-None-Match` and `If-Modified-Since`; a 304 is a success that
//!   delivers nothing (the sink already has that list). A document that fails to parse
//!   leaves the validators as they were, so it is fetched whole again.
//! - **Backoff.** After `n` failures in a row (error status, timeout, too large, malformed,
//!   refused address, transport error, sink error) the next poll waits a random time between `b/2` and
//!   `b`, where `b = interval * 2^n`, at most ten intervals or ten minutes, whichever is
//!   shorter (never less than one interval); a 429 or 503 `Retry-After` is honoured up to
//!   the same cap. A success resets it. Each failure is logged with the source's name and a
//!   short reason, never the document.
//! - **Whole lists.** Each successful poll delivers every incident the document lists now.
//!   Statuspage's `summary.json` lists only unresolved incidents, so the sink, which knows
//!   what it saw before, treats an incident that disappeared as resolved; the poller
//!   remembers no incidents. A sink that fails (its database is away) fails the poll: the
//!   validators are not kept, so the list is fetched whole and delivered again.
//! - **Leader only.** Polls run while `leading` is true (see
//!   [`Cluster::leading`](crate::cluster::Cluster::leading)); a poll whose answer arrives
//!   after the lead was lost delivers nothing. Validators are forgotten while not leading,
//!   so the first poll after taking the lead delivers the whole list.
//!
//! Each source's state (last success, last error, failures in a row, next poll) is kept in
//! [`SourcesHealth`] for the console and the API.

mod fetch;
mod health;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{feed, statuspage, Incident, MappingRule, SourceError, SourceMapping};
use crate::config::{SourceConfig, SourceKind};
use crate::outbound::AddressPolicy;
use fetch::{Fetched, Validators};

pub use fetch::PollError;
pub use health::{SourceHealth, SourcesHealth};

/// The longest backoff for a source polled at most every ten minutes.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A source ready to poll, from its `[[sources]]` table (or built directly by tests, with
/// intervals below the configured minimum).
#[derive(Debug, Clone)]
pub struct Source {
    /// Unique; names the source in logs and as the origin of its proposals.
    pub name: String,
    pub kind: SourceKind,
    pub url: url::Url,
    pub interval: Duration,
    /// For a whole poll, reading included.
    pub timeout: Duration,
    /// The supplier's status page for people, for incidents without a link of their own.
    pub link: Option<String>,
    pub mapping: SourceMapping,
}

/// A `[[sources]]` table that cannot be polled (config checks refuse these at load).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status source {name:?}: url is not a URL: {reason}")]
pub struct BadSource {
    pub name: String,
    pub reason: String,
}

impl Source {
    /// The source a `[[sources]]` table describes, its component and keyword maps turned
    /// into mapping rules.
    pub fn from_config(config: &SourceConfig) -> Result<Self, BadSource> {
        let url = url::Url::parse(&config.url).map_err(|e| BadSource {
            name: config.name.clone(),
            reason: e.to_string(),
        })?;
        let components = config
            .components
            .iter()
            .map(|(component, tag)| MappingRule::Component {
                component: component.clone(),
                tag: tag.clone(),
            });
        let keywords = config
            .keywords
            .iter()
            .map(|(keyword, tag)| MappingRule::Keyword {
                keyword: keyword.clone(),
                tag: tag.clone(),
            });
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            url,
            interval: Duration::from_secs(config.interval_seconds),
            timeout: Duration::from_secs(config.timeout_seconds),
            link: config.link.clone(),
            mapping: SourceMapping {
                rules: components.chain(keywords).collect(),
            },
        })
    }

    /// Whether the document lists only open incidents (Statuspage's summary), so an incident
    /// no longer listed is over; a feed keeps its history, resolved entries included.
    pub fn lists_only_open(&self) -> bool {
        self.kind == SourceKind::Statuspage
    }

    /// Reads a document of this source's kind.
    pub fn parse(&self, document: &[u8]) -> Result<Vec<Incident>, SourceError> {
        match self.kind {
            SourceKind::Statuspage => statuspage::parse_summary(document),
            SourceKind::Feed => feed::parse_feed(document),
        }
    }
}

/// Why a sink could not take a delivery (the database is down, say).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where incidents go: the proposals side. Called after each successful poll that brought a
/// document, one call at a time per source, and never cancelled midway by a shutdown.
#[async_trait]
pub trait IncidentSink: Send + Sync {
    /// Every incident `source`'s document lists now (possibly none), in its order. An
    /// incident that was delivered before and is missing now has left the document (see
    /// [`Source::lists_only_open`]). An error counts as a failed poll: the same document is
    /// fetched whole and delivered again after the backoff, not answered by a 304.
    async fn incidents(&self, source: &Source, incidents: Vec<Incident>) -> Result<(), SinkError>;
}

/// The HTTP client for the pollers could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the status source pollers: {0}")]
pub struct StartError(String);

/// The running pollers; dropping this aborts them (cancel `stop` and await
/// [`Pollers::stopped`] for a clean end).
pub struct Pollers {
    tasks: JoinSet<()>,
    health: SourcesHealth,
}

impl Pollers {
    /// Each source's state, updated as the pollers go.
    pub fn health(&self) -> SourcesHealth {
        self.health.clone()
    }

    /// Waits for every poller to end (after `stop` is cancelled, each finishes the
    /// delivery it may be making and ends).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts one poller per source, reaching only the addresses `addresses` permits, polling
/// while `leading` is true, until `stop`; each records its state in `health`.
pub fn spawn_pollers(
    sources: Vec<Source>,
    addresses: AddressPolicy,
    sink: Arc<dyn IncidentSink>,
    leading: watch::Receiver<bool>,
    health: SourcesHealth,
    stop: CancellationToken,
) -> Result<Pollers, StartError> {
    let client = fetch::client(addresses.clone()).map_err(StartError)?;
    let addresses = Arc::new(addresses);
    let mut tasks = JoinSet::new();
    for source in sources {
        health.update(&source.name, |_| {});
        let poller = Poller {
            source,
            client: client.clone(),
            addresses: addresses.clone(),
            sink: sink.clone(),
            health: health.clone(),
            leading: leading.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(poller.run());
    }
    Ok(Pollers { tasks, health })
}

/// One source's loop.
struct Poller {
    source: Source,
    client: reqwest::Client,
    addresses: Arc<AddressPolicy>,
    sink: Arc<dyn IncidentSink>,
    health: SourcesHealth,
    leading: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Poller {
    async fn run(mut self) {
        let name = self.source.name.clone();
        let mut validators = Validators::default();
        let mut failures: u32 = 0;
        loop {
            if !*self.leading.borrow_and_update() {
                validators = Validators::default();
                self.health.update(&name, |h| h.next_poll = None);
                tokio::select! {
                    changed = self.leading.changed() => match changed {
                        Ok(()) => continue,
                        Err(_) => return, // the cluster is gone
                    },
                    _ = self.stop.cancelled() => return,
                }
            }
            let fetched = tokio::select! {
                fetched = fetch::fetch(&self.client, &self.addresses, &self.source, &validators) => fetched,
                _ = self.stop.cancelled() => return,
            };
            let parsed = match fetched {
                Ok(Fetched::NotModified) => Ok(None),
                Ok(Fetched::Document { body, validators }) => self
                    .source
                    .parse(&body)
                    .map(|incidents| Some((incidents, validators)))
                    .map_err(PollError::from),
                Err(e) => Err(e),
            };
            let delivered = match parsed {
                Ok(Some((incidents, fresh))) => {
                    if !*self.leading.borrow() {
                        continue;
                    }
                    let count = incidents.len();
                    match self.sink.incidents(&self.source, incidents).await {
                        Ok(()) => {
                            validators = fresh;
                            self.health.update(&name, |h| h.incidents = count);
                            Ok(())
                        }
                        Err(e) => Err(PollError::Sink(crate::intake::sources::clean_text(
                            &e.to_string(),
                            200,
                        ))),
                    }
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            let wait = match delivered {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(source = %name, failures, "status source answers again");
                    }
                    failures = 0;
                    self.health.update(&name, |h| {
                        h.last_success = Some(Utc::now());
                        h.consecutive_failures = 0;
                    });
                    self.source.interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(self.source.interval, failures, rand::thread_rng().gen())
                        .max(error.retry_after().map_or(Duration::ZERO, |asked| {
                            asked.min(backoff_cap(self.source.interval))
                        }));
                    tracing::warn!(
                        source = %name,
                        kind = self.source.kind.as_str(),
                        failures,
                        retry_in_ms = wait.as_millis() as u64,
                        reason = %error,
                        "status source poll failed"
                    );
                    self.health.update(&name, |h| {
                        h.last_error = Some((Utc::now(), error.to_string()));
                        h.consecutive_failures = failures;
                    });
                    wait
                }
            };
            let next = chrono::Duration::from_std(wait)
                .ok()
                .map(|w| Utc::now() + w);
            self.health.update(&name, |h| h.next_poll = next);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

/// The wait after `failures` failures in a row (at least 1), for a random `draw` in
/// `[0, 1)`: between half of and all of `interval * 2^failures`, that capped by
/// [`backoff_cap`], and never less than `interval`.
fn backoff(interval: Duration, failures: u32, draw: f64) -> Duration {
    let doubled = interval.saturating_mul(1u32 << failures.clamp(1, 20));
    let base = doubled.min(backoff_cap(interval));
    base.mul_f64(0.5 + draw.clamp(0.0, 1.0) / 2.0).max(interval)
}

/// The longest wait between polls of a failing source: ten intervals or [`MAX_BACKOFF`],
/// whichever is shorter, but never less than one interval.
fn backoff_cap(interval: Duration) -> Duration {
    interval.saturating_mul(10).min(MAX_BACKOFF.max(interval))
}
