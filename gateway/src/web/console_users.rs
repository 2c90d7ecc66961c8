//! The console's "People" page (administrators only): every console user, and a button to
//! disable one behind a confirmation step, posted with the session's CSRF token. Disabling is
//! `auth::disable_user`'s, as for the API and the command line: it ends their sessions too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::console::{denied, internal, Signed};
use super::pages::{error_page, page};
use crate::app::AppState;
use crate::auth::users::LIST_LIMIT;
use crate::domain::UserId;
use crate::store::{role_of, KeyScope};

/// The confirmation form.
#[derive(Deserialize)]
pub(crate) struct DisableForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /console/users`: the people who sign in, with when each was disabled.
pub(crate) async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    if let Err(refusal) = signed.require_admin() {
        return denied(refusal);
    }
    let users = match state.store.users(LIST_LIMIT).await {
        Ok(users) => users,
        Err(e) => return internal(e),
    };
    let mut c = signed.context();
    c.insert(
        "people",
        &users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "username": u.username,
                    "role": role_of(u.scope).role,
                    "me": u.id == signed.session.user.id,
                    "limited": !matches!(u.scope, KeyScope::Admin),
                    "created": u.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    "disabled": u.disabled_at.map(|at| at.format("%Y-%m-%d %H:%M").to_string()),
                })
            })
            .collect::<Vec<_>>(),
    );
    page(StatusCode::OK, "console/users.html", &c)
}

/// `POST /console/users/{id}/disable`: disables the user (ending their sessions) and shows
/// the list again. An administrator cannot disable themselves here, so the console always
/// keeps someone who can undo a mistake through the command line's `users create`.
pub(crate) async fn disable(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<UserId>,
    Form(form): Form<DisableForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    if let Err(refusal) = signed.require_admin() {
        return denied(refusal);
    }
    if id == signed.session.user.id {
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot disable yourself. Ask another administrator.",
        );
    }
    match crate::auth::disable_user(state.store.as_ref(), id, &signed.actor).await {
        Ok(Some(_)) => Redirect::to("/console/users").into_response(),
        Ok(None) => error_page(StatusCode::NOT_FOUND, "There is no such person."),
        Err(e) => internal(e),
    }
}
