//! Patients' push sign-up over HTTP, as their browser's script drives it: the invitation
//! message and its link, the sign-up page, subscribing, stopping, and the service worker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{Duration, Utc};
use gateway::domain::{Channel, OdsCode, PatientId, PracticeId, Priority};
use gateway::links::invite_token;
use gateway::providers::generate_vapid_keys;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{nhs, provider, spawn_app_with, Db, Options, TestApp, UNSUBSCRIBE_SECRET_ENV};
use crate::push_service::{PushService, Reply as PushReply};

const ODS: &str = "R10020";
const PRACTICE: &str = "Brook & Vale Surgery";
const WEBSITE: &str = "https://brook-vale.example/news";
const SUBJECT: &str = "mailto:it@brook-vale.nhs.uk";

/// A gateway with a `webpush` provider (so there is something to sign up for) and `log`
/// providers for SMS and email writing to a file of the test's own.
struct PushApp {
    app: TestApp,
    key: String,
    vapid_public: String,
    sent_log: PathBuf,
    _dir: TempDir,
}

/// Puts the VAPID private key in a variable of its own (tests share the process).
fn vapid_private_in_env(value: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "GATEWAY_PUSH_PAGES_VAPID_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&name, value);
    name
}

async fn push_app(db: Db, with_webpush: bool, settings: Vec<(&'static str, Value)>) -> PushApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let sent_log = dir.path().join("sent.jsonl");
    let (vapid_public, vapid_private) = generate_vapid_keys();
    let mut providers = vec![
        provider("log-sms", "log", Channel::Sms, json!({ "path": sent_log })),
        provider(
            "log-email",
            "log",
            Channel::Email,
            json!({ "path": sent_log }),
        ),
    ];
    if with_webpush {
        providers.push(provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": vapid_public,
                "vapid_private_key_env": vapid_private_in_env(&vapid_private),
                "subject": SUBJECT,
                "allow_insecure_hosts": ["127.0.0.1"],
            }),
        ));
    }
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(providers),
            push_insecure_hosts: vec!["127.0.0.1".into()],
            settings,
            ..Options::default()
        },
    )
    .await;
    let key = app
        .practice_with_settings(
            json!({ "ods_code": ODS, "name": PRACTICE, "phone": "020 7946 0123", "website": WEBSITE }),
        )
        .await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "given_name": "Ada", "contacts": [{ "channel": "sms", "address": "07700 900001" }] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "email", "address": "two@example.com" }] },
    ]});
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &patients,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    PushApp {
        app,
        key,
        vapid_public,
        sent_log,
        _dir: dir,
    }
}

impl PushApp {
    async fn practice_id(&self) -> PracticeId {
        let ods = OdsCode::parse(ODS).expect("ods");
        let store = &self.app.state.store;
        store
            .practice_by_ods(&ods)
            .await
            .expect("store")
            .expect("practice")
            .id
    }

    /// The row id of test patient `i`.
    async fn patient_id(&self, i: u32) -> PatientId {
        let page = self
            .app
            .state
            .store
            .fanout_page(self.practice_id().await, PatientId::new(0), 100)
            .await
            .expect("store");
        page.iter()
            .find(|p| p.nhs_number == nhs(i))
            .expect("patient")
            .id
    }

    /// A sign-up token for test patient `i`, as an invitation carries it.
    async fn token(&self, i: u32, expires_in: Duration) -> String {
        let secret = std::env::var(UNSUBSCRIBE_SECRET_ENV).expect("secret set by main");
        invite_token(
            &secret,
            self.practice_id().await,
            self.patient_id(i).await,
            Utc::now() + expires_in,
        )
    }

    async fn page(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let response = reqwest::get(format!("{}{path}", self.app.address))
            .await
            .expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("body"))
    }

    async fn call(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self
            .app
            .request(reqwest::Method::POST, path, None, Some(body))
            .await;
        (reply.status, reply.body)
    }

    /// The patient's push contacts, as the API shows them.
    async fn push_contacts(&self, i: u32) -> Vec<Value> {
        let reply = self
            .app
            .get(
                &format!("/api/v1/practices/{ODS}/patients/{}", nhs(i)),
                &self.key,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .filter(|c| c["channel"] == "push")
            .cloned()
            .collect()
    }

    fn sent_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.sent_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }
}

/// A subscription as `PushSubscription.toJSON()` gives it, on the loopback push host.
fn subscription(endpoint: &str) -> Value {
    let mut point = vec![4u8; 65];
    point[0] = 4;
    json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": { "p256dh": URL_SAFE_NO_PAD.encode(&point), "auth": URL_SAFE_NO_PAD.encode([7u8; 16]) },
    })
}

