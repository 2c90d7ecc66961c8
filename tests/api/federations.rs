//! Federations: a key scoped to a named set of practices acts on those practices as an
//! administrator would, and everything else is "not found"; its groups reach its members
//! only, and each caller sees only its own parts of a group.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// Practices in the tests; the federation has the first three.
const PRACTICES: u32 = 5;
const MEMBERS: u32 = 3;

fn ods(p: u32) -> String {
    format!("F21{p:03}")
}

/// Practice `p` with one SMS patient of its own; returns its key.
async fn practice(app: &TestApp, p: u32) -> String {
    let code = ods(p);
    let key = app.practice_with_key(&code, &format!("Surgery {p}")).await;
    let patients = json!({ "patients": [{ "nhs_number": nhs(p), "contacts": [{ "channel": "sms", "address": format!("07700 900{p:03}") }] }] });
    let reply = app
        .post(
            &format!("/api/v1/practices/{code}/patients"),
            &key,
            &patients,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    key
}

/// Five practices and a federation of the first three with its key: (practice keys,
/// federation id, federation key).
async fn federation(app: &TestApp) -> (Vec<String>, i64, String) {
    let mut keys = Vec::new();
    for p in 0..PRACTICES {
        keys.push(practice(app, p).await);
    }
    let members: Vec<String> = (0..MEMBERS).map(ods).collect();
    let created = app
        .post(
            "/api/v1/federations",
            &app.admin_key,
            &json!({ "name": "North Leeds PCN", "practices": members }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["practices"], json!(members));
    let id = created.body["id"].as_i64().expect("id");
    let issued = app
        .post(
            &format!("/api/v1/federations/{id}/keys"),
            &app.admin_key,
            &json!({ "label": "PCN manager" }),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let key = issued.body["key"].as_str().expect("key").to_string();
    (keys, id, key)
}

/// The ODS codes of a group view's parts, sorted.
fn parts(view: &Value) -> Vec<String> {
    let mut codes: Vec<String> = view["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["practice"].as_str().expect("practice").to_string())
        .collect();
    codes.sort();
    codes
}

pub async fn a_federation_key_acts_only_on_its_practices(db: Db) {
    let app = spawn_app(db).await;
    let (keys, id, fed) = federation(&app).await;
    let outside = ods(MEMBERS);

    // Only an administrator manages federations, and a name is used once.
    for key in [&fed, &keys[0]] {
        let reply = app
            .post(
                "/api/v1/federations",
                key,
                &json!({ "name": "Mine", "practices": [] }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let reply = app
            .post(&format!("/api/v1/federations/{id}/keys"), key, &json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    }
    let twice = app
        .post(
            "/api/v1/federations",
            &app.admin_key,
            &json!({ "name": "North Leeds PCN", "practices": [ods(4)] }),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.body);
    let unknown = app
        .post(
            "/api/v1/federations",
            &app.admin_key,
            &json!({ "name": "Other", "practices": [ods(4), "Z99999"] }),
        )
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.body
    );
    assert_eq!(unknown.body["error"]["details"][0]["field"], "practices[1]");

    // It lists exactly its members.
    let listed = app.get("/api/v1/practices", &fed).await;
    let codes: BTreeSet<&str> = listed.body["practices"]
        .as_array()
        .expect("practices")
        .iter()
        .filter_map(|p| p["ods_code"].as_str())
        .collect();
    assert_eq!(
        codes,
        (0..MEMBERS)
            .map(ods)
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );

    // A member: it posts a status change and reads its broadcast.
    let posted = app
        .post(
            &format!("/api/v1/practices/{}/status", ods(0)),
            &fed,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let member_broadcast = posted.body["id"].as_i64().expect("broadcast");
    let read = app
        .get(&format!("/api/v1/broadcasts/{member_broadcast}"), &fed)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    // Sent before the group below, which would otherwise withdraw it as superseded.
    app.drain().await;
    // ... and the member's own wording.
    let wording = app
        .request(
            Method::PUT,
            "/api/v1/templates/status.closed/sms",
            Some(&fed),
            Some(&json!({ "practice": ods(1), "body": "{{ practice.name }} (PCN): {{ status.headline }}" })),
        )
        .await;
    assert!(wording.status.is_success(), "{}", wording.body);
    // The wording every practice uses stays an administrator's.
    let global = app
        .request(
            Method::PUT,
            "/api/v1/templates/status.closed/sms",
            Some(&fed),
            Some(&json!({ "body": "{{ status.headline }}" })),
        )
        .await;
    assert_eq!(global.status, StatusCode::FORBIDDEN, "{}", global.body);

    // Outside its set everything is "not found": the practice, its status, its broadcast
    // and its wording.
    let theirs = app
        .post(
            &format!("/api/v1/practices/{outside}/status"),
            &keys[MEMBERS as usize],
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let their_broadcast = theirs.body["id"].as_i64().expect("broadcast");
    for path in [
        format!("/api/v1/practices/{outside}"),
        format!("/api/v1/practices/{outside}/patients/{}", nhs(MEMBERS)),
        format!("/api/v1/broadcasts/{their_broadcast}"),
        format!("/api/v1/broadcasts/{their_broadcast}/messages"),
        format!("/api/v1/templates/status.closed/sms?practice={outside}"),
    ] {
        let reply = app.get(&path, &fed).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "not_found");
    }
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/v1/practices/{outside}/status"),
            json!({ "kind": "closed" }),
        ),
        (
            Method::POST,
            format!("/api/v1/broadcasts/{their_broadcast}/cancel"),
            json!({ "reason": "not ours" }),
        ),
        (
            Method::PUT,
            "/api/v1/templates/status.closed/sms".to_string(),
            json!({ "practice": outside, "body": "x {{ status.headline }}" }),
        ),
    ] {
        let reply = app.request(method, &path, Some(&fed), Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }

    // A group to `all` reaches exactly its members.
    let group = app
        .post(
            "/api/v1/status-groups",
            &fed,
            &json!({ "status_change": { "kind": "closed", "headline": "PCN phones down" }, "all": true }),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    assert_eq!(
        parts(&group.body),
        (0..MEMBERS).map(ods).collect::<Vec<_>>()
    );

    // A group naming a practice outside its set, or none such, is refused whole (404,
    // the same either way) and sends nothing.
    let before = app.state.store.pending_count().await.expect("count");
    for stranger in [outside.clone(), "Z99999".to_string()] {
        let refused = app
            .post(
                "/api/v1/status-groups",
                &fed,
                &json!({ "status_change": { "kind": "closed" }, "practices": [ods(0), stranger] }),
            )
            .await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
        assert_eq!(
            refused.body["error"]["message"],
            format!("no practice {stranger}")
        );
    }
    assert_eq!(
        app.state.store.pending_count().await.expect("count"),
        before
    );
    app.drain().await;
    let sent = app.sent_lines();
    let to_outside = sent
        .iter()
        .filter(|l| l["to"] == format!("+447700900{MEMBERS:03}"))
        .count();
    // The outside practice's patient got only its own practice's notice.
    assert_eq!(to_outside, 1, "{sent:?}");
    assert_eq!(sent.len(), 1 + 1 + MEMBERS as usize, "{sent:?}");
    let pcn_wording = sent
        .iter()
        .filter(|l| {
            l["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("Surgery 1 (PCN): PCN phones down"))
        })
        .count();
    assert_eq!(pcn_wording, 1, "{sent:?}");

    // Replacing its members changes what it sees from the next request.
    let replaced = app
        .request(
            Method::PUT,
            &format!("/api/v1/federations/{id}/practices"),
            Some(&app.admin_key),
            Some(&json!({ "practices": [ods(0), outside] })),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(
        app.get(&format!("/api/v1/broadcasts/{their_broadcast}"), &fed)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/practices/{}", ods(1)), &fed)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let listed = app.get("/api/v1/federations", &app.admin_key).await;
    assert_eq!(
        listed.body["federations"][0]["practices"],
        json!([ods(0), outside]),
        "{}",
        listed.body
    );
}

pub async fn each_caller_sees_only_its_parts_of_a_group(db: Db) {
    let app = spawn_app(db).await;
    let (keys, _, fed) = federation(&app).await;
    let all: Vec<String> = (0..PRACTICES).map(ods).collect();
    let group = app
        .post(
            "/api/v1/status-groups",
            &app.admin_key,
            &json!({ "status_change": { "kind": "closed" }, "practices": all }),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let id = group.body["id"].as_i64().expect("id");
    let path = format!("/api/v1/status-groups/{id}");

    let admin = app.get(&path, &app.admin_key).await;
    assert_eq!(parts(&admin.body), all);
    assert_eq!(admin.body["total"], PRACTICES);

    // The federation sees its members' parts, with totals and the list cut to them.
    let members: Vec<String> = (0..MEMBERS).map(ods).collect();
    let federation = app.get(&path, &fed).await;
    assert_eq!(federation.status, StatusCode::OK, "{}", federation.body);
    assert_eq!(parts(&federation.body), members);
    assert_eq!(federation.body["total"], MEMBERS);
    assert_eq!(federation.body["selector"]["practices"], json!(members));

    // A practice sees its own part only.
    for p in [0, PRACTICES - 1] {
        let own = app.get(&path, &keys[p as usize]).await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.body);
        assert_eq!(parts(&own.body), vec![ods(p)]);
        assert_eq!(own.body["selector"]["practices"], json!([ods(p)]));
    }

    // The federation's own group: a practice outside it finds no such group.
    let theirs = app
        .post(
            "/api/v1/status-groups",
            &fed,
            &json!({ "status_change": { "kind": "restored" }, "all": true }),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let theirs = format!("/api/v1/status-groups/{}", theirs.body["id"]);
    let hidden = app.get(&theirs, &keys[PRACTICES as usize - 1]).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
    assert_eq!(parts(&app.get(&theirs, &keys[0]).await.body), vec![ods(0)]);
    // A practice's key still does not send groups.
    let refused = app
        .post(
            "/api/v1/status-groups",
            &keys[0],
            &json!({ "status_change": { "kind": "closed" }, "all": true }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}
