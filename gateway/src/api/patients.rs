//! `/practices/{ods}/patients`: upsert a JSON batch with per-item errors; read one back; list
//! them a page at a time; deactivate one; erase one on request.

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{next_cursor, page_limit, ApiJson, ApiQuery};
use crate::app::AppState;
use crate::domain::{Invalid, NhsNumber};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::patients::{parse_batch, PatientInput, MAX_BATCH};
use crate::store::{AuditEntry, PatientPage};

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
    let (practice, nhs_number) = patient_path(&state, &caller, &ods, &nhs).await?;
    let patient = state
        .store
        .patient(practice.id, nhs_number.as_str())
        .await?
        .ok_or_else(|| no_patient(&nhs, &practice))?;
    Ok(Json(json!(patient)))
}

/// Paging through a practice's patients.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PatientListQuery {
    /// Only NHS numbers after this one: the previous page's `next_after`.
    #[serde(default)]
    after: Option<String>,
    /// Only active (`true`) or inactive (`false`) patients.
    #[serde(default)]
    active: Option<bool>,
    /// At most this many (1 to 1000; 100 if left out).
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /practices/{ods}/patients?after=&active=&limit=`: patients with every contact, in
/// NHS number order; pass the returned `next_after` as `after` for the next page (`null` on
/// the last). Erased patients are not listed.
#[utoipa::path(get, path = "/practices/{ods}/patients", operation_id = "list_patients", tag = "patients",
    params(shapes::OdsPath, PatientListQuery),
    responses((status = 200, description = "A page of patients in NHS number order", body = shapes::PatientListAnswer)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiQuery(query): ApiQuery<PatientListQuery>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let mut errors = Vec::new();
    let limit = page_limit(query.limit, 100, 1000, &mut errors);
    let after = match query.after.as_deref().map(NhsNumber::parse).transpose() {
        Ok(after) => after.map(|n| n.as_str().to_string()),
        Err(e) => {
            errors.push(Invalid::new("after", e.reason));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = PatientPage {
        after,
        active: query.active,
        limit,
    };
    let patients = state.store.patients_page(practice.id, &page).await?;
    let next_after = next_cursor(&patients, limit, |p| p.nhs_number.clone());
    Ok(Json(
        json!({ "patients": patients, "next_after": next_after }),
    ))
}

/// The practice and the checked NHS number of a patient path, or 404.
async fn patient_path(
    state: &AppState,
    caller: &Caller,
    ods: &str,
    nhs: &str,
) -> Result<(crate::store::Practice, NhsNumber), ApiError> {
    let practice = caller.practice(state.store.as_ref(), ods).await?;
    let nhs_number = NhsNumber::parse(nhs).map_err(|_| no_patient(nhs, &practice))?;
    Ok((practice, nhs_number))
}

/// The 404 for a patient the practice does not have (or an NHS number that cannot be one).
fn no_patient(nhs: &str, practice: &crate::store::Practice) -> ApiError {
    ApiError::NotFound(format!("no patient {nhs} at {}", practice.ods_code))
}

/// `POST /practices/{ods}/patients/{nhs}/deactivate`: the patient gets no more broadcasts
/// (an upsert with `"active": true` brings them back). Answers the patient as now stored.
#[utoipa::path(post, path = "/practices/{ods}/patients/{nhs}/deactivate", operation_id = "deactivate_patient", tag = "patients",
    params(shapes::PatientPath),
    responses((status = 200, description = "The patient as now stored", body = crate::store::PatientView)))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (practice, nhs_number) = patient_path(&state, &caller, &ods, &nhs).await?;
    let not_found = || no_patient(&nhs, &practice);
    let now = Utc::now();
    if !state
        .store
        .set_patient_active(practice.id, nhs_number.as_str(), false, now)
        .await?
    {
        return Err(not_found());
    }
    let patient = state
        .store
        .patient(practice.id, nhs_number.as_str())
        .await?
        .ok_or_else(not_found)?;
    let entry = AuditEntry {
        actor: caller.actor.clone(),
        action: "patient.deactivated".into(),
        practice_id: Some(practice.id),
        subject: None,
        details: None,
    };
    state.store.audit(&entry, now).await?;
    Ok(Json(json!(patient)))
}

/// `DELETE /practices/{ods}/patients/{nhs}`: erases the patient on their request (the right
/// to erasure): their contacts and appointments are deleted, their messages' addresses,
/// wording and errors blanked and the queued ones cancelled, and their row keeps nothing of
/// them; broadcast counts and the audit trail stay right. The erasure is audited, without
/// the NHS number. Answers what was removed; a second call answers 404.
#[utoipa::path(delete, path = "/practices/{ods}/patients/{nhs}", operation_id = "erase_patient", tag = "patients",
    params(shapes::PatientPath),
    responses((status = 200, description = "What the erasure removed", body = shapes::ErasureAnswer)))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (practice, nhs_number) = patient_path(&state, &caller, &ods, &nhs).await?;
    let now = Utc::now();
    let summary = state
        .store
        .erase_patient(practice.id, nhs_number.as_str(), now)
        .await?
        .ok_or_else(|| no_patient(&nhs, &practice))?;
    let entry = AuditEntry {
        actor: caller.actor.clone(),
        action: "patient.erased".into(),
        practice_id: Some(practice.id),
        subject: None,
        details: Some(json!(summary).to_string()),
    };
    state.store.audit(&entry, now).await?;
    Ok(Json(json!({ "erased": summary })))
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
