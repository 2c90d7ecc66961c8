//! Staff mobile numbers: a practice registers, lists and removes them; the audit log keeps
//! who did it; other practices see nothing.

use gateway::domain::PhoneNumber;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db};

/// How the audit trail names the caller holding `key`.
fn actor_of(key: &str) -> String {
    format!("key:{}", &key[..11])
}

pub async fn staff_numbers_are_added_listed_and_removed(db: Db) {
    let app = spawn_app(db).await;
    let a = app.practice_with_key("A13001", "Surgery A").await;
    let b = app.practice_with_key("B13001", "Surgery B").await;

    let added = app
        .post(
            "/api/v1/practices/A13001/staff",
            &a,
            &json!({ "name": " Dr Ada Jones ", "phone": "07700 900131", "role": "approve" }),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["name"], "Dr Ada Jones");
    assert_eq!(added.body["phone"], "+447700900131");
    assert_eq!(added.body["role"], "approve");
    assert_eq!(added.body["created_by"], actor_of(&a).as_str());
    assert!(added.body["created_at"].is_string(), "{}", added.body);
    let ada = added.body["id"].as_i64().expect("id");

    let added = app
        .post(
            "/api/v1/practices/a13001/staff",
            &a,
            &json!({ "name": "Reception", "phone": "+44 7700 900132", "role": "post" }),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let reception = added.body["id"].as_i64().expect("id");
    // The same person may be registered at a second practice too.
    let elsewhere = app
        .post(
            "/api/v1/practices/B13001/staff",
            &b,
            &json!({ "name": "Ada (locum)", "phone": "447700900131", "role": "post" }),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", elsewhere.body);

    let listed = app.get("/api/v1/practices/A13001/staff", &a).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let staff: Vec<(&str, &str, &str)> = listed.body["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default(),
                s["phone"].as_str().unwrap_or_default(),
                s["role"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        staff,
        [
            ("Dr Ada Jones", "+447700900131", "approve"),
            ("Reception", "+447700900132", "post"),
        ]
    );
    // An admin sees the practice's numbers too.
    let listed = app
        .get("/api/v1/practices/A13001/staff", &app.admin_key)
        .await;
    assert_eq!(listed.body["staff"].as_array().map(Vec::len), Some(2));

    // The later inbound webhook finds every practice a number is registered at.
    let phone = PhoneNumber::parse("07700900131").expect("phone");
    let found = app
        .state
        .store
        .staff_numbers_by_phone(&phone)
        .await
        .expect("by phone");
    let practices: Vec<_> = found.iter().map(|s| s.practice_id).collect();
    assert_eq!(
        practices,
        [
            app.practice_id("A13001").await,
            app.practice_id("B13001").await
        ]
    );

    let path = format!("/api/v1/practices/A13001/staff/{reception}");
    let removed = app.request(Method::DELETE, &path, Some(&a), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_eq!(removed.body, Value::Null);
    let again = app.request(Method::DELETE, &path, Some(&a), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    assert_eq!(again.body["error"]["code"], "not_found");
    let not_an_id = app
        .request(
            Method::DELETE,
            "/api/v1/practices/A13001/staff/reception",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(not_an_id.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/practices/A13001/staff", &a).await;
    let ids: Vec<i64> = listed.body["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .filter_map(|s| s["id"].as_i64())
        .collect();
    assert_eq!(ids, [ada]);

    // Each registration and removal is in the practice's audit log, with who did it.
    let practice_id = app.practice_id("A13001").await;
    let audit = app
        .state
        .store
        .audit_trail(practice_id, 20)
        .await
        .expect("audit");
    let staff_events: Vec<(&str, &str, Option<&str>)> = audit
        .iter()
        .filter(|e| e.action.starts_with("staff_number."))
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_deref()))
        .collect();
    let actor = actor_of(&a);
    let subject = |id: i64| format!("staff_number:{id}");
    let (ada_subject, reception_subject) = (subject(ada), subject(reception));
    let mut expected = vec![
        (
            actor.as_str(),
            "staff_number.removed",
            Some(reception_subject.as_str()),
        ),
        (
            actor.as_str(),
            "staff_number.added",
            Some(reception_subject.as_str()),
        ),
        (
            actor.as_str(),
            "staff_number.added",
            Some(ada_subject.as_str()),
        ),
    ];
    // Newest first, but entries written in the same millisecond may come in either order.
    let mut got = staff_events.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{staff_events:?}");
    let removal = audit
        .iter()
        .find(|e| e.action == "staff_number.removed")
        .and_then(|e| e.details.as_deref())
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .expect("removal details");
    assert_eq!(
        removal,
        json!({ "name": "Reception", "phone": "+447700900132", "role": "post" })
    );
}

pub async fn duplicate_and_invalid_staff_numbers_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let a = app.practice_with_key("A13002", "Surgery A").await;
    let first = app
        .post(
            "/api/v1/practices/A13002/staff",
            &a,
            &json!({ "name": "Dr Jones", "phone": "07700 900133", "role": "post" }),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);

    // The same number written another way is the same number.
    let duplicate = app
        .post(
            "/api/v1/practices/A13002/staff",
            &a,
            &json!({ "name": "Someone else", "phone": "+447700900133", "role": "approve" }),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT, "{}", duplicate.body);
    assert_eq!(duplicate.body["error"]["code"], "staff_number_exists");
    let message = duplicate.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("+447700900133"), "{message}");

    for (body, fields) in [
        (
            json!({ "name": "Dr Jones", "phone": "0770090013", "role": "post" }),
            vec!["phone"],
        ),
        (
            json!({ "name": "Front desk", "phone": "020 7946 0000", "role": "post" }),
            vec!["phone"],
        ),
        (
            json!({ "name": "", "phone": "banana", "role": "admin" }),
            vec!["name", "phone", "role"],
        ),
    ] {
        let reply = app.post("/api/v1/practices/A13002/staff", &a, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "validation_failed");
        let named: Vec<&str> = reply.body["error"]["details"]
            .as_array()
            .expect("details")
            .iter()
            .filter_map(|d| d["field"].as_str())
            .collect();
        assert_eq!(named, fields, "{body}: {}", reply.body);
    }
    // A body missing a field, or with one too many, is refused clearly as well.
    let reply = app
        .post(
            "/api/v1/practices/A13002/staff",
            &a,
            &json!({ "name": "Dr Jones", "phone": "07700 900134" }),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(reply.body["error"]["code"].is_string(), "{}", reply.body);

    // Nothing refused was stored.
    let listed = app.get("/api/v1/practices/A13002/staff", &a).await;
    assert_eq!(listed.body["staff"].as_array().map(Vec::len), Some(1));
}

pub async fn another_practice_cannot_see_or_change_staff_numbers(db: Db) {
    let app = spawn_app(db).await;
    let a = app.practice_with_key("A13003", "Surgery A").await;
    let b = app.practice_with_key("B13003", "Surgery B").await;
    let added = app
        .post(
            "/api/v1/practices/A13003/staff",
            &a,
            &json!({ "name": "Dr Jones", "phone": "07700 900135", "role": "approve" }),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let id = added.body["id"].as_i64().expect("id");

    let listed = app.get("/api/v1/practices/A13003/staff", &b).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND, "{}", listed.body);
    assert_eq!(listed.body["error"]["code"], "not_found");
    let reply = app
        .post(
            "/api/v1/practices/A13003/staff",
            &b,
            &json!({ "name": "Intruder", "phone": "07700 900136", "role": "approve" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let reply = app
        .request(
            Method::DELETE,
            &format!("/api/v1/practices/A13003/staff/{id}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    // Through its own practice's path, B cannot reach A's number either.
    let reply = app
        .request(
            Method::DELETE,
            &format!("/api/v1/practices/B13003/staff/{id}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(
        app.get("/api/v1/practices/B13003/staff", &b).await.body["staff"],
        json!([])
    );

    // A still has its number, exactly as it was.
    let listed = app.get("/api/v1/practices/A13003/staff", &a).await;
    assert_eq!(listed.body["staff"], json!([added.body]));
}
