//! `POST /practices/{ods}/patients/import`: a CSV patient list, streamed from the request
//! body (never held whole), answered with a report of every refused row.
//!
//! Query: `mode=merge|replace` (or `replace=true`), `all_or_nothing=true`, `report=json|csv`.
//! All-or-nothing reads the file twice, so that upload is spooled to a temporary file first.

use std::io;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::caller::Caller;
use super::extract::ApiQuery;
use crate::app::AppState;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::import::counts_json;
use crate::intake::import::{
    import_csv, CsvSource, ImportError, ImportOptions, ImportReport, TooLarge,
};
use crate::store::AuditEntry;

/// The query of an import.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `merge` (the default: add and update) or `replace` (the list becomes the file).
    #[serde(default)]
    mode: Option<String>,
    /// `true` is the same as `mode=replace`.
    #[serde(default)]
    replace: Option<bool>,
    /// Import nothing if any row is refused.
    #[serde(default)]
    all_or_nothing: bool,
    /// `json` (the default) or `csv` (the refused rows as `row,column,reason`).
    #[serde(default)]
    report: Option<String>,
}

impl ImportQuery {
    fn replace(&self) -> Result<bool, ApiError> {
        let mode = match self.mode.as_deref() {
            None => None,
            Some("merge") => Some(false),
            Some("replace") => Some(true),
            Some(other) => {
                return Err(ApiError::BadRequest(
                    "invalid_query",
                    format!("mode {other:?} is not merge or replace"),
                ))
            }
        };
        match (mode, self.replace) {
            (Some(a), Some(b)) if a != b => Err(ApiError::BadRequest(
                "invalid_query",
                "mode and replace disagree: give one of them".into(),
            )),
            (a, b) => Ok(a.or(b).unwrap_or(false)),
        }
    }

    fn csv_report(&self) -> Result<bool, ApiError> {
        match self.report.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(
                "invalid_query",
                format!("report {other:?} is not json or csv"),
            )),
        }
    }
}

/// `POST /practices/{ods}/patients/import` with `Content-Type: text/csv`.
#[utoipa::path(post, path = "/practices/{ods}/patients/import", operation_id = "import_patients", tag = "patients",
    params(shapes::OdsPath, ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "The patient list: a header row, then one patient per row",
        example = "nhs_number,given_name,family_name,mobile,email\n9434765919,Ann,Jones,07700 900123,ann@example.com\n"),
    responses(
        (status = 200, description = "The import's report", content(
            (crate::intake::import::ImportReport = "application/json"),
            (String = "text/csv"))),
        (status = 422, description = "`import_rejected`: all-or-nothing refused the file (`details` is the report), or `invalid_file`", body = shapes::ErrorBody),
        (status = 415, description = "Not sent as `text/csv` (UTF-8)", body = shapes::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let replace = query.replace()?;
    let csv_report = query.csv_report()?;
    check_content_type(&headers)?;
    let limit = state.config.import.max_upload_bytes;
    // Kept until the import is done: dropping it removes the spooled file.
    let mut spool = None;
    let source = if query.all_or_nothing {
        let file = spool_body(body, limit).await?;
        let path = file.path().to_path_buf();
        spool = Some(file);
        CsvSource::File(path)
    } else {
        CsvSource::Reader(Box::new(SyncIoBridge::new(StreamReader::new(limited(
            body, limit,
        )))))
    };
    let options = ImportOptions {
        replace,
        all_or_nothing: query.all_or_nothing,
        ..Default::default()
    };
    let report = import_csv(
        state.store.clone(),
        practice.id,
        &state.config.import,
        source,
        options,
    )
    .await?;
    drop(spool);
    let now = Utc::now();
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "patients.imported".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("import {}", report.import_id)),
                details: Some(counts_json(&report).to_string()),
            },
            now,
        )
        .await?;
    Ok(respond(report, csv_report))
}

/// The body as a stream that fails with [`TooLarge`] once more than `limit` bytes came.
fn limited(
    body: Body,
    limit: u64,
) -> impl futures_util::Stream<Item = io::Result<axum::body::Bytes>> {
    let mut received = 0u64;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(io::Error::other)?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(io::Error::other(TooLarge(limit)));
        }
        Ok(chunk)
    })
}

/// Copies an upload of at most `limit` bytes to a temporary file (removed when dropped), so
/// that it can be read more than once without being held in memory.
pub(super) async fn spool_body(
    body: Body,
    limit: u64,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let mut reader = StreamReader::new(limited(body, limit));
    let file = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::Internal(format!("temporary file: {e}")))?;
    let mut out = tokio::fs::File::from_std(
        file.reopen()
            .map_err(|e| ApiError::Internal(format!("temporary file: {e}")))?,
    );
    let copied = tokio::io::copy(&mut reader, &mut out).await;
    copied.and(out.flush().await).map_err(upload_error)?;
    Ok(file)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = value.split(';').map(|p| p.trim().to_ascii_lowercase());
    let media = parts.next().unwrap_or_default();
    let charset_ok = parts.all(|p| {
        p.strip_prefix("charset=")
            .is_none_or(|c| matches!(c.trim_matches('"'), "utf-8" | "utf8"))
    });
    if matches!(media.as_str(), "text/csv" | "application/csv") && charset_ok {
        return Ok(());
    }
    Err(ApiError::Rejected(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("send the patient list as Content-Type: text/csv (UTF-8), not {value:?}"),
    ))
}

fn upload_error(e: io::Error) -> ApiError {
    ImportError::from(crate::intake::import::reader::ReadError::Io(e)).into()
}

/// 200 with the report; 422 when all-or-nothing refused the file.
fn respond(report: ImportReport, csv_report: bool) -> Response {
    let status = if report.imported {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if csv_report {
        let mut response = (status, report.errors_csv()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(summary) = HeaderValue::from_str(&report.summary()) {
            headers.insert("import-summary", summary);
        }
        return response;
    }
    if report.imported {
        return (status, Json(json!(report))).into_response();
    }
    let body = json!({ "error": {
        "code": "import_rejected",
        "message": report.summary(),
        "details": report,
    }});
    (status, Json(body)).into_response()
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::File(reason) => {
                ApiError::Unprocessable("invalid_file", reason, serde_json::Value::Null)
            }
            ImportError::TooLarge(_) => ApiError::Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.to_string(),
            ),
            ImportError::TooManyRows(_) => ApiError::Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_rows",
                e.to_string(),
            ),
            ImportError::Read(_) => ApiError::BadRequest("unreadable_body", e.to_string()),
            ImportError::Store(e) => e.into(),
            ImportError::Stopped(_) | ImportError::Task(_) => ApiError::Internal(e.to_string()),
        }
    }
}
