//! The HTTP JSON API under `/api/v1`: one file per resource. Its routes are declared in
//! `http`, and it answers errors as `http::ApiError`.

/// `/practices/{ods}/appointments`: bookings, their CSV import and one patient's changes.
pub(crate) mod appointments;
/// `/audit`: the audit trail with filters (practice, actor, action, time).
pub(crate) mod audit;
/// `/broadcasts/{id}` and `/messages/{id}`: progress by state and channel, messages paged;
/// `/practices/{ods}/broadcasts`: a practice's broadcasts, newest first.
pub(crate) mod broadcasts;
/// The caller of a request: an API key, or the console's session for its scripts.
mod caller;
/// `/practices/{ods}/costs`: what a practice's messages cost in a month.
pub(crate) mod costs;
/// Extractors whose refusals speak the API's error format, and the `Idempotency-Key`.
pub(crate) mod extract;
/// `/federations`: named sets of practices, their members and their API keys (admins).
pub(crate) mod federations;
/// `/status-groups`: one status change to many practices, its progress, and its stop.
pub(crate) mod groups;
/// `POST /practices/{ods}/patients/import`: a CSV list of patients.
pub(crate) mod imports;
/// `/keys` and `/users`: API keys (list, issue, revoke, rotate) and console users (list,
/// disable), administrators only.
pub(crate) mod keys;
/// `/receipts/nhs-notify`: NHS Notify's message and channel status callbacks.
pub(crate) mod nhs_notify_receipts;
/// `/practices/{ods}/patients`: a JSON batch of patients with their contacts; listing,
/// deactivating and erasing them.
pub(crate) mod patients;
/// Reading a practice's details from a request: each field's rules once.
mod practice_fields;
/// `/practices`: admins add practices; each key sees the practices it may; a practice's own
/// key changes its details.
pub(crate) mod practices;
/// `/practices/{ods}/proposals` and `/approval`: proposed status changes, approved or
/// dismissed, and the practice's approval rules and tags.
pub(crate) mod proposals;
/// A patient's browsers: push subscriptions and sign-up invitations.
pub(crate) mod push;
/// Service workers' reports of push messages shown and tapped, proved by signed tokens.
pub(crate) mod push_receipts;
/// Provider callbacks, inbound SMS and the unsubscribe links in emails.
pub(crate) mod receipts;
/// `/practices/{ods}/scheduled-notices`: status changes planned ahead.
pub(crate) mod scheduled;
/// `/practices/{ods}/staff`: staff mobile numbers that may send status commands by text.
pub(crate) mod staff;
/// `POST /practices/{ods}/status`: a status change, which starts a broadcast.
pub(crate) mod status;
/// `/templates`: message wording with history, diff, rollback and preview.
pub(crate) mod templates;
