//! A practice's public status: `/p/{ods}` (no sign-in) with the current status, since when,
//! its headline and details and the last notices; `/p/{ods}/feed.atom` (Atom 1.0); and a
//! banner for the practice's own website, as an HTML fragment (`/p/{ods}/banner.html`) or
//! a small script-free page to put in an iframe (`/p/{ods}/banner`).
//!
//! Only what the practice posted for everyone is shown: kinds, headlines, details and
//! times, never a patient, a contact or a message. Answers carry a short public max-age and
//! an ETag (a `304` for `If-None-Match`), so a CDN in front takes the crowd on the worst
//! day. Bilingual practices show Welsh first, then English.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use tera::Context;

use super::pages::{error_page, render};
use crate::app::AppState;
use crate::domain::{Language, OdsCode, StatusKind};
use crate::render::{status_wording, uk_date_time};
use crate::store::{Broadcast, Practice, StoreError};

/// Notices listed on the page and in the feed.
const NOTICES: i64 = 10;
/// How long browsers and CDNs may keep an answer without asking again, in seconds.
const MAX_AGE: u32 = 60;

/// The practice, and its notices newest first; `None` for an unknown ODS code.
async fn practice_and_notices(
    state: &AppState,
    ods: &str,
) -> Result<Option<(Practice, Vec<Broadcast>)>, StoreError> {
    let Ok(ods) = OdsCode::parse(ods) else {
        return Ok(None);
    };
    let Some(practice) = state.store.practice_by_ods(&ods).await? else {
        return Ok(None);
    };
    let notices = state.store.recent_broadcasts(practice.id, NOTICES).await?;
    Ok(Some((practice, notices)))
}

/// What a page shows of one notice, in the languages the practice speaks.
fn notice_json(practice: &Practice, notice: &Broadcast) -> serde_json::Value {
    let languages: &[Language] = if practice.bilingual {
        &[Language::Welsh, Language::English]
    } else {
        &[Language::English]
    };
    let wording: Vec<_> = languages
        .iter()
        .map(|language| {
            let (headline, details) = status_wording(notice, *language);
            json!({ "lang": language.as_str(), "headline": headline, "details": details })
        })
        .collect();
    json!({
        "kind": notice.kind.as_str(),
        "label": label(notice.kind),
        "wording": wording,
        "at": uk_date_time(notice.created_at, practice.timezone),
        "at_iso": notice.created_at.to_rfc3339(),
        "until": notice.ends_at.map(|t| uk_date_time(t, practice.timezone)),
        "replaced": notice.superseded_by.is_some(),
    })
}

/// The status in a few words, for the page's heading.
fn label(kind: StatusKind) -> &'static str {
    match kind {
        StatusKind::Closed => "Closed",
        StatusKind::PhonesDown => "Phone lines down",
        StatusKind::SystemsDown => "Computer systems down",
        StatusKind::Restored => "Normal service",
        StatusKind::Custom => "Notice",
    }
}

/// The context every public page starts from; `base` is the gateway's public URL, for links
/// in a banner shown on another site.
fn context(base: &str, practice: &Practice, notices: &[Broadcast]) -> Context {
    let mut c = Context::new();
    c.insert("base", base.trim_end_matches('/'));
    c.insert(
        "practice",
        &json!({
            "ods": practice.ods_code.as_str(),
            "name": practice.name,
            "phone": practice.phone,
            "website": practice.website,
            "bilingual": practice.bilingual,
        }),
    );
    let current = notices.first().map(|n| notice_json(practice, n));
    c.insert("current", &current);
    let notices: Vec<_> = notices.iter().map(|n| notice_json(practice, n)).collect();
    c.insert("notices", &notices);
    c
}

/// `GET /p/{ods}`: the public status page.
pub(crate) async fn status_page(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    html_page(&state, &ods, &headers, "public/status.html", false).await
}

/// `GET /p/{ods}/banner`: the banner as a page of its own, for an iframe on the practice's
/// website (no script).
pub(crate) async fn banner_page(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    html_page(&state, &ods, &headers, "public/banner_page.html", true).await
}

/// `GET /p/{ods}/banner.html`: the banner as an HTML fragment to include in a page.
pub(crate) async fn banner_fragment(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    html_page(&state, &ods, &headers, "public/banner.html", true).await
}

