//! One-time codes: six random digits texted to a staff number, kept only as a hash bound to
//! the proposal, and compared in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::domain::ProposalId;
use crate::receipts::same_signature;

/// Digits in a code: one in a million to guess, and short enough to type on a phone.
pub const CODE_DIGITS: usize = 6;

/// A fresh code, uniformly random, leading zeros kept.
pub fn new_code() -> String {
    let n: u32 = rand::thread_rng().gen_range(0..1_000_000);
    format!("{n:0width$}", width = CODE_DIGITS)
}

/// The stored hash of `code` for `proposal`: a code copied onto another proposal's row
/// does not match it.
pub fn hash(proposal: ProposalId, code: &str) -> String {
    hex::encode(Sha256::digest(format!("proposal:{proposal}:{code}")))
}

/// Whether `given` is the code whose hash is `stored`, in constant time.
pub fn matches(stored: &str, proposal: ProposalId, given: &str) -> bool {
    same_signature(stored, &hash(proposal, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_bound_to_their_proposal() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), CODE_DIGITS);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        let code = "012345";
        let stored = hash(ProposalId::new(7), code);
        assert!(matches(&stored, ProposalId::new(7), code));
        assert!(!matches(&stored, ProposalId::new(8), code));
        assert!(!matches(&stored, ProposalId::new(7), "012346"));
        assert!(!matches(&stored, ProposalId::new(7), "12345"));
        assert!(!stored.contains(code));
    }
}
