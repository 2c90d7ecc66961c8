//! Anonymous push followers: browsers that asked a practice for its practice-wide notices
//! without being linked to a patient.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{FollowerId, PracticeId};

/// A browser following a practice's notices, as fan-out needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Row id.
    pub id: FollowerId,
    /// The browser's push endpoint.
    pub endpoint: String,
}

/// Where anonymous followers are kept.
#[async_trait]
pub trait FollowerStore: Send + Sync {
    /// Adds a follower, or refreshes the keys of the same endpoint; returns its row id, or
    /// `None` if the practice already has `cap` followers and this endpoint is not one of
    /// them. The count and the insert are one step, so concurrent follows cannot pass the cap.
    async fn add_follower(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now: DateTime<Utc>,
        cap: u64,
    ) -> StoreResult<Option<FollowerId>>;
    /// Removes the practice's follower with this endpoint (the browser said stop); how many.
    async fn remove_follower_endpoint(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
    ) -> StoreResult<u64>;
    /// Removes a follower whose subscription the push service said is gone.
    async fn remove_follower(&self, follower_id: FollowerId) -> StoreResult<()>;
    /// A follower's keys (`p256dh`, `auth`), if it still follows.
    async fn follower_push_keys(
        &self,
        follower_id: FollowerId,
    ) -> StoreResult<Option<(String, String)>>;
    /// Up to `limit` of the practice's followers with row ids above `after`, in row order
    /// (fan-out reads them a page at a time).
    async fn followers_page(
        &self,
        practice_id: PracticeId,
        after: FollowerId,
        limit: usize,
    ) -> StoreResult<Vec<Follower>>;
    /// How many followers the practice has.
    async fn follower_count(&self, practice_id: PracticeId) -> StoreResult<u64>;
}
