//! Reading a practice's details from a request, for adding a practice and for changing one:
//! each field's rules once, every refusal collected with its field's name.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, ChannelOrder, EmailAddress, Invalid, PhoneNumber, SmsSender};
use crate::schedule::{PracticeZone, QuietHours};

/// The longest email display name taken.
const MAX_DISPLAY_NAME: usize = 100;
/// The longest practice name taken.
const MAX_NAME: usize = 200;
/// The longest website address taken.
const MAX_WEBSITE: usize = 200;

/// A practice's quiet hours as the API shows and takes them: local `HH:MM` times in the
/// practice's timezone; equal times mean none.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    /// When bulk SMS and push start waiting, e.g. `21:00`.
    pub start: String,
    /// When they may go again, e.g. `08:00`.
    pub end: String,
}

impl From<QuietHours> for QuietHoursBody {
    fn from(q: QuietHours) -> Self {
        Self {
            start: q.start.format("%H:%M").to_string(),
            end: q.end.format("%H:%M").to_string(),
        }
    }
}

/// Collects a request's refusals while its fields are read.
#[derive(Debug, Default)]
pub struct FieldReader {
    /// Every refusal so far.
    pub errors: Vec<Invalid>,
}

impl FieldReader {
    /// A practice's name: 1 to [`MAX_NAME`] characters, trimmed.
    pub fn name(&mut self, text: &str) -> String {
        let name = text.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            self.errors.push(Invalid::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters"),
            ));
        }
        name
    }

    /// A public phone number as given (checked to be a UK number), or none if blank.
    pub fn phone(&mut self, text: Option<&str>) -> Option<String> {
        let text = text.map(str::trim).filter(|t| !t.is_empty())?;
        match PhoneNumber::parse(text) {
            Ok(_) => Some(text.to_string()),
            Err(e) => {
                self.errors.push(Invalid::new("phone", e.reason));
                None
            }
        }
    }

    /// A web address of at most [`MAX_WEBSITE`] characters without spaces, or none if blank.
    pub fn website(&mut self, text: Option<&str>) -> Option<String> {
        let text = text.map(str::trim).filter(|t| !t.is_empty())?;
        if text.len() > MAX_WEBSITE || text.contains(char::is_whitespace) {
            self.errors.push(Invalid::new(
                "website",
                format!("must be a web address of at most {MAX_WEBSITE} characters"),
            ));
            return None;
        }
        Some(text.to_string())
    }

    /// Where replies go: an email address, or none if blank.
    pub fn email(&mut self, text: Option<&str>) -> Option<String> {
        let text = text.map(str::trim).filter(|t| !t.is_empty())?;
        EmailAddress::parse(text)
            .map(|e| e.to_string())
            .map_err(|e| self.errors.push(Invalid::new("email", e.reason)))
            .ok()
    }

    /// The practice's SMS sender, or none if blank.
    pub fn sms_sender(&mut self, text: Option<&str>) -> Option<SmsSender> {
        let text = text.filter(|t| !t.trim().is_empty())?;
        SmsSender::parse(text)
            .map_err(|e| self.errors.push(Invalid::new("sms_sender", e.to_string())))
            .ok()
    }

    /// An email display name: one line of at most [`MAX_DISPLAY_NAME`] characters, or none
    /// if blank.
    pub fn display_name(&mut self, text: Option<&str>) -> Option<String> {
        let text = text.map(str::trim).filter(|t| !t.is_empty())?;
        if text.chars().count() > MAX_DISPLAY_NAME || text.chars().any(char::is_control) {
            self.errors.push(Invalid::new(
                "email_display_name",
                format!("must be one line of at most {MAX_DISPLAY_NAME} characters"),
            ));
            return None;
        }
        Some(text.to_string())
    }

    /// An IANA timezone name such as `Europe/London`.
    pub fn timezone(&mut self, name: &str) -> Option<PracticeZone> {
        PracticeZone::parse(name)
            .map_err(|e| self.errors.push(Invalid::new("timezone", e.to_string())))
            .ok()
    }

    /// Channels in the order they are tried, each once; a refusal names `field`
    /// (`channel_order` or `urgent_channel_order`).
    pub fn channel_order(&mut self, field: &str, names: &[String]) -> Option<ChannelOrder> {
        names
            .iter()
            .map(|n| n.parse::<Channel>())
            .collect::<Result<Vec<_>, _>>()
            .and_then(ChannelOrder::new)
            .map_err(|e| self.errors.push(Invalid::new(field, e.reason)))
            .ok()
    }

    /// A practice's own quiet hours.
    pub fn quiet_hours(&mut self, body: &QuietHoursBody) -> Option<QuietHours> {
        QuietHours::parse(&body.start, &body.end)
            .map_err(|reason| self.errors.push(Invalid::new("quiet_hours", reason)))
            .ok()
    }

    /// The value read if no field was refused, else every refusal.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Invalid>> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ if self.errors.is_empty() => Err(vec![Invalid::new("", "the request is incomplete")]),
            _ => Err(self.errors),
        }
    }
}

/// A field that was given, `null` included (left out: `None` by `default`): for fields
/// that `null` clears.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refused_field_is_named_and_all_are_kept() {
        let mut read = FieldReader::default();
        assert_eq!(read.name("  "), "");
        assert_eq!(read.website(Some("not a url")), None);
        assert_eq!(read.timezone("Mars/Olympus"), None);
        let quiet = QuietHoursBody {
            start: "21:00".into(),
            end: "8am".into(),
        };
        assert_eq!(read.quiet_hours(&quiet), None);
        let fields: Vec<&str> = read.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "website", "timezone", "quiet_hours"]);
        assert!(read.finish(Some(())).is_err());
    }

    #[test]
    fn blank_optional_fields_read_as_none_without_complaint() {
        let mut read = FieldReader::default();
        assert_eq!(read.phone(Some(" ")), None);
        assert_eq!(read.email(None), None);
        assert_eq!(read.display_name(Some("")), None);
        assert!(read.errors.is_empty());
        let quiet = read.quiet_hours(&QuietHoursBody {
            start: "22:00".into(),
            end: "07:30".into(),
        });
        assert_eq!(quiet.map(|q| q.to_text()).as_deref(), Some("22:00-07:30"));
        assert_eq!(read.finish(Some(1)), Ok(1));
    }
}
