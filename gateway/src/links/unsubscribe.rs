//! Unsubscribe tokens: the contact's row id and a truncated HMAC-SHA256 of it over the
//! prefix `unsubscribe:`, so a link opts out exactly one address and cannot be guessed for
//! another.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::ContactId;
use crate::receipts::same_signature;

/// The token in an email's one-click unsubscribe link: the contact's id and an HMAC of it,
/// so a link opts out exactly one address and cannot be guessed for another.
pub fn unsubscribe_token(secret: &str, contact_id: ContactId) -> String {
    format!(
        "{contact_id}.{}",
        &unsubscribe_mac(secret, contact_id)[..32]
    )
}

/// The contact an unsubscribe token names, if its signature is right.
pub fn read_unsubscribe_token(secret: &str, token: &str) -> Option<ContactId> {
    let (id, mac) = token.split_once('.')?;
    let contact_id = ContactId::new(id.parse().ok()?);
    let expected = unsubscribe_mac(secret, contact_id);
    same_signature(&expected[..32], mac).then_some(contact_id)
}

fn unsubscribe_mac(secret: &str, contact_id: ContactId) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("unsubscribe:{contact_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_tokens_name_one_contact_and_resist_forgery() {
        let token = unsubscribe_token("secret", ContactId::new(42));
        assert_eq!(
            read_unsubscribe_token("secret", &token),
            Some(ContactId::new(42))
        );
        assert_eq!(read_unsubscribe_token("other", &token), None);
        let forged = token.replacen("42.", "43.", 1);
        assert_eq!(read_unsubscribe_token("secret", &forged), None);
        assert_eq!(read_unsubscribe_token("secret", "junk"), None);
    }
}
