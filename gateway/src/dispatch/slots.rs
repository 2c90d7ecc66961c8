//! A worker's concurrency slots (`dispatch.concurrency`), shared fairly between channels.
//!
//! A channel alone may use every slot. While other channels have messages waiting, a channel
//! holding its fair share (the slots divided among the channels with messages held or
//! waiting) takes no more until each of them has its share too. So a slow or stalled channel
//! (an SMS provider answering in seconds) cannot hold the slots email and push need, and the
//! total in flight, which bounds the messages a kill can repeat, stays `concurrency`. A
//! channel whose every provider is paused or out of rotation claims no share meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::lanes::{channel_index, Lanes};
use crate::domain::Channel;

/// How often a channel held back by fairness looks again, should no release wake it
/// (another channel's demand can end without a slot being freed).
/// Channels, the length of per-channel arrays.
const CHANNELS: usize = Channel::ALL.len();

const RECHECK: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Counts {
    /// Slots held, per channel.
    held: [usize; CHANNELS],
    /// Senders waiting for a slot, per channel.
    wanting: [usize; CHANNELS],
}

/// Says whether a channel's messages cannot go now (every provider paused or open).
pub type HeldBack = Box<dyn Fn(Channel) -> bool + Send + Sync>;

/// The slots of one worker.
pub struct Slots {
    total: usize,
    lanes: Arc<Lanes>,
    held_back: HeldBack,
    counts: Mutex<Counts>,
    freed: Notify,
}

/// One slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    channel: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.held[self.channel] = counts.held[self.channel].saturating_sub(1);
        drop(counts);
        self.slots.freed.notify_waiters();
    }
}

impl Slots {
    /// `total` slots (at least one) for the channels whose messages wait in `lanes`.
    pub fn new(total: usize, lanes: Arc<Lanes>) -> Self {
        Self {
            total: total.max(1),
            lanes,
            held_back: Box::new(|_| false),
            counts: Mutex::default(),
            freed: Notify::new(),
        }
    }

