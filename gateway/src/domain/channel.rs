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
}
