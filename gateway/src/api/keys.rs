//! `/keys` and `/users` (administrators only): every API key without its secret, issuing one
//! that may expire, revoking and rotating; console users, and disabling one (which ends their
//! sessions). A federation's or a practice's key cannot manage keys or people.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::auth::keys::LIST_LIMIT as KEY_LIMIT;
use crate::auth::users::LIST_LIMIT as USER_LIMIT;
use crate::domain::{ApiKeyId, FederationId, Invalid, OdsCode, PracticeId, UserId};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::store::{role_of, ApiKeySummary, KeyScope, UserSummary};

/// Longest key label, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// `POST /keys`: a practice's key (`practice`), a federation's (`federation`, its id) or,
/// with neither, an administrator's.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A note saying whose key it is.
    pub label: String,
    /// The practice (ODS code) it is scoped to.
    #[serde(default)]
    pub practice: Option<String>,
    /// The federation (id) it is scoped to.
    #[serde(default)]
    pub federation: Option<FederationId>,
    /// When it stops working; it never does without one.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who a key or user acts for, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// `admin`, `practice` or `federation`.
    pub role: &'static str,
    /// The practice's row id, for `practice`.
    pub practice_id: Option<PracticeId>,
    /// The federation's row id, for `federation`.
    pub federation_id: Option<FederationId>,
}

impl From<KeyScope> for ScopeView {
    fn from(scope: KeyScope) -> Self {
        let stored = role_of(scope);
        Self {
            role: stored.role,
            practice_id: stored.practice_id,
            federation_id: stored.federation_id,
        }
    }
}

/// A key as the API lists it: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// Row id, for revoking and rotating.
    pub id: ApiKeyId,
    /// Its first characters, to recognise it by.
    pub prefix: String,
    /// Whose it is.
    pub label: String,
    /// What it may touch.
    pub scope: ScopeView,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked or rotated away.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeySummary> for KeyView {
    fn from(key: ApiKeySummary) -> Self {
        Self {
            id: key.id,
            prefix: key.prefix,
            label: key.label,
            scope: key.scope.into(),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A console user as the API lists them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// Row id, for disabling.
    pub id: UserId,
    /// Sign-in name.
    pub username: String,
    /// Whose pages they may see.
    pub scope: ScopeView,
    /// When they were added.
    pub created_at: DateTime<Utc>,
    /// When they were disabled.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<UserSummary> for UserView {
    fn from(user: UserSummary) -> Self {
        Self {
            id: user.id,
            username: user.username,
            scope: user.scope.into(),
            created_at: user.created_at,
            disabled_at: user.disabled_at,
        }
    }
}

/// `GET /keys`: every key, newest first (at most 1,000).
#[utoipa::path(get, path = "/keys", operation_id = "list_keys", tag = "access",
    responses((status = 200, description = "Every key, newest first, never its secret", body = Vec<KeyView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    caller.require_admin()?;
    let keys = state.store.api_keys(KEY_LIMIT).await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

/// `POST /keys`: issues a key; its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/keys", operation_id = "create_key", tag = "access",
    request_body(content = NewKey, example = json!({ "label": "Riverside reception", "practice": "A81001" })),
    responses((status = 201, description = "The key, shown only this once", body = shapes::IssuedKey)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_admin()?;
    let label = body.label.trim();
    let mut invalid = Vec::new();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        invalid.push(Invalid::new(
            "label",
            format!("must be 1 to {MAX_LABEL_CHARS} characters"),
        ));
    }
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        invalid.push(Invalid::new("expires_at", "must be in the future"));
    }
    if body.practice.is_some() && body.federation.is_some() {
        invalid.push(Invalid::new(
            "federation",
            "give a practice or a federation, not both",
        ));
    }
    if !invalid.is_empty() {
        return Err(ApiError::Validation(invalid));
    }
    let scope = match (&body.practice, body.federation) {
        (Some(ods), _) => {
            let code = OdsCode::parse(ods).map_err(|_| {
                ApiError::Validation(vec![Invalid::new("practice", "not an ODS code")])
            })?;
            let practice = state
                .store
                .practice_by_ods(&code)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no practice {code}")))?;
            KeyScope::Practice(practice.id)
        }
        (None, Some(id)) => {
            state
                .store
                .federation(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no federation {id}")))?;
            KeyScope::Federation(id)
        }
        (None, None) => KeyScope::Admin,
    };
    let (id, key) = crate::auth::issue_expiring_key(
        state.store.as_ref(),
        scope,
        label,
        body.expires_at,
        &caller.actor,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "key": key,
            "label": label,
            "scope": ScopeView::from(scope),
            "expires_at": body.expires_at,
        })),
    ))
}

/// `POST /keys/{id}/revoke`: the key is refused by every instance from its next request.
#[utoipa::path(post, path = "/keys/{id}/revoke", operation_id = "revoke_key", tag = "access",
    params(shapes::IdPath),
    responses((status = 200, description = "The key, revoked", body = KeyView)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    caller.require_admin()?;
    let id = path_id(&raw, "key", ApiKeyId::new)?;
    crate::auth::revoke_key(state.store.as_ref(), id, &caller.actor)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {raw}")))?;
    shown_key(&state, id, &raw).await
}

/// `POST /keys/{id}/rotate`: a new key with the same scope, label and expiry (its secret
/// shown only in this answer); the old one is revoked.
#[utoipa::path(post, path = "/keys/{id}/rotate", operation_id = "rotate_key", tag = "access",
    params(shapes::IdPath),
    responses((status = 201, description = "The new key, shown only this once; the old one is revoked", body = shapes::RotatedKey)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_admin()?;
    let id = path_id(&raw, "key", ApiKeyId::new)?;
    let (new_id, key) = crate::auth::rotate_key(state.store.as_ref(), id, &caller.actor)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no live key {raw}")))?;
    let shown = state
        .store
        .api_key(new_id)
        .await?
        .map(KeyView::from)
        .ok_or_else(|| ApiError::Internal(format!("key {new_id} vanished once issued")))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "key": key, "replaces": id, "issued": shown })),
    ))
}

async fn shown_key(state: &AppState, id: ApiKeyId, raw: &str) -> Result<Json<KeyView>, ApiError> {
    state
        .store
        .api_key(id)
        .await?
        .map(|key| Json(KeyView::from(key)))
        .ok_or_else(|| ApiError::NotFound(format!("no key {raw}")))
}

/// `GET /users`: every console user, by name (at most 1,000).
#[utoipa::path(get, path = "/users", operation_id = "list_users", tag = "access",
    responses((status = 200, description = "Every console user, by name", body = Vec<UserView>)))]
pub async fn users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require_admin()?;
    let users = state.store.users(USER_LIMIT).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

/// `POST /users/{id}/disable`: they can no longer sign in, and their sessions end at once.
#[utoipa::path(post, path = "/users/{id}/disable", operation_id = "disable_user", tag = "access",
    params(shapes::IdPath),
    responses((status = 200, description = "The user, disabled", body = UserView)))]
pub async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_admin()?;
    let id = path_id(&raw, "user", UserId::new)?;
    crate::auth::disable_user(state.store.as_ref(), id, &caller.actor)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {raw}")))?;
    state
        .store
        .user_summary(id)
        .await?
        .map(|user| Json(UserView::from(user)))
        .ok_or_else(|| ApiError::NotFound(format!("no user {raw}")))
}
