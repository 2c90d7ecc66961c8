//! The API's caller: an API key (`Authorization: Bearer <key>`) or, for the console's
//! scripts, the console session's cookie. What the caller may do is `auth::Principal`'s to
//! say; this only finds it, with refusals in the API's error format.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::Method;

use crate::app::AppState;
use crate::auth::{keys, session, Principal};
use crate::http::ApiError;

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

fn missing_key() -> ApiError {
    ApiError::Unauthorized(
        "missing_api_key",
        "send an API key as `Authorization: Bearer <key>`".into(),
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return session_caller(parts, state).await;
        };
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(missing_key)?;
        let principal = keys::key_principal(state.store.as_ref(), key)
            .await?
            .ok_or(ApiError::Unauthorized(
                "invalid_api_key",
                "this API key is not valid".into(),
            ))?;
        Ok(Caller(principal))
    }
}

/// The console's scripts call the API with the session cookie instead of a key; anything
/// but a read must carry the session's CSRF token in `X-CSRF-Token`.
async fn session_caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let session = session::current(state.store.as_ref(), &parts.headers)
        .await?
        .ok_or_else(missing_key)?;
    let reading = matches!(parts.method, Method::GET | Method::HEAD);
    let token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok());
    if !reading && !session::csrf_matches(&session, token) {
        return Err(ApiError::Forbidden(
            "this request needs the page's CSRF token".into(),
        ));
    }
    Ok(Caller(
        Principal::of_session(&session)
            .resolved(state.store.as_ref())
            .await?,
    ))
}
