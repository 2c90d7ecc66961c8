//! Extractors whose rejections speak the API's error format.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::domain::Invalid;
use crate::http::ApiError;

/// A JSON body; malformed JSON, unknown fields and oversized bodies become API errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters, with errors in the API's format.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Longest accepted Idempotency-Key.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key`, if it has one, as `(caller's scope, key)`.
pub fn idempotency_key(
    headers: &HeaderMap,
    caller: &Principal,
) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or(ApiError::BadRequest(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ))?;
    Ok(Some((caller.idempotency_scope(), key.to_string())))
}

/// A page size asked for in a query: `default` when not given, else from 1 to `max`; out of
/// range, a refusal naming `limit` is added to `errors` (and `default` returned).
pub fn page_limit(given: Option<i64>, default: i64, max: i64, errors: &mut Vec<Invalid>) -> i64 {
    let limit = given.unwrap_or(default);
    if (1..=max).contains(&limit) {
        limit
    } else {
        errors.push(Invalid::new("limit", format!("must be from 1 to {max}")));
        default
    }
}

/// The cursor of the page after `items`: the last item's, if the page is full (a shorter
/// page is the last).
pub fn next_cursor<T, C>(items: &[T], limit: i64, cursor: impl Fn(&T) -> C) -> Option<C> {
    let full = i64::try_from(items.len()).is_ok_and(|n| n == limit);
    items.last().filter(|_| full).map(cursor)
}

/// Parses a numeric id from a path into the id of the row it names (`id`, such as
/// `BroadcastId::new`); anything else cannot name a row, so it is a 404.
pub fn path_id<Id>(raw: &str, what: &str, id: fn(i64) -> Id) -> Result<Id, ApiError> {
    raw.parse::<i64>()
        .map(id)
        .map_err(|_| ApiError::NotFound(format!("no {what} {raw}")))
}

/// Property tests of JSON bodies: whatever a client sends is read or refused with a clear
/// client error, never a panic or a 5xx.
#[cfg(test)]
pub(crate) mod properties {
    use axum::body::Body;
    use axum::response::IntoResponse;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Field names the API's bodies use, so generated objects reach past the first check.
    const NAMES: &[&str] = &[
        "kind",
        "headline",
        "details",
        "headline_cy",
        "details_cy",
        "starts_at",
        "ends_at",
        "audience",
        "affected_from",
        "affected_until",
        "patients",
        "nhs_number",
        "given_name",
        "family_name",
        "preferred_channel",
        "language",
        "active",
        "contacts",
        "channel",
        "address",
        "opted_out",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![
                "closed",
                "restored",
                "custom",
                "booked",
                "both",
                "sms",
                "email",
                "push",
                "cy",
                "2026-12-03T09:00:00Z",
                "9434765919",
                "07700 900123",
            ])
            .prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::from),
        ]
    }

    /// Arbitrary JSON, at most 4 deep and a few dozen values.
    pub(crate) fn json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            prop::sample::select(NAMES.to_vec()).prop_map(String::from),
                            "[a-z_]{0,12}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// Reads `body` through [`ApiJson`]: the value, or the status and body of the refusal.
    pub(crate) fn read<T: DeserializeOwned>(body: Vec<u8>) -> Result<T, (u16, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| (0, e.to_string()))?;
        runtime.block_on(async {
            let request = Request::builder()
                .method("POST")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .map_err(|e| (0, e.to_string()))?;
            match ApiJson::<T>::from_request(request, &()).await {
                Ok(ApiJson(value)) => Ok(value),
                Err(error) => {
                    let response = error.into_response();
                    let status = response.status().as_u16();
                    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                        .await
                        .map_err(|e| (status, e.to_string()))?;
                    Err((status, String::from_utf8_lossy(&bytes).into_owned()))
                }
            }
        })
    }

    /// A refusal is a 4xx whose JSON body names an error code and a message.
    pub(crate) fn assert_clear_refusal((status, body): (u16, String)) -> Result<(), TestCaseError> {
        prop_assert!((400..500).contains(&status), "{status}: {body}");
        let body: Value =
            serde_json::from_str(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(body["error"]["code"].is_string(), "{body}");
        prop_assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn status_change_bodies_are_read_or_refused_clearly(value in json()) {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            match read::<crate::intake::status::StatusChangeRequest>(body) {
                Ok(request) => {
                    // Checking it answers too, whatever it holds.
                    let _ = request.parse("test");
                    let _ = request.fingerprint();
                }
                Err(refusal) => assert_clear_refusal(refusal)?,
            }
        }

        #[test]
        fn any_bytes_are_read_or_refused_clearly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Err(refusal) = read::<crate::intake::status::StatusChangeRequest>(bytes) {
                assert_clear_refusal(refusal)?;
            }
        }
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_refuse_out_of_range() {
        let mut errors = Vec::new();
        assert_eq!(page_limit(None, 50, 200, &mut errors), 50);
        assert_eq!(page_limit(Some(200), 50, 200, &mut errors), 200);
        assert!(errors.is_empty());
        page_limit(Some(0), 50, 200, &mut errors);
        page_limit(Some(201), 50, 200, &mut errors);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "limit");
        assert_eq!(errors[0].reason, "must be from 1 to 200");
    }

    #[test]
    fn only_a_full_page_has_a_next_cursor() {
        assert_eq!(next_cursor(&[1, 2, 3], 3, |n| n * 10), Some(30));
        assert_eq!(next_cursor(&[1, 2], 3, |n| n * 10), None);
        assert_eq!(next_cursor(&[] as &[i32], 3, |n| n * 10), None);
    }
}
