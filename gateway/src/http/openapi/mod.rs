//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/v1/openapi.json` and
//! rendered as a page at `/api/docs` (`web::api_docs`).
//!
//! Each handler in `api` carries its own `#[utoipa::path]` (method, path, parameters, body,
//! answers) and its types derive `ToSchema`, so the document is built from the code it
//! describes. What every operation shares is added here once, to the built document: the
//! `/api/v1` prefix the router nests the handlers under, the bearer scheme, and the error
//! answers, all with the one error body of `http::error`.
//!
//! Three tests keep it honest: it validates against the official OpenAPI 3.1 schema, it has
//! exactly the routes `http/mod.rs` declares (`tests.rs`), and the end-to-end suite checks
//! every JSON answer it receives against it (`tests/api/conformance.rs`).

/// Schemas of the answers handlers build with `json!`, the error body and path parameters.
pub(crate) mod shapes;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::api;

/// Where the router nests the JSON API; the handlers' annotations give paths below it.
pub const PREFIX: &str = "/api/v1";

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Patient notification gateway",
        description = "The JSON API of a GP surgery's notification gateway: practices, their \
            patients and appointments, status changes and the broadcasts they start, message \
            wording, approvals and access. Every call but the providers' callbacks needs \
            `Authorization: Bearer <key>`. A practice key reaches its own practice only: \
            anything of another practice answers `404`, exactly as if it did not exist.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        api::practices::create,
        api::practices::list,
        api::practices::show,
        api::practices::change,
        api::patients::upsert,
        api::imports::import,
        api::patients::show,
        api::patients::list,
        api::patients::deactivate,
        api::patients::erase,
        api::broadcasts::list,
        api::costs::monthly,
        api::audit::list,
        api::status::post,
        api::scheduled::list,
        api::scheduled::create,
        api::scheduled::show,
        api::scheduled::edit,
        api::scheduled::cancel,
        api::staff::register,
        api::staff::list,
        api::staff::remove,
        api::proposals::list,
        api::proposals::show,
        api::proposals::approve,
        api::proposals::dismiss,
        api::proposals::settings,
        api::proposals::save_settings,
        api::appointments::upsert,
        api::appointments::import_csv,
        api::appointments::show,
        api::appointments::change,
        api::federations::create,
        api::federations::list,
        api::federations::replace_members,
        api::federations::issue_key,
        api::keys::list,
        api::keys::create,
        api::keys::revoke,
        api::keys::rotate,
        api::keys::users,
        api::keys::disable_user,
        api::groups::post,
        api::groups::show,
        api::groups::cancel,
        api::broadcasts::show,
        api::broadcasts::messages,
        api::broadcasts::cancel,
        api::broadcasts::message,
        api::push::register,
        api::push::invite,
        api::push_receipts::post,
        api::receipts::twilio,
        api::receipts::notify,
        api::nhs_notify_receipts::nhs_notify,
        api::receipts::webhook,
        api::receipts::inbound_twilio,
        api::templates::list,
        api::templates::preview,
        api::templates::show,
        api::templates::save,
        api::templates::versions,
        api::templates::diff,
        api::templates::rollback,
        document_json,
    ),
    components(schemas(shapes::ErrorBody)),
    tags(
        (name = "practices", description = "Practices and who their messages come from"),
        (name = "patients", description = "Patients and their contacts: JSON batches and CSV lists"),
        (name = "appointments", description = "Booked appointments and one patient's changes"),
        (name = "broadcasts", description = "Status changes, the broadcasts they start, and their messages"),
        (name = "scheduling", description = "Status changes planned ahead"),
        (name = "approvals", description = "Staff numbers, proposed status changes and approval rules"),
        (name = "templates", description = "Message wording: versions, diffs, rollback and preview"),
        (name = "push", description = "Patients' browsers: push subscriptions and invitations"),
        (name = "access", description = "API keys, console users and federations (administrators)"),
        (name = "callbacks", description = "Providers' delivery receipts and inbound texts: no API key, each signed its own way"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi_document", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value)))]
pub async fn document_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_text(),
    )
        .into_response()
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi())
            .expect("utoipa's document is plain data and always serializes");
        complete(&mut document);
        document
    })
}

/// The document as JSON text, serialized once.
fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| document().to_string())
}

/// Adds what every operation shares: the `/api/v1` prefix, the bearer scheme where a key
/// is needed, and the error answers each kind of operation can give.
fn complete(document: &mut Value) {
    let paths = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut prefixed = Map::new();
    for (path, mut item) in paths {
        let has_path_parameters = path.contains('{');
        if let Some(operations) = item.as_object_mut() {
            for operation in operations.values_mut() {
                complete_operation(operation, has_path_parameters);
            }
        }
        prefixed.insert(format!("{PREFIX}{path}"), item);
    }
    document["paths"] = Value::Object(prefixed);
    document["components"]["securitySchemes"] = json!({ BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>`. Made by `gateway keys create` \
            or `POST /api/v1/keys`; scoped to one practice, a federation's practices, or \
            everything (admin). The console's scripts may use its session cookie instead."
    } });
}

fn complete_operation(operation: &mut Value, has_path_parameters: bool) {
    let tagged = |tag: &str| {
        operation["tags"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t == tag))
    };
    let (callback, meta) = (tagged("callbacks"), tagged("meta"));
    let takes_json = operation["requestBody"]["content"]
        .get("application/json")
        .is_some();
    let takes_query = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if callback {
        errors.push((
            "401",
            "`invalid_signature` or `callback_not_configured`: the signature does not match",
        ));
        errors.push((
            "400",
            "`missing_field` or `malformed_json`: the callback lacks what it must carry",
        ));
        errors.push(("404", "`not_found`: no message has this provider reference"));
    } else if !meta {
        errors.push((
            "401",
            "`missing_api_key` or `invalid_api_key`: no usable `Authorization: Bearer` key",
        ));
        errors.push((
            "403",
            "`forbidden`: the key may not do this (an admin-only call, or a console script without its CSRF token)",
        ));
        errors.push(("404", "`not_found`: no such thing, or not the key's to see"));
    }
    if has_path_parameters && !callback {
        errors.push(("404", "`not_found`: no such thing, or not the key's to see"));
    }
    if takes_json || takes_query {
        errors.push((
            "400",
            "`malformed_json`, `invalid_query` or another request that cannot be read",
        ));
    }
    if takes_json {
        errors.push(("413", "`body_too_large`"));
        errors.push((
            "415",
            "`unsupported_media_type`: send `Content-Type: application/json`",
        ));
        errors.push((
            "422",
            "`validation_failed` or `invalid_body`: `details` lists each field and reason",
        ));
    }
    if !meta {
        errors.push((
            "503",
            "`busy`: no database connection came free in time; retry after `Retry-After` seconds, with the same `Idempotency-Key`",
        ));
    }
    errors.push(("default", "Any other failure, with the same error body"));
    if let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    {
        for (status, description) in errors {
            responses
                .entry(status)
                .or_insert_with(|| error_response(description));
        }
    }
    if !callback && !meta {
        operation["security"] = json!([{ BEARER: [] }]);
    }
}

/// An error answer: `description` and the error body.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/ErrorBody" }
        } }
    })
}
