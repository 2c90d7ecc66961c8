//! What the HTTP provider kinds share: a client with timeouts, Retry-After, and the
//! classification of transport failures.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{Accepted, SendError};

/// Default time allowed for one provider request, connection included.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// A client for one provider: its own timeout, no redirects (a provider that redirects a
/// POST is misconfigured), rustls for TLS.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder(timeout)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// The settings of [`client`], for a kind that adds its own (see `outbound`).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "gp-notification-gateway/",
            env!("CARGO_PKG_VERSION")
        ))
}

/// The wait a `Retry-After` header asks for: delta-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A request that got no HTTP answer: timeouts, refused or reset connections and broken
/// bodies are all worth retrying.
pub fn transport_error(provider: &str, error: &reqwest::Error) -> SendError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "sent a body that could not be read"
    } else {
        "request failed"
    };
    SendError::Retryable {
        reason: format!("{provider}: {what}: {error}"),
        retry_after: None,
    }
}

/// A non-2xx answer, for the kind to classify by its own rules.
pub struct Refusal {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The wait a `Retry-After` header asked for.
    pub retry_after: Option<Duration>,
    /// The body (empty if it could not be read).
    pub body: axum::body::Bytes,
}

/// Reads a provider's answer: 2xx is accepted with the reference in the JSON body's
/// `reference_field`; anything else is handed back as a [`Refusal`].
pub async fn answer(
    provider: &str,
    message_id: i64,
    response: reqwest::Response,
    reference_field: &str,
) -> Result<Accepted, Refusal> {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await;
    if status.is_success() {
        return Ok(accepted(provider, message_id, body, reference_field));
    }
    Err(Refusal {
        status,
        retry_after,
        body: body.unwrap_or_default(),
    })
}

/// A 2xx answer: the provider has the message. Its reference is the JSON body's `field`
/// (a string or number). A body that cannot be read must not become a retry, which could
/// send the message twice, so it is accepted without a reference (receipts for it will
/// not match) and a warning says so.
fn accepted(
    provider: &str,
    message_id: i64,
    body: Result<axum::body::Bytes, reqwest::Error>,
    field: &str,
) -> Accepted {
    let reference = body
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| match v.get(field)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    if reference.is_none() {
        tracing::warn!(
            provider,
            message = message_id,
            field,
            "the provider accepted the message but its answer had no readable reference"
        );
    }
    Accepted {
        provider_ref: reference,
    }
}

/// Checks that setting `key` is an absolute http(s) URL.
pub fn check_http_url(key: &str, value: &str) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(_) => Err(format!("`{key}` must be an http:// or https:// URL")),
        Err(e) => Err(format!("`{key}` is not a URL: {e}")),
    }
}

/// Provider error text made safe to log and store: runs of digits that could be a phone
/// number are masked (Twilio echoes the `To` number), and the text is cut to 200 characters.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(200));
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().filter(|c| c.is_ascii_digit()).count() >= 7 {
            out.push_str("[number]");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        let continues = c.is_ascii_digit() || (!digits.is_empty() && matches!(c, ' ' | '-'));
        if continues || (c == '+' && digits.is_empty()) {
            digits.push(c);
        } else {
            // Keep a trailing separator outside the masked run.
            let tail: String = {
                let kept = digits.trim_end_matches([' ', '-']).len();
                digits.split_off(kept)
            };
            flush(&mut digits, &mut out);
            out.push_str(&tail);
            out.push(c);
        }
    }
    let tail: String = {
        let kept = digits.trim_end_matches([' ', '-']).len();
        digits.split_off(kept)
    };
    flush(&mut digits, &mut out);
    out.push_str(&tail);
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn scrub_masks_numbers_but_keeps_codes() {
        assert_eq!(
            scrub("The 'To' number +44 7700 900123 is not a valid phone number."),
            "The 'To' number [number] is not a valid phone number."
        );
        assert_eq!(scrub("Error 21211 at 12:30"), "Error 21211 at 12:30");
        assert_eq!(scrub("call 07700900123"), "call [number]");
        assert_eq!(scrub("a - b"), "a - b");
        assert!(scrub(&"x".repeat(500)).len() <= 203);
    }
}
