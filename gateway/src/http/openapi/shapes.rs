//! Schemas of the answers that handlers build with `json!` rather than a type of their own,
//! the error body every failure shares, and the path parameters. Nothing here is
//! serialized: each struct only describes a shape, and the end-to-end suite checks every
//! answer against it (`tests/api/conformance.rs`), so a handler that drifts fails a test.

// The structs are never built; they exist for their `ToSchema` derive.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::federations::FederationView;
use crate::api::keys::{KeyView, ScopeView};
use crate::api::practices::PracticeView;
use crate::api::proposals::ProposalView;
use crate::api::scheduled::NoticeView;
use crate::api::staff::StaffView;
use crate::domain::{
    ApiKeyId, BroadcastId, Channel, ContactId, FederationId, Language, MessageId, PracticeId,
    Priority,
};
use crate::intake::approval::preview::Preview as ApprovalPreview;
use crate::intake::patients::RejectedPatient;
use crate::render::catalogue::Variable;
use crate::render::editor::Preview as TemplatePreview;
use crate::store::{Appointment, AppointmentChange, AttemptView, MessageView, TemplateVersion};

/// Every failure: a status code and this body.
#[derive(ToSchema)]
#[schema(example = json!({ "error": {
    "code": "validation_failed",
    "message": "the request has invalid values",
    "details": [{ "field": "patients[0].nhs_number", "reason": "fails the Modulus 11 check" }],
    "request_id": "6f1c2b7a9d3e4f50"
} }))]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A machine-readable code, such as `validation_failed`, `not_found`, `missing_api_key`,
    /// `idempotency_key_reused`, `busy`.
    code: String,
    /// A sentence saying what went wrong, for people.
    message: String,
    /// More about it: for `validation_failed` and `invalid_body`, a list of
    /// `{ field, reason }`; for other codes their own shape (an import's report, a
    /// template's problems), or `null`.
    details: Value,
    /// The request's id (the client's `X-Request-Id`, or one the gateway made); quote it
    /// when asking about a request.
    request_id: Option<String>,
}

/// A practice's ODS code in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OdsPath {
    /// The practice's ODS code.
    #[param(example = "A81001")]
    ods: String,
}

/// A practice's ODS code and one of its patients' NHS numbers.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PatientPath {
    /// The practice's ODS code.
    #[param(example = "A81001")]
    ods: String,
    /// The patient's NHS number (ten digits).
    #[param(example = "9434765919")]
    nhs: String,
}

/// A practice's ODS code and the id of one of its records.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OdsIdPath {
    /// The practice's ODS code.
    #[param(example = "A81001")]
    ods: String,
    /// The record's id.
    #[param(example = "1")]
    id: String,
}

/// A practice's ODS code and an appointment's reference in the practice's system.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppointmentPath {
    /// The practice's ODS code.
    #[param(example = "A81001")]
    ods: String,
    /// The appointment's reference in the practice's system.
    #[param(example = "APT-1001")]
    external_ref: String,
}

/// A record's id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The record's id.
    #[param(example = "1")]
    id: String,
}

/// A template key and channel in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TemplatePath {
    /// The template key.
    #[param(example = "status.closed")]
    key: String,
    /// `sms`, `email` or `push`.
    #[param(example = "sms")]
    channel: String,
}

/// `Idempotency-Key`: a retry with the same key gets the same answer and starts nothing.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// 1 to 255 visible ASCII characters, unique per request the client means once.
    #[param(rename = "Idempotency-Key", example = "closure-2026-12-04")]
    idempotency_key: Option<String>,
}

/// `GET /practices`.
#[derive(ToSchema)]
pub struct PracticeList {
    practices: Vec<PracticeView>,
}

/// What a batch of patients did.
#[derive(ToSchema)]
pub struct PatientUpsertResult {
    /// Patients new to the practice.
    created: u64,
    /// Patients already there, updated.
    updated: u64,
    /// Items not stored, each with its reasons.
    rejected: Vec<RejectedPatient>,
}

