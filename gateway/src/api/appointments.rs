//! `/practices/{ods}/appointments`: import bookings (a JSON batch or a CSV file) with
//! per-row errors, read one back, and post a change that messages the patient.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{idempotency_key, ApiJson};
use crate::app::AppState;
use crate::domain::Invalid;
use crate::intake::appointments::change::{
    post_appointment_change, AppointmentChangeRequest, ChangeError,
};
use crate::intake::appointments::{self, csv, AppointmentInput, ImportSummary, Row, MAX_BATCH};
use crate::store::Practice;

/// A batch of appointments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentBatch {
    appointments: Vec<AppointmentInput>,
}

/// `POST /practices/{ods}/appointments`: upserts by external reference; bad rows (and rows
/// for patients the practice does not have) are listed with reasons, good ones stored. If
/// every row is bad, nothing is stored and the answer is 422.
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
    let rows: Vec<Row> = batch.appointments.into_iter().map(|a| (None, a)).collect();
    import(&state, &caller, &practice, &rows).await
}

/// `POST /practices/{ods}/appointments/import`: the same from a CSV file (the body), with
/// rejected rows named by line.
pub async fn import_csv(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("invalid_csv", "the file is not UTF-8 text".into()))?;
    let rows = csv::read(text).map_err(|e| ApiError::BadRequest("invalid_csv", e.to_string()))?;
    import(&state, &caller, &practice, &rows).await
}

/// Imports parsed rows, audits the import and answers with its summary.
async fn import(
    state: &AppState,
    caller: &Caller,
    practice: &Practice,
    rows: &[Row],
) -> Result<Json<Value>, ApiError> {
    let summary = appointments::import(state.store.as_ref(), practice, rows, &caller.actor).await?;
    if summary.created + summary.updated == 0 && !summary.rejected.is_empty() {
        return Err(ApiError::Validation(rejections(&summary)));
    }
    Ok(Json(json!(summary)))
}

/// Every rejected row's problems, each under `appointments[i]` (or `line N` of a file).
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
        &state,
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
