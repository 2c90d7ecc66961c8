//! Answers to staff: texts sent straight to the SMS providers, in their configured order,
//! each given a bounded time. They do not go through the outbox, which holds messages to
//! patients: an answer is interactive, and a code that arrives ten minutes late is no use.
//! A failed answer is audited by the caller; the staff member can text again.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Channel, Priority};
use crate::providers::{Outgoing, PracticeRef, ProviderRegistry};
use crate::store::Practice;

/// Sends texts to staff numbers through the gateway's SMS providers.
#[derive(Clone)]
pub struct StaffTexts {
    providers: Arc<ProviderRegistry>,
    timeout: Duration,
}

/// Why no provider took an answer: every provider's reason, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no SMS provider took the text: {0}")]
pub struct NotSent(pub String);

impl StaffTexts {
    /// Texts through `providers`' SMS providers, each given `timeout`.
    pub fn new(providers: Arc<ProviderRegistry>, timeout: Duration) -> Self {
        Self { providers, timeout }
    }

    /// Texts `body` to `phone` (E.164) from `practice`; the name of the provider that took
    /// it. Tries each SMS provider in order until one accepts.
    pub async fn send(
        &self,
        practice: &Practice,
        phone: &str,
        body: &str,
    ) -> Result<String, NotSent> {
        let message = Outgoing {
            // Not an outbox message: providers that pass the id on see 0.
            message_id: 0,
            template_key: "staff.approval".into(),
            channel: Channel::Sms,
            address: phone.to_string(),
            subject: None,
            body: body.to_string(),
            html: None,
            link: None,
            priority: Priority::Urgent,
            practice: PracticeRef::of(practice),
            unsubscribe_url: None,
            push: None,
            receipt_token: None,
        };
        let mut reasons = Vec::new();
        for provider in self.providers.for_channel(Channel::Sms) {
            match tokio::time::timeout(self.timeout, provider.send(&message)).await {
                Ok(Ok(_)) => return Ok(provider.name().to_string()),
                Ok(Err(e)) => reasons.push(format!("{}: {e}", provider.name())),
                Err(_) => reasons.push(format!(
                    "{}: no answer within {:?}",
                    provider.name(),
                    self.timeout
                )),
            }
        }
        if reasons.is_empty() {
            reasons.push("no SMS provider is configured".into());
        }
        Err(NotSent(reasons.join("; ")))
    }
}
