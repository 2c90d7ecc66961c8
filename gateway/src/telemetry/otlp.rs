//! The exporter behind `[telemetry] otlp_endpoint`: the gateway's spans leave over OTLP/HTTP
//! with protobuf, in batches, from a bounded queue drained by the SDK's own thread, so a slow
//! or unreachable collector costs spans, never a request or a send.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::TelemetryConfig;

/// Largest collector answer read; a collector's answer is a few bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why trace export could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Exports are sent from the runtime that builds the exporter.
    #[error("trace export must be started within a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("trace export: {0}")]
    Client(#[from] reqwest::Error),
    /// The OTLP exporter refused its settings.
    #[error("trace export: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Sends finished spans to the collector. [`Exporter::shutdown`] sends what is still queued.
pub struct Exporter {
    provider: SdkTracerProvider,
    timeout: Duration,
}

impl Exporter {
    /// The exporter `config` asks for, or `None` (nothing is built) when no endpoint is set.
    /// Call it within a Tokio runtime: exports are sent from that runtime.
    pub fn from_config(config: &TelemetryConfig) -> Result<Option<Self>, ExportError> {
        if !config.exports_traces() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ExportError::NoRuntime)?;
        let timeout = Duration::from_millis(config.otlp_timeout_ms);
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Collector { client, runtime })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.otlp_endpoint.trim())
            .with_timeout(timeout)
            .build()?;
        let queue = BatchConfigBuilder::default()
            .with_max_queue_size(config.otlp_queue_size)
            .build();
        let batches = BatchSpanProcessor::builder(LossReported::new(otlp))
            .with_batch_config(queue)
            .build();
        // A request's sampling decision is inherited by everything that continues its trace
        // (its fan-out and every send), so a broadcast's trace is kept or dropped whole.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.otlp_sample_ratio,
        )));
        let resource = Resource::builder()
            .with_service_name(config.otlp_service_name.trim().to_string())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider, timeout }))
    }

    /// The layer that turns the gateway's own spans into exported spans. Events (log lines)
    /// and other crates' spans are left out: a span carries only the fields the gateway
    /// gives it, which never include patient data.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("gateway"))
            .with_location(false)
            .with_threads(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span()
                    && (meta.target() == "gateway" || meta.target().starts_with("gateway::"))
            }))
    }

    /// Sends what is queued and stops, within the export timeout and a second. It blocks,
    /// waiting on an export sent from the runtime: call it on a blocking thread.
    pub fn shutdown(self) {
        let within = self.timeout + Duration::from_secs(1);
        if let Err(e) = self.provider.shutdown_with_timeout(within) {
            tracing::warn!(error = %e, "trace export stopped before sending every span");
        }
    }
}

/// The exporter's HTTP client: the gateway's reqwest client, sending on the runtime that built
/// the exporter (the SDK exports from a thread of its own, outside any runtime).
#[derive(Debug)]
struct Collector {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for Collector {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let answer = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError::from("the collector's answer is too long"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>((status, headers, Bytes::from(body)))
        });
        let (status, headers, body) = answer.await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The OTLP exporter, reporting a collector that stops taking spans once, with the reason,
/// and once more when it takes them again, with how many were lost meanwhile (instead of the
/// SDK's error line per batch). Spans dropped because the queue was full are reported by the
/// SDK: once when it starts dropping, and their count at shutdown.
#[derive(Debug)]
struct LossReported<E> {
    inner: E,
    failing: AtomicBool,
    lost: AtomicU64,
}

impl<E> LossReported<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        }
    }
}

impl<E: SpanExporter> SpanExporter for LossReported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        match self.inner.export(batch).await {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    tracing::info!(
                        lost_spans = lost,
                        "trace export: the collector takes spans again"
                    );
                }
            }
            Err(e) => {
                self.lost.fetch_add(spans, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "trace export: the collector did not take spans; they are dropped until it does");
                }
            }
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str) -> TelemetryConfig {
        TelemetryConfig {
            log_filter: "info".into(),
            format: Default::default(),
            otlp_endpoint: endpoint.into(),
            otlp_service_name: "gateway".into(),
            otlp_timeout_ms: 500,
            otlp_sample_ratio: 1.0,
            otlp_queue_size: 16,
        }
    }

    #[tokio::test]
    async fn no_endpoint_builds_no_exporter() {
        assert!(Exporter::from_config(&config("")).unwrap().is_none());
        assert!(Exporter::from_config(&config("  ")).unwrap().is_none());
    }

    #[test]
    fn an_exporter_needs_a_runtime_to_send_from() {
        let refused = Exporter::from_config(&config("http://127.0.0.1:9/v1/traces"));
        assert!(matches!(refused, Err(ExportError::NoRuntime)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_port_neither_slows_spans_nor_the_shutdown() {
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
        let exporter = Exporter::from_config(&config(&endpoint)).unwrap().unwrap();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            exporter.layer(),
        );
        let began = std::time::Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            // Far more than the queue holds: the rest are dropped, not waited for.
            for i in 0..1_000 {
                let span = tracing::info_span!("request", request_id = i);
                drop(span.enter());
            }
        });
        assert!(
            began.elapsed() < Duration::from_millis(500),
            "{:?}",
            began.elapsed()
        );
        let began = std::time::Instant::now();
        tokio::task::spawn_blocking(move || exporter.shutdown())
            .await
            .unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
    }
}
