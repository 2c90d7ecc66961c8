//! One status change sent to many practices at once: by a list of ODS codes, by a practice
//! tag (every practice on `emis-web`), or to all. Each practice gets its own status change
//! and broadcast, in its own wording, quiet hours and limits; the group ties them together
//! under one id and one `Idempotency-Key`.
//!
//! The group and its members are recorded first, in one transaction; then each member's
//! status change is posted with the group as its idempotency key, a few practices at a
//! time. Posting the same group again (a replay of the key, or after a crash) posts only
//! what is missing, and never a second broadcast for a practice.
//!
//! Who may send one: an administrator, to any practices; a federation's principal, to its
//! member practices only (`all` and a tag mean its members; a list naming any practice it
//! cannot see is refused whole, as "not found", so that nothing is half-sent and nothing
//! is learnt about practices outside it).

use std::collections::BTreeSet;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::domain::{BroadcastId, Invalid, OdsCode, StatusGroupId};
use crate::intake::cancel::cancel_broadcast;
use crate::intake::status::{fan_out, record_status_change, StatusChangeRequest, StatusChanges};
use crate::store::{GroupStart, IdempotencyClaim, NewStatusGroup, Practice, StoreError};

/// The most practices one group may reach.
pub const MAX_GROUP_PRACTICES: usize = 10_000;
/// Member practices whose status change is being recorded, or fanned out, at once.
const POSTING_AT_ONCE: usize = 8;
/// Patients of each member practice whose messages are planned before any practice's
/// whole list is: the first thing every practice's patients get is not held up by the
/// lists of the practices before it.
pub const HEAD_START_PATIENTS: usize = 200;

/// A group status change as a client posts it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// The status change every practice gets (as `POST /practices/{ods}/status` takes it).
    pub status_change: StatusChangeRequest,
    /// These practices, by ODS code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practices: Option<Vec<String>>,
    /// Every practice with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Every practice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Why a group was not started.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Only administrators and federations send groups.
    #[error("only administrators and federations send a status change to many practices")]
    NotAllowed,
    /// The request is invalid (its status change, or which practices).
    #[error("invalid group status change")]
    Invalid(Vec<Invalid>),
    /// The list names a practice the sender may not see (or none such: the two are not
    /// told apart); nothing was sent.
    #[error("no practice {0}")]
    NoPractice(String),
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What posting a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPosted {
    /// The group.
    pub id: StatusGroupId,
    /// True when the Idempotency-Key matched an earlier identical request.
    pub replayed: bool,
}

impl GroupRequest {
    /// The practices the request names that `sender` may see, each once, in id order, and
    /// how they were chosen (JSON), or every problem (the console shows them before it
    /// asks to send).
    pub async fn practices(
        &self,
        changes: &StatusChanges,
        sender: &Principal,
    ) -> Result<(Vec<Practice>, String), GroupError> {
        let store = &changes.store;
        let chosen = [self.practices.is_some(), self.tag.is_some(), self.all]
            .iter()
            .filter(|c| **c)
            .count();
        if chosen != 1 {
            return Err(GroupError::Invalid(vec![Invalid::new(
                "practices",
                "give exactly one of practices (ODS codes), tag, or all: true",
            )]));
        }
        let mut practices = Vec::new();
        let selector;
        if let Some(codes) = &self.practices {
            let mut errors = Vec::new();
            for (i, code) in codes.iter().enumerate() {
                let found = match OdsCode::parse(code) {
                    Ok(ods) => store.practice_by_ods(&ods).await?,
                    Err(_) => None,
                };
                match found {
                    Some(practice) if sender.can_see(practice.id) => practices.push(practice),
                    // Only an administrator is told which codes are unknown; anyone else
                    // must not learn whether a practice outside its set exists.
                    _ if !sender.is_admin() => return Err(GroupError::NoPractice(code.clone())),
                    _ => errors.push(Invalid::new(
                        format!("practices[{i}]"),
                        format!("no practice {code}"),
                    )),
                }
            }
            if !errors.is_empty() {
                return Err(GroupError::Invalid(errors));
            }
            selector = serde_json::json!({ "practices": codes });
        } else if let Some(tag) = &self.tag {
            let tag = tag.trim().to_ascii_lowercase();
            for id in store.practices_tagged(std::slice::from_ref(&tag)).await? {
                if let Some(practice) = store.practice_by_id(id).await? {
                    practices.push(practice);
                }
            }
            selector = serde_json::json!({ "tag": tag });
        } else {
            practices = store.list_practices().await?;
            selector = serde_json::json!({ "all": true });
        }
        let mut seen = BTreeSet::new();
        practices.retain(|p| sender.can_see(p.id) && seen.insert(p.id));
        practices.sort_by_key(|p| p.id);
        if practices.is_empty() {
            return Err(GroupError::Invalid(vec![Invalid::new(
                "practices",
                "no practice matches",
            )]));
        }
        if practices.len() > MAX_GROUP_PRACTICES {
            return Err(GroupError::Invalid(vec![Invalid::new(
                "practices",
                format!("at most {MAX_GROUP_PRACTICES} practices in one group"),
            )]));
        }
        Ok((practices, selector.to_string()))
    }

    /// A hash of the request's meaning, to tell a retry from a different request.
    fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).unwrap_or_default()))
    }
}

