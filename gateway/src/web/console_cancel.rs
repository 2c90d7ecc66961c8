//! The console's "Stop this broadcast": the broadcast page asks for a reason (the
//! confirmation step), and this form posts it with the session's CSRF token. The stop itself
//! is `intake::cancel`'s, as for the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::console::{internal, Signed};
use super::pages::error_page;
use crate::app::AppState;
use crate::domain::BroadcastId;
use crate::intake::cancel::{cancel_broadcast, CancelRequest};

/// The confirmation form.
#[derive(Deserialize)]
pub(crate) struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/broadcasts/{id}/cancel`: stops the broadcast and shows its page again.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<BroadcastId>,
    Form(form): Form<CancelForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let broadcast = match state.store.broadcast(id).await {
        Ok(Some(b)) if signed.can_see(b.practice_id) => b,
        Ok(_) => return error_page(StatusCode::NOT_FOUND, "There is no such broadcast."),
        Err(e) => return internal(e),
    };
    let request = CancelRequest {
        reason: Some(form.reason),
    };
    let reason = match request.parse() {
        Ok(reason) => reason,
        Err(errors) => {
            let problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return error_page(StatusCode::UNPROCESSABLE_ENTITY, &problems.join("; "));
        }
    };
    match cancel_broadcast(&state.status_changes(), &broadcast, &signed.actor, &reason).await {
        Ok(_) => Redirect::to(&format!("/console/broadcasts/{id}")).into_response(),
        Err(e) => internal(e),
    }
}