fn attribute<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    html[start..].split('"').next()
}

pub async fn signup_page_shows_the_practice_and_the_key(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let token = t.token(1, Duration::days(7)).await;
    let (status, headers, html) = t.page(&format!("/p/{ODS}/notifications?t={token}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Brook &amp; Vale Surgery"),
        "name, escaped: {html}"
    );
    assert!(html.contains("Turn on notifications"), "{html}");
    assert_eq!(
        attribute(&html, "data-vapid-key"),
        Some(t.vapid_public.as_str())
    );
    assert_eq!(attribute(&html, "data-token"), Some(token.as_str()));
    assert_eq!(
        attribute(&html, "data-subscribe-url"),
        Some(format!("/p/{ODS}/notifications/subscribe").as_str())
    );
    assert!(
        html.contains(r#"<script src="/static/push.js"></script>"#),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // No token: the anonymous sign-up, for practice-wide notices only.
    let (status, _, html) = t.page(&format!("/p/{ODS}/notifications")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("will not tell you about your own appointments"),
        "{html}"
    );
    assert_eq!(
        attribute(&html, "data-vapid-key"),
        Some(t.vapid_public.as_str())
    );
    assert_eq!(attribute(&html, "data-token"), Some(""));
    assert!(!html.contains("just for you"), "{html}");

    // A mangled token, or one made for another practice: not valid.
    let mangled = format!("{}x", &token[..token.len() - 1]);
    let (status, _, _) = t.page(&format!("/p/{ODS}/notifications?t={mangled}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let secret = std::env::var(UNSUBSCRIBE_SECRET_ENV).unwrap();
    let elsewhere = invite_token(
        &secret,
        PracticeId::new(t.practice_id().await.get() + 1),
        t.patient_id(1).await,
        Utc::now() + Duration::days(1),
    );
    let (status, _, _) = t
        .page(&format!("/p/{ODS}/notifications?t={elsewhere}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An unknown practice is not found; so is something that is not an ODS code.
    for ods in ["Y99999", "not-a-code"] {
        let (status, _, html) = t.page(&format!("/p/{ods}/notifications?t={token}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{ods}");
        assert!(html.contains("could not find this GP surgery"), "{html}");
    }

    // The stop page needs no token.
    let (status, _, html) = t.page(&format!("/p/{ODS}/notifications/stop")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Stop notifications"), "{html}");
    assert_eq!(
        attribute(&html, "data-unsubscribe-url"),
        Some(format!("/p/{ODS}/notifications/unsubscribe").as_str())
    );
}

pub async fn expired_link_says_so(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let token = t.token(1, Duration::seconds(-5)).await;
    let (status, _, html) = t.page(&format!("/p/{ODS}/notifications?t={token}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("This link has expired"), "{html}");
    assert!(
        html.contains("020 7946 0123"),
        "says how to get a new one: {html}"
    );
    assert!(!html.contains("data-token"), "{html}");
}

pub async fn subscribe_refuses_tampered_and_expired_tokens(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let path = format!("/p/{ODS}/notifications/subscribe");
    let endpoint = "http://127.0.0.1:9/push/one";
    let token = t.token(1, Duration::days(7)).await;

    // Patient 1's link, changed to name patient 2.
    let (id1, id2) = (t.patient_id(1).await, t.patient_id(2).await);
    let tampered = token.replacen(&format!(".{id1}."), &format!(".{id2}."), 1);
    assert_ne!(tampered, token);
    let (status, body) = t
        .call(
            &path,
            &json!({ "token": tampered, "subscription": subscription(endpoint) }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(t.push_contacts(2).await.is_empty());

    let expired = t.token(1, Duration::seconds(-5)).await;
    let (status, body) = t
        .call(
            &path,
            &json!({ "token": expired, "subscription": subscription(endpoint) }),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "link_expired");

    // A good token with another practice's path.
    let key = t.app.practice_with_key("R10021", "Other Surgery").await;
    assert!(!key.is_empty());
    let (status, _) = t
        .call(
            "/p/R10021/notifications/subscribe",
            &json!({ "token": token, "subscription": subscription(endpoint) }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A good token with a subscription that fails the API's checks.
    let mut internal = subscription("http://10.1.2.3/push");
    internal["keys"]["auth"] = json!("c2hvcnQ");
    let (status, body) = t
        .call(&path, &json!({ "token": token, "subscription": internal }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.dedup();
    assert_eq!(fields, ["endpoint", "keys.auth"], "{body}");

    // Not JSON at all.
    let reply = t
        .app
        .callback(&path, "application/json", &[], "{".into())
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(t.push_contacts(1).await.is_empty());
}

pub async fn subscribe_and_unsubscribe_change_the_patients_contacts(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let endpoint = "http://127.0.0.1:9/push/browser-of-patient-two";
    let token = t.token(2, Duration::days(7)).await;
    let (status, body) = t
        .call(
            &format!("/p/{ODS}/notifications/subscribe"),
            &json!({ "token": token, "subscription": subscription(endpoint) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({ "subscribed": true, "linked": true }));
    let contacts = t.push_contacts(2).await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["address"], endpoint);
    assert!(
        t.push_contacts(1).await.is_empty(),
        "only the patient the link names"
    );

    // The same browser again refreshes, not duplicates.
    let (status, _) = t
        .call(
            &format!("/p/{ODS}/notifications/subscribe"),
            &json!({ "token": token, "subscription": subscription(endpoint) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(t.push_contacts(2).await.len(), 1);

    // Another practice's stop call does not touch it.
    t.app.practice_with_key("R10021", "Other Surgery").await;
    let (status, body) = t
        .call(
            "/p/R10021/notifications/unsubscribe",
            &json!({ "endpoint": endpoint }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], 0);
    assert_eq!(t.push_contacts(2).await.len(), 1);

    let (status, body) = t
        .call(
            &format!("/p/{ODS}/notifications/unsubscribe"),
            &json!({ "endpoint": endpoint }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], 1);
    assert!(t.push_contacts(2).await.is_empty());
    let (_, body) = t
        .call(
            &format!("/p/{ODS}/notifications/unsubscribe"),
            &json!({ "endpoint": endpoint }),
        )
        .await;
    assert_eq!(body["removed"], 0);
    let (status, _) = t
        .call(
            &format!("/p/{ODS}/notifications/unsubscribe"),
            &json!({ "endpoint": "" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

pub async fn service_worker_and_script_are_served(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let (status, headers, body) = t.page("/sw.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript"),
        "{headers:?}"
    );
    assert_eq!(headers["service-worker-allowed"], "/");
    assert!(body.contains("showNotification"), "{body}");
    assert!(body.contains("openWindow"), "{body}");
    let (status, headers, body) = t.page("/static/push.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    assert!(body.contains("pushManager.subscribe"), "{body}");
    let (status, headers, body) = t.page("/static/patient.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(
        body.contains("#push-subscribe") || body.contains("button"),
        "{body}"
    );
}

pub async fn invite_sends_one_urgent_message_with_a_working_link(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let path = format!("/api/v1/practices/{ODS}/patients/{}/push-invite", nhs(1));
    let reply = t.app.post(&path, &t.key, &json!({})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["channel"], "sms");
    let expires_at: chrono::DateTime<Utc> =
        serde_json::from_value(reply.body["expires_at"].clone()).expect("expires_at");
    let days = (expires_at - Utc::now()).num_hours();
    assert!(
        (167..=168).contains(&days),
        "valid for 7 days: {expires_at}"
    );

    let queued = t.app.state.store.queue_depth().await.expect("store");
    let count = |lane: Priority| {
        queued
            .iter()
            .find(|(p, _)| *p == lane)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (count(Priority::Urgent), count(Priority::Bulk)),
        (1, 0),
        "{queued:?}"
    );
    t.app.drain().await;
    let lines = t.sent_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["channel"], "sms");
    assert_eq!(line["to"], "+447700900001");
    let body = line["body"].as_str().unwrap();
    assert!(body.starts_with("Hi Ada,"), "{body}");
    let public = t
        .app
        .state
        .config
        .receipts
        .public_url
        .trim_end_matches('/')
        .to_string();
    let prefix = format!("{public}/p/{ODS}/notifications?t=");
    let at = body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link in {body}"));
    let link: &str = body[at..].split_whitespace().next().unwrap();
    let message = t
        .app
        .get(&format!("/api/v1/messages/{}", line["message_id"]), &t.key)
        .await;
    assert_eq!(
        message.body["message"]["priority"], "urgent",
        "{}",
        message.body
    );
    assert_eq!(message.body["message"]["template_key"], "push.invite");

    // The link opens the sign-up page, and its token subscribes this patient.
    let (status, _, html) = t.page(&link[public.len()..]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(PRACTICE.replace('&', "&amp;").as_str()));
    let token = attribute(&html, "data-token").unwrap().to_string();
    let (status, body) = t
        .call(
            &format!("/p/{ODS}/notifications/subscribe"),
            &json!({ "token": token, "subscription": subscription("http://127.0.0.1:9/push/ada") }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(t.push_contacts(1).await.len(), 1);

    // Email for a patient with only an address; unknown patients are not found.
    let path2 = format!("/api/v1/practices/{ODS}/patients/{}/push-invite", nhs(2));
    let reply = t.app.post(&path2, &t.key, &json!({})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["channel"], "email");
    let unknown = format!("/api/v1/practices/{ODS}/patients/{}/push-invite", nhs(9));
    assert_eq!(
        t.app.post(&unknown, &t.key, &json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let other_key = t.app.practice_with_key("R10021", "Other Surgery").await;
    assert_eq!(
        t.app.post(&path, &other_key, &json!({})).await.status,
        StatusCode::NOT_FOUND,
        "another practice's patient"
    );
}

pub async fn without_web_push_or_a_secret_nothing_is_offered(db: Db) {
    let t = push_app(db.clone(), false, Vec::new()).await;
    let token = t.token(1, Duration::days(7)).await;
    let (status, _, html) = t.page(&format!("/p/{ODS}/notifications?t={token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Notifications are not available"), "{html}");
    assert!(!html.contains("data-vapid-key"), "{html}");
    let path = format!("/api/v1/practices/{ODS}/patients/{}/push-invite", nhs(1));
    let reply = t.app.post(&path, &t.key, &json!({})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "push_not_configured");

    let unset = "GATEWAY_TEST_PUSH_PAGES_SECRET_NOT_SET";
    let t = push_app(
        db,
        true,
        vec![("receipts.unsubscribe_secret_env", json!(unset))],
    )
    .await;
    let reply = t.app.post(&path, &t.key, &json!({})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "invite_secret_missing");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(unset),
        "{}",
        reply.body
    );
    assert!(t.sent_lines().is_empty());
}

/// A browser following the practice without a link gets its practice-wide notices, with the
/// template's link, and nothing once it stops; a subscription the push service says is gone
/// is dropped.
pub async fn anonymous_followers_get_practice_wide_notices(db: Db) {
    let t = push_app(db, true, Vec::new()).await;
    let service = PushService::start(&t.vapid_public, SUBJECT, PushReply::status(201)).await;
    let gone = PushService::start(&t.vapid_public, SUBJECT, PushReply::status(410)).await;
    let follow = |service: &PushService, name: &str| {
        let keys = service.keys();
        json!({ "subscription": {
            "endpoint": service.endpoint(name),
            "keys": { "p256dh": keys.p256dh, "auth": keys.auth },
        }})
    };
    let subscribe = format!("/p/{ODS}/notifications/subscribe");
    for _ in 0..2 {
        // The second time refreshes the same follower.
        let (status, body) = t.call(&subscribe, &follow(&service, "follower")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body, json!({ "subscribed": true, "linked": false }));
    }
    let (status, body) = t.call(&subscribe, &follow(&gone, "expired")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // No patient gains a push contact.
    assert!(t.push_contacts(1).await.is_empty() && t.push_contacts(2).await.is_empty());

    let post_status = |kind: &'static str| {
        let t = &t;
        async move {
            let reply = t
                .app
                .post(
                    &format!("/api/v1/practices/{ODS}/status"),
                    &t.key,
                    &json!({ "kind": kind }),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            reply.body["id"].as_i64().expect("broadcast id")
        }
    };
    let closed = post_status("closed").await;
    t.app.drain().await;
    let delivered = service.delivered();
    assert_eq!(delivered.path, "/push/follower");
    assert_eq!(delivered.payload["title"], format!("{PRACTICE} is closed"));
    assert!(
        delivered.payload["body"]
            .as_str()
            .unwrap_or("")
            .contains("111"),
        "{:?}",
        delivered.payload
    );
    assert_eq!(delivered.payload["url"], WEBSITE);
    assert_eq!(
        gone.received().len(),
        1,
        "the expired subscription was tried once"
    );
    let progress = t
        .app
        .get(&format!("/api/v1/broadcasts/{closed}"), &t.key)
        .await
        .body;
    // Two patients (SMS and email) and two followers, one of them gone.
    assert_eq!(progress["by_state"]["sent"], 3, "{progress}");
    assert_eq!(progress["by_state"]["failed"], 1, "{progress}");
    assert_eq!(
        t.sent_lines().len(),
        2,
        "the patients had their own messages"
    );

    // The follower stops; the next notice reaches no browser.
    let (status, body) = t
        .call(
            &format!("/p/{ODS}/notifications/unsubscribe"),
            &json!({ "endpoint": service.endpoint("follower") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], 1);
    post_status("restored").await;
    t.app.drain().await;
    assert!(
        service.received().is_empty(),
        "a stopped follower gets nothing"
    );
    assert!(
        gone.received().is_empty(),
        "a gone subscription is not tried again"
    );
    assert_eq!(t.sent_lines().len(), 4);
}
