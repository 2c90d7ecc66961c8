//! The public status page, its Atom feed and the website banner: no sign-in, the current
//! status and recent notices, cacheable with an ETag, Welsh first for bilingual practices,
//! and never a patient's details.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_FRAME_OPTIONS};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// Fetches `path` with no credentials at all, as a patient's browser or a CDN does.
async fn public(app: &TestApp, path: &str, etag: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}{path}", app.address));
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    request.send().await.expect("request")
}

pub async fn the_public_page_feed_and_banner_show_the_status_and_no_patient(db: Db) {
    let app = spawn_app(db).await;
    let key = app
        .practice_with_settings(
            json!({ "ods_code": "P14001", "name": "Riverside Surgery", "phone": "020 7946 0000" }),
        )
        .await;
    let patients = json!({ "patients": [{
        "nhs_number": nhs(1), "given_name": "Alice", "family_name": "Zebedee",
        "contacts": [{ "channel": "sms", "address": "07700 900001" }, { "channel": "email", "address": "alice@example.org" }]
    }] });
    let reply = app
        .post("/api/v1/practices/P14001/patients", &key, &patients)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let empty = public(&app, "/p/P14001", None).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert!(empty
        .text()
        .await
        .expect("page")
        .contains("has posted no notices"));

    let posted = app
        .post(
            "/api/v1/practices/P14001/status",
            &key,
            &json!({ "kind": "closed", "headline": "Flooding in the waiting room", "details": "Please use the Mill Lane branch." }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);

    let page = public(&app, "/p/P14001", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CACHE_CONTROL], "public, max-age=60");
    let etag = page.headers()[ETAG].to_str().expect("etag").to_string();
    assert_eq!(page.headers()[X_FRAME_OPTIONS], "DENY");
    let html = page.text().await.expect("page");
    assert!(
        html.contains("<span class=\"status status-closed\">Closed</span>"),
        "{html}"
    );
    assert!(html.contains("Flooding in the waiting room"), "{html}");
    assert!(html.contains("Please use the Mill Lane branch."), "{html}");
    assert!(
        html.contains("href=\"/p/P14001/notifications\""),
        "links to the push sign-up: {html}"
    );
    assert!(html.contains("href=\"/p/P14001/feed.atom\""), "{html}");
    for private in ["Alice", "Zebedee", "900001", "alice@example.org", &nhs(1)] {
        assert!(!html.contains(private), "{private} on the public page");
    }
    let again = public(&app, "/p/P14001", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let feed = public(&app, "/p/P14001/feed.atom", None).await;
    assert_eq!(feed.status(), StatusCode::OK);
    assert!(feed.headers()[CONTENT_TYPE]
        .to_str()
        .expect("type")
        .starts_with("application/atom+xml"));
    let xml = feed.bytes().await.expect("feed");
    let parsed = feed_rs::parser::parse(&xml[..]).expect("a valid Atom feed");
    assert_eq!(parsed.feed_type, feed_rs::model::FeedType::Atom);
    assert_eq!(parsed.entries.len(), 1);
    let entry = &parsed.entries[0];
    let title = entry
        .title
        .as_ref()
        .map(|t| t.content.clone())
        .unwrap_or_default();
    assert_eq!(title, "Closed: Flooding in the waiting room");
    let text = String::from_utf8_lossy(&xml);
    for private in ["Alice", "Zebedee", "900001", "alice@example.org"] {
        assert!(!text.contains(private), "{private} in the feed");
    }

    let banner = public(&app, "/p/P14001/banner", None).await;
    assert_eq!(banner.status(), StatusCode::OK);
    assert!(
        banner.headers().get(X_FRAME_OPTIONS).is_none(),
        "the banner may be framed"
    );
    let csp = banner.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("frame-ancestors *"), "{csp}");
    let banner = banner.text().await.expect("banner");
    assert!(!banner.contains("<script"), "{banner}");
    assert!(banner.contains("Riverside Surgery: Closed"), "{banner}");
    let fragment = public(&app, "/p/P14001/banner.html", None)
        .await
        .text()
        .await
        .expect("fragment");
    assert!(!fragment.contains("<html"), "{fragment}");
    let absolute = format!(
        "href=\"{}/p/P14001\"",
        app.state.config.receipts.public_url.trim_end_matches('/')
    );
    assert!(
        fragment.contains(&absolute),
        "links back absolutely: {fragment}"
    );

    assert_eq!(
        public(&app, "/p/Z99999", None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        public(&app, "/p/not-a-code", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

pub async fn a_bilingual_practice_shows_welsh_first(db: Db) {
    let app = spawn_app(db).await;
    let key = app
        .practice_with_settings(
            json!({ "ods_code": "P14002", "name": "Meddygfa'r Afon", "bilingual": true }),
        )
        .await;
    let posted = app
        .post(
            "/api/v1/practices/P14002/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let html = public(&app, "/p/P14002", None)
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains("<html lang=\"cy\">"), "{html}");
    let welsh = html
        .find("feddygfa ar gau.")
        .unwrap_or_else(|| panic!("no Welsh headline: {html}"));
    let english = html
        .find("The surgery is closed.")
        .expect("English headline");
    assert!(welsh < english, "Welsh first: {html}");
}
