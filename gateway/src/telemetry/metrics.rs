//! The gateway's Prometheus metrics: what became of each message, how long providers took,
//! time lost to rate limits, circuit breakers and the queue, as OpenMetrics text.
//!
//! Every metric is registered once in [`Metrics::new`]. Recording touches only atomics
//! behind a per-family read lock, so the dispatcher can record on every send; the queue
//! depth is read from the store at scrape time rather than tracked.

use std::time::Duration;

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{Channel, Priority};

/// The Content-Type of [`Metrics::encode`]'s output (OpenMetrics text, ending `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What became of a message, as counted in `gateway_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A provider accepted it.
    Sent,
    /// It failed for good.
    Failed,
    /// A limit or an opt-out said no; it was never sent.
    Suppressed,
    /// A try failed and another is scheduled.
    Retried,
    /// Put back unsent until later (quiet hours, more claimed than can be sent).
    Deferred,
    /// Withdrawn before it was sent (superseded by a newer status change).
    Cancelled,
}

impl Outcome {
    /// Every outcome, in a stable order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Sent,
        Outcome::Failed,
        Outcome::Suppressed,
        Outcome::Retried,
        Outcome::Deferred,
        Outcome::Cancelled,
    ];

    /// The label value (`sent`, `failed`, `suppressed`, `retried`, `deferred`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::Suppressed => "suppressed",
            Outcome::Retried => "retried",
            Outcome::Deferred => "deferred",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Which rate limiter a send waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// The provider's own rate.
    Provider,
    /// A practice's share.
    Practice,
    /// One patient's cap.
    Patient,
}

impl Limiter {
    /// Every limiter, in a stable order.
    pub const ALL: [Limiter; 3] = [Limiter::Provider, Limiter::Practice, Limiter::Patient];

    /// The label value (`provider`, `practice`, `patient`).
    pub fn as_str(self) -> &'static str {
        match self {
            Limiter::Provider => "provider",
            Limiter::Practice => "practice",
            Limiter::Patient => "patient",
        }
    }
}

/// A provider's circuit breaker state, as `gateway_provider_circuit_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitGauge {
    /// Sending normally.
    Closed,
    /// Letting a trial send through.
    HalfOpen,
    /// Not sending.
    Open,
}

impl CircuitGauge {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn value(self) -> i64 {
        match self {
            CircuitGauge::Closed => 0,
            CircuitGauge::HalfOpen => 1,
            CircuitGauge::Open => 2,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    channel: &'static str,
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    channel: &'static str,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabels {
    limiter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SenderLabels {
    sender: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    provider: String,
    origin: String,
}

/// Most paused origins listed by name in one scrape (the longest pauses); the count of all
/// of them is `gateway_paused_origins`.
pub const MAX_LISTED_ORIGINS: usize = 50;

/// Every lane the queue-depth gauge reports, zero when empty.
const LANES: [Priority; 2] = [Priority::Urgent, Priority::Bulk];

/// 1 ms doubling to about 33 s: fast APIs and a slow SMTP server both land inside.
fn send_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn lane_name(lane: Priority) -> &'static str {
    match lane {
        Priority::Urgent => "urgent",
        Priority::Bulk => "bulk",
    }
}

/// The registry and the handles to record into; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    send_duration: Family<SendLabels, Histogram, fn() -> Histogram>,
    rate_limit_waits: Family<LimiterLabels, Counter>,
    rate_limit_wait_seconds: Family<LimiterLabels, Counter<f64>>,
    circuit_state: Family<ProviderLabels, Gauge>,
    queue_depth: Family<LaneLabels, Gauge>,
    lane_depth: Family<ChannelLabels, Gauge>,
    paused_origins: Gauge,
    origin_paused: Family<OriginLabels, Gauge>,
    inbound_texts: Family<SenderLabels, Counter>,
}

impl Metrics {
    /// An empty registry with every metric registered.
    pub fn new() -> Self {
        let messages = Family::<MessageLabels, Counter>::default();
        let send_duration =
            Family::<SendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                send_duration_histogram,
            );
        let rate_limit_waits = Family::<LimiterLabels, Counter>::default();
        let rate_limit_wait_seconds = Family::<LimiterLabels, Counter<f64>>::default();
        let circuit_state = Family::<ProviderLabels, Gauge>::default();
        let queue_depth = Family::<LaneLabels, Gauge>::default();
        let lane_depth = Family::<ChannelLabels, Gauge>::default();
        let paused_origins = Gauge::default();
        let origin_paused = Family::<OriginLabels, Gauge>::default();
        let inbound_texts = Family::<SenderLabels, Counter>::default();

