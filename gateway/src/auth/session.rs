//! Console sessions: kept by the hash of a random cookie token, with a CSRF token per session
//! that every form and script call must echo.

use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use chrono::{Duration, Utc};
use rand::RngCore;

use super::hash_key;
use crate::store::{ConsoleStore, SessionRecord, StoreError, User};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "gw_session";

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 8;

/// A fresh random token, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Starts a session for `user`; returns the cookie token (shown to the browser only).
pub async fn start(store: &dyn ConsoleStore, user: &User) -> Result<String, StoreError> {
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

/// Ends the session of this cookie token (sign-out), and any that have expired.
pub async fn end(store: &dyn ConsoleStore, token: &str) -> Result<(), StoreError> {
    store.end_session(&hash_key(token), Utc::now()).await
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
    store: &dyn ConsoleStore,
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
}
