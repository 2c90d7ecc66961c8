//! What the HTTP provider kinds share: a client with timeouts, Retry-After, and the
//! classification of transport failures.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{Accepted, SendError};
use crate::config::PEER_DELAY_CEILING;

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

/// The wait a `Retry-After` header asks for: delta-seconds or an HTTP date, at most
/// [`PEER_DELAY_CEILING`] (dispatch caps it further by its settings).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, chrono::Utc::now(), PEER_DELAY_CEILING)
}

/// Reads a `Retry-After` value (RFC 9110 section 10.2.3) as of `now`: delta-seconds, or an
/// HTTP date in any of its three forms (IMF-fixdate, RFC 850, asctime). The wait is at most
/// `cap`: a number too large for any integer is the cap, a date in the past is no wait.
/// `None` for anything else (negative numbers, garbage). Never panics, whatever the text.
pub fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
    cap: Duration,
) -> Option<Duration> {
    let value = value.trim();
    // Real headers are short; a long one is not worth parsing.
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: a number of seconds, saturating rather than overflowing.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(clamp_peer_delay(Duration::from_secs(seconds), cap));
    }
    let at = http_date(value)?;
    let wait = at.signed_duration_since(now);
    let wait = wait.to_std().unwrap_or(Duration::ZERO);
    Some(clamp_peer_delay(wait, cap))
}

