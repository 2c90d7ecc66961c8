//! Following a request to the provider. Work a request starts runs later, in a dispatch
//! worker that may be another process, so the request's trace context travels with the work:
//! the W3C `traceparent` of the request that posts a status change (or an appointment change)
//! is stored with its broadcast (or its message), and each later span (the fan-out, every
//! provider send) continues that trace. While spans are not exported nothing is recorded and
//! nothing is read.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TelemetryConfig;

/// The W3C trace context's header name, also the key it is carried under here.
const TRACEPARENT: &str = "traceparent";

/// Whether trace context is recorded with work and continued by it: on exactly when spans
/// are exported (`[telemetry] otlp_endpoint`). Decided once from the settings, so parts
/// that do not export pay nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagation {
    on: bool,
}

impl Propagation {
    /// On when `config` exports spans.
    pub fn from_config(config: &TelemetryConfig) -> Self {
        Self {
            on: config.exports_traces(),
        }
    }

    /// Whether trace context is recorded and read.
    pub fn is_on(self) -> bool {
        self.on
    }

    /// The current span's W3C `traceparent`, to store with the work it starts. `None` when
    /// off, or outside any exported span (a scheduled notice, a status feed).
    pub fn traceparent(self) -> Option<String> {
        if !self.on {
            return None;
        }
        let context = Span::current().context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    /// The span `make` builds, continuing the trace `traceparent` names (a root of its own
    /// when there is none, or it cannot be read); a disabled span when off. `make` must
    /// build its span with `parent: None`: a tracing parent would hold the request's span
    /// open, and its recorded duration running, until the later work ends.
    pub fn follow(self, traceparent: Option<&str>, make: impl FnOnce() -> Span) -> Span {
        if !self.on {
            return Span::none();
        }
        let span = make();
        if let Some(parent) = traceparent.map(context_of) {
            // Refused only for a span nobody records (filtered out), which needs no parent.
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// The remote context `traceparent` names; an empty one if it is not a valid W3C value.
fn context_of(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract_with_context(&opentelemetry::Context::new(), &carrier)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const ON: Propagation = Propagation { on: true };

    /// Keeps every finished span.
    #[derive(Debug, Clone, Default)]
    struct Memory(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Memory {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Runs `body` with spans recorded in memory; returns what it gave and the finished spans.
    fn recorded<T>(body: impl FnOnce() -> T) -> (T, Vec<SpanData>) {
        let memory = Memory::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let out = tracing::subscriber::with_default(subscriber, body);
        let spans = memory.0.lock().unwrap().clone();
        (out, spans)
    }

    #[test]
    fn off_records_nothing_and_makes_no_span() {
        let (traceparent, spans) = recorded(|| {
            let request = tracing::info_span!("request");
            let _entered = request.enter();
            let off = Propagation::default();
            let made = off.follow(
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                || tracing::info_span!(parent: None, "send"),
            );
            assert!(made.is_disabled());
            off.traceparent()
        });
        assert_eq!(traceparent, None);
        assert_eq!(spans.len(), 1, "only the request: {spans:?}");
    }

    #[test]
    fn a_later_span_continues_the_recorded_request() {
        let (traceparent, spans) = recorded(|| {
            let traceparent = {
                let request = tracing::info_span!("request");
                let _entered = request.enter();
                ON.traceparent()
            };
            let send = ON.follow(
                traceparent.as_deref(),
                || tracing::info_span!(parent: None, "send"),
            );
            drop(send.enter());
            traceparent
        });
        let traceparent = traceparent.expect("recorded inside the request");
        let request = spans.iter().find(|s| s.name == "request").unwrap();
        let send = spans.iter().find(|s| s.name == "send").unwrap();
        let trace = request.span_context.trace_id();
        assert_eq!(send.span_context.trace_id(), trace);
        assert_eq!(send.parent_span_id, request.span_context.span_id());
        assert_eq!(
            traceparent,
            format!("00-{trace}-{}-01", request.span_context.span_id())
        );
    }

    #[test]
    fn outside_a_request_or_with_a_bad_value_a_span_starts_its_own_trace() {
        let (traceparent, spans) = recorded(|| {
            let traceparent = ON.traceparent();
            drop(ON.follow(
                Some("not-a-traceparent"),
                || tracing::info_span!(parent: None, "send"),
            ));
            traceparent
        });
        assert_eq!(traceparent, None);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].parent_span_id,
            opentelemetry::trace::SpanId::INVALID
        );
    }
}
