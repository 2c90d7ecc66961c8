//! Federations: named sets of practices that an API key or a console user may be scoped to.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{FederationId, PracticeId};

/// The most practices one federation may have (the largest integrated care boards have
/// a few hundred; a federation's principal reads its members on every request).
pub const MAX_FEDERATION_PRACTICES: usize = 2000;

/// A stored federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// Row id.
    pub id: FederationId,
    /// Its name, unique (such as "North Leeds PCN").
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Where federations and their member practices are kept.
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// Creates a federation with these member practices, in one transaction.
    /// `StoreError::Duplicate` if the name is taken.
    async fn create_federation(
        &self,
        name: &str,
        members: &[PracticeId],
        now: DateTime<Utc>,
    ) -> StoreResult<Federation>;
    /// Every federation, by name.
    async fn federations(&self) -> StoreResult<Vec<Federation>>;
    /// The federation `id`.
    async fn federation(&self, id: FederationId) -> StoreResult<Option<Federation>>;
    /// The federation named `name`.
    async fn federation_by_name(&self, name: &str) -> StoreResult<Option<Federation>>;
    /// Its member practices, in id order (none if it does not exist).
    async fn federation_members(&self, id: FederationId) -> StoreResult<Vec<PracticeId>>;
    /// Replaces its member practices with `members`, in one transaction; false if there is
    /// no such federation.
    async fn replace_federation_members(
        &self,
        id: FederationId,
        members: &[PracticeId],
    ) -> StoreResult<bool>;
}
