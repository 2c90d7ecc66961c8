//! The `smtp` provider kind against a real SMTP server on loopback: the message as received
//! (parts, headers, envelope), connection reuse, and how each reply or fault is classified.

#[path = "support/smtp_server.rs"]
mod smtp_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::config::ProviderConfig;
use gateway::domain::{Channel, Priority};
use gateway::providers::{Outgoing, PracticeRef, Provider, ProviderRegistry, SendError};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{json, Value};
use smtp_server::{Script, Server};
use tokio::net::TcpListener;

const FROM: &str = "Gateway <noreply@example.nhs.uk>";
const PATIENT: &str = "patient.one@example.com";
const PRACTICE: &str = "Meddygfa Llanfair — ŵ";
const REPLY_TO: &str = "reception@llanfair.example.nhs.uk";
const SUBJECT: &str = "Llanfair — ŵ: the surgery is closed today";
const TEXT: &str = "Bore da. Llanfair — ŵ is closed today.\n.A line that starts with a dot\nDiolch";
const HTML: &str = "<p>Bore da. <b>Llanfair — ŵ</b> is closed today.</p>";
const UNSUBSCRIBE: &str =
    "https://gateway.example.nhs.uk/unsubscribe/0123456789abcdef0123456789abcdef?practice=A12345&channel=email";
const USER: &str = "relay-user";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------
// Building the provider and its messages.

fn config(settings: Value) -> ProviderConfig {
    ProviderConfig {
        name: "smtp-test".into(),
        kind: "smtp".into(),
        channel: Channel::Email,
        rate: None,
        burst: None,
        price_pence: None,
        settings: settings.as_object().cloned().unwrap(),
    }
}

fn provider(settings: Value) -> Arc<dyn Provider> {
    let registry = ProviderRegistry::from_config(&[config(settings)]).unwrap();
    registry.for_channel(Channel::Email)[0].clone()
}

fn build_error(settings: Value) -> String {
    match ProviderRegistry::from_config(&[config(settings)]) {
        Ok(_) => panic!("the config should have been refused"),
        Err(e) => e.to_string(),
    }
}

fn settings(server: &Server) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": server.addr.port(),
        "security": "plain",
        "from": FROM,
        "timeout_ms": 5000,
    })
}

fn outgoing(priority: Priority) -> Outgoing {
    Outgoing {
        message_id: 4242,
        template_key: "status.closed".into(),
        channel: Channel::Email,
        address: PATIENT.into(),
        subject: Some(SUBJECT.into()),
        body: TEXT.into(),
        html: Some(HTML.into()),
        link: None,
        priority,
        practice: PracticeRef {
            ods_code: "A12345".into(),
            name: PRACTICE.into(),
            reply_to: Some(REPLY_TO.into()),
            ..Default::default()
        },
        unsubscribe_url: Some(UNSUBSCRIBE.into()),
        push: None,
        receipt_token: None,
    }
}

/// The class of a failure, for compact assertions.
fn class(error: &SendError) -> &'static str {
    match error {
        SendError::Retryable { .. } => "retryable",
        SendError::Permanent { .. } => "permanent",
        SendError::BadRecipient { .. } => "bad_recipient",
    }
}

fn reason(error: &SendError) -> &str {
    match error {
        SendError::Retryable { reason, .. }
        | SendError::Permanent { reason }
        | SendError::BadRecipient { reason } => reason,
    }
}

fn header<'a>(message: &'a mail_parser::Message<'a>, name: &str) -> Option<String> {
    message.header_raw(name).map(|v| v.trim().to_string())
}

// ---------------------------------------------------------------------------------------
// What arrives.

