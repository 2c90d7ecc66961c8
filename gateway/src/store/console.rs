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
    /// A user by sign-in name.
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
    /// The live session with this token hash, with its user.
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session (sign-out), and any that have expired.
    async fn end_session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<()>;
}
