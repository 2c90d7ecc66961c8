//! Records outcomes in batches: every completion that arrives while one batch is being
//! written goes into the next (group commit), so a fast provider is not held to one
//! transaction per message. Each sender waits until its own outcome is stored.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::fence::Fence;
use crate::store::{Completion, OutboxStore};

/// Most outcomes written in one transaction.
const MAX_BATCH: usize = 512;

type Entry = (Completion, oneshot::Sender<bool>);

/// A handle for recording outcomes, with the fence its sends pass first (see `fence`); the
/// writer stops when every handle and the fence are dropped.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Entry>,
    fence: Arc<Fence>,
}

impl Recorder {
    /// A recorder and the writer to run for `owner`'s outcomes, fenced by leases of `lease`;
    /// the writer ends once every recorder and the fence are dropped and what they sent is
    /// stored.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        owner: String,
        lease: Duration,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let (fence, marker) = Fence::new(store.clone(), owner.clone(), lease);
        let writer = async move {
            tokio::join!(write(store, owner, rx), marker);
        };
        (Self { tx, fence }, writer)
    }

    /// The lease fence every send passes just before the provider is called.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    /// Stores one outcome; resolves once it is committed. Returns false if the lease had
    /// been lost (another worker reclaimed the message).
    pub async fn record(&self, completion: Completion) -> bool {
        let (done, stored) = oneshot::channel();
        if self.tx.send((completion, done)).await.is_err() {
            return false;
        }
        stored.await.unwrap_or(false)
    }
}

async fn write(store: Arc<dyn OutboxStore>, owner: String, mut rx: mpsc::Receiver<Entry>) {
    let mut batch: Vec<Entry> = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut batch, MAX_BATCH).await {
        let (completions, senders): (Vec<Completion>, Vec<oneshot::Sender<bool>>) =
            batch.drain(..).unzip();
        // An outcome is never dropped: while the database is away, sending waits for it.
        let mut pause = Duration::from_millis(100);
        let held = loop {
            match store.complete_many(&owner, &completions).await {
                Ok(held) => break held,
                Err(e) => {
                    tracing::error!(error = %e, count = completions.len(), "could not record outcomes; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        for ((c, done), held) in completions.iter().zip(senders).zip(held) {
            if !held {
                tracing::warn!(
                    message = c.message_id.get(),
                    "lease was lost before the outcome was recorded"
                );
            }
            let _ = done.send(held);
        }
    }
}

/// Group commit's intake: waits for one entry, then takes whatever else is already queued,
/// up to `max` in `batch`. False once every sender is gone and the queue is empty.
pub(super) async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max: usize,
) -> bool {
    let Some(first) = rx.recv().await else {
        return false;
    };
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(entry) => batch.push(entry),
            Err(_) => break,
        }
    }
    true
}