#[tokio::test]
async fn bulk_email_arrives_with_both_parts_and_one_click_unsubscribe() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    assert_eq!(smtp.name(), "smtp-test");
    assert_eq!(smtp.channel(), Channel::Email);

    let accepted = smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    let provider_ref = accepted.provider_ref.expect("a Message-ID");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.mail_from, "noreply@example.nhs.uk");
    assert_eq!(got.rcpt_to, vec![PATIENT.to_string()]);

    let message = MessageParser::default().parse(&got.data).unwrap();
    assert_eq!(message.subject(), Some(SUBJECT));
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.name(), Some(PRACTICE));
    assert_eq!(from.address(), Some("noreply@example.nhs.uk"));
    let to = message.to().and_then(|a| a.first()).unwrap();
    assert_eq!(to.address(), Some(PATIENT));
    let reply_to = message.reply_to().and_then(|a| a.first()).unwrap();
    assert_eq!(reply_to.address(), Some(REPLY_TO));

    let root = message.root_part().content_type().unwrap();
    assert_eq!(root.ctype(), "multipart");
    assert_eq!(root.subtype(), Some("alternative"));
    assert_eq!(message.text_body_count(), 1);
    assert_eq!(message.html_body_count(), 1);
    let text = message.body_text(0).unwrap();
    assert_eq!(text.replace("\r\n", "\n").trim_end(), TEXT);
    let html = message.body_html(0).unwrap();
    assert_eq!(html.replace("\r\n", "\n").trim_end(), HTML);

    assert_eq!(message.message_id(), Some(provider_ref.as_str()));
    assert!(
        provider_ref.ends_with(".4242@example.nhs.uk"),
        "{provider_ref}"
    );
    let random = provider_ref.split('.').next().unwrap();
    assert_eq!(random.len(), 32, "{provider_ref}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));

    assert_eq!(
        header(&message, "List-Unsubscribe").map(|v| v.replace(['\r', '\n', ' ', '\t'], "")),
        Some(format!("<{UNSUBSCRIBE}>"))
    );
    assert_eq!(
        header(&message, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(message.date().is_some());
}

#[tokio::test]
async fn urgent_text_only_email_has_no_unsubscribe_headers() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    let mut urgent = outgoing(Priority::Urgent);
    urgent.html = None;
    urgent.practice.reply_to = None;

    let accepted = smtp.send(&urgent).await.unwrap();

    let received = server.received();
    let message = MessageParser::default().parse(&received[0].data).unwrap();
    let root = message.root_part().content_type().unwrap();
    assert_eq!(root.ctype(), "text");
    assert_eq!(root.subtype(), Some("plain"));
    assert_eq!(
        message
            .body_text(0)
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end(),
        TEXT
    );
    assert!(message.reply_to().is_none());
    assert!(header(&message, "List-Unsubscribe").is_none());
    assert!(header(&message, "List-Unsubscribe-Post").is_none());
    assert_eq!(message.message_id(), accepted.provider_ref.as_deref());
}

#[tokio::test]
async fn bulk_without_a_link_has_no_unsubscribe_headers_and_message_ids_differ() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    let mut bulk = outgoing(Priority::Bulk);
    bulk.unsubscribe_url = None;
    let first = smtp.send(&bulk).await.unwrap().provider_ref.unwrap();
    let second = smtp.send(&bulk).await.unwrap().provider_ref.unwrap();
    assert_ne!(first, second);

    for got in server.received() {
        let message = MessageParser::default().parse(&got.data).unwrap();
        assert!(header(&message, "List-Unsubscribe").is_none());
    }
}

#[tokio::test]
async fn configured_name_is_used_when_the_practice_has_none() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    let mut message = outgoing(Priority::Urgent);
    message.practice.name = String::new();
    smtp.send(&message).await.unwrap();
    let received = server.received();
    let parsed = MessageParser::default().parse(&received[0].data).unwrap();
    let from = parsed.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.name(), Some("Gateway"));
}

