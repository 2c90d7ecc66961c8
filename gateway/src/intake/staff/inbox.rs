//! A staff member's text, from the inbound SMS webhook to its answer.
//!
//! The webhook asks [`StaffInbox::registrations`] first: a number no practice registered is
//! not staff (its text goes on to the patients' STOP/START handling, and is otherwise
//! ignored: it gets no answer and learns nothing). A registered number's text is a command
//! unless it is a patient's STOP or START (staff are patients too); `CANCEL` is a command.
//!
//! Every command, answer, confirmation and refusal is in the practice's audit trail under
//! the staff member's name. Commands are counted per number and refused without an answer
//! past `[approval] commands_per_number_per_hour`. Answers go to the registered number, so
//! a text that only claims to come from it cannot see the code it was sent.

use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::command::{parse, Arrival, CommandError, StaffCommand};
use crate::domain::{PhoneNumber, StatusKind};
use crate::intake::approval::{codes, ApprovalError, Approvals, Decision, Draft, Person};
use crate::intake::status::StatusChangeRequest;
use crate::receipts::{reply_keyword, Reply};
use crate::store::{AuditEntry, Practice, ProposalOrigin, ProposalState, StaffNumber, StoreError};

/// Commands per staff number, kept in memory by each instance. Only registered numbers are
/// counted, so memory is bounded by the registrations.
pub struct CommandLimits {
    per_number: DefaultKeyedRateLimiter<String>,
}

impl CommandLimits {
    /// `per_hour` commands per number (at least one), a quarter of them at once.
    pub fn new(per_hour: u32) -> Self {
        let per_hour = NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_hour.get().div_ceil(4)).unwrap_or(NonZeroU32::MIN);
        Self {
            per_number: RateLimiter::dashmap(Quota::per_hour(per_hour).allow_burst(burst)),
        }
    }

    /// Takes one command for `phone`; false when it is over its rate.
    pub fn allow(&self, phone: &str) -> bool {
        self.per_number.check_key(&phone.to_string()).is_ok()
    }
}

/// Reads and answers staff texts.
#[derive(Clone)]
pub struct StaffInbox {
    /// Makes, previews and decides proposals, and texts answers.
    pub approvals: Approvals,
    /// Commands per number.
    pub limits: Arc<CommandLimits>,
}

/// A registration chosen for a command, with its practice and the text after any ODS code.
struct Chosen<'a> {
    number: &'a StaffNumber,
    practice: Practice,
    text: &'a str,
}

impl StaffInbox {
    /// The staff registrations of the number a text came from, or none when it is not a
    /// staff command: an unregistered number, or a patient's STOP or START from a
    /// registered one.
    pub async fn registrations(
        &self,
        from: &str,
        text: &str,
    ) -> Result<Vec<StaffNumber>, StoreError> {
        let Ok(number) = PhoneNumber::parse(from) else {
            return Ok(Vec::new());
        };
        let is_patient_keyword = matches!(reply_keyword(text), Reply::OptOut | Reply::OptIn)
            && !text
                .trim()
                .trim_matches(|c: char| c.is_ascii_punctuation())
                .eq_ignore_ascii_case("cancel");
        if is_patient_keyword {
            return Ok(Vec::new());
        }
        self.approvals.store.staff_numbers_by_phone(&number).await
    }

    /// Handles a text from a registered number (`registrations` is not empty). Errors are
    /// logged: the webhook has already answered the provider.
    pub async fn handle(&self, registrations: Vec<StaffNumber>, text: &str) {
        if let Err(e) = self.handle_inner(&registrations, text).await {
            tracing::error!(error = %e, "a staff command could not be handled");
        }
    }

