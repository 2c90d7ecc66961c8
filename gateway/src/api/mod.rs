//! The HTTP JSON API under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.

mod appointments;
mod auth;
mod broadcasts;
mod error;
mod extract;
mod imports;
mod metrics;
mod patients;
mod practices;
pub(crate) mod push;
mod receipts;
mod status;
mod templates;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use auth::{hash_key, issue_key, Caller};
pub use error::ApiError;

use crate::app::AppState;

/// Every route, with body limits, panic safety and request tracing.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/practices", post(practices::create).get(practices::list))
        .route("/practices/{ods}", get(practices::show))
        .route("/practices/{ods}/patients", post(patients::upsert))
        .route("/practices/{ods}/patients/import", post(imports::import))
        .route("/practices/{ods}/patients/{nhs}", get(patients::show))
        .route("/practices/{ods}/status", post(status::post))
        .route("/practices/{ods}/appointments", post(appointments::upsert))
        .route(
            "/practices/{ods}/appointments/import",
            post(appointments::import_csv),
        )
        .route(
            "/practices/{ods}/appointments/{external_ref}",
            get(appointments::show),
        )
        .route(
            "/practices/{ods}/appointments/{external_ref}/changes",
            post(appointments::change),
        )
        .route("/broadcasts/{id}", get(broadcasts::show))
        .route("/broadcasts/{id}/messages", get(broadcasts::messages))
        .route("/messages/{id}", get(broadcasts::message))
        .route(
            "/practices/{ods}/patients/{nhs}/push-subscriptions",
            post(push::register),
        )
        .route(
            "/practices/{ods}/patients/{nhs}/push-invite",
            post(crate::web::push::send_invite_api),
        )
        .route("/receipts/twilio", post(receipts::twilio))
        .route("/receipts/notify", post(receipts::notify))
        .route("/receipts/webhook", post(receipts::webhook))
        .route("/inbound/sms/twilio", post(receipts::inbound_twilio))
        .route("/templates", get(templates::list))
        .route("/templates/preview", post(templates::preview))
        .route(
            "/templates/{key}/{channel}",
            get(templates::show).put(templates::save),
        )
        .route(
            "/templates/{key}/{channel}/versions",
            get(templates::versions),
        )
        .route("/templates/{key}/{channel}/diff", get(templates::diff))
        .route(
            "/templates/{key}/{channel}/rollback",
            post(templates::rollback),
        );
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/unsubscribe/{token}",
            get(receipts::unsubscribe_page).post(receipts::unsubscribe),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::show))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// What a `worker` instance serves: `/healthz`, `/readyz` and `/metrics`, nothing else.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::show))
        .fallback(not_found)
        .with_state(state)
}

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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method".into(),
    )
}
