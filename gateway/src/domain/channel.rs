//! Channels a message can travel on, and a practice's order of preference.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// A way to reach a patient.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Text message to a mobile.
    Sms,
    /// Email.
    Email,
    /// Web push to a browser the patient subscribed.
    Push,
    /// The NHS App, through NHS Notify; the patient is addressed by NHS number.
    #[serde(rename = "nhsapp")]
    NhsApp,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::NhsApp];

    /// The channel's name as stored and shown (`sms`, `email`, `push`, `nhsapp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::NhsApp => "nhsapp",
        }
    }
}

impl FromStr for Channel {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sms" => Ok(Channel::Sms),
            "email" => Ok(Channel::Email),
            "push" => Ok(Channel::Push),
            "nhsapp" => Ok(Channel::NhsApp),
            _ => Err(Invalid::new(
                "channel",
                format!("{s:?} is not a channel: use sms, email, push or nhsapp"),
            )),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order in which a practice tries channels for patients without a preference.
/// Non-empty, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOrder(Vec<Channel>);

impl ChannelOrder {
    /// Builds an order from a list, rejecting an empty list or a repeated channel.
    pub fn new(channels: Vec<Channel>) -> Result<Self, Invalid> {
        if channels.is_empty() {
            return Err(Invalid::new("channel_order", "name at least one channel"));
        }
        for (i, c) in channels.iter().enumerate() {
            if channels[..i].contains(c) {
                return Err(Invalid::new(
                    "channel_order",
                    format!("{c} is listed twice"),
                ));
            }
        }
        Ok(Self(channels))
    }

    /// Parses the stored comma-separated form (`sms,email,push`).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let channels = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Channel::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Invalid::new("channel_order", e.reason))?;
        Self::new(channels)
    }

    /// The channels, most preferred first.
    pub fn channels(&self) -> &[Channel] {
        &self.0
    }

    /// The stored comma-separated form.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Default for ChannelOrder {
    fn default() -> Self {
        Self(Channel::ALL.to_vec())
    }
}

/// Cheapest first: what a broadcast costs least on. The NHS App (through NHS Notify, NHS
/// England's policy for patient messages), push and email cost next to nothing a message;
/// SMS is charged by the segment.
pub const CHEAPEST_FIRST: &[Channel] =
    &[Channel::NhsApp, Channel::Push, Channel::Email, Channel::Sms];

/// Fastest first: what reaches a patient soonest for a one-patient urgent message. Push is
/// on the screen in a second; a text within seconds; an NHS App message once NHS Notify has
/// routed it; email when it is next read.
pub const FASTEST_FIRST: &[Channel] =
    &[Channel::Push, Channel::Sms, Channel::NhsApp, Channel::Email];

impl ChannelOrder {
    /// [`CHEAPEST_FIRST`] as an order.
    pub fn cheapest_first() -> Self {
        Self(CHEAPEST_FIRST.to_vec())
    }

    /// [`FASTEST_FIRST`] as an order.
    pub fn fastest_first() -> Self {
        Self(FASTEST_FIRST.to_vec())
    }
}

/// How a practice picks a patient's channel for one kind of message: its order, and
/// whether that order wins over the patient's own preferred channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelChoice<'a> {
    /// The practice's order for this kind of message.
    pub order: &'a ChannelOrder,
    /// With `true`, the order wins even over a channel the patient prefers.
    pub overrides_preference: bool,
}

impl ChannelChoice<'_> {
    /// The first channel among `usable` (those the patient can be reached on) the practice
    /// would message them on: their preference if it is usable and the practice lets it
    /// count, else the first usable channel of the order.
    pub fn pick(self, preferred: Option<Channel>, usable: &[Channel]) -> Option<Channel> {
        let preferred = preferred
            .filter(|_| !self.overrides_preference)
            .filter(|c| usable.contains(c));
        preferred.or_else(|| {
            self.order
                .channels()
                .iter()
                .copied()
                .find(|c| usable.contains(c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_round_trips_and_refuses_repeats() {
        let order = ChannelOrder::parse("email, sms").unwrap();
        assert_eq!(order.channels(), &[Channel::Email, Channel::Sms]);
        assert_eq!(order.to_text(), "email,sms");
        assert!(ChannelOrder::parse("sms,sms").is_err());
        assert!(ChannelOrder::parse("").is_err());
        assert!(ChannelOrder::parse("fax").is_err());
    }

    #[test]
    fn a_choice_honours_the_preference_unless_the_practice_overrides_it() {
        let cheapest = ChannelOrder::cheapest_first();
        let honour = ChannelChoice {
            order: &cheapest,
            overrides_preference: false,
        };
        let all = [Channel::Sms, Channel::Email, Channel::Push];
        assert_eq!(honour.pick(Some(Channel::Sms), &all), Some(Channel::Sms));
        assert_eq!(honour.pick(None, &all), Some(Channel::Push));
        // A preferred channel the patient cannot be reached on does not count.
        assert_eq!(
            honour.pick(Some(Channel::Push), &[Channel::Sms, Channel::Email]),
            Some(Channel::Email)
        );
        let overrides = ChannelChoice {
            overrides_preference: true,
            ..honour
        };
        assert_eq!(
            overrides.pick(Some(Channel::Sms), &all),
            Some(Channel::Push)
        );
        assert_eq!(overrides.pick(Some(Channel::Sms), &[]), None);
        let fastest = ChannelOrder::fastest_first();
        let urgent = ChannelChoice {
            order: &fastest,
            overrides_preference: true,
        };
        assert_eq!(
            urgent.pick(None, &[Channel::Email, Channel::Sms]),
            Some(Channel::Sms)
        );
    }
}
