//! Anonymous push followers: browsers that asked a practice for its practice-wide notices
//! without being linked to a patient.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// A browser following a practice's notices, as fan-out needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Row id.
    pub id: i64,
    /// The browser's push endpoint.
    pub endpoint: String,
}

/// Where anonymous followers are kept.
#[async_trait]
pub trait FollowerStore: Send + Sync {
    /// Adds a follower, or refreshes the keys of the same endpoint; returns its row id.
    async fn add_follower(
        &self,
        practice_id: i64,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Removes the practice's follower with this endpoint (the browser said stop); how many.
    async fn remove_follower_endpoint(&self, practice_id: i64, endpoint: &str) -> StoreResult<u64>;
    /// Removes a follower whose subscription the push service said is gone.
    async fn remove_follower(&self, follower_id: i64) -> StoreResult<()>;
    /// A follower's keys (`p256dh`, `auth`), if it still follows.
    async fn follower_push_keys(&self, follower_id: i64) -> StoreResult<Option<(String, String)>>;
    /// Every follower of the practice, in row order.
    async fn followers_of(&self, practice_id: i64) -> StoreResult<Vec<Follower>>;
}
