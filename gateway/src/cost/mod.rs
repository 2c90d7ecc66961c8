//! What messages cost: each provider's price (per SMS segment, per email, per push
//! message), a broadcast's estimate before it is sent and its actual cost after, and a
//! practice's cost for a month. Figures are priced with the prices configured now, from
//! counts the store keeps (messages and SMS segments by channel, provider and state).

/// A practice's cost for a calendar month.
mod month;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::ProviderConfig;
use crate::domain::{Channel, MessageState};
use crate::store::CostRow;

pub use month::{monthly_cost, Month, MonthlyCost};

/// The most a provider may be configured to charge a message or segment, in pence: a
/// guard against a price typed in pounds or tenths of a penny by mistake (£10).
const MOST_PENCE: f64 = 1000.0;

/// A price in hundredths of a penny, so that 2.4p a segment adds up exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(u64);

impl Price {
    /// A price given in pence; refused unless it is a number from 0 to 1000.
    pub fn from_pence(pence: f64) -> Result<Self, String> {
        if !pence.is_finite() || !(0.0..=MOST_PENCE).contains(&pence) {
            return Err(format!(
                "price_pence must be from 0 to {MOST_PENCE}, not {pence}"
            ));
        }
        Ok(Self((pence * 100.0).round() as u64))
    }

    /// What a provider of `channel` is taken to charge when its config names no price: a
    /// UK bulk SMS rate of 2.4p a segment; push and email next to nothing a message.
    pub fn typical(channel: Channel) -> Self {
        match channel {
            Channel::Sms => Self(240),
            _ => Self(0),
        }
    }

    /// The provider's configured price, or the channel's typical one.
    pub fn of_provider(provider: &ProviderConfig) -> Result<Self, String> {
        provider
            .price_pence
            .map_or(Ok(Self::typical(provider.channel)), Self::from_pence)
    }

    /// Hundredths of a penny.
    pub fn hundredths(self) -> u64 {
        self.0
    }
}

/// The configured price of every provider, and of each channel's first provider (what an
/// estimate assumes a message will go through).
#[derive(Debug, Clone, Default)]
pub struct Prices {
    by_provider: HashMap<String, Price>,
    by_channel: BTreeMap<Channel, Price>,
}

impl Prices {
    /// The prices of the configured providers (the config check has refused bad ones; any
    /// that slipped through count at the channel's typical price).
    pub fn from_config(providers: &[ProviderConfig]) -> Self {
        let mut prices = Self::default();
        for provider in providers {
            let price =
                Price::of_provider(provider).unwrap_or_else(|_| Price::typical(provider.channel));
            prices.by_provider.insert(provider.name.clone(), price);
            prices.by_channel.entry(provider.channel).or_insert(price);
        }
        prices
    }

    /// What a message on `channel` is expected to cost a segment.
    pub fn of_channel(&self, channel: Channel) -> Price {
        self.by_channel
            .get(&channel)
            .copied()
            .unwrap_or_else(|| Price::typical(channel))
    }

    /// What the provider that took a message charges a segment; a provider no longer
    /// configured (or none recorded) counts at the channel's expected price.
    pub fn of_sent(&self, provider: Option<&str>, channel: Channel) -> Price {
        provider
            .and_then(|name| self.by_provider.get(name))
            .copied()
            .unwrap_or_else(|| self.of_channel(channel))
    }
}

/// Messages of one channel and what they cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChannelCost {
    /// How many messages.
    pub messages: i64,
    /// Their SMS segments (1 a message on other channels).
    pub segments: i64,
    /// What they cost, in pence.
    pub pence: f64,
    #[serde(skip)]
    hundredths: u64,
}

/// Messages by channel and their cost in pence, to two decimal places.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cost {
    /// The whole cost, in pence.
    pub total_pence: f64,
    /// The messages and cost of each channel used.
    pub per_channel: BTreeMap<Channel, ChannelCost>,
}

impl Cost {
    /// Adds `messages` messages of `segments` segments at `price` a segment.
    pub fn add(&mut self, channel: Channel, messages: i64, segments: i64, price: Price) {
        let line = self.per_channel.entry(channel).or_default();
        line.messages += messages;
        line.segments += segments;
        line.hundredths += u64::try_from(segments).unwrap_or(0) * price.hundredths();
        line.pence = pence(line.hundredths);
        self.total_pence = pence(self.per_channel.values().map(|l| l.hundredths).sum());
    }
}

impl Cost {
    /// The whole cost as pounds and pence, e.g. `£43.20`.
    pub fn pounds(&self) -> String {
        let hundredths: u64 = self.per_channel.values().map(|l| l.hundredths).sum();
        // Rounded to the nearest penny.
        let pence = (hundredths + 50) / 100;
        format!("£{}.{:02}", pence / 100, pence % 100)
    }

