//! The console and the patients' push pages in a real headless Chromium, driven over
//! WebDriver (chromedriver, through `fantoccini`), with the DevTools protocol for what
//! WebDriver cannot do: granting the notifications permission and delivering a push message
//! to the service worker.
//!
//! Each test starts its own chromedriver on a free loopback port with a fresh profile, and
//! ends it (with the browser) when it finishes or panics. Without Chromium and chromedriver
//! the tests are reported as ignored with the reason, unless `GATEWAY_REQUIRE_BROWSER=1`,
//! which makes that a failure. They run against SQLite only: the database is not what they
//! test. With `GATEWAY_SCREENSHOTS=1` they write the pages' screenshots to
//! `docs/screenshots/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::{SinkExt, StreamExt};
use gateway::auth::create_user;
use gateway::domain::{Channel, FollowerId, OdsCode, PatientId, PracticeId};
use gateway::links::invite_token;
use gateway::providers::generate_vapid_keys;
use gateway::store::KeyScope;
use libtest_mimic::{Completion, Trial};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{nhs, provider, spawn_app, spawn_app_with, Db, Options, TestApp};
use crate::push_service::{PushService, Reply as PushReply};
use crate::TestFn;

/// Where Debian's packages put the browser and its driver; `GATEWAY_CHROMIUM` and
/// `GATEWAY_CHROMEDRIVER` name others.
fn chromium() -> String {
    std::env::var("GATEWAY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("GATEWAY_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}
/// Set to 1 (as CI does) to fail, not skip, when the browser is missing.
const REQUIRE_ENV: &str = "GATEWAY_REQUIRE_BROWSER";
/// Set to 1 to write the screenshots to `docs/screenshots/`.
const SCREENSHOTS_ENV: &str = "GATEWAY_SCREENSHOTS";
/// How long a page gets to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(15);

const PASSWORD: &str = "correct horse battery staple";

/// axe-core, the accessibility checker, injected into pages under test (see
/// `tests/support/axe/README.md`).
const AXE: &str = include_str!("../support/axe/axe.min.js");

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    [chromium(), chromedriver()]
        .into_iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} not found: apt-get install chromium chromium-driver"))
}

