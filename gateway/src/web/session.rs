//! Console sign-in: Argon2id password hashes, sessions kept by the hash of a random cookie
//! token, and a CSRF token per session that every form and script call must echo.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use chrono::{Duration, Utc};
use rand::RngCore;

use crate::api::hash_key;
use crate::store::{KeyScope, SessionRecord, Store, StoreError, User};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "gw_session";

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 8;

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
    store: &dyn Store,
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

/// A fresh random token, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Starts a session for `user`; returns the cookie token (shown to the browser only).
pub async fn start(store: &dyn Store, user: &User) -> Result<String, StoreError> {
    let token = random_token();
    let now = Utc::now();
    store
        .create_session(
            &hash_key(&token),
            user.id,
            &random_token(),
            now,
            now + Duration::hours(SESSION_HOURS),
        )
        .await?;
    Ok(token)
}

/// The cookie token in a request's `Cookie` headers, if any.
pub fn token_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// The live session a request's cookie names.
pub async fn current(
    store: &dyn Store,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, StoreError> {
    match token_in(headers) {
        Some(token) => store.session(&hash_key(&token), Utc::now()).await,
        None => Ok(None),
    }
}

/// The `Set-Cookie` value for a session token (`Secure` when the gateway is served over
/// https), or one that clears it when `token` is empty.
pub fn cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_HOURS * 3600
    };
    format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(session: &SessionRecord, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (a, b) = (session.csrf_token.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_flagged() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; gw_session=abc; b=2".parse().unwrap());
        assert_eq!(token_in(&headers).as_deref(), Some("abc"));
        let set = cookie("abc", true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("Secure")
        );
        assert!(cookie("", false).contains("Max-Age=0"));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        let user = User {
            id: 1,
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
