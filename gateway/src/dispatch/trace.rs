//! The span of each send, exported in the trace of the request that caused its message, so
//! that one trace shows a status POST (or appointment change), its fan-out and every
//! provider send it led to, whichever instance sent them and however much later.

use tracing::Span;

use super::Dispatcher;
use crate::domain::Priority;
use crate::store::ClaimedMessage;
use crate::telemetry::metrics::Outcome;

impl Dispatcher {
    /// The span one send runs in, through `provider` (none if the channel has none): what
    /// was sent where and how it went, never to whom or what it said. Disabled while spans
    /// are not exported.
    ///
    /// Its parent is the request behind the message, not a span link. As children, a
    /// broadcast's sends are found with the request, in one trace, by its trace id; linked,
    /// each of thousands of sends would be a trace of its own that trace views neither show
    /// with the request nor find from it. The cost is one long trace per broadcast, which
    /// trace stores take (spans are exported as they end, the request's long before its
    /// sends), and the sampling choice made for the request covers its sends too, so a
    /// broadcast is kept or dropped whole.
    pub(super) fn send_span(&self, message: &ClaimedMessage, provider: Option<&str>) -> Span {
        self.propagation.follow(message.trace.as_deref(), || {
            tracing::info_span!(
                parent: None,
                "send",
                otel.kind = "client",
                message_id = message.id.get(),
                broadcast_id = message.broadcast_id.map(|b| b.get()),
                channel = message.channel.as_str(),
                provider = provider.unwrap_or("none"),
                priority = match message.priority {
                    Priority::Urgent => "urgent",
                    Priority::Bulk => "bulk",
                },
                attempt = message.attempt_no,
                outcome = tracing::field::Empty,
            )
        })
    }

    /// Records on the current send span what became of its message (`sent`, `retried`,
    /// `failed`, `suppressed`, `cancelled`); none is recorded for a message given back to
    /// the outbox unsent.
    pub(super) fn record_outcome(&self, outcome: Outcome) {
        if self.propagation.is_on() {
            Span::current().record("outcome", outcome.as_str());
        }
    }
}
