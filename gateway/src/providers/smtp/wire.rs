//! One mail transaction on an open connection: MAIL FROM, RCPT TO and DATA, pipelined
//! (RFC 2920) where the server offers it, then the content and its ending `.` in one write.
//!
//! lettre's connection writes each command and waits for its reply (four round trips a
//! message), and writes the content and the ending `.` as two writes. With Nagle's algorithm
//! on (lettre leaves it on) the second, small write waits until the server acknowledges the
//! first, and a server that answers only after the `.` acknowledges late (delayed ACK, about
//! 40 ms on Linux): that alone held each connection to a few dozen messages a second. So the
//! commands go as one group and the content, dot-stuffed here, as one write; both still go
//! through lettre's connection (`command` writes any text and reads one reply).

use std::fmt;

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;

use super::Stage;

/// A message ready for the wire.
pub(super) struct Content {
    /// Dot-stuffed (RFC 5321 4.5.2) and ended with `CRLF . CRLF`, when the message is text
    /// (always, for what lettre builds: its encodings are 7-bit).
    wire: Option<String>,
    /// The message as built, for the rare one that is not UTF-8 (lettre's own path).
    raw: Vec<u8>,
    /// Whether the message has 8-bit bytes (then `BODY=8BITMIME` where offered).
    eight_bit: bool,
}

impl Content {
    /// Prepares `email` (headers and body, CRLF line endings) for DATA.
    pub(super) fn new(email: Vec<u8>) -> Self {
        let eight_bit = !email.is_ascii();
        match std::str::from_utf8(&email) {
            Ok(text) => Self {
                wire: Some(dot_stuffed(text)),
                raw: Vec::new(),
                eight_bit,
            },
            Err(_) => Self {
                wire: None,
                raw: email,
                eight_bit,
            },
        }
    }
}

/// `email` as DATA carries it: a `.` doubled at the start of each line, then `CRLF . CRLF`
/// (lettre's framing, so the bytes on the wire are the same as through its `message`).
fn dot_stuffed(email: &str) -> String {
    let mut wire = String::with_capacity(email.len() + 16);
    if email.starts_with('.') {
        wire.push('.');
    }
    let mut rest = email;
    while let Some(at) = rest.find("\r\n.") {
        wire.push_str(&rest[..at + 2]);
        wire.push('.');
        rest = &rest[at + 2..];
    }
    wire.push_str(rest);
    wire.push_str("\r\n.\r\n");
    wire
}

/// MAIL FROM, RCPT TO and DATA written at once (each command's text ends with CRLF).
struct Group<'a>(&'a Mail, &'a Rcpt);

impl fmt::Display for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.0, self.1, Data)
    }
}

/// Text written as it is: the content, already framed.
struct Framed<'a>(&'a str);

impl fmt::Display for Framed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Sends one message to one recipient on `connection`. `pipelining`: the server offered
/// PIPELINING. The content is written only after MAIL, RCPT and DATA were all accepted, so
/// an error at any of those stages means nothing was delivered.
pub(super) async fn transaction(
    connection: &mut AsyncSmtpConnection,
    pipelining: bool,
    from: &Address,
    to: &Address,
    content: &Content,
) -> Result<(), (Stage, SmtpError)> {
    let mut parameters = Vec::new();
    if content.eight_bit
        && connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
    {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(from.clone()), parameters);
    let rcpt = Rcpt::new(to.clone(), Vec::new());
    if pipelining {
        // RFC 2920: a group may end with DATA; the replies come back in order. A refusal
        // stops here: the connection is then closed, never reused, so the replies left
        // unread do not matter.
        connection
            .command(Group(&mail, &rcpt))
            .await
            .map_err(|e| (Stage::Mail, e))?;
        connection
            .read_response()
            .await
            .map_err(|e| (Stage::Rcpt, e))?;
        connection
            .read_response()
            .await
            .map_err(|e| (Stage::Data, e))?;
    } else {
        connection
            .command(mail)
            .await
            .map_err(|e| (Stage::Mail, e))?;
        connection
            .command(rcpt)
            .await
            .map_err(|e| (Stage::Rcpt, e))?;
        connection
            .command(Data)
            .await
            .map_err(|e| (Stage::Data, e))?;
    }
    match &content.wire {
        Some(wire) => connection.command(Framed(wire)).await,
        None => connection.message(&content.raw).await,
    }
    .map_err(|e| (Stage::Data, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_end_is_marked() {
        assert_eq!(dot_stuffed("a\r\nb"), "a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuffed(".a"), "..a\r\n.\r\n");
        assert_eq!(
            dot_stuffed("a\r\n.\r\n.b\r\n"),
            "a\r\n..\r\n..b\r\n\r\n.\r\n"
        );
        assert_eq!(dot_stuffed("a\r\r\n.b"), "a\r\r\n..b\r\n.\r\n");
        // Only a dot after CRLF starts a line, as lettre reads it.
        assert_eq!(dot_stuffed("a\n.b\r.c"), "a\n.b\r.c\r\n.\r\n");
        assert_eq!(dot_stuffed(""), "\r\n.\r\n");
    }

    #[test]
    fn content_that_is_not_utf8_keeps_lettres_path() {
        let content = Content::new(vec![b'a', 0xff, b'\r', b'\n']);
        assert!(content.wire.is_none());
        assert!(content.eight_bit);
        let content = Content::new(b"Subject: x\r\n\r\nhi\r\n".to_vec());
        assert!(!content.eight_bit);
        assert_eq!(
            content.wire.as_deref(),
            Some("Subject: x\r\n\r\nhi\r\n\r\n.\r\n")
        );
    }
}
