//! The real provider kinds end to end: a broadcast to patients with SMS, email and push
//! contacts reaches a Twilio-shaped HTTP server, a real SMTP server and a Web Push service
//! (which checks VAPID and decrypts the payload) with the right wording; receipts then move
//! the messages to delivered; a STOP reply keeps the next broadcast away from that number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode as HttpStatus;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use gateway::domain::{BroadcastId, Channel, OdsCode};
use gateway::providers::generate_vapid_keys;
use gateway::receipts::twilio_signature;
use gateway::render::status_context;
use mail_parser::MessageParser;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{nhs, provider, spawn_app_with, Db, Options, TestApp, TWILIO_TOKEN};
use crate::push_service::{PushService, Reply as PushReply};
use crate::receipts::{form, message_state};
use crate::smtp_server::{Script, Server as SmtpServer};

const ODS: &str = "R10010";
const PRACTICE: &str = "Test Surgery";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const SMS_FROM: &str = "+447700900999";
const MOBILE: &str = "07700 900123";
const MOBILE_E164: &str = "+447700900123";
const EMAIL: &str = "patient.two@example.com";
const EMAIL_FROM: &str = "Test Surgery <noreply@example.nhs.uk>";
const PUSH_SUBJECT: &str = "mailto:it@test-surgery.nhs.uk";
const CLOSED: &str = "The surgery is closed today because of a burst water pipe.";
const RESTORED: &str = "The surgery is open again from 2pm.";

/// Puts `value` in a fresh environment variable and returns its name (the SQLite and
/// PostgreSQL runs of this test share the process, so each gets its own).
fn secret_in_env(what: &str, value: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "GATEWAY_E2E_{what}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&name, value);
    name
}

// ---------------------------------------------------------------------------------------
// A Twilio-shaped peer: the Messages API as the `twilio` provider calls it.

/// One POST to the Messages API.
#[derive(Debug, Clone)]
struct TwilioPost {
    path: String,
    /// Whether basic auth carried the account SID and auth token.
    authorised: bool,
    form: BTreeMap<String, String>,
    /// The SID answered (None when refused).
    sid: Option<String>,
}

struct TwilioState {
    basic_auth: String,
    posts: Mutex<Vec<TwilioPost>>,
    /// Numbers refused as Twilio refuses an invalid `To` (400, code 21211).
    refused: Mutex<Vec<String>>,
}

struct TwilioPeer {
    url: String,
    state: Arc<TwilioState>,
}

