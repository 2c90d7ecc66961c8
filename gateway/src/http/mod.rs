//! The one place the HTTP server is put together: every route of the gateway (the JSON API,
//! provider callbacks, unsubscribe links, the console, the patients' push pages, the ops
//! routes), the fallbacks and the middleware. Handlers live with their feature (`api`, `web`);
//! only their addresses are here, so a reader finds any route from this file.

/// The client a request comes from, through a trusted proxy if one is configured: what
/// every per-client limit of the API and the pages counts by.
pub mod client_address;
/// The API's error type and its JSON body, also spoken by the pages' JSON calls.
pub mod error;
/// The API's OpenAPI 3.1 document, built from the handlers' annotations, and its route.
pub mod openapi;
/// `/healthz`, `/readyz` and `/metrics`: served by every instance, whatever its role.
mod ops;
/// A browser's push subscription as its script sends it, checked before it is stored.
pub(crate) mod push_subscription;
/// A request id on every request, echoed, logged with the request and quoted in errors.
pub mod request_id;

/// Fails the build's tests if a route is declared outside `http/`, `api` and `web` import
/// each other, or the code map in `docs/architecture.md` misses a route.
#[cfg(test)]
mod layout_test;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

use crate::app::AppState;

/// Every route, with body limits, panic safety, request ids and request tracing.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .nest("/api/v1", api_routes())
        .route(
            "/unsubscribe/{token}",
            get(crate::api::receipts::unsubscribe_page).post(crate::api::receipts::unsubscribe),
        )
        .merge(ops::routes())
        .merge(page_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }));
    request_id::traced(routes).with_state(state)
}

/// What a `worker` instance serves: `/healthz`, `/readyz` and `/metrics`, nothing else.
pub fn ops_router(state: AppState) -> Router {
    request_id::traced(ops::routes().fallback(not_found)).with_state(state)
}

/// The JSON API, nested under `/api/v1`.
fn api_routes() -> Router<AppState> {
    use crate::api::{
        appointments, audit, broadcasts, costs, federations, groups, imports, keys,
        nhs_notify_receipts, patients, practices, proposals, push, push_receipts, receipts,
        scheduled, staff, status, templates,
    };
    Router::new()
        .route("/openapi.json", get(openapi::document_json))
        .route("/practices", post(practices::create).get(practices::list))
        .route(
            "/practices/{ods}",
            get(practices::show).patch(practices::change),
        )
        .route(
            "/practices/{ods}/patients",
            post(patients::upsert).get(patients::list),
        )
        .route("/practices/{ods}/patients/import", post(imports::import))
        .route(
            "/practices/{ods}/patients/{nhs}",
            get(patients::show).delete(patients::erase),
        )
        .route(
            "/practices/{ods}/patients/{nhs}/deactivate",
            post(patients::deactivate),
        )
        .route("/practices/{ods}/broadcasts", get(broadcasts::list))
        .route("/practices/{ods}/costs", get(costs::monthly))
        .route("/practices/{ods}/status", post(status::post))
        .route(
            "/practices/{ods}/scheduled-notices",
            get(scheduled::list).post(scheduled::create),
        )
        .route(
            "/practices/{ods}/scheduled-notices/{id}",
            get(scheduled::show).patch(scheduled::edit),
        )
        .route(
            "/practices/{ods}/scheduled-notices/{id}/cancel",
            post(scheduled::cancel),
        )
        .route(
            "/practices/{ods}/staff",
            post(staff::register).get(staff::list),
        )
        .route("/practices/{ods}/staff/{id}", delete(staff::remove))
        .route("/practices/{ods}/proposals", get(proposals::list))
        .route("/practices/{ods}/proposals/{id}", get(proposals::show))
        .route(
            "/practices/{ods}/proposals/{id}/approve",
            post(proposals::approve),
        )
        .route(
            "/practices/{ods}/proposals/{id}/dismiss",
            post(proposals::dismiss),
        )
        .route(
            "/practices/{ods}/approval",
            get(proposals::settings).put(proposals::save_settings),
        )
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
        .route(
            "/federations",
            post(federations::create).get(federations::list),
        )
        .route(
            "/federations/{id}/practices",
            put(federations::replace_members),
        )
        .route("/federations/{id}/keys", post(federations::issue_key))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/keys/{id}/rotate", post(keys::rotate))
        .route("/audit", get(audit::list))
        .route("/users", get(keys::users))
        .route("/users/{id}/disable", post(keys::disable_user))
        .route("/status-groups", post(groups::post))
        .route("/status-groups/{id}", get(groups::show))
        .route("/status-groups/{id}/cancel", post(groups::cancel))
        .route("/broadcasts/{id}", get(broadcasts::show))
        .route("/broadcasts/{id}/messages", get(broadcasts::messages))
        .route("/broadcasts/{id}/cancel", post(broadcasts::cancel))
        .route("/messages/{id}", get(broadcasts::message))
        .route(
            "/practices/{ods}/patients/{nhs}/push-subscriptions",
            post(push::register),
        )
        .route(
            "/practices/{ods}/patients/{nhs}/push-invite",
            post(push::invite),
        )
        .route("/push/receipts", post(push_receipts::post))
        .route("/receipts/twilio", post(receipts::twilio))
        .route("/receipts/notify", post(receipts::notify))
        .route(
            "/receipts/nhs-notify",
            post(nhs_notify_receipts::nhs_notify),
        )
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
        )
}

