//! The global subscriber: text for people (coloured only on a terminal) or one JSON object
//! per line for a log collector, each line carrying the span it was written in, so a
//! request's `request_id` is on every line the request causes; and, when configured, the
//! layer that exports spans (see `otlp`).

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use super::otlp::{ExportError, Exporter};
use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber once (later calls change nothing): log lines, and the
/// export of spans when `[telemetry] otlp_endpoint` is set. Returns the exporter, for the
/// caller to shut down at exit (sending the spans still queued). Call it within a Tokio
/// runtime.
pub fn init(config: &TelemetryConfig) -> Result<Option<Exporter>, ExportError> {
    let exporter = Exporter::from_config(config)?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let ansi = std::io::stderr().is_terminal();
    // The log filter is the log lines' own: spans are exported whatever it lets through.
    let logs = layer(config.format, std::io::stderr, ansi).with_filter(filter);
    let subscriber = tracing_subscriber::registry()
        .with(logs)
        .with(exporter.as_ref().map(|exporter| exporter.layer()));
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(exporter)
}

/// The formatting layer for `format`, writing to `writer`; `ansi` allows colour codes
/// (text only: JSON is never coloured).
pub fn layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn written(format: LogFormat, ansi: bool) -> String {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer(format, buffer.clone(), ansi));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "req-42", method = "GET");
            let _entered = span.enter();
            tracing::info!(status = 200, "answered \"quoted\"\nover two lines");
            tracing::warn!(kind = "closed", "second event");
        });
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_request_id() {
        let text = written(LogFormat::Json, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["span"]["request_id"], "req-42", "{line}");
            assert!(value["timestamp"].is_string() && value["level"].is_string());
        }
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            first["fields"]["message"],
            "answered \"quoted\"\nover two lines"
        );
        assert_eq!(first["fields"]["status"], 200);
        assert!(!text.contains('\u{1b}'), "no colour codes in JSON: {text}");
    }

    #[test]
    fn text_logs_are_coloured_only_when_asked() {
        let plain = written(LogFormat::Text, false);
        assert!(plain.contains("request_id=\"req-42\"") || plain.contains("request_id=req-42"));
        assert!(!plain.contains('\u{1b}'), "{plain}");
        assert!(written(LogFormat::Text, true).contains('\u{1b}'));
    }
}