/// `GET /practices/{ods}/staff`.
#[derive(ToSchema)]
pub struct StaffList {
    staff: Vec<StaffView>,
}

/// `GET /practices/{ods}/proposals`.
#[derive(ToSchema)]
pub struct ProposalList {
    proposals: Vec<ProposalView>,
}

/// One proposal, with what it would send now (`null` once it is decided).
#[derive(ToSchema)]
pub struct ProposalDetail {
    proposal: ProposalView,
    preview: Option<ApprovalPreview>,
}

/// The outcome of an approval.
#[derive(ToSchema)]
pub struct ProposalDecision {
    /// `approved` (posted, with `broadcast_id`), `proposed` (waiting for a second approver)
    /// or `dismissed`.
    #[schema(example = "approved")]
    state: String,
    /// The broadcast the approval started.
    #[schema(nullable = false)]
    broadcast_id: Option<BroadcastId>,
    /// Who the proposal waits for.
    #[schema(nullable = false)]
    waiting_for: Option<String>,
}

/// A practice's approval rules (the PIN itself is never shown).
#[derive(ToSchema)]
pub struct ApprovalSettingsView {
    /// Whether staff texts must carry the PIN.
    staff_pin_required: bool,
    /// Above this many recipients a broadcast needs a second approver; `null`: never.
    second_approval_above: Option<u64>,
    /// Status sources whose proposals post without approval.
    auto_post_sources: Vec<String>,
    /// The systems the practice depends on.
    tags: Vec<String>,
}

/// An appointment change as recorded, the appointment as it now stands, and the message
/// telling the patient (`null` if they cannot be reached).
#[derive(ToSchema)]
pub struct AppointmentChangeAnswer {
    change: AppointmentChange,
    appointment: Option<Appointment>,
    message: Option<ChangeMessage>,
}

/// The message an appointment change queued.
#[derive(ToSchema)]
pub struct ChangeMessage {
    id: MessageId,
    /// `sms`, `email` or `push`.
    channel: String,
    priority: Priority,
    template_key: String,
    /// The message's state, such as `queued`.
    state: String,
}

/// `GET /federations`.
#[derive(ToSchema)]
pub struct FederationList {
    federations: Vec<FederationView>,
}

/// A federation's new key: shown only in this answer.
#[derive(ToSchema)]
pub struct FederationKey {
    /// The key, for `Authorization: Bearer <key>`.
    key: String,
    federation: FederationId,
    label: String,
}

/// A new key: its secret is shown only in this answer.
#[derive(ToSchema)]
pub struct IssuedKey {
    id: ApiKeyId,
    /// The key, for `Authorization: Bearer <key>`.
    key: String,
    label: String,
    scope: ScopeView,
    expires_at: Option<DateTime<Utc>>,
}

/// A rotated key: the new secret (shown only here), the key it replaces and the new key's
/// listing.
#[derive(ToSchema)]
pub struct RotatedKey {
    key: String,
    replaces: ApiKeyId,
    issued: KeyView,
}

/// A page of a broadcast's messages.
#[derive(ToSchema)]
pub struct MessagePageAnswer {
    messages: Vec<MessageView>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<MessageId>,
}

/// A page of a practice's patients.
#[derive(ToSchema)]
pub struct PatientListAnswer {
    patients: Vec<crate::store::PatientView>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<String>,
}

/// What erasing a patient removed.
#[derive(ToSchema)]
pub struct ErasureAnswer {
    erased: crate::store::ErasureSummary,
}

/// A page of a practice's broadcasts.
#[derive(ToSchema)]
pub struct BroadcastListAnswer {
    broadcasts: Vec<crate::api::broadcasts::BroadcastSummary>,
    /// Pass as `before` for the next page; `null` on the last page.
    next_before: Option<BroadcastId>,
}

