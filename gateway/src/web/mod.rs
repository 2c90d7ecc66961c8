//! Web pages on top of the API: the admin console (`/console`) and the patients' push
//! sign-up pages (`/p/{ods}/notifications`). Server-rendered with Tera, little JavaScript.

/// The client a request comes from, through a trusted proxy if one is configured.
pub mod client_address;
pub mod console;
mod console_templates;
pub mod follows;
pub mod pages;
pub mod push;
pub mod session;
pub mod signin_guard;

use axum::Router;

use crate::app::AppState;

/// Every page route.
pub fn router() -> Router<AppState> {
    Router::new().merge(console::routes()).merge(push::routes())
}
