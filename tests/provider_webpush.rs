//! The `webpush` provider against a real push service on 127.0.0.1 that checks the VAPID
//! token and decrypts the payload with its own RFC 8291 code, as a browser would.

// Shared with the end-to-end tests, which use parts this file does not.
#[allow(dead_code)]
#[path = "support/push_service.rs"]
mod push_service;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{json, Value};

use gateway::config::ProviderConfig;
use gateway::domain::{Channel, Priority};
use gateway::providers::{
    generate_vapid_keys, Outgoing, PracticeRef, Provider, ProviderRegistry, PushKeys, SendError,
};
use push_service::{rfc8291_decrypt, Browser, PushService, Reply};

const SUBJECT: &str = "mailto:it-support@highstreet-surgery.nhs.uk";

// ---------------------------------------------------------------------------------------------
// The push service's RFC 8291 decryptor (tests/support/push_service.rs) is checked first.

fn b64(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(value)
        .expect("test vector is base64url")
}

/// RFC 8291 Appendix A: the decryptor above must reproduce the RFC's example.
#[tokio::test]
async fn independent_decryptor_matches_rfc8291_appendix_a() {
    let ua_private = b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94");
    let ua_public = b64(
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    );
    let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
    let as_public = b64(
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
    );
    let shared = b64("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
    let message = b64(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLoc\
         InmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLV\
         WGNWQexSgSxsj_Qulcy4a-fN",
    );

    let ua_secret = p256::SecretKey::from_slice(&ua_private).unwrap();
    assert_eq!(
        ua_secret.public_key().to_encoded_point(false).as_bytes(),
        &ua_public[..]
    );
    let as_key = p256::PublicKey::from_sec1_bytes(&as_public).unwrap();
    let ecdh = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_key.as_affine());
    assert_eq!(ecdh.raw_secret_bytes().as_slice(), &shared[..]);
    assert_eq!(
        &message[21..86],
        &as_public[..],
        "keyid is the sender's public key"
    );

    let plain = rfc8291_decrypt(&ua_secret, &auth, &message).unwrap();
    assert_eq!(plain, b"When I grow up, I want to be a watermelon");

    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(rfc8291_decrypt(&ua_secret, &auth, &tampered).is_err());
}

// ---------------------------------------------------------------------------------------------
// Building providers and messages.

/// A fresh VAPID key pair with its private key in the environment variable `variable`.
fn vapid_keys_in_env(variable: &str) -> String {
    let (public, private) = generate_vapid_keys();
    std::env::set_var(variable, private);
    public
}