/// One entry of the audit trail.
#[derive(ToSchema)]
pub struct AuditEntryView {
    /// Pass the last one's as `before` for older entries.
    id: i64,
    at: DateTime<Utc>,
    /// Who: `key:<prefix>`, `user:<name>`, `cli`, ...
    actor: String,
    /// What, such as `patient.erased`.
    action: String,
    /// The practice it concerned (ODS code), if one.
    practice: Option<String>,
    /// The thing acted on, such as `broadcast:12`.
    subject: Option<String>,
    /// More, as recorded (never patient data).
    details: Option<Value>,
}

/// A page of the audit trail.
#[derive(ToSchema)]
pub struct AuditListAnswer {
    entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next page; `null` on the last page.
    next_before: Option<i64>,
}

/// One message with every attempt.
#[derive(ToSchema)]
pub struct MessageDetail {
    message: MessageView,
    attempts: Vec<AttemptView>,
}

/// A stored push subscription.
#[derive(ToSchema)]
pub struct PushSubscribed {
    contact_id: ContactId,
    /// Always `push`.
    channel: String,
}

/// A sent push invitation.
#[derive(ToSchema)]
pub struct PushInvited {
    /// How the link was sent.
    channel: Channel,
    /// When the link stops working.
    expires_at: DateTime<Utc>,
    /// Whether the message was queued.
    queued: bool,
}

/// What a delivery receipt did.
#[derive(ToSchema)]
pub struct ReceiptAnswer {
    message_id: MessageId,
    /// Whether the message moved to `delivered` or `failed`.
    state_changed: bool,
}

/// What an NHS Notify callback did.
#[derive(ToSchema)]
pub struct NhsNotifyAnswer {
    /// Status changes in the callback.
    received: usize,
    /// Messages moved to `delivered` or `failed`.
    state_changed: usize,
    /// Patients found not to be in the NHS App, whose messages moved to their next channel.
    moved_on: usize,
    /// Status changes for messages this gateway does not know (or another channel's).
    ignored: usize,
}

/// `GET /practices/{ods}/scheduled-notices`.
#[derive(ToSchema)]
pub struct NoticeList {
    scheduled_notices: Vec<NoticeView>,
}

/// One scheduled notice.
#[derive(ToSchema)]
pub struct NoticeAnswer {
    scheduled_notice: NoticeView,
}

/// Every template key with its variables, and the wording versions in use.
#[derive(ToSchema)]
pub struct TemplateList {
    keys: Vec<TemplateKey>,
    templates: Vec<TemplateInUse>,
}

/// A template key: what it is for, its channels and variables.
#[derive(ToSchema)]
pub struct TemplateKey {
    key: String,
    about: String,
    channels: Vec<Channel>,
    variables: Vec<Variable>,
}

/// A wording version in use.
#[derive(ToSchema)]
pub struct TemplateInUse {
    key: String,
    channel: Channel,
    language: Language,
    /// `null` for the standard wording.
    practice_id: Option<PracticeId>,
    version: i32,
    author: String,
    created_at: DateTime<Utc>,
}

/// The wording in use, with the variables its key offers.
#[derive(ToSchema)]
pub struct TemplateShown {
    template: TemplateVersion,
    variables: Vec<Variable>,
}

/// Every version of a template, newest first.
#[derive(ToSchema)]
pub struct TemplateVersions {
    versions: Vec<TemplateVersion>,
}

/// A preview; for a practice's status message also who would get it.
#[derive(serde::Serialize, ToSchema)]
pub struct TemplatePreviewAnswer {
    #[schema(inline)]
    #[serde(flatten)]
    preview: TemplatePreview,
    #[schema(nullable = false)]
    audience: Option<PreviewAudience>,
}

/// Who a practice's status message would reach.
#[derive(serde::Serialize, ToSchema)]
pub struct PreviewAudience {
    recipients: BTreeMap<Channel, u64>,
    no_contact: u64,
    sms_segments_total: u64,
    /// What sending it to them now would cost, at each channel's first provider's price.
    estimated_cost: crate::cost::Cost,
}