    /// Leaves out of the fair shares the channels `held_back` says cannot send now.
    pub fn with_held_back(mut self, held_back: HeldBack) -> Self {
        self.held_back = held_back;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot for a message of `channel`.
    pub async fn acquire(self: Arc<Self>, channel: Channel) -> Slot {
        let i = channel_index(channel);
        self.lock().wanting[i] += 1;
        // Counted as wanting until it has its slot, even if this future is dropped.
        let wanting = WantingGuard {
            slots: &self,
            channel: i,
        };
        loop {
            let freed = self.freed.notified();
            if self.try_take(i) {
                drop(wanting);
                return Slot {
                    slots: self.clone(),
                    channel: i,
                };
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Takes a slot for channel `i` if one is free and fairness allows.
    fn try_take(&self, i: usize) -> bool {
        // Messages waiting for a channel that cannot send are no demand on the slots.
        let waiting: [usize; CHANNELS] = Channel::ALL.map(|c| {
            let waiting = self.lanes.waiting(c);
            if waiting > 0 && (self.held_back)(c) {
                0
            } else {
                waiting
            }
        });
        let mut counts = self.lock();
        let used: usize = counts.held.iter().sum();
        if used >= self.total {
            return false;
        }
        // Channels wanting slots: a message waiting in their lane or a sender waiting.
        let demand: [bool; CHANNELS] =
            std::array::from_fn(|c| waiting[c] > 0 || counts.wanting[c] > 0);
        let active = (0..CHANNELS)
            .filter(|&c| c == i || demand[c] || counts.held[c] > 0)
            .count();
        let share = self.total.div_ceil(active.max(1));
        let others_short = (0..CHANNELS).any(|c| c != i && demand[c] && counts.held[c] < share);
        if counts.held[i] >= share && others_short {
            return false;
        }
        counts.held[i] += 1;
        true
    }

    /// Slots held per channel, for tests.
    #[cfg(test)]
    fn held(&self) -> [usize; CHANNELS] {
        self.lock().held
    }
}

/// Stops counting a sender as wanting a slot when it gets one or gives up waiting.
struct WantingGuard<'a> {
    slots: &'a Slots,
    channel: usize,
}

impl Drop for WantingGuard<'_> {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.wanting[self.channel] = counts.wanting[self.channel].saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::dispatch::lanes::Next;
    use crate::dispatch::limits::RateLimits;
    use crate::domain::{ContactId, MessageId, PatientId, PracticeId, Priority};
    use crate::store::ClaimedMessage;

    fn unlimited() -> RateLimits {
        let limits = LimitsConfig {
            practice: None,
            practice_burst: 1,
            patient_bulk: None,
            patient_burst: 1,
        };
        RateLimits::from_config(&[], &limits)
    }

    fn message(id: i64, channel: Channel) -> ClaimedMessage {
        ClaimedMessage {
            id: MessageId::new(id),
            practice_id: PracticeId::new(1),
            patient_id: Some(PatientId::new(id)),
            follower_id: None,
            broadcast_id: None,
            contact_id: Some(ContactId::new(id)),
            channel,
            address: "x".into(),
            subject: None,
            body: "hi".into(),
            body_html: None,
            link: None,
            priority: Priority::Bulk,
            attempt_no: 1,
            created_at: chrono::Utc::now(),
            trace: None,
            template_key: "status.closed".into(),
        }
    }

    async fn take(slots: &Arc<Slots>, channel: Channel, n: usize) -> Vec<Slot> {
        let mut taken = Vec::new();
        for _ in 0..n {
            let slot =
                tokio::time::timeout(Duration::from_millis(200), slots.clone().acquire(channel))
                    .await
                    .expect("a slot in time");
            taken.push(slot);
        }
        taken
    }

    async fn blocked(slots: &Arc<Slots>, channel: Channel) -> bool {
        tokio::time::timeout(Duration::from_millis(60), slots.clone().acquire(channel))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_channel_alone_uses_every_slot() {
        let lanes = Arc::new(Lanes::default());
        let slots = Arc::new(Slots::new(8, lanes));
        let held = take(&slots, Channel::Sms, 8).await;
        assert!(blocked(&slots, Channel::Sms).await, "only 8 slots");
        drop(held);
        assert_eq!(slots.held(), [0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_slow_channel_keeps_to_its_share_while_others_wait() {
        let lanes = Arc::new(Lanes::default());
        let slots = Arc::new(Slots::new(9, lanes.clone()));
        // Email and push have messages waiting: SMS gets its third and no more.
        lanes.push(vec![message(1, Channel::Email), message(2, Channel::Push)]);
        let sms = take(&slots, Channel::Sms, 3).await;
        assert!(blocked(&slots, Channel::Sms).await);
        // Email and push still find their slots free at once, however long SMS holds its own.
        let email = take(&slots, Channel::Email, 3).await;
        let push = take(&slots, Channel::Push, 3).await;
        assert_eq!(slots.held(), [3, 3, 3, 0]);
        drop((email, push));
        // Once the others have nothing waiting, SMS may use the rest.
        for channel in [Channel::Email, Channel::Push] {
            assert!(matches!(lanes.next(channel, &unlimited()), Next::Send(_)));
        }
        let more = take(&slots, Channel::Sms, 6).await;
        assert_eq!(slots.held(), [9, 0, 0, 0]);
        drop((sms, more));
    }

    #[tokio::test]
    async fn a_channel_that_cannot_send_claims_no_share() {
        let lanes = Arc::new(Lanes::default());
        // Email's providers are all paused; its messages wait, its sender holds one slot.
        let slots = Arc::new(
            Slots::new(8, lanes.clone()).with_held_back(Box::new(|c| c == Channel::Email)),
        );
        lanes.push(vec![message(1, Channel::Email), message(2, Channel::Email)]);
        let _email = take(&slots, Channel::Email, 1).await;
        let _sms = take(&slots, Channel::Sms, 7).await;
        assert_eq!(slots.held(), [7, 1, 0, 0]);
    }
}
