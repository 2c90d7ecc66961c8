//! Withdrawing what a newer status change supersedes: the earlier broadcasts are marked at
//! once, their queued messages cancelled afterwards a page at a time.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};

use crate::domain::{BroadcastId, MessageId};
use crate::store::{supersede_reason, Broadcast, BroadcastStore, Store, StoreError};

/// Messages looked at per step when cancelling a superseded broadcast's queued messages:
/// small enough that each step's transaction holds its connection (and, on SQLite, the
/// writer) for milliseconds, so hundreds of practices withdrawing at once do not starve
/// their status POSTs or dispatch.
const CANCEL_PAGE: i64 = 1_000;

/// Broadcasts whose queued messages this process is cancelling now. A status POST, its
/// fan-out's head start and its full run each ask for the same broadcasts to be withdrawn;
/// only the first request starts a task, so a storm of superseding changes does not scan
/// every old list two or three times over. Keyed by the store too (its address), as one
/// process may hold several (the tests do).
static CANCELLING: LazyLock<Mutex<HashSet<(usize, BroadcastId)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// How many withdrawals run at once in this process: one. Withdrawing is cleanup (dispatch
/// already refuses to send a superseded broadcast's messages), and each running withdrawal
/// holds a database connection. The full-size national benchmark's superseding storms
/// started 600 at once, which took every connection of the API's pool from the status
/// POSTs that caused them (answers p50 8.8 to 15 s).
static WITHDRAWING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Marks the practice's broadcasts before `broadcast` superseded by it, in the store, and
/// returns them with the reason their unsent messages are cancelled with (nothing if a newer
/// change has superseded `broadcast` itself: then the newer one did this). The record of a
/// status change marks them already; a fan-out resumed at start-up repeats it, which repairs
/// a change recorded by a version that withdrew in a second step and died between the two.
pub async fn withdraw_before(
    store: &dyn BroadcastStore,
    broadcast: &Broadcast,
) -> Result<(Vec<BroadcastId>, String), StoreError> {
    let reason = supersede_reason(broadcast.status_change_id, broadcast.kind.as_str());
    if broadcast.superseded_by.is_some() {
        return Ok((Vec::new(), reason));
    }
    let superseded = store
        .supersede_earlier(
            broadcast.practice_id,
            broadcast.id,
            broadcast.status_change_id,
        )
        .await?;
    Ok((superseded, reason))
}

/// Cancels with `reason` the queued messages of `broadcasts`, a page at a time. Idempotent,
/// and safe to lose half way (a crash, a store error): dispatch withdraws the messages of
/// superseded broadcasts it claims unsent, so what is left here is cancelled there. Returns
/// how many messages were cancelled.
pub async fn cancel_unsent(
    store: &dyn BroadcastStore,
    broadcasts: &[BroadcastId],
    reason: &str,
) -> Result<u64, StoreError> {
    let mut cancelled = 0;
    for &broadcast_id in broadcasts {
        let mut after = MessageId::new(0);
        loop {
            let (n, last) = store
                .cancel_queued_page(broadcast_id, after, CANCEL_PAGE, reason, Utc::now())
                .await?;
            cancelled += n;
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
    }
    Ok(cancelled)
}

/// Runs [`cancel_unsent`] as its own task, one at a time per process ([`WITHDRAWING`]), so
/// that neither a status POST nor the newer broadcast's fan-out waits for a large list to be
/// withdrawn. A failure is logged; dispatch
/// withdraws what it leaves (see [`cancel_unsent`]).
pub fn cancel_unsent_in_background(
    store: Arc<dyn Store>,
    broadcasts: Vec<BroadcastId>,
    reason: String,
    since: DateTime<Utc>,
) {
    let key = Arc::as_ptr(&store) as *const () as usize;
    let broadcasts: Vec<BroadcastId> = {
        let mut cancelling = CANCELLING.lock().unwrap_or_else(|e| e.into_inner());
        broadcasts
            .into_iter()
            .filter(|id| cancelling.insert((key, *id)))
            .collect()
    };
    if broadcasts.is_empty() {
        return;
    }
    tokio::spawn(async move {
        // The semaphore is never closed; were it, the withdrawal would run unqueued.
        let _turn = WITHDRAWING.acquire().await.ok();
        let outcome = cancel_unsent(store.as_ref(), &broadcasts, &reason).await;
        {
            let mut cancelling = CANCELLING.lock().unwrap_or_else(|e| e.into_inner());
            for id in &broadcasts {
                cancelling.remove(&(key, *id));
            }
        }
        match outcome {
            Ok(0) => {}
            Ok(cancelled) => tracing::info!(
                cancelled,
                broadcasts = broadcasts.len(),
                took_ms = (Utc::now() - since).num_milliseconds(),
                "withdrew unsent messages of superseded broadcasts"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "could not withdraw all unsent messages of superseded broadcasts; dispatch withdraws the rest as it meets them"
            ),
        }
    });
}