        // Counters get `_total` and unit-registered metrics get `_seconds` when encoded.
        let mut registry = Registry::with_prefix("gateway");
        registry.register(
            "messages",
            "Messages that reached an outcome, by channel, provider and outcome",
            messages.clone(),
        );
        registry.register_with_unit(
            "send_duration",
            "Time one provider call took",
            Unit::Seconds,
            send_duration.clone(),
        );
        registry.register(
            "rate_limit_waits",
            "Sends that had to wait for a rate limiter",
            rate_limit_waits.clone(),
        );
        registry.register_with_unit(
            "rate_limit_wait",
            "Total time sends spent waiting for a rate limiter",
            Unit::Seconds,
            rate_limit_wait_seconds.clone(),
        );
        registry.register(
            "provider_circuit_state",
            "Provider circuit breaker: 0 closed, 1 half-open, 2 open",
            circuit_state.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued messages per lane, read from the store at scrape time",
            queue_depth.clone(),
        );
        registry.register(
            "lane_depth",
            "Messages this process's workers hold in memory per channel, waiting or being sent",
            lane_depth.clone(),
        );
        registry.register(
            "paused_origins",
            "Push services (origins) paused by their Retry-After or with their circuit open",
            paused_origins.clone(),
        );
        registry.register_with_unit(
            "origin_paused",
            "Time left before a paused push service (origin) is tried again, longest first",
            Unit::Seconds,
            origin_paused.clone(),
        );

        registry.register(
            "inbound_texts",
            "Inbound texts by sender: a registered staff number, or any other number (counted only)",
            inbound_texts.clone(),
        );

        let metrics = Self {
            registry,
            messages,
            send_duration,
            rate_limit_waits,
            rate_limit_wait_seconds,
            circuit_state,
            queue_depth,
            lane_depth,
            paused_origins,
            origin_paused,
            inbound_texts,
        };
        for sender in ["staff", "other"] {
            drop(
                metrics
                    .inbound_texts
                    .get_or_create(&SenderLabels { sender }),
            );
        }
        // A family with no series is left out of the exposition: start the fixed ones at 0
        // (creating the series is the point; the guards are dropped at once).
        for limiter in Limiter::ALL {
            let labels = LimiterLabels {
                limiter: limiter.as_str(),
            };
            drop(metrics.rate_limit_waits.get_or_create(&labels));
            drop(metrics.rate_limit_wait_seconds.get_or_create(&labels));
        }
        metrics
    }

    /// Starts a configured provider's series at zero and its circuit closed, so that it is
    /// visible before its first send and `rate()` sees that first send.
    pub fn add_provider(&self, channel: Channel, provider: &str) {
        for outcome in Outcome::ALL {
            drop(self.messages.get_or_create(&MessageLabels {
                channel: channel.as_str(),
                provider: provider.to_string(),
                outcome: outcome.as_str(),
            }));
        }
        drop(self.send_duration.get_or_create(&SendLabels {
            channel: channel.as_str(),
            provider: provider.to_string(),
        }));
        self.circuit_state(provider, CircuitGauge::Closed);
    }

    /// Counts one inbound text: from a registered staff number, or from any other number
    /// (of which nothing else is kept).
    pub fn inbound_text(&self, from_staff: bool) {
        let sender = if from_staff { "staff" } else { "other" };
        self.inbound_texts
            .get_or_create(&SenderLabels { sender })
            .inc();
    }

    /// Counts one message reaching an outcome.
    pub fn message_outcome(&self, channel: Channel, provider: Option<&str>, outcome: Outcome) {
        let labels = MessageLabels {
            channel: channel.as_str(),
            provider: provider.unwrap_or("none").to_string(),
            outcome: outcome.as_str(),
        };
        self.messages.get_or_create(&labels).inc();
    }

