//! `/practices/{ods}/appointments`: import bookings (a JSON batch or a CSV file) with
//! per-row errors, read one back, and post a change that messages the patient.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{idempotency_key, ApiJson};
use crate::app::AppState;
use crate::domain::Invalid;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::appointments::change::{
    post_appointment_change, AppointmentChangeRequest, ChangeError,
};
use crate::intake::appointments::{
    self, AppointmentInput, FileImportError, ImportSummary, Row, MAX_BATCH,
};

/// A batch of appointments.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentBatch {
    appointments: Vec<AppointmentInput>,
}

/// `POST /practices/{ods}/appointments`: upserts by external reference; bad rows (and rows
/// for patients the practice does not have) are listed with reasons, good ones stored. If
/// every row is bad, nothing is stored and the answer is 422.
#[utoipa::path(post, path = "/practices/{ods}/appointments", operation_id = "upsert_appointments", tag = "appointments",
    params(shapes::OdsPath),
    request_body(content = AppointmentBatch, example = json!({ "appointments": [{
        "nhs_number": "9434765919", "external_ref": "APT-1001", "starts_at": "2026-12-07 10:30",
        "clinician": "Dr Patel", "location": "Room 3", "mode": "in_person"
    }] })),
    responses((status = 200, description = "Counts, and every row refused with its reasons", body = ImportSummary)))]
pub async fn upsert(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(batch): ApiJson<AppointmentBatch>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    if batch.appointments.len() > MAX_BATCH {
        return Err(ApiError::Validation(vec![Invalid::new(
            "appointments",
            format!("at most {MAX_BATCH} appointments per request; send larger lists as CSV to /appointments/import"),
        )]));
    }
    let rows: Vec<Row> = batch
        .appointments
        .into_iter()
        .map(|a| Row {
            line: None,
            input: Ok(a),
        })
        .collect();
    let summary = appointments::import(
        state.store.as_ref(),
        &practice,
        rows,
        &state.config.import,
        &caller.actor,
    )
    .await?;
    answer(summary)
}

/// `POST /practices/{ods}/appointments/import`: the same from a CSV file (the body, at most
/// `import.max_upload_bytes`, spooled to a temporary file and never held whole), with
/// rejected rows named by their spreadsheet row. A file over `import.max_rows` rows is
/// refused (413) before anything is written.
#[utoipa::path(post, path = "/practices/{ods}/appointments/import", operation_id = "import_appointments", tag = "appointments",
    params(shapes::OdsPath),
    request_body(content = String, content_type = "text/csv",
        example = "nhs_number,external_ref,starts_at,clinician,location,mode\n9434765919,APT-1001,2026-12-07 10:30,Dr Patel,Room 3,in_person\n"),
    responses((status = 200, description = "Counts, and every row refused with its spreadsheet row", body = ImportSummary)))]
pub async fn import_csv(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let spool = super::imports::spool_body(body, state.config.import.max_upload_bytes).await?;
    let summary = appointments::import_csv_file(
        state.store.as_ref(),
        &practice,
        &state.config.import,
        spool.path().to_path_buf(),
        &caller.actor,
    )
    .await;
    drop(spool);
    answer(summary?)
}

/// The summary; 422 with every listed problem when every row was refused.
fn answer(summary: ImportSummary) -> Result<Json<Value>, ApiError> {
    if summary.created + summary.updated == 0 && summary.rejected_count > 0 {
        return Err(ApiError::Validation(rejections(&summary)));
    }
    Ok(Json(json!(summary)))
}

/// Every listed rejected row's problems, each under `appointments[i]` (or `line N` of a file).
fn rejections(summary: &ImportSummary) -> Vec<Invalid> {
    summary
        .rejected
        .iter()
        .flat_map(|r| {
            let at = match r.line {
                Some(line) => format!("line {line}"),
                None => format!("appointments[{}]", r.index),
            };
            r.errors.iter().map(move |e| e.clone().under(&at))
        })
        .collect()
}

/// `GET /practices/{ods}/appointments/{external_ref}`: one appointment as it stands.
#[utoipa::path(get, path = "/practices/{ods}/appointments/{external_ref}", operation_id = "show_appointment", tag = "appointments",
    params(shapes::AppointmentPath),
    responses((status = 200, description = "The appointment as it stands", body = crate::store::Appointment)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, external_ref)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let appointment = state
        .store
        .appointment_by_ref(practice.id, &external_ref)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no appointment {external_ref}")))?;
    Ok(Json(json!(appointment)))
}

/// `POST /practices/{ods}/appointments/{external_ref}/changes`: changes the appointment and
/// queues one urgent message to the patient; answers 201 with the change, the appointment
/// as it now stands and the message (`null` if the patient cannot be reached). A retry
/// with the same `Idempotency-Key` gets the same change and sends nothing.
#[utoipa::path(post, path = "/practices/{ods}/appointments/{external_ref}/changes", operation_id = "change_appointment", tag = "appointments",
    params(shapes::AppointmentPath, shapes::IdempotencyHeader),
    request_body(content = AppointmentChangeRequest, example = json!({
        "kind": "moved", "starts_at": "2026-12-08 09:15", "reason": "Dr Patel is unwell"
    })),
    responses((status = 201, description = "The change, the appointment and the message to the patient", body = shapes::AppointmentChangeAnswer),
        (status = 409, description = "`appointment_cancelled`, `appointment_busy` or `idempotency_key_reused`", body = shapes::ErrorBody)))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, external_ref)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<AppointmentChangeRequest>,
) -> Result<Response, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let idempotency = idempotency_key(&headers, &caller)?;
    let posted = post_appointment_change(
        &state.appointment_changes(),
        &practice,
        &external_ref,
        &request,
        &caller.actor,
        idempotency,
    )
    .await?;
    let appointment = state
        .store
        .appointment_by_ref(practice.id, &external_ref)
        .await?;
    let message = match posted.change.message_id {
        Some(id) => state.store.message(id).await?.map(|(m, _)| {
            json!({ "id": m.id, "channel": m.channel, "priority": m.priority,
                    "template_key": m.template_key, "state": m.state })
        }),
        None => None,
    };
    let body = json!({ "change": posted.change, "appointment": appointment, "message": message });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

impl From<FileImportError> for ApiError {
    fn from(e: FileImportError) -> Self {
        match e {
            FileImportError::Csv(_) => ApiError::BadRequest("invalid_csv", e.to_string()),
            FileImportError::TooManyRows(_) => ApiError::Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_rows",
                e.to_string(),
            ),
            FileImportError::Read(..) => ApiError::BadRequest("unreadable_body", e.to_string()),
            FileImportError::NoPractice(_) => ApiError::NotFound(e.to_string()),
            FileImportError::Store(e) => e.into(),
            FileImportError::Task(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(errors) => ApiError::Validation(errors),
            ChangeError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ChangeError::Cancelled(_) => ApiError::Conflict("appointment_cancelled", e.to_string()),
            ChangeError::KeyReused => ApiError::Conflict("idempotency_key_reused", e.to_string()),
            ChangeError::Busy(_) => ApiError::Conflict("appointment_busy", e.to_string()),
            ChangeError::Render(e) => ApiError::Internal(e.to_string()),
            ChangeError::Store(e) => e.into(),
        }
    }
}