/// Records the group and each member practice's status change and broadcast, gives each
/// a head start, and leaves the rest of the fan-outs running (see [`post_members`]). A
/// member that cannot be posted is recorded with its reason; the others go on.
pub async fn post_group(
    changes: &StatusChanges,
    request: &GroupRequest,
    sender: &Principal,
    idempotency: Option<(String, String)>,
) -> Result<GroupPosted, GroupError> {
    if !sender.may_send_groups() {
        return Err(GroupError::NotAllowed);
    }
    let actor = sender.actor.as_str();
    request.status_change.parse(actor).map_err(|errors| {
        GroupError::Invalid(
            errors
                .into_iter()
                .map(|e| Invalid::new(format!("status_change.{}", e.field), e.reason))
                .collect(),
        )
    })?;
    let (practices, selector) = request.practices(changes, sender).await?;
    let claim = idempotency.map(|(scope, key)| IdempotencyClaim {
        scope: format!("{scope}:status-group"),
        key,
        request_hash: request.fingerprint(),
    });
    let group = NewStatusGroup {
        request: serde_json::to_string(&request.status_change).unwrap_or_default(),
        selector,
        created_by: actor.to_string(),
        members: practices.iter().map(|p| p.id).collect(),
    };
    let store = &changes.store;
    let (id, replayed) = match store
        .start_group(&group, claim.as_ref(), chrono::Utc::now())
        .await?
    {
        GroupStart::Started(id) => (id, false),
        GroupStart::Replayed(id) => (id, true),
        GroupStart::KeyReused => return Err(GroupError::KeyReused),
    };
    post_members(changes, id, &request.status_change, actor).await?;
    Ok(GroupPosted { id, replayed })
}

/// Posts the status change of every member practice that has no broadcast yet and was not
/// stopped, in three steps, so that the last practice is not left waiting for every other
/// one's list:
///
/// 1. each member's status change and broadcast is recorded (a few practices at a time,
///    keyed by the group so that it is recorded once), which withdraws what it supersedes;
///    one recorded while the group was being stopped is cancelled at once, with the stop's
///    reason, and not planned;
/// 2. each new broadcast gets a head start: the messages of its first
///    [`HEAD_START_PATIENTS`] patients, so every practice has messages going out;
/// 3. the rest of each list is planned by a task of its own, which returns at once: the
///    caller (an HTTP request) does not wait for millions of messages, and hanging up does
///    not stop it. A crash meanwhile leaves unfinished fan-outs, which start-up resumes.
pub async fn post_members(
    changes: &StatusChanges,
    id: StatusGroupId,
    request: &StatusChangeRequest,
    actor: &str,
) -> Result<(), StoreError> {
    let store = &changes.store;
    let mut waiting = Vec::new();
    for member in store.group_members(id).await? {
        if member.broadcast_id.is_none() && member.stop.is_none() {
            if let Some(practice) = store.practice_by_id(member.practice_id).await? {
                waiting.push(practice);
            }
        }
    }
    // Each member is recorded within its own future: awaiting the store between polls of
    // the stream would leave the other futures suspended, one of them perhaps inside a
    // transaction that the await then waits for.
    let recorded: Vec<Result<Option<(Practice, BroadcastId)>, StoreError>> =
        futures_util::stream::iter(waiting)
            .map(|practice| async move {
                let key = Some((format!("group:{id}"), practice.id.to_string()));
                match record_status_change(changes, &practice, request, actor, key).await {
                    Ok(posted) => {
                        let stopped = store
                            .record_member(id, practice.id, Some(posted.broadcast_id), None)
                            .await?;
                        if let Some(stop) = stopped {
                            if let Some(broadcast) = store.broadcast(posted.broadcast_id).await? {
                                cancel_broadcast(changes, &broadcast, &stop.by, &stop.reason)
                                    .await?;
                            }
                            return Ok(None);
                        }
                        Ok(Some((practice, posted.broadcast_id)))
                    }
                    Err(e) => {
                        tracing::error!(group = id.get(), practice = %practice.ods_code, error = %e, "a group member's status change failed");
                        store
                            .record_member(id, practice.id, None, Some(&e.to_string()))
                            .await?;
                        Ok(None)
                    }
                }
            })
            .buffer_unordered(POSTING_AT_ONCE)
            .collect()
            .await;
    let mut broadcasts = Vec::new();
    for member in recorded {
        broadcasts.extend(member?);
    }
    broadcasts.sort_by_key(|(practice, _)| practice.id);
    fan_out_members(changes, id, &broadcasts, Some(HEAD_START_PATIENTS)).await;
    let (changes, rest) = (changes.clone(), broadcasts);
    tokio::spawn(async move { fan_out_members(&changes, id, &rest, None).await });
    Ok(())
}

/// Fans out the members' broadcasts, a few at a time: in full, or a head start of `head`
/// patients each. A member whose fan-out fails is logged (a failed wording is recorded on
/// its broadcast, which the group's progress shows); the others go on.
async fn fan_out_members(
    changes: &StatusChanges,
    id: StatusGroupId,
    broadcasts: &[(Practice, BroadcastId)],
    head: Option<usize>,
) {
    futures_util::stream::iter(broadcasts)
        .for_each_concurrent(POSTING_AT_ONCE, |(practice, broadcast_id)| async move {
            if let Err(e) = fan_out(changes, *broadcast_id, head).await {
                tracing::error!(group = id.get(), practice = %practice.ods_code, broadcast = broadcast_id.get(), error = %e, "a group member's fan-out failed");
            }
        })
        .await;
}