    /// Records how long one provider call took.
    pub fn send_duration(&self, channel: Channel, provider: &str, took: Duration) {
        let labels = SendLabels {
            channel: channel.as_str(),
            provider: provider.to_string(),
        };
        self.send_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one wait for a rate limiter and its length.
    pub fn rate_limit_wait(&self, limiter: Limiter, waited: Duration) {
        let labels = LimiterLabels {
            limiter: limiter.as_str(),
        };
        self.rate_limit_waits.get_or_create(&labels).inc();
        self.rate_limit_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    /// Sets a provider's circuit state.
    pub fn circuit_state(&self, provider: &str, state: CircuitGauge) {
        let labels = ProviderLabels {
            provider: provider.to_string(),
        };
        self.circuit_state.get_or_create(&labels).set(state.value());
    }

    /// Sets what dispatch holds now: messages in memory per channel, and the paused push
    /// origins as `(provider, origin, time left)`, longest first (at most
    /// [`MAX_LISTED_ORIGINS`] are named; origins no longer paused disappear).
    pub fn dispatch_state(
        &self,
        lanes: &[(Channel, usize)],
        paused: &[(String, String, Duration)],
    ) {
        for channel in Channel::ALL {
            let held = lanes
                .iter()
                .filter(|(c, _)| *c == channel)
                .map(|(_, n)| *n)
                .sum::<usize>();
            self.lane_depth
                .get_or_create(&ChannelLabels {
                    channel: channel.as_str(),
                })
                .set(i64::try_from(held).unwrap_or(i64::MAX));
        }
        self.paused_origins
            .set(i64::try_from(paused.len()).unwrap_or(i64::MAX));
        self.origin_paused.clear();
        for (provider, origin, left) in paused.iter().take(MAX_LISTED_ORIGINS) {
            let labels = OriginLabels {
                provider: provider.clone(),
                origin: origin.clone(),
            };
            let seconds = i64::try_from(left.as_secs()).unwrap_or(i64::MAX).max(1);
            self.origin_paused.get_or_create(&labels).set(seconds);
        }
    }

    /// Prometheus text exposition of everything, with the queue depth per lane given.
    /// A lane missing from `queue_depth` is reported as 0, never as its last value.
    pub fn encode(&self, queue_depth: &[(Priority, i64)]) -> String {
        for lane in LANES {
            let depth = queue_depth
                .iter()
                .filter(|(l, _)| *l == lane)
                .map(|(_, n)| *n)
                .sum();
            self.queue_depth
                .get_or_create(&LaneLabels {
                    lane: lane_name(lane),
                })
                .set(depth);
        }
        let mut text = String::new();
        // Writing to a String cannot fail; an error here would be the encoder's own.
        if let Err(e) = encode_text(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails with the whole exposition if `line` is not one of its lines.
    fn assert_line(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn lane_depth_and_paused_origins_are_shown_and_cleared() {
        let metrics = Metrics::new();
        let paused = vec![(
            "browser-push".to_string(),
            "https://push.example:8443".to_string(),
            Duration::from_secs(3599),
        )];
        metrics.dispatch_state(&[(Channel::Sms, 12), (Channel::Push, 3)], &paused);
        let text = metrics.encode(&[]);
        assert_line(&text, "gateway_lane_depth{channel=\"sms\"} 12");
        assert_line(&text, "gateway_lane_depth{channel=\"email\"} 0");
        assert_line(&text, "gateway_lane_depth{channel=\"push\"} 3");
        assert_line(&text, "gateway_paused_origins 1");
        assert_line(
            &text,
            "gateway_origin_paused_seconds{provider=\"browser-push\",origin=\"https://push.example:8443\"} 3599",
        );
        metrics.dispatch_state(&[], &[]);
        let text = metrics.encode(&[]);
        assert_line(&text, "gateway_paused_origins 0");
        assert!(!text.contains("push.example"), "{text}");
    }

    #[test]
    fn outcomes_are_counted_per_channel_provider_and_outcome() {
        let metrics = Metrics::new();
        metrics.message_outcome(Channel::Sms, Some("twilio"), Outcome::Sent);
        metrics.message_outcome(Channel::Sms, Some("twilio"), Outcome::Sent);
        metrics.message_outcome(Channel::Email, None, Outcome::Suppressed);
        let text = metrics.encode(&[]);
        assert_line(
            &text,
            r#"gateway_messages_total{channel="sms",provider="twilio",outcome="sent"} 2"#,
        );
        assert_line(
            &text,
            r#"gateway_messages_total{channel="email",provider="none",outcome="suppressed"} 1"#,
        );
        assert!(!text.contains(r#"outcome="failed""#), "{text}");
    }

    #[test]
    fn send_durations_fill_the_histogram() {
        let metrics = Metrics::new();
        metrics.send_duration(Channel::Sms, "twilio", Duration::from_millis(3));
        metrics.send_duration(Channel::Sms, "twilio", Duration::from_secs(2));
        let text = metrics.encode(&[]);
        assert_line(&text, "# TYPE gateway_send_duration_seconds histogram");
        assert_line(
            &text,
            r#"gateway_send_duration_seconds_count{channel="sms",provider="twilio"} 2"#,
        );
        assert_line(
            &text,
            r#"gateway_send_duration_seconds_sum{channel="sms",provider="twilio"} 2.003"#,
        );
        assert_line(
            &text,
            r#"gateway_send_duration_seconds_bucket{le="0.004",channel="sms",provider="twilio"} 1"#,
        );
        assert_line(
            &text,
            r#"gateway_send_duration_seconds_bucket{le="+Inf",channel="sms",provider="twilio"} 2"#,
        );
    }

    #[test]
    fn rate_limit_waits_count_and_add_up() {
        let metrics = Metrics::new();
        metrics.rate_limit_wait(Limiter::Practice, Duration::from_millis(1500));
        metrics.rate_limit_wait(Limiter::Practice, Duration::from_millis(1500));
        metrics.rate_limit_wait(Limiter::Patient, Duration::from_millis(250));
        let text = metrics.encode(&[]);
        assert_line(
            &text,
            r#"gateway_rate_limit_waits_total{limiter="practice"} 2"#,
        );
        assert_line(
            &text,
            r#"gateway_rate_limit_wait_seconds_total{limiter="practice"} 3.0"#,
        );
        assert_line(
            &text,
            r#"gateway_rate_limit_waits_total{limiter="patient"} 1"#,
        );
        assert_line(
            &text,
            r#"gateway_rate_limit_wait_seconds_total{limiter="patient"} 0.25"#,
        );
    }

    #[test]
    fn circuit_gauge_follows_the_latest_state() {
        let metrics = Metrics::new();
        metrics.circuit_state("twilio", CircuitGauge::Open);
        metrics.circuit_state("notify", CircuitGauge::HalfOpen);
        let text = metrics.encode(&[]);
        assert_line(
            &text,
            r#"gateway_provider_circuit_state{provider="twilio"} 2"#,
        );
        assert_line(
            &text,
            r#"gateway_provider_circuit_state{provider="notify"} 1"#,
        );
        metrics.circuit_state("twilio", CircuitGauge::Closed);
        let text = metrics.encode(&[]);
        assert_line(
            &text,
            r#"gateway_provider_circuit_state{provider="twilio"} 0"#,
        );
    }

    #[test]
    fn queue_depth_is_set_per_lane_at_each_encode() {
        let metrics = Metrics::new();
        let text = metrics.encode(&[(Priority::Urgent, 3), (Priority::Bulk, 1200)]);
        assert_line(&text, r#"gateway_queue_depth{lane="urgent"} 3"#);
        assert_line(&text, r#"gateway_queue_depth{lane="bulk"} 1200"#);
        // An empty lane is absent from the store's answer; it must read 0, not 1200.
        let text = metrics.encode(&[(Priority::Urgent, 1)]);
        assert_line(&text, r#"gateway_queue_depth{lane="urgent"} 1"#);
        assert_line(&text, r#"gateway_queue_depth{lane="bulk"} 0"#);
    }

    #[test]
    fn every_family_is_described_once_providers_are_known() {
        let metrics = Metrics::new();
        let text = metrics.encode(&[]);
        // Families with fixed labels are there from the start, at zero.
        assert_line(
            &text,
            r#"gateway_rate_limit_waits_total{limiter="provider"} 0"#,
        );
        assert_line(
            &text,
            r#"gateway_rate_limit_wait_seconds_total{limiter="patient"} 0.0"#,
        );
        assert!(!text.contains("gateway_messages"), "{text}");

        metrics.add_provider(Channel::Sms, "twilio");
        let text = metrics.encode(&[]);
        for line in [
            "# TYPE gateway_messages counter",
            "# TYPE gateway_send_duration_seconds histogram",
            "# UNIT gateway_send_duration_seconds seconds",
            "# TYPE gateway_rate_limit_waits counter",
            "# TYPE gateway_rate_limit_wait_seconds counter",
            "# UNIT gateway_rate_limit_wait_seconds seconds",
            "# TYPE gateway_provider_circuit_state gauge",
            "# TYPE gateway_queue_depth gauge",
            r#"gateway_messages_total{channel="sms",provider="twilio",outcome="cancelled"} 0"#,
            r#"gateway_send_duration_seconds_count{channel="sms",provider="twilio"} 0"#,
            r#"gateway_provider_circuit_state{provider="twilio"} 0"#,
        ] {
            assert_line(&text, line);
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn provider_names_are_escaped_in_labels() {
        let metrics = Metrics::new();
        metrics.circuit_state("odd\"name", CircuitGauge::Open);
        let text = metrics.encode(&[]);
        assert_line(
            &text,
            r#"gateway_provider_circuit_state{provider="odd\"name"} 2"#,
        );
    }

    #[test]
    fn outcome_labels_are_the_documented_words() {
        let words: Vec<_> = Outcome::ALL.into_iter().map(Outcome::as_str).collect();
        assert_eq!(
            words,
            [
                "sent",
                "failed",
                "suppressed",
                "retried",
                "deferred",
                "cancelled"
            ]
        );
    }
}