impl TwilioPeer {
    async fn start(account_sid: &str, auth_token: &str) -> Self {
        let state = Arc::new(TwilioState {
            basic_auth: format!(
                "Basic {}",
                STANDARD.encode(format!("{account_sid}:{auth_token}"))
            ),
            posts: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(twilio_messages)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    fn refuse(&self, number: &str) {
        self.state.refused.lock().unwrap().push(number.to_string());
    }

    fn posts(&self) -> Vec<TwilioPost> {
        self.state.posts.lock().unwrap().clone()
    }
}

/// Records the form and answers as Twilio does: 201 with the message's SID, or 401 (code
/// 20003) without the right credentials.
async fn twilio_messages(State(state): State<Arc<TwilioState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let authorised = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(state.basic_auth.as_str());
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let to = form.get("To").cloned().unwrap_or_default();
    if state.refused.lock().unwrap().contains(&to) {
        let error = json!({ "code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400 });
        return (HttpStatus::BAD_REQUEST, Json(error)).into_response();
    }
    let mut posts = state.posts.lock().unwrap();
    let sid = authorised.then(|| format!("SM{:032x}", posts.len() + 1));
    posts.push(TwilioPost {
        path: parts.uri.path().to_string(),
        authorised,
        form,
        sid: sid.clone(),
    });
    match sid {
        Some(sid) => (
            HttpStatus::CREATED,
            Json(json!({ "sid": sid, "status": "queued" })),
        )
            .into_response(),
        None => (
            HttpStatus::UNAUTHORIZED,
            Json(json!({ "code": 20003, "message": "Authenticate", "status": 401 })),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// The app and its patients.

/// The broadcast's messages, by channel (one each here).
async fn messages_by_channel(
    app: &TestApp,
    key: &str,
    broadcast: &Value,
) -> BTreeMap<String, Value> {
    let page = app
        .get(
            &format!("/api/v1/broadcasts/{}/messages", broadcast["id"]),
            key,
        )
        .await
        .body;
    let mut by_channel = BTreeMap::new();
    for message in page["messages"].as_array().unwrap() {
        let channel = message["channel"].as_str().unwrap().to_string();
        assert!(
            by_channel.insert(channel, message.clone()).is_none(),
            "{page}"
        );
    }
    by_channel
}

/// What the provider that took message `id` knows it as.
async fn provider_ref(app: &TestApp, key: &str, id: &Value) -> String {
    let detail = app.get(&format!("/api/v1/messages/{id}"), key).await.body;
    detail["message"]["provider_ref"]
        .as_str()
        .unwrap_or_else(|| panic!("message {id} has no provider_ref: {detail}"))
        .to_string()
}

/// Posts a signed form to a Twilio callback route and expects 200.
async fn twilio_callback(app: &TestApp, path: &str, params: &[(&str, &str)]) -> Value {
    let url = format!("{}{path}", app.state.config.receipts.public_url);
    let (body, params) = form(params);
    let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
    let reply = app
        .callback(
            path,
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", signature)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply.body
}

/// Posts a signed `webhook` receipt and expects 200.
async fn webhook_receipt(app: &TestApp, reference: &str, status: &str) -> Value {
    let reply = crate::receipts::webhook_receipt(app, reference, status).await;
    assert_eq!(reply.status, StatusCode::OK, "{reference}: {}", reply.body);
    reply.body
}

/// The one email received since `seen`, parsed: (Subject, text part, HTML part, Message-ID).
fn only_new_email(smtp: &SmtpServer, seen: usize) -> (String, String, String, String) {
    let received = smtp.received();
    assert_eq!(received.len(), seen + 1, "{received:?}");
    let got = &received[seen];
    assert_eq!(got.mail_from, "noreply@example.nhs.uk");
    assert_eq!(got.rcpt_to, vec![EMAIL.to_string()]);
    let message = MessageParser::default().parse(&got.data).unwrap();
    let to = message.to().and_then(|a| a.first()).unwrap();
    assert_eq!(to.address(), Some(EMAIL));
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.name(), Some(PRACTICE));
    (
        message.subject().unwrap_or_default().to_string(),
        message.body_text(0).unwrap_or_default().to_string(),
        message.body_html(0).unwrap_or_default().to_string(),
        message.message_id().unwrap_or_default().to_string(),
    )
}

pub async fn broadcast_reaches_sms_email_and_push_peers(db: Db) {
    // The three peers, and providers pointing at them.
    let twilio_token = "e2e-twilio-account-auth-token";
    let twilio_token_env = secret_in_env("TWILIO_AUTH_TOKEN", twilio_token);
    let twilio = TwilioPeer::start(ACCOUNT_SID, twilio_token).await;
    let smtp = SmtpServer::start(Script::default()).await;
    let (vapid_public, vapid_private) = generate_vapid_keys();
    let vapid_env = secret_in_env("VAPID_PRIVATE_KEY", &vapid_private);
    let push = PushService::start(
        &vapid_public,
        PUSH_SUBJECT,
        PushReply::status(201).numbered_location(),
    )
    .await;
    let providers = vec![
        provider(
            "twilio-sms",
            "twilio",
            Channel::Sms,
            json!({
                "base_url": twilio.url,
                "account_sid": ACCOUNT_SID,
                "auth_token_env": twilio_token_env,
                "from": SMS_FROM,
                "timeout_ms": 5000,
            }),
        ),
        provider(
            "relay-email",
            "smtp",
            Channel::Email,
            json!({
                "host": "127.0.0.1",
                "port": smtp.addr.port(),
                "security": "plain",
                "from": EMAIL_FROM,
                "timeout_ms": 5000,
            }),
        ),
        provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": vapid_public,
                "vapid_private_key_env": vapid_env,
                "subject": PUSH_SUBJECT,
                "allow_insecure_hosts": ["127.0.0.1"],
                "timeout_ms": 5000,
            }),
        ),
    ];
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(providers),
            push_insecure_hosts: vec!["127.0.0.1".into()],
            ..Options::default()
        },
    )
    .await;

    // A practice; patients on SMS, email and push (the browser subscribes through the API).
    let key = app.practice_with_key(ODS, PRACTICE).await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": MOBILE }] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "email", "address": EMAIL }] },
        { "nhs_number": nhs(3), "preferred_channel": "push" },
    ]});
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &patients,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 3, "{}", reply.body);
    let keys = push.keys();
    let subscription = json!({
        "endpoint": push.endpoint("patient-3"),
        "keys": { "p256dh": keys.p256dh, "auth": keys.auth },
        "expirationTime": null,
    });
    let reply = app
        .post(
            &format!(
                "/api/v1/practices/{ODS}/patients/{}/push-subscriptions",
                nhs(3)
            ),
            &key,
            &subscription,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // The practice closes: one message per patient, each through its own peer.
    let status_path = format!("/api/v1/practices/{ODS}/status");
    let first = app
        .post(
            &status_path,
            &key,
            &json!({ "kind": "closed", "headline": CLOSED }),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let first = first.body;
    assert_eq!(first["planned"], json!({ "sms": 1, "email": 1, "push": 1 }));
    app.drain().await;

    let posts = twilio.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let sms = &posts[0];
    assert!(
        sms.authorised,
        "basic auth did not carry the account's credentials"
    );
    assert_eq!(
        sms.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(sms.form["To"], MOBILE_E164);
    assert_eq!(sms.form["From"], SMS_FROM);
    assert_eq!(
        sms.form["Body"],
        format!("{PRACTICE}: {CLOSED} For urgent help call 111, or 999 in an emergency.")
    );
    let sms_sid = sms.sid.clone().unwrap();

    let (subject, text, html, message_id) = only_new_email(&smtp, 0);
    assert_eq!(subject, format!("{PRACTICE}: {CLOSED}"));
    assert!(text.contains(CLOSED), "{text}");
    assert!(text.contains("call NHS 111"), "{text}");
    assert!(html.contains(&format!("<p>{CLOSED}</p>")), "{html}");

    let received = push.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let delivered = received.into_iter().next().unwrap().unwrap();
    assert_eq!(delivered.path, "/push/patient-3");
    assert_eq!(delivered.urgency, "normal");
    assert_eq!(
        delivered.topic.as_deref(),
        Some(format!("practice-{ODS}").as_str())
    );
    assert_eq!(delivered.payload["title"], format!("{PRACTICE} is closed"));
    assert_eq!(
        delivered.payload["body"],
        format!("{CLOSED} For urgent help call 111.")
    );
    assert_eq!(delivered.payload["practice"], ODS);

    // Each message is known by the reference its provider gave.
    let messages = messages_by_channel(&app, &key, &first).await;
    assert_eq!(messages["sms"]["address"], MOBILE_E164);
    assert_eq!(messages["email"]["address"], EMAIL);
    assert_eq!(messages["push"]["address"], push.endpoint("patient-3"));
    for message in messages.values() {
        assert_eq!(message["state"], "sent", "{message}");
    }
    let (sms_id, email_id, push_id) = (
        &messages["sms"]["id"],
        &messages["email"]["id"],
        &messages["push"]["id"],
    );
    assert_eq!(provider_ref(&app, &key, sms_id).await, sms_sid);
    let email_ref = provider_ref(&app, &key, email_id).await;
    assert_eq!(email_ref, message_id);
    let push_ref = provider_ref(&app, &key, push_id).await;
    assert_eq!(Some(push_ref.as_str()), delivered.location.as_deref());

    // Receipts settle all three.
    let settled = twilio_callback(
        &app,
        "/api/v1/receipts/twilio",
        &[
            ("AccountSid", ACCOUNT_SID),
            ("MessageSid", &sms_sid),
            ("MessageStatus", "delivered"),
        ],
    )
    .await;
    assert_eq!(settled["message_id"], *sms_id);
    assert_eq!(
        webhook_receipt(&app, &email_ref, "delivered").await["message_id"],
        *email_id
    );
    assert_eq!(
        webhook_receipt(&app, &push_ref, "delivered").await["message_id"],
        *push_id
    );
    for id in [sms_id, email_id, push_id] {
        let id = id.as_i64().unwrap();
        assert_eq!(
            message_state(&app, &key, id).await,
            "delivered",
            "message {id}"
        );
    }

    // The SMS patient replies STOP; the next notice reaches only email and push.
    let reply = twilio_callback(
        &app,
        "/api/v1/inbound/sms/twilio",
        &[
            ("AccountSid", ACCOUNT_SID),
            ("MessageSid", "SM00000000000000000000000000000099"),
            ("From", MOBILE_E164),
            ("To", SMS_FROM),
            ("Body", "STOP"),
        ],
    )
    .await;
    assert!(
        reply.as_str().is_some_and(|r| r.contains("<Response>")),
        "{reply}"
    );
    let second = app
        .post(
            &status_path,
            &key,
            &json!({ "kind": "restored", "headline": RESTORED }),
        )
        .await
        .body;
    assert_eq!(
        second["planned"],
        json!({ "sms": 0, "email": 1, "push": 1 })
    );
    app.drain().await;

    assert_eq!(
        twilio.posts().len(),
        1,
        "a text went to a number that said STOP"
    );
    let (subject, text, _, _) = only_new_email(&smtp, 1);
    assert_eq!(subject, format!("{PRACTICE}: {RESTORED}"));
    assert!(text.contains(RESTORED), "{text}");
    let delivered = push.delivered();
    assert_eq!(
        delivered.payload["title"],
        format!("{PRACTICE}: back to normal")
    );
    assert_eq!(
        delivered.payload["body"],
        format!("{RESTORED} Thank you for your patience.")
    );
    let messages = messages_by_channel(&app, &key, &second).await;
    assert_eq!(messages.keys().collect::<Vec<_>>(), ["email", "push"]);
    for message in messages.values() {
        assert_eq!(message["state"], "sent", "{message}");
    }
}

/// A number the provider refuses as invalid fails as a bad recipient, its contact is marked,
/// and the next broadcast does not try it again.
pub async fn refused_number_is_marked_and_skipped_next_time(db: Db) {
    let token = secret_in_env("TWILIO_TOKEN", "bad-recipient-token");
    let twilio = TwilioPeer::start(ACCOUNT_SID, "bad-recipient-token").await;
    twilio.refuse("+447700900124");
    let settings = json!({ "base_url": twilio.url, "account_sid": ACCOUNT_SID, "auth_token_env": token, "from": SMS_FROM });
    let options = Options {
        providers: Some(vec![provider(
            "twilio-sms",
            "twilio",
            Channel::Sms,
            settings,
        )]),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("R10011", PRACTICE).await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700 900123" }] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "sms", "address": "07700 900124" }] },
    ]});
    app.post("/api/v1/practices/R10011/patients", &key, &patients)
        .await;
    let first = app
        .post(
            "/api/v1/practices/R10011/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    assert_eq!(first["planned"]["sms"], 2);
    app.drain().await;
    let id = first["id"].as_i64().unwrap();
    let failed = app
        .get(
            &format!("/api/v1/broadcasts/{id}/messages?state=failed"),
            &key,
        )
        .await
        .body;
    let failed = failed["messages"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["address"], "+447700900124");
    let detail = app
        .get(&format!("/api/v1/messages/{}", failed[0]["id"]), &key)
        .await
        .body;
    assert_eq!(
        detail["attempts"][0]["outcome"], "bad_recipient",
        "{detail}"
    );
    assert!(
        !detail["message"]["last_error"]
            .as_str()
            .unwrap()
            .contains("7700900124"),
        "the number is scrubbed: {detail}"
    );

    let second = app
        .post(
            "/api/v1/practices/R10011/status",
            &key,
            &json!({ "kind": "restored" }),
        )
        .await
        .body;
    assert_eq!(second["planned"]["sms"], 1, "{second}");
    assert_eq!(second["skipped_no_contact"], 1);
}

// ---------------------------------------------------------------------------------------
// A refused number re-routes the broadcast to the patient's next channel.

/// An app sending SMS through a Twilio peer that refuses `refused` (E.164), and email through
/// a `log` provider writing to a file in the returned directory (keep it alive).
async fn app_refusing(db: Db, refused: &str) -> (TestApp, TwilioPeer, PathBuf, TempDir) {
    let token = secret_in_env("TWILIO_TOKEN", "reroute-token");
    let twilio = TwilioPeer::start(ACCOUNT_SID, "reroute-token").await;
    twilio.refuse(refused);
    let dir = tempfile::tempdir().expect("temp dir");
    let email_log = dir.path().join("email.jsonl");
    let providers = vec![
        provider(
            "twilio-sms",
            "twilio",
            Channel::Sms,
            json!({ "base_url": twilio.url, "account_sid": ACCOUNT_SID, "auth_token_env": token, "from": SMS_FROM }),
        ),
        provider(
            "log-email",
            "log",
            Channel::Email,
            json!({ "path": email_log }),
        ),
    ];
    let options = Options {
        providers: Some(providers),
        ..Options::default()
    };
    (spawn_app_with(db, options).await, twilio, email_log, dir)
}

/// Drains until nothing is queued or sending (a re-routed message is planned by the send
/// that failed, so it may need another pass).
async fn drain_all(app: &TestApp) {
    for _ in 0..5 {
        app.drain().await;
        if app.state.store.pending_count().await.unwrap() == 0 {
            return;
        }
    }
    panic!(
        "{} messages still pending after 5 drains",
        app.state.store.pending_count().await.unwrap()
    );
}

/// Every line the `log` provider wrote to `path`.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

/// The value of the one series in `text` whose line starts with `series` (name and labels).
fn series_value<'t>(text: &'t str, series: &str) -> &'t str {
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|rest| rest.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(values.len(), 1, "want one {series} line in:\n{text}");
    values[0]
}

