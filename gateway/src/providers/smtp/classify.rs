//! How an SMTP failure maps onto the retry policy's classes, from the stage it happened at and
//! the server's reply code (with its enhanced status code, RFC 3463, where given).

use std::error::Error as _;

use lettre::transport::smtp::Error as SmtpError;

use super::Stage;
use crate::providers::SendError;

/// Turns a failure into the retry policy's class, logging what operators must fix.
pub(super) fn classify(provider: &str, stage: Stage, error: &SmtpError) -> SendError {
    let Some(code) = error.status() else {
        return classify_without_reply(provider, stage, error);
    };
    let code = code.severity as u16 * 100 + code.category as u16 * 10 + code.detail as u16;
    let enhanced = enhanced_status(error);
    let shown = match enhanced {
        Some((class, subject, detail)) => format!("{code} {class}.{subject}.{detail}"),
        None => code.to_string(),
    };
    let reason = format!("SMTP server refused {}: {shown}", stage.as_str());
    if error.is_transient() {
        return SendError::Retryable {
            reason,
            retry_after: None,
        };
    }
    let auth_failure = stage == Stage::Auth
        || matches!(code, 530 | 534 | 535 | 538)
        || matches!(enhanced, Some((_, 7, 8 | 9 | 11 | 12 | 14)));
    if auth_failure {
        tracing::error!(
            provider = %provider,
            code = %shown,
            "SMTP authentication failed: check `username` and the password in `password_env`"
        );
        return SendError::Permanent { reason };
    }
    match stage {
        Stage::Rcpt | Stage::Data if names_bad_recipient(stage, code, enhanced) => {
            SendError::BadRecipient { reason }
        }
        Stage::Connect | Stage::Mail => {
            tracing::error!(
                provider = %provider,
                code = %shown,
                stage = stage.as_str(),
                "SMTP server refuses this gateway or its sender address: check `from` and \
                 the relay's settings"
            );
            SendError::Permanent { reason }
        }
        _ => SendError::Permanent { reason },
    }
}

/// A failure with no SMTP reply code: network, TLS, unreadable replies, local refusals.
fn classify_without_reply(provider: &str, stage: Stage, error: &SmtpError) -> SendError {
    let retryable = |reason: String| SendError::Retryable {
        reason,
        retry_after: None,
    };
    if error.is_tls() {
        return retryable(format!("{}: {error}", stage.as_str()));
    }
    if error.is_response() {
        // The text could echo what we sent, so it is not repeated.
        return retryable(format!(
            "unreadable reply from SMTP server ({})",
            stage.as_str()
        ));
    }
    if error.is_client() {
        if stage == Stage::Auth {
            tracing::error!(
                provider = %provider,
                "SMTP authentication impossible: {error}"
            );
            return SendError::Permanent {
                reason: format!("AUTH: {error}"),
            };
        }
        if stage == Stage::Connect {
            // Such as STARTTLS not offered: could be an attacker on the path, so retry.
            return retryable(format!("{}: {error}", stage.as_str()));
        }
        return SendError::Permanent {
            reason: format!("{}: {error}", stage.as_str()),
        };
    }
    retryable(format!("{}: {error}", stage.as_str()))
}

/// Whether a permanent refusal at RCPT (or, for a single recipient, at the end of DATA) is about
/// the recipient's address rather than our relay, our sender or the content.
fn names_bad_recipient(stage: Stage, code: u16, enhanced: Option<(u16, u16, u16)>) -> bool {
    match enhanced {
        // X.1.x addressing (but X.1.7 and X.1.8 are the sender's), X.2.1 mailbox disabled,
        // X.4.4 no route to the recipient's domain.
        Some((_, 1, detail)) => detail != 7 && detail != 8,
        Some((_, 2, 1)) | Some((_, 4, 4)) => true,
        Some(_) => false,
        // Without an enhanced code only RCPT's mailbox replies say so: 550 mailbox unavailable,
        // 551 user not local, 553 mailbox name not allowed.
        None => stage == Stage::Rcpt && matches!(code, 550 | 551 | 553),
    }
}

/// The enhanced status code (RFC 3463) at the start of the reply text, such as `5.1.1`.
fn enhanced_status(error: &SmtpError) -> Option<(u16, u16, u16)> {
    let text = error.source()?.to_string();
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class: u16 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some((class, subject, detail))
}