#[tokio::test]
async fn two_practices_send_under_their_own_display_names_and_reply_to() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    let mut riverside = outgoing(Priority::Urgent);
    riverside.practice = PracticeRef {
        ods_code: "A11111".into(),
        name: "Riverside Surgery".into(),
        reply_to: Some("reception@riverside.example.nhs.uk".into()),
        email_display_name: Some("Riverside Surgery, Leeds".into()),
        ..Default::default()
    };
    let mut beta = outgoing(Priority::Urgent);
    beta.practice = PracticeRef {
        ods_code: "B22222".into(),
        name: "Beta Surgery".into(),
        reply_to: Some("hello@beta.example.nhs.uk".into()),
        email_display_name: Some("Beta Surgery — Ŵ".into()),
        ..Default::default()
    };
    smtp.send(&riverside).await.unwrap();
    smtp.send(&beta).await.unwrap();

    let seen: Vec<(String, String, String, String)> = server
        .received()
        .iter()
        .map(|got| {
            let message = MessageParser::default().parse(&got.data).unwrap();
            let from = message.from().and_then(|a| a.first()).unwrap();
            let reply_to = message.reply_to().and_then(|a| a.first()).unwrap();
            (
                from.name().unwrap_or_default().to_string(),
                from.address().unwrap_or_default().to_string(),
                reply_to.name().unwrap_or_default().to_string(),
                reply_to.address().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // The address stays the provider's; the name and Reply-To are each practice's own.
    assert_eq!(
        seen,
        [
            (
                "Riverside Surgery, Leeds".to_string(),
                "noreply@example.nhs.uk".to_string(),
                "Riverside Surgery, Leeds".to_string(),
                "reception@riverside.example.nhs.uk".to_string(),
            ),
            (
                "Beta Surgery — Ŵ".to_string(),
                "noreply@example.nhs.uk".to_string(),
                "Beta Surgery — Ŵ".to_string(),
                "hello@beta.example.nhs.uk".to_string(),
            ),
        ]
    );
}

#[tokio::test]
async fn connections_are_reused_and_replaced_after_a_refusal() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    for _ in 0..3 {
        smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    }
    assert_eq!(server.received().len(), 3);
    assert_eq!(
        server.connections(),
        1,
        "one pooled connection for all three"
    );

    let refusing = Server::start(Script {
        rcpt: Some("550 5.1.1 No such user"),
        ..Script::default()
    })
    .await;
    let smtp = provider(settings(&refusing));
    for _ in 0..2 {
        let error = smtp.send(&outgoing(Priority::Bulk)).await.unwrap_err();
        assert_eq!(class(&error), "bad_recipient", "{error}");
    }
    assert_eq!(
        refusing.connections(),
        2,
        "a connection that saw a refusal is not reused"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced() {
    let server = Server::start(Script {
        close_after_message: true,
        ..Script::default()
    })
    .await;
    let smtp = provider(settings(&server));
    smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    assert_eq!(server.received().len(), 2);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn pool_max_size_zero_closes_each_connection() {
    let server = Server::start(Script::default()).await;
    let mut settings = settings(&server);
    settings["pool_max_size"] = json!(0);
    let smtp = provider(settings);
    smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    assert_eq!(server.received().len(), 2);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn authenticates_when_username_and_password_are_set() {
    std::env::set_var("GATEWAY_TEST_SMTP_PASSWORD_RIGHT", PASSWORD);
    let server = Server::start(Script {
        auth: Some((USER, PASSWORD)),
        ..Script::default()
    })
    .await;
    let mut settings = settings(&server);
    settings["username"] = json!(USER);
    settings["password_env"] = json!("GATEWAY_TEST_SMTP_PASSWORD_RIGHT");
    provider(settings)
        .send(&outgoing(Priority::Urgent))
        .await
        .unwrap();
    assert_eq!(server.received().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Faults and their classes.

#[tokio::test]
async fn smtp_replies_are_classified() {
    let cases: &[(Script, &str)] = &[
        (
            Script {
                rcpt: Some("550 5.1.1 <patient.one@example.com>: Recipient address rejected"),
                ..Script::default()
            },
            "bad_recipient",
        ),
        (
            Script {
                rcpt: Some("553 5.1.3 Bad recipient address syntax"),
                ..Script::default()
            },
            "bad_recipient",
        ),
        (
            Script {
                rcpt: Some("550 Requested action not taken: mailbox unavailable"),
                ..Script::default()
            },
            "bad_recipient",
        ),
        (
            Script {
                rcpt: Some("554 5.7.1 Relay access denied"),
                ..Script::default()
            },
            "permanent",
        ),
        (
            Script {
                rcpt: Some("451 4.3.0 Temporary lookup failure"),
                ..Script::default()
            },
            "retryable",
        ),
        (
            Script {
                rcpt: Some("450 4.2.0 Mailbox busy"),
                ..Script::default()
            },
            "retryable",
        ),
        (
            Script {
                rcpt: Some("452 4.5.3 Too many recipients"),
                ..Script::default()
            },
            "retryable",
        ),
        (
            Script {
                rcpt: Some("421 4.3.2 Service shutting down"),
                ..Script::default()
            },
            "retryable",
        ),
        (
            Script {
                data_end: Some("552 5.3.4 Message size exceeds fixed limit"),
                ..Script::default()
            },
            "permanent",
        ),
        (
            Script {
                data_end: Some("554 5.6.0 Message content rejected"),
                ..Script::default()
            },
            "permanent",
        ),
        (
            Script {
                data_end: Some("550 5.7.1 Message rejected as spam"),
                ..Script::default()
            },
            "permanent",
        ),
        (
            Script {
                data_end: Some("550 Message rejected"),
                ..Script::default()
            },
            "permanent",
        ),
        (
            Script {
                data_end: Some("451 4.7.1 Greylisted, try again later"),
                ..Script::default()
            },
            "retryable",
        ),
    ];
    for (script, expected) in cases {
        let server = Server::start(script.clone()).await;
        let error = provider(settings(&server))
            .send(&outgoing(Priority::Bulk))
            .await
            .unwrap_err();
        assert_eq!(class(&error), *expected, "{script:?}: {error}");
        assert!(
            !reason(&error).contains("patient.one"),
            "the reason must not carry the address: {error}"
        );
        assert!(server.received().is_empty());
    }
}

#[tokio::test]
async fn wrong_password_is_permanent() {
    std::env::set_var("GATEWAY_TEST_SMTP_PASSWORD_WRONG", "not the password");
    let server = Server::start(Script {
        auth: Some((USER, PASSWORD)),
        ..Script::default()
    })
    .await;
    let mut settings = settings(&server);
    settings["username"] = json!(USER);
    settings["password_env"] = json!("GATEWAY_TEST_SMTP_PASSWORD_WRONG");
    let error = provider(settings)
        .send(&outgoing(Priority::Urgent))
        .await
        .unwrap_err();
    assert_eq!(class(&error), "permanent", "{error}");
    assert!(reason(&error).contains("535"), "{error}");
    assert!(!reason(&error).contains("not the password"), "{error}");
}

#[tokio::test]
async fn missing_credentials_when_the_relay_wants_them_is_permanent() {
    let server = Server::start(Script {
        auth: Some((USER, PASSWORD)),
        ..Script::default()
    })
    .await;
    let error = provider(settings(&server))
        .send(&outgoing(Priority::Urgent))
        .await
        .unwrap_err();
    assert_eq!(class(&error), "permanent", "{error}");
    assert!(reason(&error).contains("530"), "{error}");
}

#[tokio::test]
async fn unparsable_address_is_a_bad_recipient_without_connecting() {
    let server = Server::start(Script::default()).await;
    let smtp = provider(settings(&server));
    for address in ["not an address", "", "patient@", "@example.com", "a@b@c"] {
        let mut message = outgoing(Priority::Urgent);
        message.address = address.into();
        let error = smtp.send(&message).await.unwrap_err();
        assert_eq!(class(&error), "bad_recipient", "{address:?}: {error}");
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let smtp = provider(json!({
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "from": FROM,
    }));
    let error = smtp.send(&outgoing(Priority::Urgent)).await.unwrap_err();
    assert_eq!(class(&error), "retryable", "{error}");
}

#[tokio::test]
async fn silent_peer_times_out_as_retryable() {
    let server = Server::start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let mut settings = settings(&server);
    settings["timeout_ms"] = json!(300);
    let smtp = provider(settings);
    let started = Instant::now();
    let error = smtp.send(&outgoing(Priority::Urgent)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(class(&error), "retryable", "{error}");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn a_connection_abandoned_mid_transaction_is_not_reused() {
    let server = Server::start(Script {
        stall_data_end: 1,
        ..Script::default()
    })
    .await;
    let mut settings = settings(&server);
    settings["timeout_ms"] = json!(300);
    let smtp = provider(settings);
    let started = Instant::now();
    let error = smtp.send(&outgoing(Priority::Bulk)).await.unwrap_err();
    assert_eq!(class(&error), "retryable", "{error}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    smtp.send(&outgoing(Priority::Bulk)).await.unwrap();
    assert_eq!(server.received().len(), 1);
    assert_eq!(
        server.connections(),
        2,
        "the stalled connection was dropped"
    );
}

/// A peer that is not an SMTP server (an HTTP port, say) gives an unreadable greeting: retryable,
/// like any other broken connection; `max_attempts` bounds the retries and the reason says why.
#[tokio::test]
async fn garbage_greeting_is_retryable_and_does_not_panic() {
    let server = Server::start(Script {
        garbage: true,
        ..Script::default()
    })
    .await;
    let mut settings = settings(&server);
    settings["timeout_ms"] = json!(2000);
    let started = Instant::now();
    let error = provider(settings)
        .send(&outgoing(Priority::Urgent))
        .await
        .unwrap_err();
    assert_eq!(class(&error), "retryable", "{error}");
    assert!(reason(&error).contains("unreadable"), "{error}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn starttls_not_offered_is_refused_before_sending() {
    let server = Server::start(Script::default()).await;
    let mut settings = settings(&server);
    settings["security"] = json!("starttls");
    let smtp = provider(settings);
    let error = smtp.send(&outgoing(Priority::Urgent)).await.unwrap_err();
    assert_eq!(class(&error), "retryable", "{error}");
    assert!(reason(&error).contains("STARTTLS"), "{error}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn tls_against_a_plain_server_is_retryable() {
    let server = Server::start(Script::default()).await;
    let mut settings = settings(&server);
    settings["security"] = json!("tls");
    settings["timeout_ms"] = json!(2000);
    let error = provider(settings)
        .send(&outgoing(Priority::Urgent))
        .await
        .unwrap_err();
    assert_eq!(class(&error), "retryable", "{error}");
    assert!(server.received().is_empty());
}

// ---------------------------------------------------------------------------------------
// Configuration.

#[test]
fn bad_settings_are_refused_by_name() {
    let base = json!({"host": "smtp.example.nhs.uk", "from": FROM});
    let with = |key: &str, value: Value| {
        let mut settings = base.clone();
        settings[key] = value;
        settings
    };

    let message = build_error(with("hots", json!("smtp.example.nhs.uk")));
    assert!(message.contains("hots"), "{message}");
    assert!(message.contains("smtp-test"), "{message}");

    let message = build_error(with("security", json!("ssl")));
    assert!(message.contains("ssl"), "{message}");

    let message = build_error(with("from", json!("not a mailbox")));
    assert!(message.contains("`from`"), "{message}");

    let message = build_error(json!({"from": FROM}));
    assert!(message.contains("host"), "{message}");

    let message = build_error(with("username", json!(USER)));
    assert!(message.contains("password_env"), "{message}");

    let message = build_error(with("timeout_ms", json!(0)));
    assert!(message.contains("timeout_ms"), "{message}");

    let mut sms = config(base.clone());
    sms.channel = Channel::Sms;
    let message = ProviderRegistry::from_config(&[sms])
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("email"), "{message}");
}

#[test]
fn missing_password_variable_names_the_setting() {
    let mut settings = json!({"host": "smtp.example.nhs.uk", "from": FROM, "username": USER});
    settings["password_env"] = json!("GATEWAY_TEST_SMTP_PASSWORD_NEVER_SET");
    let message = build_error(settings.clone());
    assert!(message.contains("password_env"), "{message}");
    assert!(
        message.contains("GATEWAY_TEST_SMTP_PASSWORD_NEVER_SET"),
        "{message}"
    );
    // Checking the config alone does not need the secret.
    assert!(gateway::providers::check_config(&config(settings)).is_ok());
}

#[test]
fn good_settings_build_without_connecting() {
    for security in ["starttls", "tls", "plain"] {
        let registry = ProviderRegistry::from_config(&[config(json!({
            "host": "smtp.example.nhs.uk",
            "security": security,
            "from": FROM,
            "pool_max_size": 4,
            "timeout_ms": 15000,
        }))])
        .unwrap();
        assert_eq!(registry.for_channel(Channel::Email).len(), 1);
    }
}
