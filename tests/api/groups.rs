//! One status change to many practices: each practice gets its own broadcast in its own
//! wording, exactly once under a replayed Idempotency-Key, with one progress view; a
//! practice's key may not send a group and sees only its own part of one.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// Practices in the group test.
const PRACTICES: u32 = 50;

fn ods(p: u32) -> String {
    format!("G14{p:03}")
}

/// Practice `p` with two SMS patients of its own, tagged `emis-web` when `p` is even.
async fn practice(app: &TestApp, p: u32) -> String {
    let code = ods(p);
    let key = app.practice_with_key(&code, &format!("Surgery {p}")).await;
    let patients: Vec<Value> = (0..2)
        .map(|i| {
            let n = p * 2 + i;
            json!({ "nhs_number": nhs(n), "contacts": [{ "channel": "sms", "address": format!("07700 900{n:03}") }] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{code}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    if p.is_multiple_of(2) {
        let reply = app
            .request(
                Method::PUT,
                &format!("/api/v1/practices/{code}/approval"),
                Some(&key),
                Some(&json!({ "tags": ["emis-web"] })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    key
}

/// Posts a group as `key` with an Idempotency-Key.
async fn post_group(
    app: &TestApp,
    key: &str,
    idempotency: &str,
    body: &Value,
) -> (StatusCode, Value, bool) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/status-groups", app.address))
        .bearer_auth(key)
        .header("idempotency-key", idempotency)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        replayed,
    )
}

pub async fn a_group_change_gives_each_practice_its_own_broadcast_once(db: Db) {
    let app = spawn_app(db).await;
    let mut keys = Vec::new();
    for p in 0..PRACTICES {
        keys.push(practice(&app, p).await);
    }
    // Every fifth practice has wording of its own.
    for p in (0..PRACTICES).step_by(5) {
        let saved = app
            .request(
                Method::PUT,
                "/api/v1/templates/status.closed/sms",
                Some(&app.admin_key),
                Some(&json!({ "practice": ods(p), "body": format!("{{{{ practice.name }}}} own wording {p}: {{{{ status.headline }}}}") })),
            )
            .await;
        assert!(saved.status.is_success(), "{}", saved.body);
    }
    let codes: Vec<String> = (0..PRACTICES).map(ods).collect();
    let body = json!({ "status_change": { "kind": "closed", "headline": "Regional IT outage" }, "practices": codes });

    // A practice's key may not send a group.
    let (status, refused, _) = post_group(&app, &keys[0], "g-1", &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    let (status, group, replayed) = post_group(&app, &app.admin_key, "g-1", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert!(!replayed);
    assert_eq!(group["practices"], PRACTICES);
    assert_eq!(group["total"], PRACTICES * 2, "{group}");
    let parts = group["parts"].as_array().expect("parts");
    let broadcasts: std::collections::BTreeSet<i64> = parts
        .iter()
        .map(|p| p["broadcast_id"].as_i64().expect("broadcast"))
        .collect();
    assert_eq!(
        broadcasts.len(),
        PRACTICES as usize,
        "one broadcast per practice"
    );
    assert!(
        parts
            .iter()
            .all(|p| p["error"].is_null() && p["by_state"]["queued"] == 2),
        "{group}"
    );

    // Replaying the key starts nothing new; another body under the same key is refused.
    let (status, again, replayed) = post_group(&app, &app.admin_key, "g-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed);
    assert_eq!(again["id"], group["id"]);
    let mut other = body.clone();
    other["status_change"]["headline"] = json!("Something else");
    let (status, reused, _) = post_group(&app, &app.admin_key, "g-1", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reused}");
    app.drain().await;
    let sent = app.sent_lines();
    assert_eq!(sent.len(), (PRACTICES * 2) as usize, "each patient once");

    // Each practice's patients got their own practice's wording.
    for p in 0..PRACTICES {
        let texts: Vec<&str> = sent
            .iter()
            .filter(|line| {
                let to = line["to"].as_str().unwrap_or_default();
                (0..2).any(|i| to == format!("+447700900{:03}", p * 2 + i))
            })
            .filter_map(|line| line["body"].as_str())
            .collect();
        assert_eq!(texts.len(), 2, "{}: {texts:?}", ods(p));
        for text in texts {
            assert!(text.starts_with(&format!("Surgery {p}")), "{text}");
            assert_eq!(
                text.contains(&format!("own wording {p}:")),
                p % 5 == 0,
                "{text}"
            );
            assert!(text.contains("Regional IT outage"), "{text}");
        }
    }
    let id = group["id"].as_i64().expect("id");
    let progress = app
        .get(&format!("/api/v1/status-groups/{id}"), &app.admin_key)
        .await;
    assert_eq!(progress.status, StatusCode::OK);
    assert_eq!(
        progress.body["by_state"]["queued"],
        Value::Null,
        "{}",
        progress.body
    );
    // A practice sees its own part only.
    let own = app
        .get(&format!("/api/v1/status-groups/{id}"), &keys[1])
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["practices"], 1, "{}", own.body);
    assert_eq!(own.body["parts"][0]["practice"], ods(1));

    // By tag: only the even practices.
    let (status, tagged, _) = post_group(
        &app,
        &app.admin_key,
        "g-2",
        &json!({ "status_change": { "kind": "restored" }, "tag": "emis-web" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{tagged}");
    assert_eq!(tagged["practices"], PRACTICES / 2);
    let (status, invalid, _) = post_group(
        &app,
        &app.admin_key,
        "g-3",
        &json!({ "status_change": { "kind": "closed" }, "practices": ["G14000", "Z99999"], "all": true }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
}

/// Stops group `id` as `key` with `reason`.
async fn stop(app: &TestApp, key: &str, id: i64, reason: &str) -> crate::helpers::Reply {
    app.post(
        &format!("/api/v1/status-groups/{id}/cancel"),
        key,
        &json!({ "reason": reason }),
    )
    .await
}

/// Each part's `(cancelled, already_sent, stopped by)`, by ODS code.
fn stops(view: &Value) -> std::collections::BTreeMap<String, (i64, i64, Option<String>)> {
    view["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| {
            (
                p["practice"].as_str().expect("practice").to_string(),
                (
                    p["cancelled"].as_i64().expect("cancelled"),
                    p["already_sent"].as_i64().expect("already_sent"),
                    p["stopped"]["by"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

pub async fn a_group_is_stopped_as_a_whole_once(db: Db) {
    let app = spawn_app(db).await;
    let mut keys = Vec::new();
    for p in 0..3 {
        keys.push(practice(&app, p).await);
    }
    let federation = app
        .post(
            "/api/v1/federations",
            &app.admin_key,
            &json!({ "name": "Riverside federation", "practices": [ods(0), ods(1)] }),
        )
        .await;
    assert_eq!(
        federation.status,
        StatusCode::CREATED,
        "{}",
        federation.body
    );
    let fed = app
        .post(
            &format!("/api/v1/federations/{}/keys", federation.body["id"]),
            &app.admin_key,
            &json!({}),
        )
        .await;
    let fed = fed.body["key"].as_str().expect("key").to_string();
    let codes: Vec<String> = (0..3).map(ods).collect();
    let (status, group, _) = post_group(
        &app,
        &app.admin_key,
        "stop-1",
        &json!({ "status_change": { "kind": "closed" }, "practices": codes }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let id = group["id"].as_i64().expect("id");

    // A reason is required; someone who sees no part of it finds no such group.
    let blank = stop(&app, &app.admin_key, id, " ").await;
    assert_eq!(
        blank.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        blank.body
    );
    let stranger = app.practice_with_key("G14099", "Elsewhere").await;
    let hidden = stop(&app, &stranger, id, "not mine").await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);

    // The federation stops its members' parts only; the third practice's messages go.
    let stopped = stop(&app, &fed, id, "Sent to the wrong PCN").await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["practices"], 2, "{}", stopped.body);
    assert_eq!(stopped.body["cancelled"], 4, "{}", stopped.body);
    assert_eq!(stopped.body["stopped"], 2, "{}", stopped.body);
    app.drain().await;
    assert_eq!(
        app.sent_lines().len(),
        2,
        "only the third practice's patients"
    );

    // The administrator stops the whole group: the first stops stand, and the third
    // practice's part shows what had already gone.
    let whole = stop(&app, &app.admin_key, id, "Wrong notice").await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    let fed_actor = stopped.body["parts"][0]["stopped"]["by"]
        .as_str()
        .expect("by")
        .to_string();
    let admin_actor = whole.body["created_by"].as_str().expect("by").to_string();
    let expected: std::collections::BTreeMap<String, (i64, i64, Option<String>)> = [
        (ods(0), (2, 0, Some(fed_actor.clone()))),
        (ods(1), (2, 0, Some(fed_actor))),
        (ods(2), (0, 2, Some(admin_actor))),
    ]
    .into_iter()
    .collect();
    assert_eq!(stops(&whole.body), expected, "{}", whole.body);
    assert_eq!(
        (
            &whole.body["cancelled"],
            &whole.body["already_sent"],
            &whole.body["stopped"]
        ),
        (&json!(4), &json!(2), &json!(3)),
        "{}",
        whole.body
    );
    assert_eq!(
        whole.body["parts"][0]["stopped"]["reason"],
        "Sent to the wrong PCN"
    );

    // Again: the same view, and nothing more in the audit trail.
    let audited = app
        .state
        .store
        .audit_trail(app.practice_id(&ods(2)).await, 100)
        .await
        .expect("audit")
        .len();
    let again = stop(&app, &app.admin_key, id, "Once more").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(stops(&again.body), expected);
    let after = app
        .state
        .store
        .audit_trail(app.practice_id(&ods(2)).await, 100)
        .await
        .expect("audit")
        .len();
    assert_eq!(after, audited);

    // A member not yet posted when the group is stopped (a crash mid-send) never is.
    let request = gateway::intake::status::StatusChangeRequest {
        kind: "closed".into(),
        ..Default::default()
    };
    let started = app
        .state
        .store
        .start_group(
            &gateway::store::NewStatusGroup {
                request: serde_json::to_string(&request).expect("json"),
                selector: json!({ "all": true }).to_string(),
                created_by: "test".into(),
                members: vec![app.practice_id(&ods(0)).await],
            },
            None,
            chrono::Utc::now(),
        )
        .await
        .expect("group");
    let gateway::store::GroupStart::Started(crashed) = started else {
        panic!("{started:?}");
    };
    let pending = app.state.store.pending_count().await.expect("count");
    let reply = stop(&app, &app.admin_key, crashed.get(), "Never mind").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    gateway::intake::groups::post_members(&app.state.status_changes(), crashed, &request, "test")
        .await
        .expect("resume");
    assert_eq!(
        app.state.store.pending_count().await.expect("count"),
        pending
    );
    let members = app
        .state
        .store
        .group_members(crashed)
        .await
        .expect("members");
    assert!(
        members[0].broadcast_id.is_none() && members[0].stop.is_some(),
        "{members:?}"
    );
}
