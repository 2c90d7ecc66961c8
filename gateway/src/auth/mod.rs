//! Who is calling and what they may do. API keys (issued once, stored hashed), console users
//! (Argon2id passwords) and their sessions all end in one [`Principal`], which holds every
//! access rule: which practices it sees, what needs an administrator, which templates it may
//! read and change. The API's extractor and the console's pages ask it; neither has rules
//! of its own.

/// API keys: issued once, stored as a SHA-256 hash, scoped to one practice or the admin role.
pub mod keys;
/// The caller of a request, and every rule about what it may see and change.
pub mod principal;
/// Console sessions: a random cookie token kept by its hash, and a CSRF token per session.
pub mod session;
/// Console users: Argon2id password hashes, checked in constant time whoever asks.
pub mod users;

pub use keys::{hash_key, issue_expiring_key, issue_key, revoke_key, rotate_key};
pub use principal::{Denied, Principal, Unnamed};
pub use users::{create_user, disable_user, UserError};
