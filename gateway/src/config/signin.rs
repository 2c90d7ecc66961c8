//! `[signin]`: throttling console sign-in failures, and how many password checks run at
//! once; the console's sign-in guard reads it.

use serde::{Deserialize, Serialize};

/// `[signin]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// Failed sign-ins for one user name before it is locked.
    pub free_failures: u32,
    /// Failed sign-ins from one client address before it is locked.
    pub address_failures: u32,
    /// The first lock, in seconds; each further failure doubles it.
    pub lock_seconds: u64,
    /// The longest lock, in seconds; counts are forgotten after this long without a failure.
    pub max_lock_seconds: u64,
    /// Password checks (Argon2) running at once.
    pub hash_concurrency: usize,
    /// Sign-ins waiting for a password check before the next is refused with 503.
    pub hash_queue: usize,
    /// Names and addresses tracked at once (memory bound); beyond it, unlocked ones are
    /// forgotten first.
    pub max_tracked: usize,
}

impl Default for SigninConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            address_failures: 20,
            lock_seconds: 60,
            max_lock_seconds: 900,
            hash_concurrency: 2,
            hash_queue: 16,
            max_tracked: 100_000,
        }
    }
}