    async fn handle_inner(
        &self,
        registrations: &[StaffNumber],
        text: &str,
    ) -> Result<(), ApprovalError> {
        let Some(first) = registrations.first() else {
            return Ok(());
        };
        if !self.limits.allow(&first.phone) {
            for number in registrations {
                if let Some(practice) = self.practice(number).await? {
                    self.audit(
                        &practice,
                        number,
                        "staff.command_refused",
                        serde_json::json!({ "reason": "rate limited" }),
                    )
                    .await?;
                }
            }
            return Ok(());
        }
        let chosen = match self.choose(registrations, text).await? {
            Ok(chosen) => chosen,
            Err(answer) => {
                // Several practices and no code: the answer lists the codes to start with.
                for number in registrations {
                    if let Some(practice) = self.practice(number).await? {
                        self.answer(&practice, number, &answer).await?;
                    }
                }
                return Ok(());
            }
        };
        let settings = self
            .approvals
            .store
            .approval_settings(chosen.practice.id)
            .await?;
        let arrival = Arrival {
            received_at: Utc::now(),
            zone: chosen.practice.timezone,
            pin: settings.staff_pin.as_deref(),
        };
        let command = match parse(chosen.text, &arrival) {
            Ok(command) => command,
            Err(refusal) => return self.refuse(&chosen, &refusal).await,
        };
        match command {
            StaffCommand::Confirm { code } => self.confirm(registrations, &chosen, &code).await,
            StaffCommand::Post { .. } => match command.status_request() {
                // A Welsh command's headline is the Welsh headline (`headline_cy`).
                Some(request) => self.post(&chosen, request).await,
                None => self.refuse(&chosen, &CommandError::NotUnderstood).await,
            },
            StaffCommand::Status => self.status(&chosen).await,
            StaffCommand::Cancel => self.cancel(&chosen).await,
        }
    }