fn settings(public: &str, variable: &str, extra: Value) -> serde_json::Map<String, Value> {
    let mut settings = json!({
        "vapid_public_key": public,
        "vapid_private_key_env": variable,
        "subject": SUBJECT,
        "allow_insecure_hosts": ["127.0.0.1"],
        "allowed_networks": ["127.0.0.0/8"],
    });
    if let (Some(map), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    settings.as_object().cloned().unwrap()
}

fn build(settings: serde_json::Map<String, Value>) -> Result<Arc<dyn Provider>, String> {
    let config = ProviderConfig {
        name: "browser-push".into(),
        kind: "webpush".into(),
        channel: Channel::Push,
        rate: None,
        burst: None,
        price_pence: None,
        settings,
    };
    let registry = ProviderRegistry::from_config(&[config]).map_err(|e| e.to_string())?;
    Ok(registry.for_channel(Channel::Push)[0].clone())
}

/// A provider for `service`, its key in an environment variable named after `test`.
fn provider_for(test: &str, extra: Value) -> (String, Arc<dyn Provider>) {
    let variable = format!("GATEWAY_TEST_WEBPUSH_{test}");
    let public = vapid_keys_in_env(&variable);
    let provider = build(settings(&public, &variable, extra)).unwrap();
    (public, provider)
}

fn message(address: String, keys: Option<PushKeys>, priority: Priority) -> Outgoing {
    Outgoing {
        message_id: 7001,
        template_key: "status.closed".into(),
        channel: Channel::Push,
        address,
        subject: Some("High Street Surgery".into()),
        body: "The surgery is closed on Friday afternoon for staff training.".into(),
        html: None,
        link: None,
        priority,
        practice: PracticeRef {
            ods_code: "A81001".into(),
            name: "High Street Surgery".into(),
            reply_to: None,
            ..Default::default()
        },
        unsubscribe_url: None,
        push: keys,
        receipt_token: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery.

#[tokio::test]
async fn bulk_push_is_signed_encrypted_and_replaceable() {
    let variable = "GATEWAY_TEST_WEBPUSH_BULK";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(
        &public,
        SUBJECT,
        Reply::status(201).header("location", "https://push.example.net/m/msg-123"),
    )
    .await;
    let provider = build(settings(&public, variable, json!({"ttl_seconds": 3600}))).unwrap();
    assert_eq!(provider.name(), "browser-push");
    assert_eq!(provider.channel(), Channel::Push);

    let keys = service.keys();
    let accepted = provider
        .send(&message(
            service.endpoint("sub-1"),
            Some(keys),
            Priority::Bulk,
        ))
        .await
        .unwrap();
    assert_eq!(
        accepted.provider_ref.as_deref(),
        Some("https://push.example.net/m/msg-123")
    );

    let delivered = service.delivered();
    assert_eq!(delivered.path, "/push/sub-1");
    assert_eq!(delivered.ttl, "3600");
    assert_eq!(delivered.urgency, "normal");
    assert_eq!(delivered.topic.as_deref(), Some("practice-A81001"));
    assert!(
        delivered.exp_in_seconds <= 12 * 3600 + 5,
        "{}",
        delivered.exp_in_seconds
    );
    assert_eq!(delivered.payload["title"], "High Street Surgery");
    assert_eq!(
        delivered.payload["body"],
        "The surgery is closed on Friday afternoon for staff training."
    );
    assert_eq!(delivered.payload["practice"], "A81001");
    assert_eq!(delivered.payload["message_id"], 7001);
}

#[tokio::test]
async fn urgent_push_is_high_urgency_without_topic() {
    let variable = "GATEWAY_TEST_WEBPUSH_URGENT";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, SUBJECT, Reply::status(201)).await;
    let provider = build(settings(&public, variable, json!({}))).unwrap();

    let mut urgent = message(
        service.endpoint("sub-2"),
        Some(service.keys()),
        Priority::Urgent,
    );
    urgent.subject = Some("Appointment moved".into());
    urgent.body = "Your appointment is now at 10:40 on Tuesday.".into();
    let accepted = provider.send(&urgent).await.unwrap();
    assert_eq!(accepted.provider_ref, None);

    let delivered = service.delivered();
    assert_eq!(delivered.ttl, "86400");
    assert_eq!(delivered.urgency, "high");
    assert_eq!(delivered.topic, None);
    assert_eq!(delivered.payload["title"], "Appointment moved");
    assert_eq!(
        delivered.payload["body"],
        "Your appointment is now at 10:40 on Tuesday."
    );
}

#[tokio::test]
async fn push_services_status_codes_are_classified() {
    let variable = "GATEWAY_TEST_WEBPUSH_STATUSES";
    let public = vapid_keys_in_env(variable);
    let provider = build(settings(&public, variable, json!({}))).unwrap();

    let cases: Vec<(Reply, &str)> = vec![
        (Reply::status(200), "accepted"),
        (Reply::status(202), "accepted"),
        (Reply::status(410), "bad recipient"),
        (Reply::status(404), "bad recipient"),
        (Reply::status(413), "permanent"),
        (Reply::status(400), "permanent"),
        (Reply::status(403), "permanent"),
        (Reply::status(401), "permanent"),
        (
            Reply::status(429).header("retry-after", "2"),
            "retry after 2",
        ),
        (Reply::status(500), "retryable"),
        (Reply::status(503), "retryable"),
    ];
    for (reply, expected) in cases {
        let status = reply.status;
        let service = PushService::start(&public, SUBJECT, reply).await;
        let result = provider
            .send(&message(
                service.endpoint("sub"),
                Some(service.keys()),
                Priority::Bulk,
            ))
            .await;
        // The request itself was valid: only the reply differs.
        service.delivered();
        let got = match &result {
            Ok(_) => "accepted".to_string(),
            Err(SendError::BadRecipient { .. }) => "bad recipient".into(),
            Err(SendError::Permanent { .. }) => "permanent".into(),
            Err(SendError::Retryable {
                retry_after: Some(wait),
                ..
            }) => format!("retry after {}", wait.as_secs()),
            Err(SendError::Retryable { .. }) => "retryable".into(),
        };
        assert_eq!(got, expected, "status {status}: {result:?}");
        if let Err(e) = &result {
            assert!(
                !e.to_string().contains("/push/"),
                "endpoint path leaked: {e}"
            );
        }
    }
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let (_, provider) = provider_for("REFUSED", json!({"timeout_ms": 2000}));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let browser = Browser::new();
    let result = provider
        .send(&message(
            format!("http://{addr}/push/gone"),
            Some(browser.keys()),
            Priority::Bulk,
        ))
        .await;
    match result {
        Err(SendError::Retryable { reason, .. }) => {
            assert!(!reason.contains("/push/gone"), "endpoint leaked: {reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slow_push_service_times_out_as_retryable() {
    let variable = "GATEWAY_TEST_WEBPUSH_SLOW";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(
        &public,
        SUBJECT,
        Reply::status(201).after(Duration::from_secs(5)),
    )
    .await;
    let provider = build(settings(&public, variable, json!({"timeout_ms": 300}))).unwrap();
    let started = Instant::now();
    let result = provider
        .send(&message(
            service.endpoint("slow"),
            Some(service.keys()),
            Priority::Urgent,
        ))
        .await;
    assert!(
        matches!(result, Err(SendError::Retryable { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Refused before sending.

#[tokio::test]
async fn plain_http_endpoints_need_an_allowed_host() {
    let variable = "GATEWAY_TEST_WEBPUSH_INSECURE";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, SUBJECT, Reply::status(201)).await;
    let strict = build(settings(
        &public,
        variable,
        json!({"allow_insecure_hosts": []}),
    ))
    .unwrap();
    let other_host = build(settings(
        &public,
        variable,
        json!({"allow_insecure_hosts": ["push.internal"]}),
    ))
    .unwrap();
    for provider in [strict, other_host] {
        let result = provider
            .send(&message(
                service.endpoint("plain"),
                Some(service.keys()),
                Priority::Bulk,
            ))
            .await;
        assert!(
            matches!(result, Err(SendError::Permanent { .. })),
            "{result:?}"
        );
    }
    assert!(service.received().is_empty(), "a request was sent");
}

#[tokio::test]
async fn missing_or_malformed_keys_are_bad_recipients() {
    let variable = "GATEWAY_TEST_WEBPUSH_KEYS";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, SUBJECT, Reply::status(201)).await;
    let provider = build(settings(&public, variable, json!({}))).unwrap();
    let good = service.keys();
    let compressed = URL_SAFE_NO_PAD.encode(
        service
            .state
            .browser
            .secret
            .public_key()
            .to_encoded_point(true)
            .as_bytes(),
    );
    let not_on_curve = URL_SAFE_NO_PAD.encode([4u8; 65]);
    let bad_keys = [
        None,
        Some(PushKeys {
            p256dh: "not base64 !!".into(),
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: compressed,
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: not_on_curve,
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: good.p256dh.clone(),
            auth: URL_SAFE_NO_PAD.encode([1u8; 15]),
        }),
        Some(PushKeys {
            p256dh: good.p256dh.clone(),
            auth: "***".into(),
        }),
        Some(PushKeys {
            p256dh: String::new(),
            auth: String::new(),
        }),
    ];
    for keys in bad_keys {
        let result = provider
            .send(&message(
                service.endpoint("keys"),
                keys.clone(),
                Priority::Bulk,
            ))
            .await;
        assert!(
            matches!(result, Err(SendError::BadRecipient { .. })),
            "{keys:?}: {result:?}"
        );
    }
    for address in [
        "not a url",
        "ftp://127.0.0.1/push",
        "http://user:pw@127.0.0.1/push",
    ] {
        let result = provider
            .send(&message(address.into(), Some(good.clone()), Priority::Bulk))
            .await;
        assert!(
            matches!(result, Err(SendError::BadRecipient { .. })),
            "{address}: {result:?}"
        );
    }
    assert!(service.received().is_empty(), "a request was sent");
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[tokio::test]
async fn bad_configuration_fails_naming_the_key() {
    let variable = "GATEWAY_TEST_WEBPUSH_CONFIG";
    let public = vapid_keys_in_env(variable);
    assert!(build(settings(&public, variable, json!({}))).is_ok());

    let fails = |extra: Value, key: &str| {
        let error = build(settings(&public, variable, extra))
            .err()
            .expect("config accepted");
        assert!(error.contains(key), "{error} does not name {key}");
        assert!(
            error.contains("browser-push"),
            "{error} does not name the provider"
        );
    };
    for subject in [
        "it-support@highstreet-surgery.nhs.uk",
        "mailto:",
        "mailto:nobody",
        "http://highstreet-surgery.nhs.uk",
        "mailto:admin@example.com",
        "mailto:me@localhost",
    ] {
        fails(json!({ "subject": subject }), "subject");
    }
    fails(json!({"vapid_public_key": "AAAA"}), "vapid_public_key");
    fails(json!({"ttl_seconds": 100_000_000}), "ttl_seconds");
    fails(json!({"timeout_ms": 0}), "timeout_ms");
    fails(
        json!({"vapid_private_key_env": "GATEWAY_TEST_WEBPUSH_UNSET_VARIABLE"}),
        "vapid_private_key_env",
    );
    fails(json!({"unexpected": true}), "unexpected");

    // A key pair that does not belong together.
    let (other_public, _) = generate_vapid_keys();
    fails(
        json!({ "vapid_public_key": other_public }),
        "vapid_private_key_env",
    );
    let garbage = "GATEWAY_TEST_WEBPUSH_CONFIG_GARBAGE";
    std::env::set_var(garbage, "not-a-key");
    fails(
        json!({ "vapid_private_key_env": garbage }),
        "vapid_private_key_env",
    );
}
