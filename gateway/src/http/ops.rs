//! The ops routes every instance serves, whatever its role: `GET /healthz` (the process
//! answers), `GET /readyz` (and its database does) and `GET /metrics` (every gateway metric
//! as OpenMetrics text, for a Prometheus scraper).
//!
//! Not under `/api/v1` and not behind a key: they name providers and counts but carry no
//! patient data.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::ApiError;
use crate::app::AppState;
use crate::telemetry::metrics::CONTENT_TYPE;

/// `/healthz`, `/readyz` and `/metrics`, for the full router and the worker's alike.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// 200 with the database's kind when the store answers a ping, else 503.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": state.store.kind() })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "database unreachable" })),
            )
        }
    }
}

/// The metrics exposition, with the queue depth read from the store now. A store that cannot answer
/// makes the scrape fail (503) rather than report a stale or zero queue.
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
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
