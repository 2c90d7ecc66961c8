//! Batching: messages handed over at about the same time leave as one request per routing
//! plan, within NHS Notify's published limits for a request (45,000 messages, 5.2 MB).
//!
//! Dispatch hands messages over one at a time; each waits up to `linger` for others to
//! join it, then its request goes and each message gets its own answer. One message
//! alone goes to `/comms/v1/messages`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::providers::{Accepted, SendError};

/// The most messages NHS Notify takes in one batch request.
pub const MAX_MESSAGES: usize = 45_000;

/// The largest request body NHS Notify takes (5.2 MB).
pub const MAX_BYTES: usize = 5_200_000;

/// A batch request's bytes besides its messages: the JSON:API envelope, the routing plan
/// and batch reference, with room to spare.
pub const ENVELOPE_BYTES: usize = 512;

/// One message ready to go: its JSON:API `messages[]` entry, already serialised.
#[derive(Debug, Clone)]
pub struct Item {
    /// Our reference for it (`messageReference`), matched in NHS Notify's answer.
    pub reference: String,
    /// The routing plan it goes by.
    pub routing_plan: String,
    /// The entry, as JSON text.
    pub entry: String,
}

/// Limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages in one request, at most [`MAX_MESSAGES`].
    pub max_messages: usize,
    /// Bytes of one request body, at most [`MAX_BYTES`].
    pub max_bytes: usize,
    /// How long a message waits for others to join its request.
    pub linger: Duration,
}

/// Sends one request of messages sharing a routing plan, answering for each in order.
#[async_trait]
pub trait Post: Send + Sync + 'static {
    /// Posts `items` (one routing plan, within the limits); one answer per item, in order.
    async fn post(&self, items: &[Item]) -> Vec<Result<Accepted, SendError>>;
}

/// The messages `items` as requests: grouped by routing plan, then cut so that no request
/// has more than `limits.max_messages` messages or `limits.max_bytes` bytes. A message too
/// large to go alone is answered at once, permanently.
pub fn requests(items: Vec<Item>, limits: &Limits) -> (Vec<Vec<Item>>, Vec<(Item, SendError)>) {
    let mut by_plan: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for item in items {
        by_plan
            .entry(item.routing_plan.clone())
            .or_default()
            .push(item);
    }
    let mut requests = Vec::new();
    let mut too_large = Vec::new();
    for (_, items) in by_plan {
        let mut current: Vec<Item> = Vec::new();
        let mut bytes = ENVELOPE_BYTES;
        for item in items {
            // Each entry after the first adds a comma.
            let size = item.entry.len() + 1;
            if ENVELOPE_BYTES + size > limits.max_bytes {
                let reason = format!(
                    "the message is {} bytes, more than NHS Notify takes in a request",
                    item.entry.len()
                );
                too_large.push((item, SendError::Permanent { reason }));
                continue;
            }
            if current.len() == limits.max_messages || bytes + size > limits.max_bytes {
                requests.push(std::mem::take(&mut current));
                bytes = ENVELOPE_BYTES;
            }
            bytes += size;
            current.push(item);
        }
        if !current.is_empty() {
            requests.push(current);
        }
    }
    (requests, too_large)
}

/// A message waiting for its request's answer.
pub struct Pending {
    /// The message.
    pub item: Item,
    /// Where its answer goes.
    pub answer: oneshot::Sender<Result<Accepted, SendError>>,
}

/// Gathers messages into requests and sends them through `post`, until every sender of
/// `arrivals` is gone.
pub async fn gather(mut arrivals: mpsc::Receiver<Pending>, post: Arc<dyn Post>, limits: Limits) {
    while let Some(first) = arrivals.recv().await {
        let mut pending = vec![first];
        let until = tokio::time::Instant::now() + limits.linger;
        while pending.len() < limits.max_messages {
            match tokio::time::timeout_at(until, arrivals.recv()).await {
                Ok(Some(next)) => pending.push(next),
                _ => break,
            }
        }
        // Sent beside the gathering of the next requests.
        tokio::spawn(send_all(post.clone(), pending, limits));
    }
}

/// Sends the gathered messages as requests and answers each message.
async fn send_all(post: Arc<dyn Post>, pending: Vec<Pending>, limits: Limits) {
    let mut waiting: BTreeMap<String, Vec<oneshot::Sender<_>>> = BTreeMap::new();
    let mut items = Vec::with_capacity(pending.len());
    for p in pending {
        waiting
            .entry(p.item.reference.clone())
            .or_default()
            .push(p.answer);
        items.push(p.item);
    }
    let mut answer = |reference: &str, result: Result<Accepted, SendError>| {
        for to in waiting.remove(reference).unwrap_or_default() {
            // A sender that stopped waiting (shut down) needs no answer.
            let _ = to.send(result.clone());
        }
    };
    let (requests, too_large) = requests(items, &limits);
    for (item, error) in too_large {
        answer(&item.reference, Err(error));
    }
    let sends = requests.into_iter().map(|request| {
        let post = post.clone();
        async move {
            let results = post.post(&request).await;
            (request, results)
        }
    });
    for (request, results) in futures_util::future::join_all(sends).await {
        let mut results = results.into_iter();
        for item in request {
            let result = results.next().unwrap_or_else(|| {
                Err(SendError::Retryable {
                    reason: "NHS Notify: no answer for the message".into(),
                    retry_after: None,
                })
            });
            answer(&item.reference, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(plan: &str, n: usize, size: usize) -> Item {
        Item {
            reference: n.to_string(),
            routing_plan: plan.into(),
            entry: "x".repeat(size),
        }
    }

    #[test]
    fn requests_keep_to_one_plan_and_the_limits() {
        let limits = Limits {
            max_messages: 3,
            max_bytes: ENVELOPE_BYTES + 250,
            linger: Duration::ZERO,
        };
        let items = vec![
            item("a", 1, 100),
            item("b", 2, 10),
            item("a", 3, 100),
            item("a", 4, 100),
            item("a", 5, 1000),
            item("b", 6, 10),
            item("b", 7, 10),
            item("b", 8, 10),
        ];
        let (requests, too_large) = requests(items, &limits);
        let refs: Vec<Vec<&str>> = requests
            .iter()
            .map(|r| r.iter().map(|i| i.reference.as_str()).collect())
            .collect();
        assert_eq!(
            refs,
            vec![vec!["1", "3"], vec!["4"], vec!["2", "6", "7"], vec!["8"]]
        );
        assert_eq!(too_large.len(), 1);
        assert_eq!(too_large[0].0.reference, "5");
    }
}