/// An HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, read as RFC 2822), RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) or asctime (`Sun Nov  6 08:49:37 1994`).
fn http_date(value: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&chrono::Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

/// A wait a peer asked for, cut to `cap`: the one place a peer's number becomes a wait.
pub fn clamp_peer_delay(wait: Duration, cap: Duration) -> Duration {
    wait.min(cap).min(PEER_DELAY_CEILING)
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
    let reference = body.ok().and_then(|b| reference_in(&b, field));
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

/// The string or number at `field` of a JSON object, as text: what a provider's answer
/// calls its reference. `None` if the body is not a JSON object, lacks the field, or has
/// something else there. Read in one pass without building the whole answer in memory
/// (other fields are skipped); as with a parsed object, a repeated field counts last.
pub fn reference_in(body: &[u8], field: &str) -> Option<String> {
    use serde::de::Deserializer;
    let mut reader = serde_json::Deserializer::from_slice(body);
    let reference = (&mut reader)
        .deserialize_map(reference::Object(field))
        .ok()?;
    reader.end().ok()?;
    reference
}

/// The visitors of [`reference_in`].
mod reference {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// An object whose field named `.0` is wanted.
    pub struct Object<'f>(pub &'f str);

    impl<'de> Visitor<'de> for Object<'_> {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(wanted) = map.next_key_seed(Key(self.0))? {
                if wanted {
                    found = map.next_value_seed(Scalar)?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    /// A key, compared with the wanted field's name without keeping it.
    struct Key<'f>(&'f str);

    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = bool;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Key<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a field name")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }

    /// A string or a number as text; anything else (skipped whole) is no reference.
    struct Scalar;

    impl<'de> DeserializeSeed<'de> for Scalar {
        type Value = Option<String>;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Scalar {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // As a parsed JSON number prints (`1.0` stays `1.0`).
            Ok(serde_json::Number::from_f64(v).map(|n| n.to_string()))
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
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
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&headers), Some(PEER_DELAY_CEILING));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn retry_after_is_clamped_in_every_form() {
        let now = at("1994-11-06T08:49:00Z");
        let parse = |v: &str| parse_retry_after(v, now, HOUR);
        // Delta seconds: small, at the cap, huge, beyond u64, with spaces.
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 3600 "), Some(HOUR));
        assert_eq!(parse("1000000000"), Some(HOUR));
        assert_eq!(parse("18446744073709551615"), Some(HOUR));
        assert_eq!(parse("99999999999999999999999999999"), Some(HOUR));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        // HTTP dates in their three forms, 37 s after `now`.
        let soon = Some(Duration::from_secs(37));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), soon);
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), soon);
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), soon);
        // Far in the future: the cap; in the past: no wait.
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT"), Some(HOUR));
        assert_eq!(parse("Sat, 01 Jan 1994 00:00:00 GMT"), Some(Duration::ZERO));
        // Negative, fractional, garbage, empty, overlong: no wait asked for.
        for bad in [
            "-1",
            "-18446744073709551616",
            "1.5",
            "soon",
            "",
            "  ",
            "1e9",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"9".repeat(100)), None);
    }

    #[test]
    fn a_configured_cap_above_the_ceiling_is_the_ceiling() {
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(clamp_peer_delay(huge, huge), PEER_DELAY_CEILING);
        assert_eq!(clamp_peer_delay(huge, HOUR), HOUR);
        assert_eq!(
            clamp_peer_delay(Duration::from_secs(5), HOUR),
            Duration::from_secs(5)
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any header text: no panic, and never a wait over the cap.
            #[test]
            fn any_text_gives_no_wait_or_one_within_the_cap(
                value in ".{0,80}",
                cap_seconds in 0u64..1_000_000,
                now_seconds in 0i64..4_000_000_000,
            ) {
                let cap = Duration::from_secs(cap_seconds);
                let now = chrono::DateTime::from_timestamp(now_seconds, 0).unwrap();
                if let Some(wait) = parse_retry_after(&value, now, cap) {
                    prop_assert!(wait <= cap);
                }
            }

            /// Numbers and dates as peers write them, including absurd ones.
            #[test]
            fn numbers_and_dates_stay_within_the_cap(
                seconds in any::<u64>(),
                extra_digits in "[0-9]{0,30}",
                year in 0u32..100_000,
                day in 1u32..32,
            ) {
                let now = chrono::Utc::now();
                for value in [
                    seconds.to_string(),
                    format!("{seconds}{extra_digits}"),
                    format!("Sun, {day:02} Nov {year} 08:49:37 GMT"),
                    format!("Sunday, {day:02}-Nov-{:02} 08:49:37 GMT", year % 100),
                    format!("Sun Nov {day:2} 08:49:37 {year}"),
                ] {
                    if let Some(wait) = parse_retry_after(&value, now, HOUR) {
                        prop_assert!(wait <= HOUR, "{value:?} gave {wait:?}");
                    }
                }
                let whole = parse_retry_after(&seconds.to_string(), now, HOUR);
                prop_assert_eq!(whole, Some(Duration::from_secs(seconds).min(HOUR)));
            }
        }
    }

    #[test]
    fn references_read_as_a_parsed_object_would() {
        let parsed = |body: &str, field: &str| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| match v.get(field)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        for (body, field) in [
            (r#"{"sid":"SMabc","status":"queued"}"#, "sid"),
            (r#"{"status":"queued","sid":"SM\u0041bc"}"#, "sid"),
            (r#"{"id":42}"#, "id"),
            (r#"{"id":-7}"#, "id"),
            (r#"{"id":1.5}"#, "id"),
            (r#"{"id":1.0}"#, "id"),
            (r#"{"id":null}"#, "id"),
            (r#"{"id":true}"#, "id"),
            (r#"{"id":{"sid":"x"}}"#, "id"),
            (r#"{"id":["x"]}"#, "id"),
            (r#"{"other":{"id":"nested"},"id":"top"}"#, "id"),
            (r#"{"id":"first","id":"last"}"#, "id"),
            (r#"{"sid":"x"}"#, "id"),
            (r#"["id"]"#, "id"),
            (r#""id""#, "id"),
            (r#"{"id":"x"} trailing"#, "id"),
            (r#"{"id":"x","#, "id"),
            ("", "id"),
            ("not json", "id"),
        ] {
            assert_eq!(
                reference_in(body.as_bytes(), field),
                parsed(body, field),
                "{body}"
            );
        }
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