/// One trial per browser test, on SQLite: ignored with the reason when the browser is
/// missing, failed instead under `GATEWAY_REQUIRE_BROWSER=1`.
pub fn trials(tests: Vec<(&'static str, TestFn)>) -> Vec<Trial> {
    let missing = missing();
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    if let Some(reason) = &missing {
        if !required {
            eprintln!("note: browser tests skipped (reported as ignored): {reason}");
        }
    }
    tests
        .into_iter()
        .map(|(name, test)| {
            let missing = missing.clone();
            let name = format!("sqlite::{}", name.replace(' ', ""));
            Trial::ignorable_test(name, move || match missing {
                Some(reason) if required => Err(format!("{REQUIRE_ENV}=1 but {reason}").into()),
                Some(reason) => Ok(Completion::ignored_with(reason)),
                None => {
                    crate::helpers::run(test(Db::Sqlite));
                    Ok(Completion::Completed)
                }
            })
        })
        .collect()
}

/// A DevTools command sent through chromedriver (`POST /session/{id}/goog/cdp/execute`):
/// commands only, no events.
#[derive(Debug)]
struct CdpCommand {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for CdpCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// The chromedriver process (in a process group of its own, with the browser it starts) and
/// the browser's profile. Dropping it ends the session, then the group: also on a panic.
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
    profile_dir: TempDir,
}

impl Driver {
    fn start() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = profile.path().join("chromedriver.log");
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(chromedriver())
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("start chromedriver");
        Self {
            child,
            port,
            session: None,
            profile_dir: profile,
        }
    }

    fn profile(&self) -> PathBuf {
        self.profile_dir.path().join("profile")
    }

    /// A blocking `DELETE /session/{id}`: chromedriver quits the browser.
    fn end_session(&mut self) {
        let Some(id) = self.session.take() else {
            return;
        };
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                stream,
                "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.end_session();
        // The group is chromedriver's pid: it, and any browser process left behind.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session on a running gateway.
struct Browser {
    client: Client,
    base: String,
    driver: Driver,
}

impl Browser {
    async fn open(app: &TestApp) -> Self {
        let mut driver = Driver::start();
        let webdriver = format!("http://127.0.0.1:{}", driver.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(format!("{webdriver}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", driver.profile().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("WebDriver session");
        driver.session = client.session_id().await.expect("session id");
        client
            .set_window_size(1280, 900)
            .await
            .expect("window size");
        Self {
            client,
            base: app.address.clone(),
            driver,
        }
    }

    /// Ends the session and chromedriver.
    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.driver.session = None;
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} at {}: {e}", self.path().await),
        }
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replaces a field's value by typing, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    async fn path(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url[url::Position::BeforePath..].to_string(),
            Err(e) => format!("(no URL: {e})"),
        }
    }

    async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` (with `args`) until `accept` takes what it returns; panics after
    /// [`PATIENCE`] saying what was awaited, what was last seen, and what the page shows.
    async fn until(
        &self,
        what: &str,
        script: &str,
        args: Vec<Value>,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = match self.client.execute(script, args.clone()).await {
                Ok(v) if accept(&v) => return v,
                Ok(v) => v,
                Err(e) => json!(format!("script error: {e}")),
            };
            if Instant::now() > deadline {
                let page = self
                    .client
                    .execute(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                panic!(
                    "waited {PATIENCE:?} for {what}; last saw {seen}\nat {}, the page said:\n{}",
                    self.path().await,
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text contains every one of `needles`; returns the text.
    async fn text_with(&self, css: &str, needles: &[&str]) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        let text = self
            .until(
                &format!("{css} to say {needles:?}"),
                script,
                vec![json!(css)],
                |v| {
                    v.as_str()
                        .is_some_and(|t| needles.iter().all(|n| t.contains(n)))
                },
            )
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// Waits for the page at `path` (without the query) and returns the full path.
    async fn at(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let path = self
            .until(
                what,
                "return document.readyState === 'complete' ? location.pathname : null;",
                vec![],
                |v| v.as_str().is_some_and(&accept),
            )
            .await;
        path.as_str().unwrap_or_default().to_string()
    }

    /// The cells of a table's body, row by row.
    async fn table(&self, css: &str) -> Vec<Vec<String>> {
        let rows = self
            .run(
                "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]
                   .map(tr => [...tr.cells].map(td => td.textContent.trim()));",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(rows).expect("table cells")
    }

    /// A DevTools command through chromedriver.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(CdpCommand { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// The browser's DevTools address (`host:port`), as chromedriver reports it.
    fn debugger_address(&self) -> String {
        self.client.capabilities().expect("capabilities")["goog:chromeOptions"]["debuggerAddress"]
            .as_str()
            .expect("debuggerAddress")
            .to_string()
    }

    /// Takes a screenshot (a 1280×900 PNG), and keeps it as `docs/screenshots/{name}` when
    /// `GATEWAY_SCREENSHOTS=1`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if std::env::var(SCREENSHOTS_ENV).is_ok_and(|v| v == "1") {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&dir).expect("screenshots dir");
            std::fs::write(dir.join(name), png).expect("write screenshot");
        }
    }

    /// The accessibility problems axe-core finds on the current page that are serious or
    /// critical, as `rule: element` lines (none is a pass).
    async fn serious_accessibility_problems(&self) -> Vec<String> {
        self.run(&format!("{AXE}\n;return typeof axe;"), vec![])
            .await;
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .flatMap(v => v.nodes.map(n => v.id + ': ' + n.target.join(' ')))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .expect("axe run");
        serde_json::from_value(found).expect("a list of problems")
    }

    /// Whether the page fits the window's width: nothing to scroll sideways.
    async fn fits_width(&self) -> bool {
        self.run(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
            == json!(true)
    }

    /// Fills in and sends the sign-in form.
    async fn sign_in(&self, username: &str, password: &str) {
        self.goto("/console/signin").await;
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        self.click("#signin").await;
    }

    /// The session cookie, for plain requests as this user.
    async fn session_cookie(&self) -> String {
        let cookie = self
            .client
            .get_named_cookie("gw_session")
            .await
            .expect("session cookie");
        format!("gw_session={}", cookie.value())
    }
}

/// A practice with `patients` (built from `nhs(i)`), created as admin; returns its id.
async fn practice(app: &TestApp, ods: &str, name: &str, patients: Value) -> PracticeId {
    let key = app.practice_with_key(ods, name).await;
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["rejected"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        reply.body
    );
    app.state
        .store
        .practice_by_ods(&OdsCode::parse(ods).expect("ods"))
        .await
        .expect("store")
        .expect("practice")
        .id
}

fn sms_patient(i: u32) -> Value {
    json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{i:03}") }] })
}

fn email_patient(i: u32) -> Value {
    json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "email", "address": format!("patient{i}@example.com") }] })
}

const RIVERSIDE: (&str, &str) = ("B10001", "Riverside Surgery");
const HILLSIDE: (&str, &str) = ("B10002", "Hillside Medical Centre");

pub async fn console_sign_in_post_status_and_watch_it_complete(db: Db) {
    let app = spawn_app(db).await;
    create_user(
        app.state.store.as_ref(),
        "alice.admin",
        PASSWORD,
        KeyScope::Admin,
    )
    .await
    .expect("user");
    let (ods, name) = RIVERSIDE;
    let patients = json!([
        sms_patient(1),
        sms_patient(2),
        sms_patient(3),
        email_patient(4),
        email_patient(5),
        { "nhs_number": nhs(6) },
    ]);
    practice(&app, ods, name, patients).await;
    practice(&app, HILLSIDE.0, HILLSIDE.1, json!([sms_patient(7)])).await;
    let browser = Browser::open(&app).await;

    // A wrong password is refused on the form; the right one signs in.
    browser.goto("/console/signin").await;
    browser.type_into("#username", "alice.admin").await;
    browser.screenshot("signin.png").await;
    browser.sign_in("alice.admin", "not the password").await;
    browser
        .text_with(
            "#signin-problem",
            &["That username and password do not match."],
        )
        .await;
    browser.sign_in("alice.admin", PASSWORD).await;
    browser
        .at("the practices page", |p| p == "/console/practices")
        .await;
    browser
        .text_with("header", &["Signed in as alice.admin (administrator)"])
        .await;
    let rows = browser.table("#practices").await;
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, [name, HILLSIDE.1], "{rows:?}");
    assert_eq!(rows[0][2], "No notices yet", "{rows:?}");
    browser.screenshot("practices.png").await;

    // The practice's page: preview what patients will get, and to whom.
    browser
        .client
        .find(Locator::LinkText(name))
        .await
        .expect("practice link")
        .click()
        .await
        .expect("click");
    browser
        .at("the practice page", |p| {
            p == format!("/console/practices/{ods}")
        })
        .await;
    let preview_shown = "return !document.getElementById('status-preview').hidden;";
    assert_eq!(browser.run(preview_shown, vec![]).await, json!(false));
    browser
        .find("#kind")
        .await
        .select_by_value("closed")
        .await
        .expect("kind");
    let headline = "Closed this afternoon for staff training.";
    browser.type_into("#headline", headline).await;
    browser.click("#preview-status").await;
    browser
        .text_with(
            "#preview-sms",
            &[&format!("{name}: {headline} For urgent help call 111")],
        )
        .await;
    browser
        .text_with("#preview-sms-cost", &["1 segment,", "GSM-7"])
        .await;
    browser
        .text_with(
            "#audience",
            &[
                "3 by text message (3 segments in all)",
                "2 by email",
                "0 by browser notification",
                "; 1 patient",
            ],
        )
        .await;
    browser
        .text_with("#preview-email-subject", &[&format!("{name}: {headline}")])
        .await;
    assert_eq!(browser.run(preview_shown, vec![]).await, json!(true));
    browser
        .run(
            "document.getElementById('status-preview').scrollIntoView(); return true;",
            vec![],
        )
        .await;
    browser.screenshot("practice-preview.png").await;

    // Send it: the broadcast's page shows progress, and completion once dispatched.
    browser.click("#confirm-status").await;
    let path = browser
        .at("the broadcast page", |p| {
            p.starts_with("/console/broadcasts/")
        })
        .await;
    let id: i64 = path["/console/broadcasts/".len()..]
        .parse()
        .expect("broadcast id");
    browser.text_with("h1", &[&format!("{name}: closed")]).await;
    browser
        .text_with("#progress-summary", &["0 of 5 messages done"])
        .await;
    let done_shown = "return !document.getElementById('progress-done').hidden;";
    assert_eq!(browser.run(done_shown, vec![]).await, json!(false));
    assert_eq!(app.drain().await, 5);
    browser
        .text_with("#progress-summary", &["5 of 5 messages done"])
        .await;
    browser
        .until("#progress-done to show", done_shown, vec![], |v| {
            *v == json!(true)
        })
        .await;
    assert!(browser
        .find("#progress-done")
        .await
        .is_displayed()
        .await
        .expect("displayed"));
    let states = browser.table("#progress-table").await;
    let count = |state: &str| {
        states
            .iter()
            .find(|r| r[0] == state)
            .map_or(0, |r| r[1].parse::<i64>().expect("count"))
    };
    assert_eq!(
        (count("sent"), count("queued"), count("sending")),
        (5, 0, 0),
        "{states:?}"
    );
    browser.screenshot("broadcast.png").await;

    // What the browser showed is what happened.
    let reply = app
        .get(&format!("/api/v1/broadcasts/{id}"), &app.admin_key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["status_change"]["kind"], "closed",
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["status_change"]["created_by"],
        "user:alice.admin"
    );
    let sent = app.sent_lines();
    assert_eq!(sent.len(), 5, "{sent:?}");
    let sms: Vec<&Value> = sent.iter().filter(|l| l["channel"] == "sms").collect();
    assert_eq!(sms.len(), 3, "{sent:?}");
    assert!(
        sms.iter()
            .all(|l| l["body"].as_str().unwrap_or_default().contains(headline)),
        "{sms:?}"
    );

    // The practices page now shows the status.
    browser.goto("/console/practices").await;
    let rows = browser.table("#practices").await;
    assert!(
        rows[0][2].contains("closed") && rows[0][2].contains(headline),
        "{rows:?}"
    );
    browser.close().await;
}

/// The shipped English SMS for `status.closed`.
const CLOSED_SMS_V1: &str = "{{ practice.name }}: {{ status.headline | sentence }}{% if status.until %} We expect to reopen {{ status.until }}.{% endif %} For urgent help call 111, or 999 in an emergency.";

pub async fn console_template_edit_preview_save_rollback(db: Db) {
    let app = spawn_app(db).await;
    create_user(
        app.state.store.as_ref(),
        "alice.admin",
        PASSWORD,
        KeyScope::Admin,
    )
    .await
    .expect("user");
    let browser = Browser::open(&app).await;
    browser.sign_in("alice.admin", PASSWORD).await;
    browser
        .at("the practices page", |p| p == "/console/practices")
        .await;
    let editor = "/console/templates/status.closed/sms?language=en";
    browser.goto(editor).await;
    assert_eq!(browser.value("#body").await, CLOSED_SMS_V1);
    let shipped = browser
        .text_with("#live-preview", &["For urgent help call 111"])
        .await;
    browser
        .text_with("#segments", &["1 segment,", "GSM-7"])
        .await;
    let history = browser.table("#history").await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0][0], "1", "{history:?}");

    // A curly apostrophe forces UCS-2: over 70 characters is two segments.
    let curly = "{{ practice.name }}: we\u{2019}re closed today for staff training. For urgent help call 111, or 999 in an emergency.";
    browser.type_into("#body", curly).await;
    let preview = browser
        .text_with("#live-preview", &["we\u{2019}re closed today"])
        .await;
    assert_ne!(preview, shipped);
    let segments = browser
        .text_with("#segments", &["2 segments", "UCS-2", "\u{2019}"])
        .await;
    assert!(segments.contains("Forcing UCS-2"), "{segments}");
    browser.screenshot("template-editor.png").await;

    // Plain GSM-7 wording fits one segment.
    let short = "{{ practice.name }}: closed today. Please ring 111 if urgent.";
    browser.type_into("#body", short).await;
    let segments = browser
        .text_with("#segments", &["1 segment,", "GSM-7"])
        .await;
    assert!(!segments.contains("UCS-2"), "{segments}");
    browser
        .text_with("#live-preview", &[": closed today. Please ring 111"])
        .await;
    browser.type_into("#note", "shorter").await;
    browser.click("#save").await;

    // Saved as version 2, now in use, with a diff against version 1.
    browser
        .until(
            "version 2 at the top of the history",
            "const c = document.querySelector('#history tbody tr td'); return c ? c.textContent : null;",
            vec![],
            |v| *v == json!("2"),
        )
        .await;
    let history = browser.table("#history").await;
    let versions: Vec<&str> = history.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(versions, ["2", "1"], "{history:?}");
    assert_eq!(history[0][1], "user:alice.admin", "{history:?}");
    assert_eq!(history[0][3], "shorter", "{history:?}");
    assert_eq!(history[0][4], "in use", "{history:?}");
    assert_eq!(browser.value("#body").await, short);

    browser.click("#diff-1").await;
    let diff = browser
        .text_with("#diff-body", &["--- version 1", "+++ version 2"])
        .await;
    let lines: Vec<&str> = diff.lines().collect();
    assert!(
        lines.contains(&format!("-{CLOSED_SMS_V1}").as_str()),
        "{diff}"
    );
    assert!(lines.contains(&format!("+{short}").as_str()), "{diff}");
    browser
        .text_with("#diff-heading", &["Changes from version 1 to 2"])
        .await;

    // Back to version 1: a new version 3 with the shipped wording.
    browser.click("#rollback-1").await;
    browser
        .until(
            "version 3 at the top of the history",
            "const c = document.querySelector('#history tbody tr td'); return c ? c.textContent : null;",
            vec![],
            |v| *v == json!("3"),
        )
        .await;
    let history = browser.table("#history").await;
    let versions: Vec<&str> = history.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(versions, ["3", "2", "1"], "{history:?}");
    assert_eq!(history[0][3], "rolled back to version 1", "{history:?}");
    assert_eq!(browser.value("#body").await, CLOSED_SMS_V1);
    browser
        .text_with("#live-preview", &["For urgent help call 111"])
        .await;

    // And the API agrees.
    let reply = app
        .get("/api/v1/templates/status.closed/sms", &app.admin_key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["template"]["version"], 3, "{}", reply.body);
    assert_eq!(reply.body["template"]["body"], CLOSED_SMS_V1);
    browser.close().await;
}

pub async fn console_refuses_other_practices_and_forged_forms(db: Db) {
    let app = spawn_app(db).await;
    let (ods, name) = RIVERSIDE;
    let (other_ods, other_name) = HILLSIDE;
    let own = practice(&app, ods, name, json!([sms_patient(1)])).await;
    let other = practice(&app, other_ods, other_name, json!([sms_patient(2)])).await;
    create_user(
        app.state.store.as_ref(),
        "riverside.reception",
        PASSWORD,
        KeyScope::Practice(own),
    )
    .await
    .expect("user");
    let browser = Browser::open(&app).await;
    browser.sign_in("riverside.reception", PASSWORD).await;
    browser
        .at("the practices page", |p| p == "/console/practices")
        .await;
    let header = browser
        .text_with("header", &["Signed in as riverside.reception"])
        .await;
    assert!(!header.contains("administrator"), "{header}");
    let rows = browser.table("#practices").await;
    assert_eq!(rows.len(), 1, "only their own practice: {rows:?}");
    assert_eq!(rows[0][0], name);
    assert_eq!(rows[0][1], ods);

    // Another practice's page is "not found", in the browser and by status code.
    browser
        .goto(&format!("/console/practices/{other_ods}"))
        .await;
    browser
        .text_with("#error-message", &["There is no such practice."])
        .await;
    let body = browser.run("return document.body.innerText;", vec![]).await;
    assert!(
        !body.as_str().unwrap_or_default().contains(other_name),
        "{body}"
    );
    let cookie = browser.session_cookie().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: String| {
        http.get(format!("{}{path}", app.address))
            .header("cookie", &cookie)
            .send()
    };
    let response = get(format!("/console/practices/{other_ods}"))
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("There is no such practice."));
    let response = get(format!("/console/practices/{ods}"))
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the cookie is a live session"
    );

    // A form that did not come from the console (no CSRF field) is refused.
    browser.goto(&format!("/console/practices/{ods}")).await;
    browser.find("#status-form").await;
    let submit = "const [action, csrf] = arguments;
        const form = document.createElement('form');
        form.method = 'post';
        form.action = action;
        const fields = { kind: 'closed', headline: 'Forged closure' };
        if (csrf !== null) fields.csrf = csrf;
        for (const [name, value] of Object.entries(fields)) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value;
            form.append(input);
        }
        document.body.append(form);
        form.submit();
        return true;";
    browser
        .run(
            submit,
            vec![
                json!(format!("/console/practices/{ods}/status")),
                Value::Null,
            ],
        )
        .await;
    browser
        .text_with(
            "#error-message",
            &["This form has expired or did not come from this console"],
        )
        .await;
    let response = http
        .post(format!("{}/console/practices/{ods}/status", app.address))
        .header("cookie", &cookie)
        .form(&[("kind", "closed"), ("headline", "Forged closure")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // With this session's token, but for another practice: still not found.
    browser.goto(&format!("/console/practices/{ods}")).await;
    let csrf = browser
        .run(
            "return document.querySelector('meta[name=\"csrf-token\"]').content;",
            vec![],
        )
        .await;
    assert!(csrf.as_str().is_some_and(|t| !t.is_empty()), "{csrf}");
    browser
        .run(
            submit,
            vec![
                json!(format!("/console/practices/{other_ods}/status")),
                csrf,
            ],
        )
        .await;
    browser
        .text_with("#error-message", &["There is no such practice."])
        .await;

    // Nothing was posted for either practice.
    for id in [own, other] {
        let broadcasts = app
            .state
            .store
            .recent_broadcasts(id, 10)
            .await
            .expect("store");
        assert!(broadcasts.is_empty(), "{broadcasts:?}");
    }
    browser.close().await;
}

/// A gateway with a `webpush` provider, so the sign-up page offers notifications, and
/// `log` providers for SMS and email; practice [`RIVERSIDE`] with patients 1 (SMS) and 2
/// (email).
async fn push_app(log_dir: &Path) -> (TestApp, PracticeId) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let (vapid_public, vapid_private) = generate_vapid_keys();
    let private_env = format!(
        "GATEWAY_BROWSER_VAPID_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&private_env, vapid_private);
    let sent_log = log_dir.join("sent.jsonl");
    let providers = vec![
        provider("log-sms", "log", Channel::Sms, json!({ "path": sent_log })),
        provider(
            "log-email",
            "log",
            Channel::Email,
            json!({ "path": sent_log }),
        ),
        provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": vapid_public,
                "vapid_private_key_env": private_env,
                "subject": "mailto:it@riverside.nhs.uk",
            }),
        ),
    ];
    let app = spawn_app_with(
        Db::Sqlite,
        Options {
            providers: Some(providers),
            ..Options::default()
        },
    )
    .await;
    let (ods, name) = RIVERSIDE;
    let id = practice(&app, ods, name, json!([sms_patient(1), email_patient(2)])).await;
    (app, id)
}

/// The sign-up link's path for test patient `i`, as an invitation carries it.
async fn signup_path(app: &TestApp, practice_id: PracticeId, i: u32) -> String {
    let patients = app
        .state
        .store
        .fanout_page(practice_id, PatientId::new(0), 100)
        .await
        .expect("store");
    let patient = patients
        .iter()
        .find(|p| p.nhs_number == nhs(i))
        .expect("patient");
    let secret = std::env::var(crate::helpers::UNSUBSCRIBE_SECRET_ENV).expect("secret");
    let token = invite_token(
        &secret,
        practice_id,
        patient.id,
        Utc::now() + chrono::Duration::days(7),
    );
    format!("/p/{}/notifications?t={token}", RIVERSIDE.0)
}

/// A browser's push subscription: a real P-256 point and a random 16-byte secret.
fn subscription(endpoint: &str) -> Value {
    use base64::Engine as _;
    use rand::RngCore;
    let (p256dh, _) = generate_vapid_keys();
    let mut auth = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut auth);
    json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {
            "p256dh": p256dh,
            "auth": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(auth),
        },
    })
}

/// Opens the sign-up page with notifications allowed and the browser's push service
/// replaced by one answering `subscription` (headless Chromium has none here), presses the
/// button and waits for the page to say it worked. Takes screenshot `shot` before pressing.
async fn turn_on_notifications(
    browser: &Browser,
    path: &str,
    subscription: &Value,
    shot: Option<&str>,
) {
    browser.goto(path).await;
    browser
        .text_with("h1", &["Get notifications from Riverside Surgery"])
        .await;
    browser
        .cdp(
            "Browser.grantPermissions",
            json!({ "permissions": ["notifications"], "origin": browser.base }),
        )
        .await;
    let permission = browser.run("return Notification.permission;", vec![]).await;
    assert_eq!(permission, json!("granted"));
    browser
        .run(
            "const subscription = arguments[0];
            window.subscribedWith = null;
            PushManager.prototype.subscribe = async function (options) {
                window.subscribedWith = {
                    userVisibleOnly: options.userVisibleOnly,
                    keyBytes: new Uint8Array(options.applicationServerKey).length,
                };
                return { endpoint: subscription.endpoint, toJSON() { return subscription; } };
            };
            return true;",
            vec![subscription.clone()],
        )
        .await;
    if let Some(name) = shot {
        browser.screenshot(name).await;
    }
    browser.click("#push-subscribe").await;
    browser
        .text_with("[role=status]", &["Notifications are on."])
        .await;
    // The page asked for a user-visible subscription with the gateway's VAPID key.
    let asked = browser.run("return window.subscribedWith;", vec![]).await;
    assert_eq!(
        asked,
        json!({ "userVisibleOnly": true, "keyBytes": 65 }),
        "{asked}"
    );
}

pub async fn push_signup_stores_the_subscription_for_the_patient(_db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, practice_id) = push_app(dir.path()).await;
    let browser = Browser::open(&app).await;
    let endpoint = "https://push.example.net/send/abc";
    let subscription = subscription(endpoint);
    turn_on_notifications(
        &browser,
        &signup_path(&app, practice_id, 1).await,
        &subscription,
        Some("push-signup.png"),
    )
    .await;
    assert!(!browser
        .find("#push-subscribe")
        .await
        .is_displayed()
        .await
        .expect("displayed"));

    let push_contacts = |i: u32| {
        let app = &app;
        async move {
            let reply = app
                .get(
                    &format!("/api/v1/practices/{}/patients/{}", RIVERSIDE.0, nhs(i)),
                    &app.admin_key,
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body["contacts"]
                .as_array()
                .expect("contacts")
                .iter()
                .filter(|c| c["channel"] == "push")
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    let contacts = push_contacts(1).await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["address"], endpoint, "{contacts:?}");
    assert!(
        push_contacts(2).await.is_empty(),
        "only the invited patient"
    );

    // Without a link, the same page follows the practice anonymously: no patient gains a
    // contact, and the practice has a follower.
    let anonymous = "https://push.example.net/send/anonymous";
    turn_on_notifications(
        &browser,
        &format!("/p/{}/notifications", RIVERSIDE.0),
        &crate::browser::subscription(anonymous),
        None,
    )
    .await;
    assert_eq!(push_contacts(1).await.len(), 1);
    assert!(push_contacts(2).await.is_empty());
    let followers = app
        .state
        .store
        .followers_page(practice_id, FollowerId::new(0), 100)
        .await
        .expect("followers");
    assert_eq!(
        followers
            .iter()
            .map(|f| f.endpoint.as_str())
            .collect::<Vec<_>>(),
        [anonymous]
    );
    browser.close().await;
}

/// A DevTools websocket to one page, for the events chromedriver does not pass on.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    events: Vec<Value>,
}

impl DevTools {
    /// Connects to the page whose URL starts with `url`.
    async fn page(debugger: &str, url: &str) -> Self {
        Self::target(debugger, "page", url).await
    }

    /// Connects to the target of `kind` (`page`, `service_worker`) whose URL starts with
    /// `url`, waiting up to [`PATIENCE`] for it to be listed.
    async fn target(debugger: &str, kind: &str, url: &str) -> Self {
        let deadline = Instant::now() + PATIENCE;
        let socket_url = loop {
            let targets: Value = reqwest::get(format!("http://{debugger}/json/list"))
                .await
                .expect("DevTools targets")
                .json()
                .await
                .expect("targets JSON");
            let found = targets
                .as_array()
                .expect("targets")
                .iter()
                .find(|t| {
                    t["type"] == kind && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string);
            match found {
                Some(socket_url) => break socket_url,
                None if Instant::now() > deadline => panic!("no {kind} at {url}: {targets}"),
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let (socket, _) = tokio_tungstenite::connect_async(socket_url)
            .await
            .expect("DevTools websocket");
        Self {
            socket,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// The next message, within [`PATIENCE`].
    async fn receive(&mut self, deadline: Instant) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .expect("DevTools answered in time")
                .expect("DevTools socket open")
                .expect("DevTools message");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("DevTools JSON");
            }
        }
    }

    /// Sends a command and returns its result; events read meanwhile are kept.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send to DevTools");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.receive(deadline).await;
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// The first event (kept or to come) that `accept` picks out of its params.
    async fn event<T>(&mut self, method: &str, accept: impl Fn(&Value) -> Option<T>) -> T {
        let picked = |event: &Value| {
            if event["method"] == method {
                accept(&event["params"])
            } else {
                None
            }
        };
        if let Some(found) = self.events.iter().find_map(picked) {
            return found;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.receive(deadline).await;
            if let Some(found) = picked(&message) {
                return found;
            }
            self.events.push(message);
        }
    }
}

/// The service worker's registration, with a DevTools connection to the page that can
/// deliver push messages to it. The worker must be registered at the gateway's root.
async fn push_registration(browser: &Browser, app: &TestApp) -> (DevTools, String) {
    let scope = browser
        .run(
            "return navigator.serviceWorker.ready.then(r => r.scope);",
            vec![],
        )
        .await;
    let scope_url = format!("{}/", app.address);
    assert_eq!(scope, json!(scope_url));

    // The registration's id comes only as a DevTools event.
    let mut devtools = DevTools::page(&browser.debugger_address(), &app.address).await;
    devtools.call("ServiceWorker.enable", json!({})).await;
    let registration = devtools
        .event("ServiceWorker.workerRegistrationUpdated", |params| {
            params["registrations"]
                .as_array()?
                .iter()
                .find(|r| r["scopeURL"] == scope_url.as_str() && r["isDeleted"] == false)
                .and_then(|r| r["registrationId"].as_str().map(str::to_string))
        })
        .await;
    (devtools, registration)
}

/// The notifications the service worker shows: title, body, tag and data.
const NOTIFICATIONS: &str = "return navigator.serviceWorker.ready
    .then(r => r.getNotifications())
    .then(ns => ns.map(n => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));";

/// Hands `payload` (the push message's decrypted text) to the service worker as the
/// browser's push service would, and returns the notifications once one shows.
async fn deliver_push(
    browser: &Browser,
    devtools: &mut DevTools,
    app: &TestApp,
    registration: &str,
    payload: &Value,
) -> Value {
    // None before the push. Asking first also matters: in this Chromium, a first
    // getNotifications() racing the first showNotification() can leave both hanging.
    assert_eq!(browser.run(NOTIFICATIONS, vec![]).await, json!([]));
    // Now and then DevTools accepts a push message that never reaches the worker, so it is
    // delivered again if nothing shows within a few seconds. The worker tags notifications
    // by message id, so a late first delivery still shows one notification, not two.
    let mut shown = json!([]);
    for _attempt in 0..3 {
        devtools
            .call(
                "ServiceWorker.deliverPushMessage",
                json!({ "origin": app.address, "registrationId": registration, "data": payload.to_string() }),
            )
            .await;
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            shown = browser.run(NOTIFICATIONS, vec![]).await;
            if shown.as_array().is_some_and(|a| !a.is_empty()) {
                return shown;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("note: the push message did not show within 4 s; delivering it again");
    }
    shown
}

pub async fn service_worker_shows_a_delivered_push_message(_db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, practice_id) = push_app(dir.path()).await;
    let browser = Browser::open(&app).await;
    turn_on_notifications(
        &browser,
        &signup_path(&app, practice_id, 1).await,
        &subscription("https://push.example.net/send/def"),
        None,
    )
    .await;
    let (mut devtools, registration) = push_registration(&browser, &app).await;

    // What the `webpush` provider sends (gateway/src/providers/webpush.rs), here without a
    // receipt token (a gateway without a link secret sends none).
    let payload = json!({
        "title": "Riverside Surgery: The surgery is closed.",
        "body": "Riverside Surgery: The surgery is closed. For urgent help call 111, or 999 in an emergency.",
        "practice": RIVERSIDE.0,
        "message_id": 4242,
    });
    let shown = deliver_push(&browser, &mut devtools, &app, &registration, &payload).await;
    assert_eq!(
        shown,
        json!([{
            "title": payload["title"],
            "body": payload["body"],
            "tag": "message-4242",
            "data": {
                "url": null, "practice": RIVERSIDE.0, "message_id": 4242,
                "receipt_token": null, "receipt_url": null,
            },
        }]),
        "{shown}"
    );
    browser.close().await;
}

/// Waits until message `id` is in `state` (the service worker's receipts arrive on their
/// own time); panics with the last state seen after [`PATIENCE`].
async fn message_reaches(app: &TestApp, id: i64, state: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = crate::receipts::message_state(app, &app.admin_key, id).await;
        if seen == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} stayed {seen}, never {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `expression` (a promise) in the service worker itself, through DevTools; its value.
async fn in_service_worker(worker: &mut DevTools, expression: &str) -> Value {
    let result = worker
        .call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )
        .await;
    assert!(
        result.get("exceptionDetails").is_none(),
        "{expression} failed in the service worker: {result}"
    );
    result["result"]["value"].clone()
}

pub async fn a_pushed_message_shown_and_tapped_is_delivered_then_read(_db: Db) {
    // A gateway sending push to a loopback push service, which decrypts each message with
    // the subscription's keys exactly as the browser's own push service hands it over.
    let dir = tempfile::tempdir().expect("temp dir");
    let (vapid_public, vapid_private) = generate_vapid_keys();
    let private_env = format!("GATEWAY_BROWSER_PROOF_VAPID_{}", std::process::id());
    std::env::set_var(&private_env, vapid_private);
    let subject = "mailto:it@riverside.nhs.uk";
    let push = PushService::start(&vapid_public, subject, PushReply::status(201)).await;
    let sent_log = dir.path().join("sent.jsonl");
    let providers = vec![
        provider("log-sms", "log", Channel::Sms, json!({ "path": sent_log })),
        provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": vapid_public,
                "vapid_private_key_env": private_env,
                "subject": subject,
                "allow_insecure_hosts": ["127.0.0.1"],
            }),
        ),
    ];
    let app = spawn_app_with(
        Db::Sqlite,
        Options {
            providers: Some(providers),
            push_insecure_hosts: vec!["127.0.0.1".into()],
            ..Options::default()
        },
    )
    .await;
    let (ods, name) = RIVERSIDE;
    let push_patient = json!({ "nhs_number": nhs(3), "preferred_channel": "push" });
    let practice_id = practice(&app, ods, name, json!([sms_patient(1), push_patient])).await;

    // The patient turns notifications on; the page subscribes with the push service's keys.
    let browser = Browser::open(&app).await;
    let keys = push.keys();
    let subscription = json!({
        "endpoint": push.endpoint("riverside-3"),
        "expirationTime": null,
        "keys": { "p256dh": keys.p256dh, "auth": keys.auth },
    });
    turn_on_notifications(
        &browser,
        &signup_path(&app, practice_id, 3).await,
        &subscription,
        None,
    )
    .await;
    let (mut devtools, registration) = push_registration(&browser, &app).await;

    // The practice closes: the gateway pushes one message to the patient's browser.
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            &app.admin_key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["planned"]["push"], 1, "{}", reply.body);
    app.drain().await;
    let payload = push.delivered().payload;
    let id = payload["message_id"].as_i64().expect("message_id");
    let token = payload["receipt_token"]
        .as_str()
        .expect("a receipt token in the payload")
        .to_string();
    assert_eq!(
        crate::receipts::message_state(&app, &app.admin_key, id).await,
        "sent"
    );

    // The service worker shows it, and its receipt makes it delivered.
    let shown = deliver_push(&browser, &mut devtools, &app, &registration, &payload).await;
    assert_eq!(shown[0]["tag"], format!("message-{id}"), "{shown}");
    assert_eq!(shown[0]["data"]["receipt_token"], token.as_str(), "{shown}");
    message_reaches(&app, id, "delivered").await;

    // A tap. A headless browser has no system notification to click, and an event made by a
    // script is not trusted (its waitUntil throws), so the test runs, inside the worker,
    // the very function its notificationclick listener calls, on the notification shown.
    let mut worker =
        DevTools::target(&browser.debugger_address(), "service_worker", &app.address).await;
    let tapped = in_service_worker(
        &mut worker,
        "self.registration.getNotifications()
           .then(ns => notificationTapped(ns[0]))
           .then(() => self.registration.getNotifications())
           .then(ns => ns.length)",
    )
    .await;
    assert_eq!(tapped, json!(0), "the tapped notification is closed");
    message_reaches(&app, id, "read").await;

    // The same receipt again, from the same worker: refused, and nothing moves.
    let replayed = in_service_worker(
        &mut worker,
        &format!(
            "fetch('/api/v1/push/receipts', {{ method: 'POST',
                 headers: {{ 'Content-Type': 'application/json' }},
                 body: JSON.stringify({{ token: {token:?}, event: 'shown' }}) }})
               .then(r => r.json().then(body => [r.status, body.error.code]))"
        ),
    )
    .await;
    assert_eq!(replayed, json!([409, "receipt_replayed"]));
    assert_eq!(
        crate::receipts::message_state(&app, &app.admin_key, id).await,
        "read"
    );
    browser.close().await;
}

/// The public status page and the website banner on a phone-sized screen: they fit its
/// width, and axe-core finds nothing serious or critical on them.
pub async fn public_pages_on_a_phone_pass_the_accessibility_check(db: Db) {
    let app = spawn_app(db).await;
    let key = app
        .practice_with_settings(json!({ "ods_code": "P14101", "name": "Riverside Surgery", "phone": "020 7946 0000", "website": "https://riverside.example" }))
        .await;
    let posted = app
        .post(
            "/api/v1/practices/P14101/status",
            &key,
            &json!({ "kind": "systems_down", "headline": "Our clinical systems are down after a supplier's update", "details": "We can see patients who are already booked. Prescriptions may be delayed." }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let browser = Browser::open(&app).await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    for path in ["/p/P14101", "/p/P14101/banner"] {
        browser.goto(path).await;
        browser.find("h1, .gp-status-banner").await;
        assert!(
            browser.fits_width().await,
            "{path} scrolls sideways on a phone"
        );
        let problems = browser.serious_accessibility_problems().await;
        assert!(problems.is_empty(), "{path}: {problems:#?}");
    }
    browser.goto("/p/P14101").await;
    browser.find("h1").await;
    browser.screenshot("public-status-phone.png").await;
    browser.close().await;
}

/// Every console page on a phone-sized screen (390 px wide): none scrolls sideways, so the
/// status form, the approvals and a broadcast's progress can be used from a phone.
pub async fn console_pages_fit_a_phone(db: Db) {
    let app = spawn_app(db).await;
    create_user(
        app.state.store.as_ref(),
        "alice.admin",
        PASSWORD,
        KeyScope::Admin,
    )
    .await
    .expect("user");
    let (ods, name) = RIVERSIDE;
    practice(&app, ods, name, json!([sms_patient(1), email_patient(2)])).await;
    let key = app.practice_with_key("B10003", "Brookside Surgery").await;
    let posted = app
        .post(
            "/api/v1/practices/B10003/status",
            &key,
            &json!({ "kind": "closed", "headline": "Closed for staff training this afternoon", "details": "We reopen at 8am tomorrow." }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let broadcast = posted.body["id"].as_i64().expect("broadcast id");
    // Scheduled notices with long lines: every weekday, and a dozen dates.
    let dates: Vec<String> = (1..=12)
        .map(|d| {
            (chrono::Utc::now() + chrono::Duration::days(d * 7))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    for timing in [
        json!({ "recurrence": { "weekly": { "days": ["mon", "tue", "wed", "thu", "fri"], "at": "13:00" } }, "ends_at": "17:00" }),
        json!({ "recurrence": { "dates": dates, "at": "08:00" } }),
    ] {
        let mut body = json!({ "status": { "kind": "closed", "headline": "Closed for staff training this afternoon" } });
        body.as_object_mut()
            .expect("object")
            .extend(timing.as_object().expect("object").clone());
        let planned = app
            .post("/api/v1/practices/B10003/scheduled-notices", &key, &body)
            .await;
        assert_eq!(planned.status, StatusCode::CREATED, "{}", planned.body);
    }
    let browser = Browser::open(&app).await;
    browser.sign_in("alice.admin", PASSWORD).await;
    browser.find("#practices").await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    let pages = [
        (
            "/console/practices".to_string(),
            "console-phone-practices.png",
        ),
        (
            format!("/console/practices/{ods}"),
            "console-phone-status-form.png",
        ),
        (
            format!("/console/practices/{ods}/approvals"),
            "console-phone-approvals.png",
        ),
        (
            format!("/console/broadcasts/{broadcast}"),
            "console-phone-broadcast.png",
        ),
        (
            "/console/practices/B10003/scheduled".to_string(),
            "console-phone-scheduled.png",
        ),
        ("/console/templates".to_string(), ""),
        ("/console/templates/status.closed/sms".to_string(), ""),
        ("/console/audit".to_string(), ""),
    ];
    let mut wide = Vec::new();
    for (path, screenshot) in &pages {
        browser.goto(path).await;
        browser.find("main h1").await;
        if !browser.fits_width().await {
            let widest = browser
                .run(
                    "let w = null; for (const e of document.querySelectorAll('main *')) { if (e.getBoundingClientRect().right > window.innerWidth + 1 && (!w || e.contains(w) === false)) { w = e; } } return w ? w.outerHTML.slice(0, 200) : null;",
                    vec![],
                )
                .await;
            wide.push(format!("{path}: {widest}"));
        }
        if !screenshot.is_empty() {
            browser.screenshot(screenshot).await;
        }
    }
    assert!(
        wide.is_empty(),
        "pages wider than a phone:\n{}",
        wide.join("\n")
    );
    browser.close().await;
}

/// Practices for the group tests: three to send to and one left out.
const GROUP_PRACTICES: [(&str, &str); 4] = [
    ("B20001", "Northgate Surgery"),
    ("B20002", "Eastfield Practice"),
    ("B20003", "Westbrook Health Centre"),
    ("B20004", "Southside Surgery"),
];

/// On a phone, an administrator sends one change to three practices: the form, the
/// confirmation naming the three, and the group's progress with the three parts.
pub async fn console_sends_one_change_to_three_practices(db: Db) {
    let app = spawn_app(db).await;
    create_user(
        app.state.store.as_ref(),
        "alice.admin",
        PASSWORD,
        KeyScope::Admin,
    )
    .await
    .expect("user");
    for (i, (ods, name)) in GROUP_PRACTICES.iter().enumerate() {
        let i = i as u32 * 2;
        practice(
            &app,
            ods,
            name,
            json!([sms_patient(i + 1), sms_patient(i + 2)]),
        )
        .await;
    }
    let browser = Browser::open(&app).await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    browser.sign_in("alice.admin", PASSWORD).await;
    browser.find("#practices").await;
    browser
        .client
        .find(Locator::LinkText("Send to many"))
        .await
        .expect("the group form's link")
        .click()
        .await
        .expect("click");
    browser
        .at("the group form", |p| p == "/console/groups/new")
        .await;
    assert!(browser.fits_width().await, "the form fits a phone");
    browser.click("#target-list").await;
    browser
        .type_into("#group-practices", "B20001, b20002\nB20003")
        .await;
    browser
        .run(
            "document.querySelector('#group-kind').value = 'phones_down';",
            vec![],
        )
        .await;
    browser
        .type_into("#group-headline", "Phone lines down across the PCN")
        .await;
    browser.click("#group-check").await;

    // The confirmation names exactly the three practices.
    let reach = browser
        .text_with("#group-reach", &[GROUP_PRACTICES[0].1])
        .await;
    for (ods, name) in &GROUP_PRACTICES[..3] {
        assert!(reach.contains(name) && reach.contains(ods), "{reach}");
    }
    assert!(!reach.contains(GROUP_PRACTICES[3].1), "{reach}");
    browser
        .text_with("#group-send", &["Yes, send to 3 practices"])
        .await;
    assert!(browser.fits_width().await, "the confirmation fits a phone");
    browser.screenshot("console-phone-group-confirm.png").await;
    browser.click("#group-send").await;

    let path = browser
        .at("the group's page", |p| {
            p.starts_with("/console/groups/") && p != "/console/groups/new"
        })
        .await;
    browser.text_with("#group-total", &["6"]).await;
    let rows = browser.table("#group-parts").await;
    let mut names: Vec<&str> = rows
        .iter()
        .map(|r| r[0].split(" B2").next().unwrap_or_default())
        .collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = GROUP_PRACTICES[..3].iter().map(|(_, n)| *n).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "{rows:?}");
    assert!(
        rows.iter().all(|r| r[1] == "2"),
        "two to send at each: {rows:?}"
    );
    assert!(browser.fits_width().await, "the group's page fits a phone");
    browser.screenshot("console-phone-group.png").await;

    // What the page showed is what was sent: one group, one broadcast per practice.
    let id: i64 = path
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("group id");
    let members = app
        .state
        .store
        .group_members(gateway::domain::StatusGroupId::new(id))
        .await
        .expect("members");
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m.broadcast_id.is_some()),
        "{members:?}"
    );
    assert_eq!(app.state.store.pending_count().await.expect("count"), 6);
    browser.close().await;
}

/// A federation's console user sees only its member practices, stops one broadcast with
/// the confirmation button, then sends to all its members and stops the whole group.
pub async fn console_stops_a_broadcast_and_a_whole_group(db: Db) {
    let app = spawn_app(db).await;
    let mut ids = Vec::new();
    for (i, (ods, name)) in GROUP_PRACTICES.iter().enumerate() {
        let i = i as u32 * 2;
        ids.push(
            practice(
                &app,
                ods,
                name,
                json!([sms_patient(i + 1), sms_patient(i + 2)]),
            )
            .await,
        );
    }
    let federation = app
        .state
        .store
        .create_federation("Riverside PCN", &ids[..2], Utc::now())
        .await
        .expect("federation");
    create_user(
        app.state.store.as_ref(),
        "fiona.pcn",
        PASSWORD,
        KeyScope::Federation(federation.id),
    )
    .await
    .expect("user");
    let browser = Browser::open(&app).await;
    browser.sign_in("fiona.pcn", PASSWORD).await;
    browser.find("#practices").await;
    let rows = browser.table("#practices").await;
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [GROUP_PRACTICES[0].1, GROUP_PRACTICES[1].1],
        "only the federation's practices, by ODS code: {rows:?}"
    );

    // One broadcast, stopped from its page with the confirmation button.
    browser
        .goto(&format!("/console/practices/{}", GROUP_PRACTICES[0].0))
        .await;
    browser.click("#preview-status").await;
    browser
        .text_with("#preview-sms", &[GROUP_PRACTICES[0].1])
        .await;
    browser.click("#confirm-status").await;
    browser
        .at("the broadcast's page", |p| {
            p.starts_with("/console/broadcasts/")
        })
        .await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    browser.click("#stop summary").await;
    browser.type_into("#reason", "Posted by mistake").await;
    browser.click("#stop button[type=submit]").await;
    browser
        .text_with("#cancelled", &["Posted by mistake", "user:fiona.pcn"])
        .await;
    browser.text_with("#cancelled-count", &["2"]).await;
    assert_eq!(app.state.store.pending_count().await.expect("count"), 0);

    // A group to all its members, then the whole group stopped.
    browser.goto("/console/groups/new").await;
    browser.click("#target-all").await;
    browser.click("#group-check").await;
    browser
        .text_with("#group-send", &["Yes, send to 2 practices"])
        .await;
    browser.click("#group-send").await;
    browser
        .at("the group's page", |p| {
            p.starts_with("/console/groups/") && p != "/console/groups/new"
        })
        .await;
    browser.text_with("#group-unsent", &["4"]).await;
    assert_eq!(browser.table("#group-parts").await.len(), 2);
    browser.click("#group-stop summary").await;
    browser.type_into("#group-reason", "Wrong practices").await;
    assert!(browser.fits_width().await, "the stop form fits a phone");
    browser.click("#group-stop-confirm").await;
    browser.text_with("#group-stopped", &["Stopped"]).await;
    browser.text_with("#group-cancelled", &["4"]).await;
    browser.text_with("#group-unsent", &["0"]).await;
    let rows = browser.table("#group-parts").await;
    assert!(
        rows.iter()
            .all(|r| r[4].contains("Stopped by user:fiona.pcn: Wrong practices")),
        "{rows:?}"
    );
    // Nothing is left to stop: the button is gone.
    assert_eq!(
        browser
            .run(
                "return document.querySelector('#group-stop') === null;",
                vec![]
            )
            .await,
        json!(true)
    );
    assert_eq!(app.state.store.pending_count().await.expect("count"), 0);
    app.drain().await;
    assert!(app.sent_lines().is_empty(), "nothing was sent");
    browser.close().await;
}
