//! Proposed status changes, approval codes and rules, and source incidents on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{BroadcastId, PracticeId, ProposalId};
use crate::store::{
    parsed, unique_violation, ApprovalSettings, At, IncidentRef, LiveCode, NewApprovalCode,
    NewProposal, Proposal, ProposalState, ProposalStore, StoreResult, TimeColumn,
};

const PROPOSAL_COLUMNS: &str = "id, practice_id, state, origin, source, incident_id, phase, kind, \
     request, link, proposed_by, proposer, first_approved_by, first_approver, first_approved_at, \
     decided_by, decided_at, broadcast_id, expires_at, created_at, updated_at, revision";

/// Pending proposals first, then the newest.
const PENDING_FIRST: &str = "CASE state WHEN 'proposed' THEN 0 ELSE 1 END, id DESC";

fn proposal_from_row(row: &SqliteRow) -> StoreResult<Proposal> {
    let state: String = row.try_get("state")?;
    let origin: String = row.try_get("origin")?;
    let source: Option<String> = row.try_get("source")?;
    let incident_id: Option<String> = row.try_get("incident_id")?;
    let phase: Option<String> = row.try_get("phase")?;
    let incident = match (source, incident_id, phase) {
        (Some(source), Some(incident_id), Some(phase)) => Some(IncidentRef {
            source,
            incident_id,
            phase,
        }),
        _ => None,
    };
    Ok(Proposal {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        state: parsed("status_proposals.state", &state)?,
        origin: parsed("status_proposals.origin", &origin)?,
        incident,
        kind: row.try_get("kind")?,
        request: row.try_get("request")?,
        link: row.try_get("link")?,
        proposed_by: row.try_get("proposed_by")?,
        proposer: row.try_get("proposer")?,
        first_approved_by: row.try_get("first_approved_by")?,
        first_approver: row.try_get("first_approver")?,
        first_approved_at: row.time_opt("first_approved_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.time_opt("decided_at")?,
        broadcast_id: row.try_get("broadcast_id")?,
        expires_at: row.time("expires_at")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        revision: row.try_get("revision")?,
    })
}

/// Source names kept one per line.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl ProposalStore for SqliteStore {
    async fn approval_settings(&self, practice_id: PracticeId) -> StoreResult<ApprovalSettings> {
        let row = sqlx::query(
            "SELECT staff_pin, second_approval_above, auto_post_sources
             FROM approval_settings WHERE practice_id = $1",
        )
        .bind(practice_id)
        .fetch_optional(&self.pool)
        .await?;
        let tags: Vec<String> =
            sqlx::query_scalar("SELECT tag FROM practice_tags WHERE practice_id = $1 ORDER BY tag")
                .bind(practice_id)
                .fetch_all(&self.pool)
                .await?;
        let mut settings = ApprovalSettings {
            tags,
            ..Default::default()
        };
        if let Some(row) = row {
            settings.staff_pin = row.try_get("staff_pin")?;
            let above: Option<i64> = row.try_get("second_approval_above")?;
            settings.second_approval_above = above.map(|n| n.max(0) as u64);
            settings.auto_post_sources = lines(&row.try_get::<String, _>("auto_post_sources")?);
        }
        Ok(settings)
    }

    async fn save_approval_settings(
        &self,
        practice_id: PracticeId,
        settings: &ApprovalSettings,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO approval_settings
                 (practice_id, staff_pin, second_approval_above, auto_post_sources, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (practice_id) DO UPDATE SET staff_pin = excluded.staff_pin,
                 second_approval_above = excluded.second_approval_above,
                 auto_post_sources = excluded.auto_post_sources,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(practice_id)
        .bind(settings.staff_pin.as_deref())
        .bind(settings.second_approval_above.map(|n| n.min(i64::MAX as u64) as i64))
        .bind(settings.auto_post_sources.join("\n"))
        .bind(At(now))
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM practice_tags WHERE practice_id = $1")
            .bind(practice_id)
            .execute(&mut *tx)
            .await?;
        for tag in &settings.tags {
            sqlx::query(
                "INSERT INTO practice_tags (practice_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(practice_id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn practices_tagged(&self, tags: &[String]) -> StoreResult<Vec<PracticeId>> {
        let mut found = Vec::new();
        for tag in tags {
            let ids: Vec<PracticeId> =
                sqlx::query_scalar("SELECT practice_id FROM practice_tags WHERE tag = $1")
                    .bind(tag)
                    .fetch_all(&self.pool)
                    .await?;
            found.extend(ids);
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn create_proposal(
        &self,
        new: &NewProposal,
        now: DateTime<Utc>,
    ) -> StoreResult<Proposal> {
        let row = sqlx::query(&format!(
            "INSERT INTO status_proposals (practice_id, state, origin, source, incident_id, phase,
                 kind, request, link, proposed_by, proposer, expires_at, created_at, updated_at)
             VALUES ($1, 'proposed', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             RETURNING {PROPOSAL_COLUMNS}"
        ))
        .bind(new.practice_id)
        .bind(new.origin.as_str())
        .bind(new.incident.as_ref().map(|i| i.source.as_str()))
        .bind(new.incident.as_ref().map(|i| i.incident_id.as_str()))
        .bind(new.incident.as_ref().map(|i| i.phase.as_str()))
        .bind(&new.kind)
        .bind(&new.request)
        .bind(new.link.as_deref())
        .bind(&new.proposed_by)
        .bind(&new.proposer)
        .bind(At(new.expires_at))
        .bind(At(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "a proposal for this incident"))?;
        proposal_from_row(&row)
    }

    async fn proposal(
        &self,
        practice_id: PracticeId,
        id: ProposalId,
    ) -> StoreResult<Option<Proposal>> {
        let row = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals WHERE practice_id = $1 AND id = $2"
        ))
        .bind(practice_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(proposal_from_row).transpose()
    }

    async fn proposal_for_incident(
        &self,
        practice_id: PracticeId,
        incident: &IncidentRef,
    ) -> StoreResult<Option<Proposal>> {
        let row = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals
             WHERE practice_id = $1 AND source = $2 AND incident_id = $3 AND phase = $4"
        ))
        .bind(practice_id)
        .bind(&incident.source)
        .bind(&incident.incident_id)
        .bind(&incident.phase)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(proposal_from_row).transpose()
    }

    async fn proposals(&self, practice_id: PracticeId, limit: u32) -> StoreResult<Vec<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals WHERE practice_id = $1
             ORDER BY {PENDING_FIRST} LIMIT $2"
        ))
        .bind(practice_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    async fn proposals_for_incident(
        &self,
        source: &str,
        incident_id: &str,
    ) -> StoreResult<Vec<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals
             WHERE source = $1 AND incident_id = $2 ORDER BY id"
        ))
        .bind(source)
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    async fn revise_proposal(
        &self,
        id: ProposalId,
        revision: i64,
        request: &str,
        link: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE status_proposals SET request = $3, link = $4, updated_at = $5,
                 revision = revision + 1
             WHERE id = $1 AND revision = $2 AND state = 'proposed'",
        )
        .bind(id)
        .bind(revision)
        .bind(request)
        .bind(link)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_first_approval(
        &self,
        id: ProposalId,
        revision: i64,
        by: &str,
        approver: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE status_proposals SET first_approved_by = $3, first_approver = $4,
                 first_approved_at = $5, updated_at = $5, revision = revision + 1
             WHERE id = $1 AND revision = $2 AND state = 'proposed' AND first_approver IS NULL",
        )
        .bind(id)
        .bind(revision)
        .bind(by)
        .bind(approver)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn decide_proposal(
        &self,
        id: ProposalId,
        revision: i64,
        state: ProposalState,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE status_proposals SET state = $3, decided_by = $4, decided_at = $5,
                 updated_at = $5, revision = revision + 1
             WHERE id = $1 AND revision = $2 AND state = 'proposed'",
        )
        .bind(id)
        .bind(revision)
        .bind(state.as_str())
        .bind(by)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn attach_broadcast(&self, id: ProposalId, broadcast_id: BroadcastId) -> StoreResult<()> {
        sqlx::query("UPDATE status_proposals SET broadcast_id = $2 WHERE id = $1")
            .bind(id)
            .bind(broadcast_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn approved_unposted(&self) -> StoreResult<Vec<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals
             WHERE state = 'approved' AND broadcast_id IS NULL ORDER BY id LIMIT 100"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    async fn overdue_proposals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Proposal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM status_proposals
             WHERE state = 'proposed' AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .bind(At(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    async fn add_approval_code(
        &self,
        code: &NewApprovalCode,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO approval_codes
                 (proposal_id, staff_number_id, phone, code_hash, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code.proposal_id)
        .bind(code.staff_number_id)
        .bind(&code.phone)
        .bind(&code.code_hash)
        .bind(At(code.expires_at))
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn live_codes(&self, phone: &str, now: DateTime<Utc>) -> StoreResult<Vec<LiveCode>> {
        let rows = sqlx::query(
            "SELECT c.id, c.proposal_id, c.staff_number_id, c.code_hash
             FROM approval_codes c JOIN status_proposals p ON p.id = c.proposal_id
             WHERE c.phone = $1 AND c.used_at IS NULL AND c.expires_at > $2
               AND p.state = 'proposed'
             ORDER BY c.id",
        )
        .bind(phone)
        .bind(At(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LiveCode {
                    id: row.try_get("id")?,
                    proposal_id: row.try_get("proposal_id")?,
                    staff_number_id: row.try_get("staff_number_id")?,
                    code_hash: row.try_get("code_hash")?,
                })
            })
            .collect()
    }

    async fn use_code(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE approval_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL")
                .bind(id)
                .bind(At(now))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retire_codes(&self, proposal_id: ProposalId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE approval_codes SET used_at = $2 WHERE proposal_id = $1 AND used_at IS NULL",
        )
        .bind(proposal_id)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_incidents(&self, source: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT incident_id FROM source_incidents
             WHERE source = $1 AND resolved = 0 ORDER BY incident_id",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn note_incident(
        &self,
        source: &str,
        incident_id: &str,
        resolved: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO source_incidents (source, incident_id, resolved, last_seen_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, incident_id) DO UPDATE SET resolved = excluded.resolved,
                 last_seen_at = excluded.last_seen_at",
        )
        .bind(source)
        .bind(incident_id)
        .bind(i32::from(resolved))
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
