//! Dispatch: claims due messages from the outbox with a lease, hands them to providers,
//! and records each attempt as soon as it ends.
//!
//! A message's outcome is written before its concurrency slot is freed, so a kill can
//! repeat at most `concurrency` messages: those in flight at the kill.

pub mod quiet;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::DispatchConfig;
use crate::domain::{Channel, Priority};
use crate::outbox::{completion, RetryPolicy};
use crate::providers::{Outgoing, PracticeRef, ProviderRegistry, PushKeys, SendError};
use crate::receipts;
use crate::store::{ClaimedMessage, Store, StoreError};

/// One dispatch worker: a claim loop with bounded concurrency.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    providers: Arc<ProviderRegistry>,
    config: DispatchConfig,
    policy: RetryPolicy,
    owner: String,
    wake: Arc<Notify>,
    practices: Arc<Mutex<HashMap<i64, PracticeRef>>>,
    links: Option<UnsubscribeLinks>,
}

/// Where unsubscribe links point and what signs them.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    /// The gateway's public base URL, without a trailing slash.
    pub public_url: String,
    /// The signing secret.
    pub secret: String,
}

impl Dispatcher {
    /// A worker with a fresh, unique lease owner name.
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<ProviderRegistry>,
        config: DispatchConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let owner = format!(
            "worker-{}-{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Self {
            store,
            policy: RetryPolicy::from_config(&config),
            providers,
            config,
            owner,
            wake,
            practices: Arc::default(),
            links: None,
        }
    }

    /// Adds one-click unsubscribe links to bulk email.
    pub fn with_unsubscribe_links(mut self, links: Option<UnsubscribeLinks>) -> Self {
        self.links = links;
        self
    }

    /// The name this worker's leases carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` is cancelled: then stops claiming, lets in-flight sends finish
    /// and gives back the leases of messages it had not started.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, concurrency = self.config.concurrency, "dispatch worker started");
        let idle = Duration::from_millis(self.config.poll_interval_ms);
        while !shutdown.is_cancelled() {
            match self.dispatch_batch(&shutdown).await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(idle) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "dispatch: store failed; retrying shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(idle * 4) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        match self.store.release_leases(&self.owner, Utc::now()).await {
            Ok(n) => tracing::info!(owner = %self.owner, released = n, "dispatch worker stopped"),
            Err(e) => {
                tracing::warn!(error = %e, "dispatch: could not release leases; they will expire")
            }
        }
    }

    /// Sends everything due now, then returns: for tests and one-shot runs.
    pub async fn run_until_idle(&self) -> Result<u64, StoreError> {
        let never = CancellationToken::new();
        let mut total = 0;
        loop {
            let n = self.dispatch_batch(&never).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// Claims one batch and sends it with bounded concurrency. Returns how many were claimed.
    async fn dispatch_batch(&self, shutdown: &CancellationToken) -> Result<usize, StoreError> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::seconds(self.config.lease_seconds as i64);
        let claimed = self
            .store
            .claim_due(&self.owner, now, lease_until, self.config.claim_batch)
            .await?;
        let count = claimed.len();
        let results: Vec<Result<(), StoreError>> = stream::iter(claimed)
            .map(|message| self.send_and_record(message, shutdown))
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(count)
    }

    /// What the provider needs: the message, who it is from, and for push the browser's keys.
    async fn outgoing(&self, message: &ClaimedMessage) -> Result<Outgoing, StoreError> {
        let practice = self.practice(message.practice_id).await?;
        let push = match (message.channel, message.contact_id) {
            (Channel::Push, Some(contact_id)) => self
                .store
                .push_keys(contact_id)
                .await?
                .map(|(p256dh, auth)| PushKeys { p256dh, auth }),
            _ => None,
        };
        let unsubscribe_url = match (
            message.channel,
            message.priority,
            message.contact_id,
            &self.links,
        ) {
            (Channel::Email, Priority::Bulk, Some(contact_id), Some(links)) => Some(format!(
                "{}/unsubscribe/{}",
                links.public_url,
                receipts::unsubscribe_token(&links.secret, contact_id)
            )),
            _ => None,
        };
        Ok(Outgoing {
            message_id: message.id,
            channel: message.channel,
            address: message.address.clone(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            html: message.body_html.clone(),
            priority: message.priority,
            practice,
            unsubscribe_url,
            push,
        })
    }

    /// The practice a message is from, read once per worker and then remembered.
    async fn practice(&self, practice_id: i64) -> Result<PracticeRef, StoreError> {
        if let Some(known) = self
            .practices
            .lock()
            .ok()
            .and_then(|m| m.get(&practice_id).cloned())
        {
            return Ok(known);
        }
        let practice = match self.store.practice_by_id(practice_id).await? {
            Some(p) => PracticeRef {
                ods_code: p.ods_code.to_string(),
                name: p.name,
                reply_to: p.email,
            },
            None => PracticeRef::default(),
        };
        if let Ok(mut known) = self.practices.lock() {
            known.insert(practice_id, practice.clone());
        }
        Ok(practice)
    }

    async fn send_and_record(
        &self,
        message: ClaimedMessage,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        if shutdown.is_cancelled() {
            // Not started: its lease is given back when the worker stops.
            return Ok(());
        }
        let started_at = Utc::now();
        let (provider_name, result) = if message.attempt_no > self.policy.max_attempts as i32 {
            // Claimed again after repeated crashes mid-send: stop before it loops for ever.
            let reason = format!(
                "gave up: {} attempts ended without an outcome",
                message.attempt_no - 1
            );
            (None, Err(SendError::Permanent { reason }))
        } else {
            match self.providers.for_channel(message.channel).first() {
                Some(provider) => {
                    let outgoing = self.outgoing(&message).await?;
                    (
                        Some(provider.name().to_string()),
                        provider.send(&outgoing).await,
                    )
                }
                None => (
                    None,
                    Err(SendError::Permanent {
                        reason: format!(
                            "no provider is configured for the {} channel",
                            message.channel
                        ),
                    }),
                ),
            }
        };
        if let Err(e) = &result {
            tracing::warn!(message = message.id, attempt = message.attempt_no, error = %e, "send failed");
        }
        if let (Err(SendError::BadRecipient { .. }), Some(contact_id)) =
            (&result, message.contact_id)
        {
            // Later fan-outs skip the address; an expired push subscription is removed.
            match message.channel {
                Channel::Push => self.store.remove_contact(contact_id).await?,
                Channel::Sms | Channel::Email => {
                    self.store
                        .mark_bad_recipient(contact_id, Utc::now())
                        .await?
                }
            }
        }
        let done = completion(
            &message,
            provider_name.as_deref(),
            result,
            &self.policy,
            started_at,
            Utc::now(),
        );
        if !self.store.complete(&self.owner, &done).await? {
            tracing::warn!(
                message = message.id,
                "lease was lost before the outcome was recorded"
            );
        }
        Ok(())
    }
}
