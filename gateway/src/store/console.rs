//! Console users and their sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{KeyScope, StoreResult};
use crate::domain::UserId;

/// Someone who signs in to the console.
#[derive(Debug, Clone)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Sign-in name.
    pub username: String,
    /// Argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// Whose pages they may see: every practice, or one.
    pub scope: KeyScope,
}

/// A console user as an administrator sees them in a list (no password hash).
#[derive(Debug, Clone)]
pub struct UserSummary {
    /// Row id.
    pub id: UserId,
    /// Sign-in name.
    pub username: String,
    /// Whose pages they may see.
    pub scope: KeyScope,
    /// When they were added.
    pub created_at: DateTime<Utc>,
    /// When they were disabled, if they were: they can no longer sign in.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A signed-in session with its user.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The user.
    pub user: User,
    /// The token every form and script call must echo.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Console users and their sessions.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Adds a user; `Duplicate` if the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        scope: KeyScope,
        now: DateTime<Utc>,
    ) -> StoreResult<User>;
    /// Every user, by name, up to `limit`.
    async fn users(&self, limit: i64) -> StoreResult<Vec<UserSummary>>;
    /// Disables a user at `now` and ends all their sessions, in one transaction; false if
    /// there is no such user or they were already disabled.
    async fn disable_user(&self, id: UserId, now: DateTime<Utc>) -> StoreResult<bool>;
    /// A user by row id, disabled or not.
    async fn user_summary(&self, id: UserId) -> StoreResult<Option<UserSummary>>;
    /// A user who may sign in (not disabled) by sign-in name.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// Starts a session for `user_id` under the hash of its cookie token.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The live session with this token hash, with its user (who is not disabled).
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session (sign-out), and any that have expired.
    async fn end_session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<()>;
}
