//! Fan-out: turns one trigger into one outbox message per eligible patient.
//!
//! Patients are read a page at a time and messages written in multi-row batches, so memory
//! does not grow with the list. Each message's idempotency key (broadcast, patient) makes a
//! repeated or resumed fan-out add nothing twice.

mod affected;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::dispatch::quiet::QuietHours;
use crate::domain::Language;
use crate::domain::{Channel, ChannelOrder, Priority};
use crate::render::{
    status_context_in, Chosen, MessageTemplates, RenderError, Rendered, TemplateRegistry,
};
use crate::store::{
    Broadcast, FanoutContact, FanoutPatient, NewMessage, Practice, Recipient, Store, StoreError,
};
use affected::Plan;
pub use affected::AFFECTED_TEMPLATE;

/// Why a fan-out stopped.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The store failed; the fan-out can be resumed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A template failed to render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The broadcast or its practice is gone.
    #[error("broadcast {0} or its practice does not exist")]
    NotFound(i64),
}

/// What a fan-out planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutSummary {
    /// Messages planned per channel (including any written by an earlier, interrupted run).
    pub planned: BTreeMap<Channel, u64>,
    /// Messages new to the outbox in this run.
    pub inserted: u64,
    /// Patients with no contact that can be used.
    pub skipped_no_contact: u64,
}

/// Who a broadcast would reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audience {
    /// Recipients per channel (patients, and on push anonymous followers too).
    pub recipients: BTreeMap<Channel, u64>,
    /// Patients with no contact that can be used.
    pub no_contact: u64,
}

/// Runs fan-outs against a store, waking the dispatcher as messages land.
pub struct Fanout {
    store: Arc<dyn Store>,
    templates: Arc<TemplateRegistry>,
    batch_size: usize,
    wake: Arc<Notify>,
    quiet_hours: Option<QuietHours>,
    clock: Clock,
}