/// A number the provider refuses as invalid: the broadcast goes again to the same patient
/// by email, with the email wording, and both messages belong to the broadcast.
pub async fn refused_number_is_rerouted_to_the_patients_email(db: Db) {
    let (app, twilio, email_log, _dir) = app_refusing(db, "+447700900125").await;
    // SMS first, so that the refused number is tried before the email address.
    let key = app
        .practice_with_settings(json!({ "ods_code": "R10012", "name": PRACTICE,
            "channel_order": ["sms", "email", "push"] }))
        .await;
    let patients = json!({ "patients": [{
        "nhs_number": nhs(1),
        "contacts": [
            { "channel": "sms", "address": "07700 900125" },
            { "channel": "email", "address": EMAIL },
        ],
    }]});
    let reply = app
        .post("/api/v1/practices/R10012/patients", &key, &patients)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .post(
            "/api/v1/practices/R10012/status",
            &key,
            &json!({ "kind": "closed", "headline": CLOSED }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let broadcast = reply.body;
    // The practice's order is sms, email, push: SMS first.
    assert_eq!(
        broadcast["planned"],
        json!({ "sms": 1, "email": 0, "push": 0 }),
        "{broadcast}"
    );
    drain_all(&app).await;
    assert!(twilio.posts().is_empty(), "{:?}", twilio.posts());

    // Exactly two messages: the refused SMS, then the email.
    let id = broadcast["id"].as_i64().unwrap();
    let page = app
        .get(&format!("/api/v1/broadcasts/{id}/messages"), &key)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let messages = page.body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2, "{}", page.body);
    let (sms, email) = (&messages[0], &messages[1]);
    assert_eq!(sms["channel"], "sms", "{sms}");
    assert_eq!(sms["address"], "+447700900125", "{sms}");
    assert_eq!(sms["state"], "failed", "{sms}");
    let detail = app
        .get(&format!("/api/v1/messages/{}", sms["id"]), &key)
        .await
        .body;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{detail}");
    assert_eq!(attempts[0]["outcome"], "bad_recipient", "{detail}");

    assert_eq!(email["channel"], "email", "{email}");
    assert_eq!(email["broadcast_id"], id, "{email}");
    assert_eq!(email["nhs_number"], nhs(1), "{email}");
    assert_eq!(email["address"], EMAIL, "{email}");
    assert_eq!(email["state"], "sent", "{email}");

    // The email carries the email wording of the same status.
    let store = &app.state.store;
    let practice = store
        .practice_by_ods(&OdsCode::parse("R10012").unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored = store
        .broadcast(BroadcastId::new(id))
        .await
        .unwrap()
        .unwrap();
    let wording = app
        .state
        .templates
        .snapshot()
        .render(
            &stored.kind.template_key(),
            Channel::Email,
            &status_context(&practice, &stored, None),
        )
        .unwrap();
    let lines = log_lines(&email_log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let sent = &lines[0];
    assert_eq!(sent["message_id"], email["id"], "{sent}");
    assert_eq!(sent["provider"], "log-email", "{sent}");
    assert_eq!(sent["channel"], "email", "{sent}");
    assert_eq!(sent["to"], EMAIL, "{sent}");
    assert_eq!(sent["subject"], format!("{PRACTICE}: {CLOSED}"), "{sent}");
    assert_eq!(sent["subject"], json!(wording.subject), "{sent}");
    assert_eq!(sent["body"], wording.body, "{sent}");
    let body = sent["body"].as_str().unwrap();
    assert!(body.contains(CLOSED), "{body}");
    assert!(body.contains("call NHS 111"), "{body}");
    assert_eq!(email["subject"], sent["subject"], "{email}");
    assert_eq!(email["body"], sent["body"], "{email}");

    // What became of each is counted.
    let scrape = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    let email_sent =
        r#"gateway_messages_total{channel="email",provider="log-email",outcome="sent"}"#;
    assert_eq!(series_value(&text, email_sent), "1");
    let sms_failed =
        r#"gateway_messages_total{channel="sms",provider="twilio-sms",outcome="failed"}"#;
    assert_eq!(series_value(&text, sms_failed), "1");
}

/// A refused number of a patient with no other contact: the message fails and nothing
/// more is planned.
pub async fn refused_number_without_another_channel_is_not_rerouted(db: Db) {
    let (app, twilio, email_log, _dir) = app_refusing(db, "+447700900126").await;
    let key = app.practice_with_key("R10013", PRACTICE).await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700 900126" }] },
    ]});
    let reply = app
        .post("/api/v1/practices/R10013/patients", &key, &patients)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let broadcast = app
        .post(
            "/api/v1/practices/R10013/status",
            &key,
            &json!({ "kind": "closed", "headline": CLOSED }),
        )
        .await
        .body;
    assert_eq!(broadcast["planned"]["sms"], 1, "{broadcast}");
    drain_all(&app).await;

    let id = broadcast["id"].as_i64().unwrap();
    let page = app
        .get(&format!("/api/v1/broadcasts/{id}/messages"), &key)
        .await
        .body;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["channel"], "sms", "{page}");
    assert_eq!(messages[0]["state"], "failed", "{page}");
    let detail = app
        .get(&format!("/api/v1/messages/{}", messages[0]["id"]), &key)
        .await
        .body;
    assert_eq!(
        detail["attempts"][0]["outcome"], "bad_recipient",
        "{detail}"
    );
    assert_eq!(app.state.store.pending_count().await.unwrap(), 0);
    assert!(twilio.posts().is_empty(), "{:?}", twilio.posts());
    assert!(log_lines(&email_log).is_empty());
}