    /// The registration a text is for: the one whose practice's ODS code the text starts
    /// with, else the only one, else (for `YES`, whose code names its proposal) the first.
    /// `Err` holds the answer asking which practice.
    async fn choose<'a>(
        &self,
        registrations: &'a [StaffNumber],
        text: &'a str,
    ) -> Result<Result<Chosen<'a>, String>, ApprovalError> {
        let mut practices = Vec::new();
        for number in registrations {
            if let Some(practice) = self.practice(number).await? {
                practices.push((number, practice));
            }
        }
        let trimmed = text.trim_start();
        let (first_word, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        if let Some(at) = practices
            .iter()
            .position(|(_, p)| p.ods_code.as_str().eq_ignore_ascii_case(first_word))
        {
            let (number, practice) = practices.swap_remove(at);
            return Ok(Ok(Chosen {
                number,
                practice,
                text: rest,
            }));
        }
        let is_confirmation =
            first_word.eq_ignore_ascii_case("yes") || first_word.eq_ignore_ascii_case("ie");
        if practices.len() == 1 || (is_confirmation && !practices.is_empty()) {
            let (number, practice) = practices.swap_remove(0);
            return Ok(Ok(Chosen {
                number,
                practice,
                text,
            }));
        }
        let codes: Vec<&str> = practices.iter().map(|(_, p)| p.ods_code.as_str()).collect();
        Ok(Err(format!(
            "You are registered at {}: start with the practice code, e.g. {} STATUS.",
            codes.join(", "),
            codes.first().copied().unwrap_or("A81001")
        )))
    }

    /// `YES <code>`: approves the proposal the code was texted for, if it was texted to this
    /// number and is still live.
    async fn confirm(
        &self,
        registrations: &[StaffNumber],
        chosen: &Chosen<'_>,
        code: &str,
    ) -> Result<(), ApprovalError> {
        let store = &self.approvals.store;
        let now = Utc::now();
        let live = store.live_codes(&chosen.number.phone, now).await?;
        let found = live.iter().find_map(|c| {
            let number = registrations.iter().find(|n| n.id == c.staff_number_id)?;
            codes::matches(&c.code_hash, c.proposal_id, code).then_some((c, number))
        });
        let Some((live_code, number)) = found else {
            self.audit(
                &chosen.practice,
                chosen.number,
                "staff.confirm_refused",
                serde_json::json!({ "reason": "no live code matches" }),
            )
            .await?;
            return self
                .answer(
                    &chosen.practice,
                    chosen.number,
                    "That code is not right, or it has expired. Nothing was sent.",
                )
                .await;
        };
        let Some(practice) = self.practice(number).await? else {
            return Ok(());
        };
        if !store.use_code(live_code.id, now).await? {
            return self
                .answer(
                    &practice,
                    number,
                    "That code was used already. Nothing more was sent.",
                )
                .await;
        }
        self.audit(
            &practice,
            number,
            "staff.confirmed",
            serde_json::json!({ "proposal": live_code.proposal_id }),
        )
        .await?;
        let answer = match self
            .approvals
            .approve(&practice, live_code.proposal_id, &Person::staff(number))
            .await
        {
            Ok(Decision::Posted(broadcast)) => {
                let planned = store.broadcast_counts(broadcast).await.map(|c| c.iter().map(|(_, _, n)| *n).sum::<i64>()).unwrap_or(0);
                format!("Sent. {planned} messages are on their way to patients of {}.", practice.name)
            }
            Ok(Decision::WaitingForSecond) => "Approved. This broadcast needs a second approval: the other approvers have been texted a code.".to_string(),
            Err(e) => format!("Not sent: {e}."),
        };
        self.answer(&practice, number, &answer).await
    }

    /// A status kind: records the proposal, and texts its preview and code to the sender.
    async fn post(
        &self,
        chosen: &Chosen<'_>,
        request: StatusChangeRequest,
    ) -> Result<(), ApprovalError> {
        let person = Person::staff(chosen.number);
        self.audit(
            &chosen.practice,
            chosen.number,
            "staff.command",
            serde_json::json!({
                "command": request.kind,
                "headline": request.headline,
                "headline_cy": request.headline_cy,
                "ends_at": request.ends_at,
            }),
        )
        .await?;
        // A new command replaces the sender's change still waiting for its YES.
        self.discard_waiting(chosen, &person, "replaced by a newer command")
            .await?;
        let proposal = match self
            .approvals
            .propose(
                &chosen.practice,
                Draft {
                    origin: ProposalOrigin::StaffText,
                    incident: None,
                    request: request.clone(),
                    link: None,
                    proposer: person,
                    lasts: crate::intake::approval::seconds(
                        self.approvals.config.staff_proposal_seconds,
                    ),
                },
            )
            .await
        {
            Ok(proposal) => proposal,
            Err(ApprovalError::Invalid(errors)) => {
                let reasons: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                let answer = format!("Not understood: {}.", reasons.join("; "));
                return self.answer(&chosen.practice, chosen.number, &answer).await;
            }
            Err(e) => return Err(e),
        };
        let preview = self.approvals.preview(&chosen.practice, &request).await?;
        let lead = format!(
            "{} for {}{}.",
            request.kind.replace('_', " ").to_uppercase(),
            chosen.practice.name,
            request
                .ends_at
                .map(|t| format!(
                    " until {}",
                    crate::render::uk_date_time(t, chosen.practice.timezone)
                ))
                .unwrap_or_default()
        );
        self.approvals
            .text_code(&chosen.practice, &proposal, chosen.number, &lead, &preview)
            .await?;
        Ok(())
    }

    /// `STATUS`: the practice's current status, and what waits for approval.
    async fn status(&self, chosen: &Chosen<'_>) -> Result<(), ApprovalError> {
        let store = &self.approvals.store;
        let practice = &chosen.practice;
        self.audit(
            practice,
            chosen.number,
            "staff.command",
            serde_json::json!({ "command": "status" }),
        )
        .await?;
        let latest = store.recent_broadcasts(practice.id, 1).await?;
        let now = match latest.first() {
            None => format!("{}: no status has been posted.", practice.name),
            Some(b) if b.kind == StatusKind::Restored => format!(
                "{}: normal service (restored {}).",
                practice.name,
                crate::render::uk_date_time(b.created_at, practice.timezone)
            ),
            Some(b) => format!(
                "{}: {} since {}: {}{}.",
                practice.name,
                b.kind.as_str().replace('_', " ").to_uppercase(),
                crate::render::uk_date_time(b.created_at, practice.timezone),
                b.headline.trim_end_matches('.'),
                b.ends_at
                    .map(|t| format!(
                        " (until {})",
                        crate::render::uk_date_time(t, practice.timezone)
                    ))
                    .unwrap_or_default()
            ),
        };
        let waiting = store
            .proposals(practice.id, 50)
            .await?
            .iter()
            .filter(|p| p.state == ProposalState::Proposed)
            .count();
        let answer = match waiting {
            0 => now,
            1 => format!("{now} 1 change waits for approval."),
            n => format!("{now} {n} changes wait for approval."),
        };
        self.answer(practice, chosen.number, &answer).await
    }

    /// `CANCEL`: discards the sender's change waiting for its YES.
    async fn cancel(&self, chosen: &Chosen<'_>) -> Result<(), ApprovalError> {
        self.audit(
            &chosen.practice,
            chosen.number,
            "staff.command",
            serde_json::json!({ "command": "cancel" }),
        )
        .await?;
        let person = Person::staff(chosen.number);
        let discarded = self.discard_waiting(chosen, &person, &person.name).await?;
        let answer = if discarded > 0 {
            "Cancelled. Nothing was sent to patients."
        } else {
            "Nothing was waiting to be sent."
        };
        self.answer(&chosen.practice, chosen.number, answer).await
    }

    /// Dismisses the changes `person` texted that still wait for their YES; how many.
    async fn discard_waiting(
        &self,
        chosen: &Chosen<'_>,
        person: &Person,
        by: &str,
    ) -> Result<usize, ApprovalError> {
        let waiting: Vec<_> = self
            .approvals
            .store
            .proposals(chosen.practice.id, 50)
            .await?
            .into_iter()
            .filter(|p| {
                p.state == ProposalState::Proposed
                    && p.origin == ProposalOrigin::StaffText
                    && p.proposer == person.identity
            })
            .collect();
        let mut discarded = 0;
        for proposal in &waiting {
            match self
                .approvals
                .close(&chosen.practice, proposal, ProposalState::Dismissed, by)
                .await
            {
                Ok(()) => discarded += 1,
                Err(ApprovalError::Changed) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(discarded)
    }

    /// Answers a text that is not a command (or has a wrong PIN) with what would work.
    async fn refuse(
        &self,
        chosen: &Chosen<'_>,
        refusal: &CommandError,
    ) -> Result<(), ApprovalError> {
        self.audit(
            &chosen.practice,
            chosen.number,
            "staff.command_refused",
            serde_json::json!({ "reason": refusal.to_string() }),
        )
        .await?;
        self.answer(&chosen.practice, chosen.number, &refusal.to_string())
            .await
    }

    /// Texts `answer` to the registered number, and audits it (or its failure).
    async fn answer(
        &self,
        practice: &Practice,
        number: &StaffNumber,
        answer: &str,
    ) -> Result<(), ApprovalError> {
        let sent = self
            .approvals
            .texts
            .send(practice, &number.phone, answer)
            .await;
        let details = match &sent {
            Ok(provider) => serde_json::json!({ "answer": answer, "provider": provider }),
            Err(e) => serde_json::json!({ "answer": answer, "not_sent": e.to_string() }),
        };
        let action = if sent.is_ok() {
            "staff.answered"
        } else {
            "staff.answer_not_sent"
        };
        self.audit(practice, number, action, details).await?;
        Ok(())
    }

    async fn practice(&self, number: &StaffNumber) -> Result<Option<Practice>, StoreError> {
        self.approvals
            .store
            .practice_by_id(number.practice_id)
            .await
    }

    /// A line in the practice's audit trail under the staff member's name.
    async fn audit(
        &self,
        practice: &Practice,
        number: &StaffNumber,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.approvals
            .store
            .audit(
                &AuditEntry {
                    actor: Person::staff(number).name,
                    action: action.to_string(),
                    practice_id: Some(practice.id),
                    subject: Some(format!("staff_number:{}", number.id)),
                    details: Some(details.to_string()),
                },
                Utc::now(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_gets_its_own_allowance() {
        let limits = CommandLimits::new(8);
        for _ in 0..2 {
            assert!(limits.allow("+447700900001"));
        }
        assert!(
            !limits.allow("+447700900001"),
            "a burst of a quarter of the hourly rate"
        );
        assert!(limits.allow("+447700900002"));
    }
}