/// Where "now" comes from: the system clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl Fanout {
    /// A fan-out writing `batch_size` messages per statement.
    pub fn new(
        store: Arc<dyn Store>,
        templates: Arc<TemplateRegistry>,
        batch_size: usize,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            templates,
            batch_size,
            wake,
            quiet_hours: None,
            clock: Arc::new(Utc::now),
        }
    }

    /// Holds bulk SMS and push planned inside quiet hours until they end (practice time).
    pub fn with_quiet_hours(mut self, quiet_hours: Option<QuietHours>) -> Self {
        self.quiet_hours = quiet_hours;
        self
    }

    /// Uses `clock` for "now" (tests set the time of day).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// When bulk SMS and push planned at `now` may first go, in the practice's timezone.
    fn after_quiet_hours(&self, now: DateTime<Utc>, timezone: &str) -> DateTime<Utc> {
        match self.quiet_hours {
            Some(quiet) => {
                quiet.next_allowed(now, timezone.parse().unwrap_or(chrono_tz::Europe::London))
            }
            None => now,
        }
    }

    /// Plans every message of a status broadcast and marks its fan-out finished.
    pub async fn run_broadcast(&self, broadcast_id: i64) -> Result<FanoutSummary, FanoutError> {
        let broadcast = self
            .store
            .broadcast(broadcast_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        let practice = self
            .store
            .practice_by_id(broadcast.practice_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        crate::intake::status::withdraw_before(self.store.as_ref(), &broadcast, Utc::now()).await?;
        let mut wording = Wording::new(self.templates.snapshot(), &practice, &broadcast);
        let bookings = self.bookings(&broadcast).await?;
        let mut summary = FanoutSummary::default();
        let mut batch: Vec<NewMessage> = Vec::with_capacity(self.batch_size);
        // Reading the next page overlaps writing this one (SQLite's WAL lets a reader run
        // beside the writer; PostgreSQL does anyway).
        let mut page = self
            .store
            .fanout_page(practice.id, 0, self.batch_size)
            .await?;
        while let Some(last) = page.last() {
            let next_after = last.id;
            let more = page.len() == self.batch_size;
            let now = (self.clock)();
            let held_until = self.after_quiet_hours(now, &practice.timezone);
            for patient in &page {
                let plan = bookings.plan(patient.id);
                if let Plan::Nothing = plan {
                    continue;
                }
                let Some(contact) = choose_contact(patient, &practice.channel_order) else {
                    summary.skipped_no_contact += 1;
                    continue;
                };
                *summary.planned.entry(contact.channel).or_default() += 1;
                let key = format!("b{broadcast_id}:p{}", patient.id);
                batch.push(match plan {
                    Plan::Affected(booked) => {
                        self.affected_message(&wording, patient, contact, booked, key, now)?
                    }
                    _ => self.message(&mut wording, patient, contact, key, now, held_until)?,
                });
            }
            let next_page = async {
                if more {
                    self.store
                        .fanout_page(practice.id, next_after, self.batch_size)
                        .await
                } else {
                    Ok(Vec::new())
                }
            };
            let (inserted, next_page) = tokio::join!(self.store.insert_messages(&batch), next_page);
            summary.inserted += inserted?;
            page = next_page?;
            batch.clear();
            self.wake.notify_one();
            // A newer status change may have come in while this one was fanning out: then
            // what was written meanwhile is withdrawn, and the rest is not planned.
            if let Some(newer) = self.superseded_by(broadcast_id).await? {
                let reason = format!("superseded by status change {newer}");
                self.store
                    .cancel_queued(broadcast_id, &reason, Utc::now())
                    .await?;
                break;
            }
        }
        if bookings.tells_everyone() {
            self.plan_followers(&mut wording, &mut summary).await?;
        }
        self.store
            .finish_fanout(broadcast_id, summary.skipped_no_contact as i64, Utc::now())
            .await?;
        Ok(summary)
    }

    /// Plans the broadcast's push message for each anonymous follower of the practice (a
    /// browser that asked for practice-wide notices without being linked to a patient),
    /// unless a newer status change has superseded it. Keys (broadcast, follower) make a
    /// resumed fan-out add nothing twice.
    async fn plan_followers(
        &self,
        wording: &mut Wording<'_>,
        summary: &mut FanoutSummary,
    ) -> Result<(), FanoutError> {
        let (broadcast, practice) = (wording.broadcast, wording.practice);
        // A page at a time (keyset on row id), so memory does not grow with the followers.
        let mut followers = self
            .store
            .followers_page(practice.id, 0, self.batch_size)
            .await?;
        if followers.is_empty() || self.superseded_by(broadcast.id).await?.is_some() {
            return Ok(());
        }
        let (rendered, version) = wording.render(&anonymous_reader(), Channel::Push)?;
        let now = (self.clock)();
        let held_until = self.after_quiet_hours(now, &practice.timezone);
        while !followers.is_empty() {
            let batch: Vec<NewMessage> = followers
                .iter()
                .map(|follower| NewMessage {
                    idempotency_key: format!("b{}:f{}", broadcast.id, follower.id),
                    broadcast_id: Some(broadcast.id),
                    practice_id: practice.id,
                    recipient: Recipient::Follower(follower.id),
                    channel: Channel::Push,
                    address: follower.endpoint.clone(),
                    priority: Priority::Bulk,
                    template_key: wording.key.clone(),
                    template_version: version,
                    subject: rendered.subject.clone(),
                    body: rendered.body.clone(),
                    body_html: None,
                    link: rendered.link.clone(),
                    next_attempt_at: held_until,
                    created_at: now,
                })
                .collect();
            summary.inserted += self.store.insert_messages(&batch).await?;
            *summary.planned.entry(Channel::Push).or_default() += batch.len() as u64;
            self.wake.notify_one();
            followers = match followers.last() {
                Some(last) if followers.len() == self.batch_size => {
                    self.store
                        .followers_page(practice.id, last.id, self.batch_size)
                        .await?
                }
                _ => Vec::new(),
            };
        }
        Ok(())
    }

    /// The newer status change that has superseded the broadcast, if one has.
    async fn superseded_by(&self, broadcast_id: i64) -> Result<Option<i64>, FanoutError> {
        Ok(self
            .store
            .broadcast(broadcast_id)
            .await?
            .and_then(|b| b.superseded_by))
    }

    /// One patient's message of a broadcast, on `contact`'s channel.
    fn message(
        &self,
        wording: &mut Wording<'_>,
        patient: &FanoutPatient,
        contact: &FanoutContact,
        idempotency_key: String,
        now: DateTime<Utc>,
        held_until: DateTime<Utc>,
    ) -> Result<NewMessage, FanoutError> {
        let (rendered, version) = wording.render(patient, contact.channel)?;
        Ok(NewMessage {
            idempotency_key,
            broadcast_id: Some(wording.broadcast.id),
            practice_id: wording.practice.id,
            recipient: Recipient::Patient {
                patient_id: patient.id,
                contact_id: contact.id,
            },
            channel: contact.channel,
            address: contact.address.clone(),
            priority: Priority::Bulk,
            template_version: version,
            template_key: wording.key.clone(),
            subject: rendered.subject,
            body: rendered.body,
            body_html: rendered.html,
            link: rendered.link,
            next_attempt_at: match contact.channel {
                Channel::Sms | Channel::Push => held_until,
                Channel::Email => now,
            },
            created_at: now,
        })
    }

    /// Plans a broadcast's message again for a patient whose address was refused, on the
    /// next channel they can be reached on. Returns that channel, or `None` if there is
    /// none left or the broadcast has been superseded.
    pub async fn reroute(
        &self,
        broadcast_id: i64,
        patient_id: i64,
    ) -> Result<Option<Channel>, FanoutError> {
        let broadcast = self
            .store
            .broadcast(broadcast_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        if broadcast.superseded_by.is_some() {
            return Ok(None);
        }
        let practice = self
            .store
            .practice_by_id(broadcast.practice_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        // The page starting just before the patient holds them, with the contacts still usable.
        let page = self
            .store
            .fanout_page(practice.id, patient_id - 1, 1)
            .await?;
        let Some(patient) = page.iter().find(|p| p.id == patient_id) else {
            return Ok(None);
        };
        let bookings = self.bookings(&broadcast).await?;
        let plan = bookings.plan(patient_id);
        let Some(contact) = choose_contact(patient, &practice.channel_order) else {
            return Ok(None);
        };
        let now = (self.clock)();
        let held_until = self.after_quiet_hours(now, &practice.timezone);
        let key = format!("b{broadcast_id}:p{patient_id}:{}", contact.channel);
        let mut wording = Wording::new(self.templates.snapshot(), &practice, &broadcast);
        let message = match plan {
            Plan::Nothing => return Ok(None),
            Plan::Affected(booked) => {
                self.affected_message(&wording, patient, contact, booked, key, now)?
            }
            Plan::General => self.message(&mut wording, patient, contact, key, now, held_until)?,
        };
        let inserted = self.store.insert_messages(&[message]).await?;
        self.wake.notify_one();
        Ok((inserted == 1).then_some(contact.channel))
    }

    /// Who a broadcast of the practice would reach now: patients per channel, and those
    /// with no usable contact. Reads the list a page at a time, as a fan-out does.
    pub async fn audience(&self, practice_id: i64) -> Result<Audience, FanoutError> {
        let practice = self
            .store
            .practice_by_id(practice_id)
            .await?
            .ok_or(FanoutError::NotFound(practice_id))?;
        let mut audience = Audience::default();
        let followers = self.store.follower_count(practice_id).await?;
        if followers > 0 {
            audience.recipients.insert(Channel::Push, followers);
        }
        let mut after = 0;
        loop {
            let page = self
                .store
                .fanout_page(practice_id, after, self.batch_size)
                .await?;
            for patient in &page {
                match choose_contact(patient, &practice.channel_order) {
                    Some(contact) => *audience.recipients.entry(contact.channel).or_default() += 1,
                    None => audience.no_contact += 1,
                }
            }
            match page.last() {
                Some(last) if page.len() == self.batch_size => after = last.id,
                _ => return Ok(audience),
            }
        }
    }

    /// Finishes fan-outs that a stopped process left part-done. Returns how many it finished.
    pub async fn resume_unfinished(&self) -> Result<usize, FanoutError> {
        let unfinished = self.store.unfinished_broadcasts().await?;
        for id in &unfinished {
            tracing::info!(broadcast = id, "resuming an interrupted fan-out");
            self.run_broadcast(*id).await?;
        }
        Ok(unfinished.len())
    }
}

/// A broadcast's wording while its messages are planned, from one snapshot of the
/// templates: rendered once per template unless it is personal, in the patient's language,
/// or in Welsh and English for a bilingual practice.
struct Wording<'a> {
    templates: Arc<MessageTemplates>,
    practice: &'a Practice,
    broadcast: &'a Broadcast,
    key: String,
    shared: HashMap<i64, Rendered>,
}

impl<'a> Wording<'a> {
    fn new(
        templates: Arc<MessageTemplates>,
        practice: &'a Practice,
        broadcast: &'a Broadcast,
    ) -> Self {
        Self {
            templates,
            practice,
            broadcast,
            key: broadcast.kind.template_key(),
            shared: HashMap::new(),
        }
    }

    /// The patient's wording on `channel`, and the version of the template that gave it.
    fn render(
        &mut self,
        patient: &FanoutPatient,
        channel: Channel,
    ) -> Result<(Rendered, i32), FanoutError> {
        if self.practice.bilingual {
            let (welsh, _) = self.in_language(patient, channel, Language::Welsh)?;
            let (english, version) = self.in_language(patient, channel, Language::English)?;
            return Ok((Rendered::bilingual(welsh, english), version));
        }
        self.in_language(patient, channel, Language::of_patient(&patient.language))
    }

    fn in_language(
        &mut self,
        patient: &FanoutPatient,
        channel: Channel,
        language: Language,
    ) -> Result<(Rendered, i32), FanoutError> {
        let chosen: Chosen = self
            .templates
            .choose(self.practice.id, &self.key, channel, language)
            .ok_or_else(|| RenderError::Missing {
                key: self.key.clone(),
                channel,
            })?;
        if chosen.personal {
            let context = status_context_in(self.practice, self.broadcast, Some(patient), language);
            return Ok((
                self.templates.render_chosen(chosen, &context)?,
                chosen.version,
            ));
        }
        if let Some(r) = self.shared.get(&chosen.id) {
            return Ok((r.clone(), chosen.version));
        }
        let context = status_context_in(self.practice, self.broadcast, None, language);
        let r = self.templates.render_chosen(chosen, &context)?;
        self.shared.insert(chosen.id, r.clone());
        Ok((r, chosen.version))
    }
}

/// An urgent message to one patient's `contact`, due `now`, worded by `worded` (the rendered
/// template `key` and its version). Callers set the idempotency key and any broadcast.
pub fn urgent_to(
    practice_id: i64,
    patient_id: i64,
    contact: &FanoutContact,
    key: &str,
    (rendered, version): (Rendered, i32),
    now: DateTime<Utc>,
) -> NewMessage {
    NewMessage {
        idempotency_key: String::new(),
        broadcast_id: None,
        practice_id,
        recipient: Recipient::Patient {
            patient_id,
            contact_id: contact.id,
        },
        channel: contact.channel,
        address: contact.address.clone(),
        priority: Priority::Urgent,
        template_key: key.to_string(),
        template_version: version,
        subject: rendered.subject,
        body: rendered.body,
        body_html: rendered.html,
        link: rendered.link,
        next_attempt_at: now,
        created_at: now,
    }
}

/// Who an anonymous follower's wording is rendered for: no name, English (bilingual
/// practices still send Welsh first).
fn anonymous_reader() -> FanoutPatient {
    FanoutPatient {
        id: 0,
        nhs_number: String::new(),
        given_name: None,
        family_name: None,
        preferred_channel: Some(Channel::Push),
        language: Language::English.to_string(),
        contacts: Vec::new(),
    }
}

/// The contact a patient is messaged on: their preferred channel if they can be reached
/// on it, else the first channel of the practice's order that they can be reached on.
pub fn choose_contact<'a>(
    patient: &'a FanoutPatient,
    order: &ChannelOrder,
) -> Option<&'a FanoutContact> {
    let on = |channel: Channel| patient.contacts.iter().find(|c| c.channel == channel);
    patient
        .preferred_channel
        .and_then(on)
        .or_else(|| order.channels().iter().find_map(|c| on(*c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(preferred: Option<Channel>, channels: &[Channel]) -> FanoutPatient {
        FanoutPatient {
            id: 1,
            nhs_number: "9990000018".into(),
            given_name: None,
            family_name: None,
            preferred_channel: preferred,
            language: "en".into(),
            contacts: channels
                .iter()
                .enumerate()
                .map(|(i, c)| FanoutContact {
                    id: i as i64,
                    channel: *c,
                    address: format!("{c}-address"),
                })
                .collect(),
        }
    }

    #[test]
    fn preference_wins_when_reachable_else_practice_order() {
        let order = ChannelOrder::parse("sms,email,push").unwrap();
        let p = patient(Some(Channel::Email), &[Channel::Sms, Channel::Email]);
        assert_eq!(choose_contact(&p, &order).unwrap().channel, Channel::Email);
        let p = patient(Some(Channel::Push), &[Channel::Email, Channel::Sms]);
        assert_eq!(choose_contact(&p, &order).unwrap().channel, Channel::Sms);
        let p = patient(None, &[Channel::Push, Channel::Email]);
        assert_eq!(choose_contact(&p, &order).unwrap().channel, Channel::Email);
        let p = patient(None, &[Channel::Push]);
        let email_only = ChannelOrder::parse("email").unwrap();
        assert!(choose_contact(&p, &email_only).is_none());
        assert!(choose_contact(&patient(None, &[]), &order).is_none());
    }
}
