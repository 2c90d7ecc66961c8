//! What a staff member is shown before a status change is sent: the SMS wording patients
//! will get, how many patients each channel reaches, and the SMS segments in all, written
//! as one text with the code that approves it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::Channel;
use crate::fanout::Audience;
use crate::render::sms;

/// A status change's reach and wording, as previewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ApprovalPreview)]
pub struct Preview {
    /// The SMS patients will get (English, or Welsh and English for a bilingual practice).
    pub sms_text: String,
    /// Recipients per channel.
    pub recipients: BTreeMap<Channel, u64>,
    /// Patients with no contact the gateway can use.
    pub no_contact: u64,
    /// Segments of one SMS.
    pub segments_each: u64,
    /// Segments of all the SMS together: what the broadcast costs.
    pub segments_total: u64,
}

impl Preview {
    /// The preview of `sms_text` sent to `audience`.
    pub fn new(sms_text: String, audience: &Audience) -> Self {
        let segments_each = sms::cost(&sms_text).segments as u64;
        let by_sms = audience.recipients.get(&Channel::Sms).copied().unwrap_or(0);
        Self {
            segments_each,
            segments_total: segments_each * by_sms,
            recipients: audience.recipients.clone(),
            no_contact: audience.no_contact,
            sms_text,
        }
    }

    /// Everyone it reaches, on every channel.
    pub fn total(&self) -> u64 {
        self.recipients.values().sum()
    }

    /// The counts in words: `120 by SMS (240 segments), 40 by email, 5 by push`.
    pub fn counts(&self) -> String {
        let mut parts = Vec::new();
        for channel in Channel::ALL {
            let n = self.recipients.get(&channel).copied().unwrap_or(0);
            match channel {
                Channel::Sms => parts.push(format!(
                    "{n} by SMS ({} segment{})",
                    self.segments_total,
                    if self.segments_total == 1 { "" } else { "s" }
                )),
                Channel::Email => parts.push(format!("{n} by email")),
                Channel::Push => parts.push(format!("{n} by push")),
                Channel::NhsApp if n > 0 => parts.push(format!("{n} in the NHS App")),
                Channel::NhsApp => {}
            }
        }
        let mut counts = parts.join(", ");
        if self.no_contact > 0 {
            counts.push_str(&format!("; {} with no contact", self.no_contact));
        }
        counts
    }

    /// The text asking for approval: `lead` (what is proposed and by whom), the wording, the
    /// counts, and how to approve with `code` within `minutes`.
    pub fn ask(&self, lead: &str, code: &str, minutes: u64) -> String {
        format!(
            "{lead} Patients will get: \"{}\" To {}: {}. Reply YES {code} within {minutes} min to send, or CANCEL.",
            self.sms_text,
            self.total(),
            self.counts(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_name_every_channel_and_the_segments_in_all() {
        let mut audience = Audience::default();
        audience.recipients.insert(Channel::Sms, 120);
        audience.recipients.insert(Channel::Email, 40);
        audience.no_contact = 3;
        let text = "x".repeat(161);
        let preview = Preview::new(text.clone(), &audience);
        assert_eq!(preview.segments_each, 2);
        assert_eq!(preview.segments_total, 240);
        assert_eq!(preview.total(), 160);
        assert_eq!(
            preview.counts(),
            "120 by SMS (240 segments), 40 by email, 0 by push; 3 with no contact"
        );
        let ask = preview.ask("CLOSED from Ann.", "123456", 10);
        assert!(ask.starts_with("CLOSED from Ann. Patients will get: \"x"));
        assert!(ask.ends_with("To 160: 120 by SMS (240 segments), 40 by email, 0 by push; 3 with no contact. Reply YES 123456 within 10 min to send, or CANCEL."));
    }
}
