//! The admin console over HTTP: sign-in, sessions and CSRF, what a practice user may see,
//! and the JSON API called with a session instead of a key.

use gateway::store::KeyScope;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, Db, TestApp};

pub const PASSWORD: &str = "correct horse battery staple";

pub fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` in a response's Set-Cookie headers.
fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// The value of `name="csrf" value="..."` (or the csrf meta tag) in a page.
pub fn csrf_in(page: &str) -> String {
    for marker in ["name=\"csrf\" value=\"", "name=\"csrf-token\" content=\""] {
        if let Some(start) = page.find(marker) {
            let rest = &page[start + marker.len()..];
            return rest[..rest.find('"').unwrap()].to_string();
        }
    }
    panic!("no CSRF token in page: {page}")
}

/// Signs `username` in through the form; returns the session cookie.
pub async fn sign_in(app: &TestApp, username: &str, password: &str) -> Result<String, StatusCode> {
    let c = client();
    let form = c
        .get(format!("{}/console/signin", app.address))
        .send()
        .await
        .unwrap();
    let pre = cookie(&form, "gw_signin").expect("sign-in cookie");
    let token = csrf_in(&form.text().await.unwrap());
    let response = c
        .post(format!("{}/console/signin", app.address))
        .header(COOKIE, format!("gw_signin={pre}"))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::SEE_OTHER => Ok(cookie(&response, "gw_session").expect("session cookie")),
        other => Err(other),
    }
}

pub async fn get(app: &TestApp, path: &str, session: &str) -> (StatusCode, String) {
    let response = client()
        .get(format!("{}{path}", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

pub async fn sign_in_sessions_and_csrf(db: Db) {
    let app = spawn_app(db).await;
    let store = app.state.store.as_ref();
    gateway::auth::create_user(store, "admin", PASSWORD, KeyScope::Admin)
        .await
        .unwrap();
    // Not signed in: pages send you to the sign-in form.
    let response = client()
        .get(format!("{}/console/practices", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/console/signin");
    assert_eq!(
        sign_in(&app, "admin", "wrong password!!").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        sign_in(&app, "nobody", PASSWORD).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    // A sign-in form posted without its own token is refused.
    let forged = client()
        .post(format!("{}/console/signin", app.address))
        .form(&[("username", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let session = sign_in(&app, "admin", PASSWORD).await.unwrap();
    let (status, page) = get(&app, "/console/practices", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Signed in as admin"));
    let csrf = csrf_in(&page);

    // The API with the session: reads need nothing more, writes need the CSRF header.
    let read = client()
        .get(format!("{}/api/v1/templates", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let body = json!({ "key": "status.closed", "channel": "sms", "draft": { "body": "{{ practice.name }}" } });
    let without = client()
        .post(format!("{}/api/v1/templates/preview", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let with = client()
        .post(format!("{}/api/v1/templates/preview", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .header("X-CSRF-Token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK);

    // Signing out ends the session for good.
    let out = client()
        .post(format!("{}/console/signout", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (status, _) = get(&app, "/console/practices", &session).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

pub async fn practice_users_see_only_their_practice(db: Db) {
    let app = spawn_app(db).await;
    app.practice_with_key("C10001", "Own Surgery").await;
    app.practice_with_key("C10002", "Other Surgery").await;
    let own = app.practice_id("C10001").await;
    gateway::auth::create_user(
        app.state.store.as_ref(),
        "reception",
        PASSWORD,
        KeyScope::Practice(own),
    )
    .await
    .unwrap();
    let session = sign_in(&app, "reception", PASSWORD).await.unwrap();
    let (_, list) = get(&app, "/console/practices", &session).await;
    assert!(
        list.contains("Own Surgery") && !list.contains("Other Surgery"),
        "{list}"
    );
    let (status, _) = get(&app, "/console/practices/C10002", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/console/audit?practice=C10002", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Sending to many practices is not for a practice's user.
    let (status, _) = get(&app, "/console/groups/new", &session).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!list.contains("/console/groups/new"), "{list}");
    let (status, page) = get(&app, "/console/practices/C10001", &session).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_in(&page);

    // A status change through the form, with and without the CSRF token.
    let post = |fields: Vec<(&'static str, String)>| {
        client()
            .post(format!("{}/console/practices/C10001/status", app.address))
            .header(COOKIE, format!("gw_session={session}"))
            .form(&fields)
            .send()
    };
    let forged = post(vec![("kind", "closed".into())]).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(app
        .state
        .store
        .recent_broadcasts(own, 5)
        .await
        .unwrap()
        .is_empty());
    let posted = post(vec![
        ("kind", "closed".into()),
        ("headline", "Closed for training.".into()),
        ("csrf", csrf.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let recent = app.state.store.recent_broadcasts(own, 5).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(
        posted.headers()[LOCATION],
        format!("/console/broadcasts/{}", recent[0].id).as_str()
    );
    let (status, _) = get(
        &app,
        &format!("/console/broadcasts/{}", recent[0].id),
        &session,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The practice user edits their own wording, never the standard one.
    let save = client()
        .post(format!(
            "{}/console/templates/status.closed/sms",
            app.address
        ))
        .header(COOKIE, format!("gw_session={session}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("language", "en"),
            (
                "body",
                "{{ practice.name }} is shut today. Call 111 if urgent.",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(save.status(), StatusCode::SEE_OTHER);
    let own_versions = app
        .state
        .store
        .template_history(
            Some(own),
            "status.closed",
            gateway::domain::Channel::Sms,
            gateway::domain::Language::English,
        )
        .await
        .unwrap();
    assert_eq!(own_versions.len(), 1);
    let global = app
        .state
        .store
        .template_history(
            None,
            "status.closed",
            gateway::domain::Channel::Sms,
            gateway::domain::Language::English,
        )
        .await
        .unwrap();
    assert_eq!(global.len(), 1, "the standard wording is untouched");
    // A broken draft comes back with line and column, nothing saved.
    let broken = client()
        .post(format!(
            "{}/console/templates/status.closed/sms",
            app.address
        ))
        .header(COOKIE, format!("gw_session={session}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("language", "en"),
            ("body", "Hi\n{{ practice.nme }}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = broken.text().await.unwrap();
    assert!(page.contains("body, line 2, column 4"), "{page}");
}
