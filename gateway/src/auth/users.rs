//! Console users: Argon2id password hashes, and a check that costs the same whether or not
//! the name exists.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;

use super::session::random_token;
use crate::domain::UserId;
use crate::store::{AccessStore, AuditEntry, ConsoleStore, KeyScope, StoreError, User};

/// Why a user could not be added.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The password is too short to be safe.
    #[error("the password must be at least 12 characters")]
    WeakPassword,
    /// The name is empty or has odd characters.
    #[error("the username must be 1 to 64 letters, digits, dots, dashes or underscores")]
    BadName,
    /// Hashing failed.
    #[error("could not hash the password: {0}")]
    Hash(String),
    /// The store failed (or the name is taken).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a console user with an Argon2id hash of `password`.
pub async fn create_user(
    store: &dyn ConsoleStore,
    username: &str,
    password: &str,
    scope: KeyScope,
) -> Result<User, UserError> {
    let name_ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !name_ok {
        return Err(UserError::BadName);
    }
    if password.chars().count() < 12 {
        return Err(UserError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| UserError::Hash(e.to_string()))?
        .to_string();
    Ok(store
        .create_user(username, &hash, scope, Utc::now())
        .await?)
}

/// Most users a list shows.
pub const LIST_LIMIT: i64 = 1000;

/// Disables a console user and ends their sessions: every instance refuses their cookie
/// from its next request, and they can no longer sign in. `None` if there is no such user;
/// `Some(false)` if they were already disabled.
pub async fn disable_user<S>(store: &S, id: UserId, actor: &str) -> Result<Option<bool>, StoreError>
where
    S: ConsoleStore + AccessStore + ?Sized,
{
    let Some(user) = store.user_summary(id).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    let disabled = store.disable_user(id, now).await?;
    if disabled {
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: "user.disabled".into(),
            practice_id: match user.scope {
                KeyScope::Practice(id) => Some(id),
                KeyScope::Admin | KeyScope::Federation(_) => None,
            },
            subject: Some(format!("user:{}", user.username)),
            details: None,
        };
        store.audit(&entry, now).await?;
    }
    Ok(Some(disabled))
}

/// Checks a password against a user's stored hash.
pub fn password_matches(user: &User, password: &str) -> bool {
    verifies(&user.password_hash, password)
}

/// The user, if there is one and the password is theirs. An unknown username costs the
/// same Argon2 verification as a wrong password, so timing does not tell which names exist.
pub fn authenticate(user: Option<User>, password: &str) -> Option<User> {
    match user {
        Some(user) => password_matches(&user, password).then_some(user),
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| {
                Argon2::default()
                    .hash_password(random_token().as_bytes(), &SaltString::generate(&mut OsRng))
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            verifies(dummy, password);
            None
        }
    }
}

fn verifies(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        let user = User {
            id: crate::domain::UserId::new(1),
            username: "a".into(),
            password_hash: hash,
            scope: KeyScope::Admin,
        };
        assert!(password_matches(&user, "correct horse battery"));
        assert!(!password_matches(&user, "correct horse batterY"));
        assert!(authenticate(Some(user.clone()), "correct horse battery").is_some());
        assert!(authenticate(Some(user), "wrong").is_none());
        // An unknown name is refused after the same work as a wrong password.
        let started = std::time::Instant::now();
        assert!(authenticate(None, "correct horse battery").is_none());
        let unknown = started.elapsed();
        assert!(
            unknown >= std::time::Duration::from_millis(1),
            "{unknown:?}"
        );
    }
}
