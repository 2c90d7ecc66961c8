//! Claimed messages waiting for their turn, per channel: urgent first, then the practices'
//! broadcasts taking turns, each within its practice's rate limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::limits::{RateLimits, Verdict};
use crate::domain::{BroadcastId, Channel, PracticeId, Priority};
use crate::store::ClaimedMessage;

/// What a channel should do next.
// Returned once per message and unpacked at once: boxing the message would only add an
// allocation per send.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Next {
    /// Send this one.
    Send(ClaimedMessage),
    /// Messages are waiting, but no practice may send for this long.
    Wait(Duration),
    /// Nothing is waiting.
    Empty,
}

#[derive(Default)]
struct ChannelQueue {
    urgent: VecDeque<ClaimedMessage>,
    bulk: HashMap<PracticeId, VecDeque<ClaimedMessage>>,
    /// Practices with waiting broadcast messages, in turn order.
    turns: VecDeque<PracticeId>,
}

/// The per-channel queues of one worker, with a wake-up per channel.
pub struct Lanes {
    queues: Mutex<HashMap<Channel, ChannelQueue>>,
    arrived: HashMap<Channel, Notify>,
    /// Messages taken from the queues whose sends have not finished.
    in_hand: AtomicUsize,
    /// The same, per channel (in the order of `Channel::ALL`).
    in_hand_by_channel: [AtomicUsize; Channel::ALL.len()],
    /// Signalled when a message leaves the queues or its send finishes.
    taken: Notify,
}

impl Default for Lanes {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            arrived: Channel::ALL.iter().map(|c| (*c, Notify::new())).collect(),
            in_hand: AtomicUsize::new(0),
            in_hand_by_channel: Default::default(),
            taken: Notify::new(),
        }
    }
}

/// Where `channel` is in `Channel::ALL` (and in per-channel arrays).
pub(super) fn channel_index(channel: Channel) -> usize {
    Channel::ALL
        .iter()
        .position(|c| *c == channel)
        .unwrap_or_default()
}

fn waiting_in(q: &ChannelQueue) -> usize {
    q.urgent.len() + q.bulk.values().map(VecDeque::len).sum::<usize>()
}

