//! Web pages on top of the API: the admin console (`/console`) and the patients' push
//! sign-up pages (`/p/{ods}/notifications`). Server-rendered with Tera, little JavaScript.
//! Their routes are declared in `http`.

/// `/api/docs`: the API's reference, rendered from its OpenAPI document.
pub(crate) mod api_docs;
/// The console's pages: sign-in, practices, status changes, broadcasts and the audit log.
pub mod console;
/// The console's approvals page: proposals waiting first, staff numbers, approval rules.
pub(crate) mod console_approval;
/// The console's "Stop this broadcast" form.
pub(crate) mod console_cancel;
/// The console's "send to many practices" form, its confirmation, and a group's progress
/// page with "stop the whole group".
pub(crate) mod console_groups;
/// The console's scheduled notices page: the list with cancel buttons, and a form to plan one.
pub(crate) mod console_schedule;
/// The console's template pages: list, editor, save, history and rollback.
pub(crate) mod console_templates;
/// The console's people page: console users, and disabling one (administrators only).
pub(crate) mod console_users;
/// The per-address rate of anonymous push follows.
pub mod follows;
/// Page templates and how pages are answered (security headers, error pages).
pub mod pages;
/// Patients' push sign-up and stop pages, their JSON calls, script and service worker.
pub mod push;
/// Console sign-in throttling: per user name and per address, and a cap on password checks.
pub mod signin_guard;
/// Practices' public status pages, their Atom feeds and website banners (no sign-in).
pub(crate) mod status_page;
