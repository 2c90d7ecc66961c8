//! `GET /metrics`: every gateway metric as OpenMetrics text, for a Prometheus scraper.
//!
//! Not under `/api/v1` and not behind a key, like `/healthz`: it names providers and counts
//! but carries no patient data.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use super::ApiError;
use crate::app::AppState;
use crate::telemetry::metrics::CONTENT_TYPE;

/// The exposition, with the queue depth read from the store now. A store that cannot answer
/// makes the scrape fail (503) rather than report a stale or zero queue.
pub async fn show(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let depth = state.store.queue_depth().await.map_err(|e| {
        tracing::warn!(error = %e, "metrics scrape could not read the queue depth");
        ApiError::Rejected(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database did not answer; try again".into(),
        )
    })?;
    let paused: Vec<(String, String, std::time::Duration)> = state
        .dispatch
        .origins
        .paused(std::time::Instant::now())
        .into_iter()
        .map(|p| (p.provider, p.origin, p.left))
        .collect();
    state
        .metrics
        .dispatch_state(&state.dispatch.lane_depth(), &paused);
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(&depth),
    ))
}