impl Lanes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Channel, ChannelQueue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues claimed messages behind those already waiting in their lane.
    pub fn push(&self, messages: Vec<ClaimedMessage>) {
        let mut touched = Vec::new();
        {
            let mut queues = self.lock();
            for m in messages {
                let channel = m.channel;
                let q = queues.entry(channel).or_default();
                match m.priority {
                    Priority::Urgent => q.urgent.push_back(m),
                    Priority::Bulk => {
                        let practice = m.practice_id;
                        let waiting = q.bulk.entry(practice).or_default();
                        if waiting.is_empty() {
                            q.turns.push_back(practice);
                        }
                        waiting.push_back(m);
                    }
                }
                if !touched.contains(&channel) {
                    touched.push(channel);
                }
            }
        }
        for c in touched {
            if let Some(n) = self.arrived.get(&c) {
                n.notify_one();
            }
        }
    }

    /// Resolves when a message arrives for `channel` (or one arrived since the last call).
    pub async fn arrival(&self, channel: Channel) {
        if let Some(n) = self.arrived.get(&channel) {
            n.notified().await;
        }
    }

    /// Messages waiting across all channels.
    pub fn len(&self) -> usize {
        self.lock().values().map(waiting_in).sum()
    }

    /// Messages of `channel` waiting.
    pub fn waiting(&self, channel: Channel) -> usize {
        self.lock().get(&channel).map_or(0, waiting_in)
    }

    /// Messages of each channel held in memory: waiting, or taken and not yet finished.
    pub fn held(&self) -> [(Channel, usize); Channel::ALL.len()] {
        let queues = self.lock();
        Channel::ALL.map(|c| {
            let waiting = queues.get(&c).map_or(0, waiting_in);
            let in_hand = self.in_hand_by_channel[channel_index(c)].load(Ordering::SeqCst);
            (c, waiting + in_hand)
        })
    }

    /// The channels with at least `room` messages waiting: the claimer leaves their
    /// broadcast messages in the outbox, so a stalled channel cannot take the others' room.
    pub fn full(&self, room: usize) -> Vec<Channel> {
        let queues = self.lock();
        Channel::ALL
            .into_iter()
            .filter(|c| queues.get(c).map_or(0, waiting_in) >= room)
            .collect()
    }

    /// Room left below `room` per channel, summed over the channels that are not full.
    pub fn room(&self, room: usize) -> usize {
        let queues = self.lock();
        Channel::ALL
            .iter()
            .map(|c| room.saturating_sub(queues.get(c).map_or(0, waiting_in)))
            .sum()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Practices with at least `share` broadcast messages waiting: the claimer leaves their
    /// other messages in the outbox so that other practices' broadcasts get claimed too.
    pub fn crowded(&self, share: usize) -> Vec<PracticeId> {
        let mut waiting: HashMap<PracticeId, usize> = HashMap::new();
        for q in self.lock().values() {
            for (practice, messages) in &q.bulk {
                *waiting.entry(*practice).or_default() += messages.len();
            }
        }
        waiting
            .into_iter()
            .filter(|(_, n)| *n >= share)
            .map(|(p, _)| p)
            .collect()
    }

    /// The broadcasts with messages waiting here.
    pub fn broadcasts(&self) -> Vec<BroadcastId> {
        let mut ids: Vec<BroadcastId> = self
            .lock()
            .values()
            .flat_map(|q| q.bulk.values().flatten())
            .filter_map(|m| m.broadcast_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Takes out every waiting message of these broadcasts.
    pub fn withdraw(&self, broadcasts: &[BroadcastId]) -> Vec<ClaimedMessage> {
        let mut withdrawn = Vec::new();
        for q in self.lock().values_mut() {
            for waiting in q.bulk.values_mut() {
                let (gone, kept): (Vec<_>, Vec<_>) = waiting
                    .drain(..)
                    .partition(|m| m.broadcast_id.is_some_and(|b| broadcasts.contains(&b)));
                withdrawn.extend(gone);
                waiting.extend(kept);
            }
            q.bulk.retain(|_, waiting| !waiting.is_empty());
            let bulk = &q.bulk;
            q.turns.retain(|p| bulk.contains_key(p));
        }
        withdrawn
    }

    /// Takes out every waiting message (a worker that may have lost its leases drops what
    /// it holds).
    pub fn drain_all(&self) -> Vec<ClaimedMessage> {
        let drained: Vec<ClaimedMessage> = self
            .lock()
            .drain()
            .flat_map(|(_, q)| q.urgent.into_iter().chain(q.bulk.into_values().flatten()))
            .collect();
        self.taken.notify_waiters();
        drained
    }

    /// Whether nothing is waiting and no send taken from here is still running.
    pub fn idle(&self) -> bool {
        let queues = self.lock();
        let waiting = queues
            .values()
            .any(|q| !q.urgent.is_empty() || !q.bulk.is_empty());
        !waiting && self.in_hand.load(Ordering::SeqCst) == 0
    }

    /// Marks the send of a message of `channel` taken by `next` as finished (or abandoned).
    pub fn done(&self, channel: Channel) {
        self.in_hand_by_channel[channel_index(channel)].fetch_sub(1, Ordering::SeqCst);
        self.in_hand.fetch_sub(1, Ordering::SeqCst);
        self.taken.notify_waiters();
    }

    /// Resolves once fewer than `count` messages wait, or when a send finishes.
    pub async fn drained_below(&self, count: usize) {
        loop {
            let taken = self.taken.notified();
            if self.len() < count {
                return;
            }
            taken.await;
        }
    }

    /// Counts a message as taken; called with the queues locked so `idle` never misses it.
    fn take(&self, message: ClaimedMessage) -> Next {
        self.in_hand_by_channel[channel_index(message.channel)].fetch_add(1, Ordering::SeqCst);
        self.in_hand.fetch_add(1, Ordering::SeqCst);
        self.taken.notify_waiters();
        Next::Send(message)
    }

    /// The next message of `channel` to send: the oldest urgent one, else the next practice
    /// in turn whose rate limit lets it send now (which counts it). Call `done` once its
    /// send has finished.
    pub fn next(&self, channel: Channel, limits: &RateLimits) -> Next {
        let mut queues = self.lock();
        let Some(q) = queues.get_mut(&channel) else {
            return Next::Empty;
        };
        if let Some(m) = q.urgent.pop_front() {
            return self.take(m);
        }
        let mut shortest: Option<Duration> = None;
        for _ in 0..q.turns.len() {
            let Some(practice) = q.turns.pop_front() else {
                break;
            };
            match limits.practice(practice) {
                Verdict::Go => {
                    let waiting = q.bulk.entry(practice).or_default();
                    let message = waiting.pop_front();
                    if waiting.is_empty() {
                        q.bulk.remove(&practice);
                    } else {
                        q.turns.push_back(practice);
                    }
                    if let Some(m) = message {
                        return self.take(m);
                    }
                }
                Verdict::Wait(d) => {
                    shortest = Some(shortest.map_or(d, |s| s.min(d)));
                    q.turns.push_back(practice);
                }
            }
        }
        shortest.map_or(Next::Empty, Next::Wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::domain::{ContactId, MessageId, PatientId};
    use chrono::Utc;

    fn message(id: i64, practice_id: i64, priority: Priority) -> ClaimedMessage {
        ClaimedMessage {
            id: MessageId::new(id),
            practice_id: PracticeId::new(practice_id),
            patient_id: Some(PatientId::new(id)),
            follower_id: None,
            broadcast_id: None,
            contact_id: Some(ContactId::new(id)),
            channel: Channel::Sms,
            address: "+447700900001".into(),
            subject: None,
            body: "hi".into(),
            body_html: None,
            link: None,
            priority,
            attempt_no: 1,
            created_at: Utc::now(),
            trace: None,
            template_key: "status.closed".into(),
        }
    }

    fn unlimited() -> RateLimits {
        RateLimits::from_config(
            &[],
            &LimitsConfig {
                practice: None,
                practice_burst: 1,
                patient_bulk: None,
                patient_burst: 1,
            },
        )
    }

    fn ids(lanes: &Lanes, limits: &RateLimits) -> Vec<i64> {
        let mut out = Vec::new();
        while let Next::Send(m) = lanes.next(Channel::Sms, limits) {
            out.push(m.id.get());
        }
        out
    }

    #[test]
    fn urgent_goes_first_and_practices_take_turns() {
        let lanes = Lanes::default();
        lanes.push(vec![
            message(1, 10, Priority::Bulk),
            message(2, 10, Priority::Bulk),
            message(3, 10, Priority::Bulk),
            message(4, 20, Priority::Bulk),
            message(5, 20, Priority::Bulk),
        ]);
        lanes.push(vec![message(6, 10, Priority::Urgent)]);
        assert_eq!(lanes.len(), 6);
        assert_eq!(ids(&lanes, &unlimited()), vec![6, 1, 4, 2, 5, 3]);
        assert!(lanes.is_empty());
    }

    #[test]
    fn superseded_broadcasts_are_withdrawn_and_the_rest_keep_their_turns() {
        let lanes = Lanes::default();
        let of = |id, practice, broadcast| ClaimedMessage {
            broadcast_id: Some(BroadcastId::new(broadcast)),
            ..message(id, practice, Priority::Bulk)
        };
        lanes.push(vec![
            of(1, 10, 100),
            of(2, 10, 101),
            of(3, 20, 100),
            of(4, 10, 100),
        ]);
        assert_eq!(
            lanes.broadcasts(),
            vec![BroadcastId::new(100), BroadcastId::new(101)]
        );
        let mut gone: Vec<i64> = lanes
            .withdraw(&[BroadcastId::new(100)])
            .iter()
            .map(|m| m.id.get())
            .collect();
        gone.sort_unstable();
        assert_eq!(gone, vec![1, 3, 4]);
        assert_eq!(ids(&lanes, &unlimited()), vec![2]);
    }

    #[test]
    fn a_practice_at_its_limit_does_not_hold_up_another() {
        let limits = RateLimits::from_config(
            &[],
            &LimitsConfig {
                practice: Some("1/min".parse().unwrap()),
                practice_burst: 1,
                patient_bulk: None,
                patient_burst: 1,
            },
        );
        let lanes = Lanes::default();
        lanes.push(vec![
            message(1, 10, Priority::Bulk),
            message(2, 10, Priority::Bulk),
            message(3, 20, Priority::Bulk),
        ]);
        assert_eq!(ids(&lanes, &limits), vec![1, 3]);
        match lanes.next(Channel::Sms, &limits) {
            Next::Wait(d) => assert!(d > Duration::from_secs(50)),
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(lanes.len(), 1);
        assert!(matches!(lanes.next(Channel::Email, &limits), Next::Empty));
    }

    #[test]
    fn room_and_depth_are_counted_per_channel() {
        let on = |id, channel| ClaimedMessage {
            channel,
            ..message(id, 10, Priority::Bulk)
        };
        let lanes = Lanes::default();
        lanes.push((0..5).map(|i| on(i, Channel::Push)).collect());
        lanes.push(vec![on(10, Channel::Sms)]);
        // A full push lane leaves room for SMS, email and the NHS App; push alone is skipped.
        assert_eq!(lanes.full(5), vec![Channel::Push]);
        assert_eq!(lanes.room(5), 4 + 5 + 5);
        assert_eq!(lanes.waiting(Channel::Push), 5);
        // Taken messages stay in the depth until their sends finish.
        let Next::Send(taken) = lanes.next(Channel::Push, &unlimited()) else {
            panic!("a push message was waiting");
        };
        assert_eq!(lanes.full(5), Vec::<Channel>::new());
        let depth = |lanes: &Lanes, c| lanes.held().iter().find(|(d, _)| *d == c).unwrap().1;
        assert_eq!(depth(&lanes, Channel::Push), 5);
        assert_eq!(depth(&lanes, Channel::Sms), 1);
        assert_eq!(depth(&lanes, Channel::Email), 0);
        lanes.done(taken.channel);
        assert_eq!(depth(&lanes, Channel::Push), 4);
    }
}
