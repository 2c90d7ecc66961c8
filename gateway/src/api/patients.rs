//! `/practices/{ods}/patients`: upsert a JSON batch with per-item errors; read one back.

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::domain::{Invalid, NhsNumber};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::patients::{parse_batch, PatientInput, MAX_BATCH};
use crate::store::AuditEntry;

/// A batch of patients.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientBatch {
    patients: Vec<PatientInput>,
}

/// `POST /practices/{ods}/patients`: good items are stored, bad ones listed with reasons.
/// If every item is bad, nothing is stored and the answer is 422.
#[utoipa::path(post, path = "/practices/{ods}/patients", operation_id = "upsert_patients", tag = "patients",
    params(shapes::OdsPath),
    request_body(content = PatientBatch, example = json!({ "patients": [{
        "nhs_number": "943 476 5919", "given_name": "Ann", "family_name": "Jones",
        "contacts": [{ "channel": "sms", "address": "07700 900123" },
                     { "channel": "email", "address": "ann@example.com" }]
    }] })),
    responses((status = 200, description = "Counts, and every item refused with its reasons", body = shapes::PatientUpsertResult)))]
pub async fn upsert(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(batch): ApiJson<PatientBatch>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    if batch.patients.len() > MAX_BATCH {
        return Err(ApiError::Validation(vec![Invalid::new(
            "patients",
            format!("at most {MAX_BATCH} patients per request; use CSV import for whole lists"),
        )]));
    }
    // Up to 10,000 patients are checked on the blocking pool, so that a large batch never
    // holds a runtime thread that other practices' requests are waiting for.
    let patients = batch.patients;
    let (accepted, rejected) = tokio::task::spawn_blocking(move || parse_batch(&patients))
        .await
        .map_err(|e| ApiError::Internal(format!("checking the batch failed: {e}")))?;
    if accepted.is_empty() && !rejected.is_empty() {
        let details = rejected
            .iter()
            .flat_map(|r| {
                r.errors
                    .iter()
                    .map(move |e| e.clone().under(&format!("patients[{}]", r.index)))
            })
            .collect();
        return Err(ApiError::Validation(details));
    }
    let now = Utc::now();
    let summary = state
        .store
        .upsert_patients(practice.id, &accepted, now)
        .await?;
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "patients.upserted".into(),
                practice_id: Some(practice.id),
                subject: None,
                details: Some(json!({ "created": summary.created, "updated": summary.updated, "rejected": rejected.len() }).to_string()),
            },
            now,
        )
        .await?;
    Ok(Json(json!({
        "created": summary.created,
        "updated": summary.updated,
        "rejected": rejected,
    })))
}

/// `GET /practices/{ods}/patients/{nhs}`: one patient with contacts and opt-outs.
#[utoipa::path(get, path = "/practices/{ods}/patients/{nhs}", operation_id = "show_patient", tag = "patients",
    params(shapes::PatientPath),
    responses((status = 200, description = "The patient with every contact", body = crate::store::PatientView)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let not_found = || ApiError::NotFound(format!("no patient {nhs} at {}", practice.ods_code));
    let nhs_number = NhsNumber::parse(&nhs).map_err(|_| not_found())?;
    let patient = state
        .store
        .patient(practice.id, nhs_number.as_str())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(json!(patient)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::extract::properties::{assert_clear_refusal, json, read};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A patient batch of any shape is read and checked item by item, or refused with a
        /// clear client error; never a panic.
        #[test]
        fn patient_batches_are_read_or_refused_clearly(
            value in json(),
            wrap in any::<bool>(),
        ) {
            let value = if wrap {
                serde_json::json!({ "patients": [value] })
            } else {
                value
            };
            let body = serde_json::to_vec(&value).unwrap_or_default();
            match read::<PatientBatch>(body) {
                Ok(batch) => {
                    let (accepted, rejected) = parse_batch(&batch.patients);
                    prop_assert_eq!(accepted.len() + rejected.len(), batch.patients.len());
                }
                Err(refusal) => assert_clear_refusal(refusal)?,
            }
        }
    }
}
