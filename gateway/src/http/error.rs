//! The one error type of the JSON API (and of the pages' JSON calls): a status code and
//! `{ "error": { code, message, details } }`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Denied;
use crate::domain::Invalid;
use crate::fanout::FanoutError;
use crate::intake::status::PostStatusError;
use crate::store::StoreError;

/// An API failure. Internal causes are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credentials (a machine-readable code and a sentence saying what to send).
    #[error("{1}")]
    Unauthorized(&'static str, String),
    /// Credentials fine, but this caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or not this caller's to see.
    #[error("{0}")]
    NotFound(String),
    /// The request was understood but its values are wrong.
    #[error("the request has invalid values")]
    Validation(Vec<Invalid>),
    /// The request could not be read (a machine-readable code and a message).
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// It clashes with what exists.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// The values are wrong in a way with its own details (such as a template's problems,
    /// each with line and column).
    #[error("{1}")]
    Unprocessable(&'static str, String, Value),
    /// A framework rejection already carrying its status.
    #[error("{2}")]
    Rejected(StatusCode, &'static str, String),
    /// Every database connection stayed busy for the pool's whole wait (a storm of
    /// requests): 503 with `Retry-After`, so a client retries (with its Idempotency-Key)
    /// instead of taking the request as failed for good.
    #[error("the gateway is busy; retry in a few seconds")]
    Busy,
    /// Something broke on our side.
    #[error("internal error")]
    Internal(String),
}

/// Seconds a client is asked to wait before retrying a request answered [`ApiError::Busy`].
const BUSY_RETRY_AFTER_SECONDS: &str = "5";

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            ApiError::Unauthorized(code, _) => (StatusCode::UNAUTHORIZED, code, Value::Null),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", Value::Null),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", Value::Null),
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                json!(errors),
            ),
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code, Value::Null),
            ApiError::Unprocessable(code, _, details) => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, details.clone())
            }
            ApiError::Conflict(code, _) => (StatusCode::CONFLICT, code, Value::Null),
            ApiError::Rejected(status, code, _) => (*status, code, Value::Null),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", Value::Null),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", Value::Null),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = self.parts();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering a request")
            }
            ApiError::Busy => tracing::warn!("busy: no database connection came free in time"),
            _ => {}
        }
        let body = json!({ "error": {
            "code": code,
            "message": self.to_string(),
            "details": details,
            "request_id": super::request_id::current(),
        } });
        if matches!(self, ApiError::Busy) {
            return (
                status,
                [(axum::http::header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS)],
                Json(body),
            )
                .into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(what) => {
                ApiError::Conflict("already_exists", format!("{what} already exists"))
            }
            StoreError::Database(sqlx::Error::PoolTimedOut) => ApiError::Busy,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(e: Denied) -> Self {
        match e {
            Denied::AdminOnly => ApiError::Forbidden("this needs an admin key".into()),
            Denied::GlobalWording => ApiError::Forbidden(
                "only administrators change the global wording; give `practice` to change your own"
                    .into(),
            ),
            Denied::NoPractice(ods) => ApiError::NotFound(format!("no practice {ods}")),
            Denied::Store(e) => e.into(),
        }
    }
}

impl From<FanoutError> for ApiError {
    fn from(e: FanoutError) -> Self {
        match e {
            // The practice's own wording failed: say so, naming the broadcast to look at.
            FanoutError::Failed {
                broadcast_id,
                reason,
            } => ApiError::Unprocessable(
                "broadcast_failed",
                format!("broadcast {broadcast_id} failed: {reason}"),
                json!({ "broadcast_id": broadcast_id, "reason": reason }),
            ),
            FanoutError::Store(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<PostStatusError> for ApiError {
    fn from(e: PostStatusError) -> Self {
        match e {
            PostStatusError::Invalid(errors) => ApiError::Validation(errors),
            PostStatusError::KeyReused => {
                ApiError::Conflict("idempotency_key_reused", e.to_string())
            }
            PostStatusError::Store(e) => e.into(),
            PostStatusError::Fanout(e) => e.into(),
            PostStatusError::Task(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match rejection {
            JsonRejection::JsonDataError(ref error) => {
                if let Some(wrong) = wrong_field(error) {
                    return ApiError::Unprocessable(
                        "invalid_body",
                        format!(
                            "the body's field `{}` is wrong: {}",
                            wrong.field, wrong.reason
                        ),
                        json!([wrong]),
                    );
                }
                "invalid_body"
            }
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "unreadable_body",
        };
        ApiError::Rejected(status, code, rejection.body_text())
    }
}

/// The field a well-formed JSON body got wrong (unknown, missing or of the wrong type), as
/// the client would name it (`contacts[0].address`), and serde's reason without its position.
fn wrong_field(error: &axum::extract::rejection::JsonDataError) -> Option<Invalid> {
    use std::error::Error;
    let located = error
        .source()
        .and_then(|e| e.source())
        .and_then(|e| e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>())?;
    let text = located.inner().to_string();
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(r, _)| r);
    let path = located.path().to_string();
    // A missing field is named in the message only; the path is its object's.
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|lead| reason.strip_prefix(lead))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match (named, path.as_str()) {
        (Some(name), at) if at.ends_with(name) => at.to_string(),
        (Some(name), "." | "") => name.to_string(),
        (Some(name), object) => format!("{object}.{name}"),
        (None, at) => at.to_string(),
    };
    Some(Invalid::new(field, reason))
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest("invalid_query", rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use serde::Deserialize;
    use serde_json::Value;

    use crate::api::extract::properties::read;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Contact {
        channel: String,
        address: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Patient {
        nhs_number: String,
        active: Option<bool>,
        contacts: Vec<Contact>,
    }

    fn refusal(body: &str) -> Value {
        let (status, text) = read::<Patient>(body.as_bytes().to_vec()).unwrap_err();
        assert_eq!(status, 422, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn unknown_missing_and_mistyped_fields_are_named_in_details() {
        let unknown = refusal(r#"{"nhs_number":"1","contacts":[],"colour":"red"}"#);
        assert_eq!(
            unknown["error"]["details"][0]["field"], "colour",
            "{unknown}"
        );
        assert!(unknown["error"]["details"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("unknown field")));
        assert!(unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`colour`")));

        let nested = refusal(r#"{"nhs_number":"1","contacts":[{"channel":"sms","adress":"x"}]}"#);
        assert_eq!(nested["error"]["details"][0]["field"], "contacts[0].adress");

        let typed = refusal(r#"{"nhs_number":"1","active":"yes","contacts":[]}"#);
        assert_eq!(typed["error"]["details"][0]["field"], "active", "{typed}");
        assert!(typed["error"]["details"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid type") && !r.contains("line")));

        let missing = refusal(r#"{"contacts":[]}"#);
        assert_eq!(missing["error"]["details"][0]["field"], "nhs_number");
    }

    #[test]
    fn an_exhausted_pool_is_busy_with_retry_after_not_internal() {
        let error: super::ApiError =
            crate::store::StoreError::Database(sqlx::Error::PoolTimedOut).into();
        let response = error.into_response();
        assert_eq!(
            response.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from_static("5"))
        );
        let other: super::ApiError =
            crate::store::StoreError::Database(sqlx::Error::RowNotFound).into();
        assert_eq!(
            other.into_response().status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
