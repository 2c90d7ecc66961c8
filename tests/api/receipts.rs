//! Provider callbacks move messages to delivered or failed, forged ones change nothing, and
//! a STOP reply keeps the next broadcast away from that number.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    nhs, spawn_app, Db, Reply, TestApp, NOTIFY_TOKEN, TWILIO_TOKEN, WEBHOOK_SECRET,
};
use gateway::receipts::{twilio_signature, webhook_signature};

fn sms_patients(count: u32) -> Value {
    let patients: Vec<Value> = (0..count)
        .map(|i| json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{:03}", i) }] }))
        .collect();
    json!({ "patients": patients })
}

/// A form body and its parameters (as signed), from `(name, value)` pairs.
pub fn form(params: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        body.append_pair(k, v);
    }
    let owned = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (body.finish(), owned)
}

/// The state of message `id` as the API reports it.
pub async fn message_state(app: &crate::helpers::TestApp, key: &str, id: i64) -> String {
    let detail = app.get(&format!("/api/v1/messages/{id}"), key).await.body;
    detail["message"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Posts a `webhook` receipt for `reference`, signed with the right secret.
pub async fn webhook_receipt(app: &TestApp, reference: &str, status: &str) -> Reply {
    let body = json!({ "reference": reference, "status": status }).to_string();
    let signature = webhook_signature(WEBHOOK_SECRET, body.as_bytes());
    app.callback(
        "/api/v1/receipts/webhook",
        "application/json",
        &[("x-gateway-signature", signature)],
        body,
    )
    .await
}

pub async fn receipts_settle_messages_and_forgeries_change_nothing(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("R10001", "Receipt Surgery").await;
    app.post("/api/v1/practices/R10001/patients", &key, &sms_patients(5))
        .await;
    let broadcast = app
        .post(
            "/api/v1/practices/R10001/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    app.drain().await;
    let id = broadcast["id"].as_i64().unwrap();
    let page = app
        .get(&format!("/api/v1/broadcasts/{id}/messages"), &key)
        .await
        .body;
    let ids: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let reference = |id: i64| format!("log-{id}");

    // webhook: signed receipt settles; a forged one is refused; an unknown reference is 404.
    let reply = webhook_receipt(&app, &reference(ids[0]), "delivered").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(message_state(&app, &key, ids[0]).await, "delivered");
    let forged_body = json!({ "reference": reference(ids[1]), "status": "failed" }).to_string();
    let forged = vec![(
        "x-gateway-signature",
        webhook_signature("not-the-secret", forged_body.as_bytes()),
    )];
    let reply = app
        .callback(
            "/api/v1/receipts/webhook",
            "application/json",
            &forged,
            forged_body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(message_state(&app, &key, ids[1]).await, "sent");
    let unknown = webhook_receipt(&app, "log-999999", "delivered").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // twilio: form callback signed over the public URL and sorted parameters.
    let url = format!(
        "{}/api/v1/receipts/twilio",
        app.state.config.receipts.public_url
    );
    let sid = reference(ids[1]);
    let (body, params) = form(&[
        ("MessageSid", &sid),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ]);
    let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
    let reply = app
        .callback(
            "/api/v1/receipts/twilio",
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", signature)],
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let detail = app
        .get(&format!("/api/v1/messages/{}", ids[1]), &key)
        .await
        .body;
    assert_eq!(detail["message"]["state"], "failed");
    assert_eq!(detail["message"]["last_error"], "Twilio error 30003");
    let (body, _) = form(&[
        ("MessageSid", &reference(ids[2])),
        ("MessageStatus", "delivered"),
    ]);
    let reply = app
        .callback(
            "/api/v1/receipts/twilio",
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", "bm9wZQ==".into())],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(message_state(&app, &key, ids[2]).await, "sent");

    // notify: bearer token.
    let body =
        json!({ "id": reference(ids[2]), "reference": ids[2].to_string(), "status": "delivered" })
            .to_string();
    let wrong = vec![("authorization", "Bearer nope".to_string())];
    assert_eq!(
        app.callback(
            "/api/v1/receipts/notify",
            "application/json",
            &wrong,
            body.clone()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let right = vec![("authorization", format!("Bearer {NOTIFY_TOKEN}"))];
    assert_eq!(
        app.callback("/api/v1/receipts/notify", "application/json", &right, body)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(message_state(&app, &key, ids[2]).await, "delivered");

    // A receipt never moves a message backwards.
    let reply = webhook_receipt(&app, &reference(ids[0]), "failed").await;
    assert_eq!(reply.body["state_changed"], false);
    assert_eq!(message_state(&app, &key, ids[0]).await, "delivered");
}

pub async fn stop_reply_stops_the_next_broadcast(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("R10002", "Reply Surgery").await;
    app.post("/api/v1/practices/R10002/patients", &key, &sms_patients(3))
        .await;
    let first = app
        .post(
            "/api/v1/practices/R10002/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    assert_eq!(first["planned"]["sms"], 3);
    app.drain().await;

    let url = format!(
        "{}/api/v1/inbound/sms/twilio",
        app.state.config.receipts.public_url
    );
    let reply_with = |text: &'static str| {
        let (body, params) = form(&[
            ("From", "+447700900001"),
            ("To", "+447700900999"),
            ("Body", text),
            ("MessageSid", "SM1"),
        ]);
        let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
        (body, signature)
    };
    let (body, signature) = reply_with("  Stop ");
    let forged = app
        .callback(
            "/api/v1/inbound/sms/twilio",
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", "eA==".into())],
            body.clone(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let reply = app
        .callback(
            "/api/v1/inbound/sms/twilio",
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", signature)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let patient = app
        .get(
            &format!("/api/v1/practices/R10002/patients/{}", nhs(1)),
            &key,
        )
        .await
        .body;
    assert!(
        patient["contacts"][0]["opted_out_at"].is_string(),
        "{patient}"
    );

    let second = app
        .post(
            "/api/v1/practices/R10002/status",
            &key,
            &json!({ "kind": "restored" }),
        )
        .await
        .body;
    assert_eq!(second["planned"]["sms"], 2);
    let messages = app
        .get(
            &format!("/api/v1/broadcasts/{}/messages", second["id"]),
            &key,
        )
        .await
        .body;
    assert!(messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["address"] != "+447700900001"));

    let (body, signature) = reply_with("START");
    app.callback(
        "/api/v1/inbound/sms/twilio",
        "application/x-www-form-urlencoded",
        &[("x-twilio-signature", signature)],
        body,
    )
    .await;
    let third = app
        .post(
            "/api/v1/practices/R10002/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    assert_eq!(third["planned"]["sms"], 3);
}

pub async fn push_subscriptions_are_checked_and_used(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("R10003", "Push Surgery").await;
    let patients = json!({ "patients": [{ "nhs_number": nhs(7), "preferred_channel": "push", "contacts": [{ "channel": "email", "address": "p7@example.com" }] }] });
    app.post("/api/v1/practices/R10003/patients", &key, &patients)
        .await;
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let mut point = vec![4u8; 65];
    point[0] = 4;
    let good = json!({ "endpoint": "https://push.example.com/send/abc", "keys": { "p256dh": b64(&point), "auth": b64(&[9u8; 16]) } });
    let path = format!(
        "/api/v1/practices/R10003/patients/{}/push-subscriptions",
        nhs(7)
    );
    let reply = app.post(&path, &key, &good).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let internal = json!({ "endpoint": "http://169.254.169.254/latest", "keys": { "p256dh": b64(&point), "auth": b64(&[9u8; 16]) } });
    let reply = app.post(&path, &key, &internal).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["details"][0]["field"], "endpoint");
    let unknown = format!(
        "/api/v1/practices/R10003/patients/{}/push-subscriptions",
        nhs(8)
    );
    assert_eq!(
        app.post(&unknown, &key, &good).await.status,
        StatusCode::NOT_FOUND
    );

    let broadcast = app
        .post(
            "/api/v1/practices/R10003/status",
            &key,
            &json!({ "kind": "phones_down" }),
        )
        .await
        .body;
    assert_eq!(broadcast["planned"]["push"], 1, "{broadcast}");
    app.drain().await;
    let line = app.sent_lines().pop().unwrap();
    assert_eq!(line["channel"], "push");
    assert_eq!(line["to"], "https://push.example.com/send/abc");
    assert_eq!(line["subject"], "Push Surgery: phones down");
}

pub async fn email_unsubscribe_link_opts_out_in_one_click(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("R10004", "Mail Surgery").await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "email", "address": "one@example.com" }] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "email", "address": "two@example.com" }] },
    ]});
    app.post("/api/v1/practices/R10004/patients", &key, &patients)
        .await;
    app.post(
        "/api/v1/practices/R10004/status",
        &key,
        &json!({ "kind": "closed" }),
    )
    .await;
    app.drain().await;
    let lines = app.sent_lines();
    let link = lines.iter().find(|l| l["to"] == "one@example.com").unwrap()["unsubscribe_url"]
        .as_str()
        .unwrap()
        .to_string();
    let other = lines.iter().find(|l| l["to"] == "two@example.com").unwrap()["unsubscribe_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(link, other, "each recipient has their own link");
    let path = link
        .trim_start_matches(&app.state.config.receipts.public_url)
        .to_string();
    assert!(path.starts_with("/unsubscribe/"), "{link}");

    let page = reqwest::get(format!("{}{path}", app.address))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    let forged = format!(
        "{}{}",
        app.address,
        path.replace("/unsubscribe/", "/unsubscribe/9")
    );
    assert_eq!(
        reqwest::Client::new()
            .post(forged)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // RFC 8058 one-click: a POST with List-Unsubscribe=One-Click.
    let reply = app
        .callback(
            &path,
            "application/x-www-form-urlencoded",
            &[],
            "List-Unsubscribe=One-Click".into(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let next = app
        .post(
            "/api/v1/practices/R10004/status",
            &key,
            &json!({ "kind": "restored" }),
        )
        .await
        .body;
    assert_eq!(next["planned"]["email"], 1, "{next}");
    let messages = app
        .get(&format!("/api/v1/broadcasts/{}/messages", next["id"]), &key)
        .await
        .body;
    assert_eq!(messages["messages"][0]["address"], "two@example.com");
}