async fn html_page(
    state: &AppState,
    ods: &str,
    headers: &HeaderMap,
    template: &str,
    framed: bool,
) -> Response {
    let (practice, notices) = match practice_and_notices(state, ods).await {
        Ok(Some(found)) => found,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "There is no such practice."),
        Err(e) => return unavailable(e),
    };
    let base = &state.config.receipts.public_url;
    match render(template, &context(base, &practice, &notices)) {
        Ok(html) => cached(headers, "text/html; charset=utf-8", html, framed),
        Err(e) => unavailable(e),
    }
}

/// `GET /p/{ods}/feed.atom`: the practice's notices as an Atom 1.0 feed.
pub(crate) async fn feed(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (practice, notices) = match practice_and_notices(&state, &ods).await {
        Ok(Some(found)) => found,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "There is no such practice."),
        Err(e) => return unavailable(e),
    };
    let base = state.config.receipts.public_url.trim_end_matches('/');
    let body = atom(base, &practice, &notices);
    cached(&headers, "application/atom+xml; charset=utf-8", body, false)
}

/// The Atom document: one entry per notice, newest first.
fn atom(base: &str, practice: &Practice, notices: &[Broadcast]) -> String {
    let page = format!("{base}/p/{}", practice.ods_code);
    let updated = notices
        .first()
        .map_or(practice.created_at, |n| n.created_at);
    let language = if practice.bilingual {
        Language::Welsh
    } else {
        Language::English
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    xml.push_str(&format!(
        "  <id>{}</id>\n",
        escape(&format!("{page}/feed.atom"))
    ));
    xml.push_str(&format!(
        "  <title>{}: notices</title>\n",
        escape(&practice.name)
    ));
    xml.push_str(&format!("  <updated>{}</updated>\n", rfc3339(updated)));
    xml.push_str(&format!(
        "  <author><name>{}</name></author>\n",
        escape(&practice.name)
    ));
    xml.push_str(&format!(
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
        escape(&page)
    ));
    xml.push_str(&format!(
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n",
        escape(&format!("{page}/feed.atom"))
    ));
    for notice in notices {
        let mut title = Vec::new();
        let mut content = Vec::new();
        for lang in [language, Language::English] {
            let (headline, details) = status_wording(notice, lang);
            if !title.contains(&headline) {
                title.push(headline);
                content.push(match details {
                    Some(details) => format!("{headline} {details}"),
                    None => headline.to_string(),
                });
            }
        }
        xml.push_str("  <entry>\n");
        xml.push_str(&format!(
            "    <id>{}</id>\n",
            escape(&format!("{page}/notices/{}", notice.id))
        ));
        xml.push_str(&format!(
            "    <title>{}: {}</title>\n",
            label(notice.kind),
            escape(&title.join(" / "))
        ));
        xml.push_str(&format!(
            "    <updated>{}</updated>\n",
            rfc3339(notice.created_at)
        ));
        xml.push_str(&format!(
            "    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
            escape(&page)
        ));
        xml.push_str(&format!(
            "    <content type=\"text\">{}</content>\n",
            escape(&content.join("\n\n"))
        ));
        xml.push_str("  </entry>\n");
    }
    xml.push_str("</feed>\n");
    xml
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Text made safe for XML character data and attribute values; characters XML 1.0 cannot
/// hold at all are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// `body` with a public max-age and its ETag, or `304` if the client holds it already. A
/// `framed` answer may be shown in another site's iframe.
fn cached(request: &HeaderMap, content_type: &'static str, body: String, framed: bool) -> Response {
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", hex::encode(&digest[..12]));
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            given
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={MAX_AGE}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    let ancestors = if framed { "*" } else { "'none'" };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors {ancestors}; base-uri 'none'; form-action 'none'"
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if !framed {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The answer when the database cannot be read: 503, and not cached.
fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "public status page failed");
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The status page cannot be shown just now. Please try again in a minute.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_impossible_characters_dropped() {
        assert_eq!(
            escape("A & B <c> \"d\" 'e'"),
            "A &amp; B &lt;c&gt; &quot;d&quot; &apos;e&apos;"
        );
        assert_eq!(escape("bell\u{7}ok\nline"), "bellok\nline");
    }

    #[test]
    fn an_etag_that_matches_gets_304_with_the_same_tag() {
        let first = cached(&HeaderMap::new(), "text/plain", "hello".into(), false);
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        assert_eq!(first.headers()[header::CACHE_CONTROL], "public, max-age=60");
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, etag.clone());
        let again = cached(&request, "text/plain", "hello".into(), false);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag);
        let changed = cached(&request, "text/plain", "hello again".into(), true);
        assert_eq!(changed.status(), StatusCode::OK);
        assert!(changed.headers().get(header::X_FRAME_OPTIONS).is_none());
    }
}
