//! The console's approvals page: waiting changes first with their preview, approving and
//! dismissing with the session's CSRF token, staff numbers and approval rules.

use gateway::store::KeyScope;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::StatusCode;

use crate::console::{client, csrf_in, get, sign_in, PASSWORD};
use crate::helpers::{Db, TestApp};
use crate::staff_texts::{nth_text_to, practice_with_staff, text, ANN};

/// Posts a console form as the signed-in session.
async fn form(
    app: &TestApp,
    session: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!("{}{path}", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .form(fields)
        .send()
        .await
        .expect("form")
}

pub async fn the_console_approves_what_staff_texted(db: Db) {
    let (app, peer, _key) = practice_with_staff(db, "T13101", 3, Vec::new()).await;
    app.practice_with_key("T13102", "Other Surgery").await;
    let own = app.practice_id("T13101").await;
    gateway::auth::create_user(
        app.state.store.as_ref(),
        "reception",
        PASSWORD,
        KeyScope::Practice(own),
    )
    .await
    .expect("user");
    let session = sign_in(&app, "reception", PASSWORD).await.expect("session");

    text(&app, ANN, "CLOSED Burst pipe").await;
    nth_text_to(&peer, ANN, 0).await;
    let (status, practice_page) = get(&app, "/console/practices/T13101", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        practice_page.contains("1 status change waits for approval"),
        "{practice_page}"
    );
    let (status, page) = get(&app, "/console/practices/T13101/approvals", &session).await;
    assert_eq!(status, StatusCode::OK);
    let pending = page.find("Waiting for approval").expect("pending section");
    let staff = page.find("Staff who may text").expect("staff section");
    let proposal = page.find("closed: Burst pipe").expect("the proposal");
    assert!(
        pending < proposal && proposal < staff,
        "waiting changes come first: {page}"
    );
    assert!(page.contains("Proposed by staff:Ann Jones"), "{page}");
    assert!(
        page.contains("Burst pipe."),
        "the wording patients get: {page}"
    );
    assert!(page.contains("To 3 patients: 3 by SMS"), "{page}");
    let (status, _) = get(&app, "/console/practices/T13102/approvals", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let csrf = csrf_in(&page);
    let id = app.state.store.proposals(own, 10).await.expect("proposals")[0].id;

    // Forms without the token change nothing.
    let approve = format!("/console/practices/T13101/proposals/{id}/approve");
    let forged = form(&app, &session, &approve, &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = form(
        &app,
        &session,
        "/console/practices/T13101/staff",
        &[
            ("name", "Eve"),
            ("phone", "07700 900803"),
            ("role", "approve"),
        ],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Staff numbers and rules through their forms.
    let added = form(
        &app,
        &session,
        "/console/practices/T13101/staff",
        &[
            ("csrf", &csrf),
            ("name", "Cai Morgan"),
            ("phone", "07700 900803"),
            ("role", "approve"),
        ],
    )
    .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let landline = form(
        &app,
        &session,
        "/console/practices/T13101/staff",
        &[
            ("csrf", &csrf),
            ("name", "Desk"),
            ("phone", "020 7946 0000"),
            ("role", "post"),
        ],
    )
    .await;
    assert_eq!(landline.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let saved = form(
        &app,
        &session,
        "/console/practices/T13101/approval",
        &[
            ("csrf", &csrf),
            ("staff_pin", "2468"),
            ("second_approval_above", ""),
            ("tags", "EMIS-Web, spine"),
            ("auto_post_sources", ""),
        ],
    )
    .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let settings = app
        .state
        .store
        .approval_settings(own)
        .await
        .expect("settings");
    assert_eq!(settings.tags, ["emis-web", "spine"]);
    assert_eq!(settings.staff_pin.as_deref(), Some("2468"));
    let unknown = form(
        &app,
        &session,
        "/console/practices/T13101/approval",
        &[("csrf", &csrf), ("auto_post_sources", "nowhere")],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, page) = get(&app, "/console/practices/T13101/approvals", &session).await;
    assert!(
        page.contains("Cai Morgan") && page.contains("+447700900803"),
        "{page}"
    );
    assert!(!page.contains("2468"), "the PIN is never shown: {page}");

    // Approving sends; the page then lists it as decided by the console user.
    let approved = form(&app, &session, &approve, &[("csrf", &csrf)]).await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        approved.headers()[LOCATION],
        "/console/practices/T13101/approvals"
    );
    app.drain().await;
    let to_patients = peer
        .arrivals()
        .iter()
        .filter(|a| a.to.as_str() < "+447700900800")
        .count();
    assert_eq!(to_patients, 3);
    let (_, page) = get(&app, "/console/practices/T13101/approvals", &session).await;
    assert!(page.contains("Nothing is waiting."), "{page}");
    assert!(page.contains("approved by user:reception"), "{page}");
    let again = form(&app, &session, &approve, &[("csrf", &csrf)]).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}