/// The pages: the admin console, the patients' push sign-up pages and their static files.
fn page_routes() -> Router<AppState> {
    use crate::web::{
        api_docs, console, console_approval, console_cancel, console_groups, console_schedule,
        console_templates, console_users, push, status_page,
    };
    Router::new()
        .route("/api/docs", get(api_docs::page))
        .route("/static/api-docs.css", get(api_docs::stylesheet))
        .route("/console", get(console::home))
        .route(
            "/console/signin",
            get(console::signin_page).post(console::signin),
        )
        .route("/console/signout", post(console::signout))
        .route("/console/practices", get(console::practices))
        .route("/console/practices/{ods}", get(console::practice))
        .route(
            "/console/practices/{ods}/status",
            post(console::post_status),
        )
        .route(
            "/console/practices/{ods}/approvals",
            get(console_approval::approvals),
        )
        .route(
            "/console/practices/{ods}/proposals/{id}/approve",
            post(console_approval::approve),
        )
        .route(
            "/console/practices/{ods}/proposals/{id}/dismiss",
            post(console_approval::dismiss),
        )
        .route(
            "/console/practices/{ods}/staff",
            post(console_approval::add_staff),
        )
        .route(
            "/console/practices/{ods}/staff/{id}/remove",
            post(console_approval::remove_staff),
        )
        .route(
            "/console/practices/{ods}/approval",
            post(console_approval::save_rules),
        )
        .route(
            "/console/practices/{ods}/scheduled",
            get(console_schedule::list).post(console_schedule::create),
        )
        .route(
            "/console/practices/{ods}/scheduled/{id}/edit",
            post(console_schedule::edit),
        )
        .route(
            "/console/practices/{ods}/scheduled/{id}/cancel",
            post(console_schedule::cancel),
        )
        .route("/console/broadcasts/{id}", get(console::broadcast))
        .route(
            "/console/broadcasts/{id}/cancel",
            post(console_cancel::cancel),
        )
        .route("/console/groups", post(console_groups::send))
        .route("/console/groups/new", get(console_groups::new))
        .route("/console/groups/{id}", get(console_groups::show))
        .route("/console/groups/{id}/cancel", post(console_groups::stop))
        .route("/console/audit", get(console::audit))
        .route("/console/users", get(console_users::list))
        .route("/console/users/{id}/disable", post(console_users::disable))
        .route("/console/templates", get(console_templates::list))
        .route(
            "/console/templates/{key}/{channel}",
            get(console_templates::edit).post(console_templates::save),
        )
        .route(
            "/console/templates/{key}/{channel}/rollback",
            post(console_templates::rollback),
        )
        .route("/static/console.js", get(console::script))
        .route("/static/console.css", get(console::stylesheet))
        .route("/p/{ods}", get(status_page::status_page))
        .route("/p/{ods}/feed.atom", get(status_page::feed))
        .route("/p/{ods}/banner", get(status_page::banner_page))
        .route("/p/{ods}/banner.html", get(status_page::banner_fragment))
        .route("/p/{ods}/notifications", get(push::signup_page))
        .route("/p/{ods}/notifications/subscribe", post(push::subscribe))
        .route("/p/{ods}/notifications/stop", get(push::stop_page))
        .route(
            "/p/{ods}/notifications/unsubscribe",
            post(push::unsubscribe),
        )
        .route("/static/push.js", get(push::script))
        .route("/static/patient.css", get(push::stylesheet))
        .route("/sw.js", get(push::service_worker))
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