    /// The messages by channel in words, e.g. `12 by sms, 40 by push`; `none` if there
    /// were none.
    pub fn describe_messages(&self) -> String {
        let parts: Vec<String> = self
            .per_channel
            .iter()
            .map(|(channel, line)| format!("{} by {channel}", line.messages))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Hundredths of a penny as pence.
fn pence(hundredths: u64) -> f64 {
    hundredths as f64 / 100.0
}

/// Whether a message in `state` has gone to a provider, and so is charged.
fn charged(state: MessageState) -> bool {
    matches!(
        state,
        MessageState::Sent | MessageState::Delivered | MessageState::Read
    )
}

/// Whether a message in `state` will not be sent (and so is left out of an estimate).
fn withdrawn(state: MessageState) -> bool {
    matches!(state, MessageState::Cancelled | MessageState::Suppressed)
}

/// A broadcast's cost: `estimated` prices every message planned and not withdrawn at its
/// channel's expected price (what it will cost once sent); `actual` prices the messages
/// providers have taken at the price of the provider that took each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BroadcastCost {
    /// What the planned messages will cost.
    pub estimated: Cost,
    /// What the messages sent so far cost.
    pub actual: Cost,
}

impl BroadcastCost {
    /// Prices a broadcast's counts.
    pub fn of_rows(rows: &[CostRow], prices: &Prices) -> Self {
        let mut cost = Self::default();
        for row in rows {
            if !withdrawn(row.state) {
                let price = prices.of_channel(row.channel);
                cost.estimated
                    .add(row.channel, row.messages, row.segments, price);
            }
            if charged(row.state) {
                let price = prices.of_sent(row.provider.as_deref(), row.channel);
                cost.actual
                    .add(row.channel, row.messages, row.segments, price);
            }
        }
        cost
    }
}

/// What the messages providers took cost (a practice's month).
pub fn actual_cost(rows: &[CostRow], prices: &Prices) -> Cost {
    let mut cost = Cost::default();
    for row in rows.iter().filter(|r| charged(r.state)) {
        let price = prices.of_sent(row.provider.as_deref(), row.channel);
        cost.add(row.channel, row.messages, row.segments, price);
    }
    cost
}

/// What a broadcast to `recipients` (patients per channel) would cost, with its SMS taking
/// `sms_segments` segments each: a preview's estimate.
pub fn estimate_audience(
    recipients: &BTreeMap<Channel, u64>,
    sms_segments: u64,
    prices: &Prices,
) -> Cost {
    let mut cost = Cost::default();
    for (&channel, &n) in recipients {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let segments = if channel == Channel::Sms {
            n.saturating_mul(i64::try_from(sms_segments.max(1)).unwrap_or(1))
        } else {
            n
        };
        cost.add(channel, n, segments, prices.of_channel(channel));
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, channel: Channel, price: Option<f64>) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: "log".into(),
            channel,
            rate: None,
            burst: None,
            price_pence: price,
            settings: serde_json::Map::new(),
        }
    }

    fn row(
        channel: Channel,
        provider: Option<&str>,
        state: MessageState,
        n: i64,
        seg: i64,
    ) -> CostRow {
        CostRow {
            channel,
            provider: provider.map(str::to_string),
            state,
            messages: n,
            segments: seg,
        }
    }

    #[test]
    fn prices_are_exact_in_hundredths_and_refuse_nonsense() {
        assert_eq!(Price::from_pence(2.4).unwrap().hundredths(), 240);
        assert_eq!(Price::from_pence(0.0).unwrap().hundredths(), 0);
        assert!(Price::from_pence(-1.0).is_err());
        assert!(Price::from_pence(f64::NAN).is_err());
        assert!(Price::from_pence(2400.0).is_err());
        assert_eq!(Price::typical(Channel::Sms).hundredths(), 240);
        assert_eq!(Price::typical(Channel::Push).hundredths(), 0);
    }

    #[test]
    fn a_broadcast_is_estimated_at_the_first_provider_and_charged_at_the_one_that_sent() {
        let prices = Prices::from_config(&[
            provider("cheap-sms", Channel::Sms, Some(2.0)),
            provider("dear-sms", Channel::Sms, Some(3.5)),
            provider("mail", Channel::Email, Some(0.1)),
        ]);
        let rows = [
            row(Channel::Sms, None, MessageState::Queued, 10, 20),
            row(Channel::Sms, Some("cheap-sms"), MessageState::Sent, 3, 6),
            row(
                Channel::Sms,
                Some("dear-sms"),
                MessageState::Delivered,
                2,
                4,
            ),
            row(Channel::Sms, None, MessageState::Cancelled, 5, 10),
            row(Channel::Email, Some("mail"), MessageState::Sent, 7, 7),
        ];
        let cost = BroadcastCost::of_rows(&rows, &prices);
        // Estimated: 30 SMS segments at 2p, 7 emails at 0.1p; the cancelled are left out.
        assert_eq!(cost.estimated.per_channel[&Channel::Sms].messages, 15);
        assert_eq!(cost.estimated.per_channel[&Channel::Sms].pence, 60.0);
        assert_eq!(cost.estimated.total_pence, 60.7);
        // Actual: 6 segments at 2p, 4 at 3.5p, 7 emails at 0.1p.
        assert_eq!(cost.actual.per_channel[&Channel::Sms].pence, 26.0);
        assert_eq!(cost.actual.total_pence, 26.7);
        assert_eq!(actual_cost(&rows, &prices), cost.actual);
    }

    #[test]
    fn a_preview_prices_each_channel_by_its_recipients() {
        let prices = Prices::from_config(&[provider("sms", Channel::Sms, None)]);
        let recipients = BTreeMap::from([(Channel::Sms, 100), (Channel::Push, 50)]);
        let cost = estimate_audience(&recipients, 2, &prices);
        assert_eq!(cost.per_channel[&Channel::Sms].segments, 200);
        assert_eq!(cost.total_pence, 480.0);
        assert_eq!(cost.per_channel[&Channel::Push].pence, 0.0);
        assert_eq!(cost.pounds(), "£4.80");
        assert_eq!(cost.describe_messages(), "100 by sms, 50 by push");
        assert_eq!(Cost::default().describe_messages(), "none");
    }
}
