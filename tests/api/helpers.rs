//! `spawn_app()`: the real gateway on port 0 with its own fresh database and log provider,
//! plus a client that speaks to it like any other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use gateway::app::{self, AppState};
use gateway::config::{Config, ProviderConfig, DEFAULT_TOML};
use gateway::domain::{BroadcastId, Channel, PracticeId};
use gateway::providers::{ProviderRegistry, SharedFiles};
use gateway::store::{self, KeyScope};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::conformance;
use crate::scratch;

/// Which database a test runs against.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    Postgres(String),
}

/// Callback secrets the tests sign with; `main` puts them in the environment.
pub const TWILIO_TOKEN_ENV: &str = "GATEWAY_TEST_TWILIO_TOKEN";
pub const NOTIFY_TOKEN_ENV: &str = "GATEWAY_TEST_NOTIFY_TOKEN";
pub const WEBHOOK_SECRET_ENV: &str = "GATEWAY_TEST_WEBHOOK_SECRET";
pub const UNSUBSCRIBE_SECRET_ENV: &str = "GATEWAY_TEST_UNSUBSCRIBE_SECRET";
pub const TWILIO_TOKEN: &str = "test-twilio-auth-token";
pub const NOTIFY_TOKEN: &str = "test-notify-callback-token";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// Puts the callback secrets where the app's config says to find them.
pub fn set_callback_secrets() {
    std::env::set_var(TWILIO_TOKEN_ENV, TWILIO_TOKEN);
    std::env::set_var(NOTIFY_TOKEN_ENV, NOTIFY_TOKEN);
    std::env::set_var(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET);
    std::env::set_var(UNSUBSCRIBE_SECRET_ENV, "test-unsubscribe-secret");
}

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server URL for tests, or why it cannot be used.
pub fn postgres_server() -> Result<String, String> {
    let url =
        std::env::var("GATEWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        use sqlx::Connection;
        match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await
        {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(url.clone())
            }
            Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
            Err(_) => Err(format!("no answer from {url} within 5 s")),
        }
    })
}

/// Runs one async test on its own runtime.
pub fn run(test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(test);
}

/// Settings a test may change before the app starts.
pub struct Options {
    /// Lease length.
    pub lease_seconds: u64,
    /// Messages in flight per worker.
    pub concurrency: usize,
    /// Claim batch.
    pub claim_batch: usize,
    /// How long each send takes after its line is written.
    pub send_delay: Duration,
    /// The end of quiet hours (21:00 to this); "21:00", the default, turns them off.
    pub quiet_hours_end: &'static str,
    /// Fan-outs read "now" from this clock instead of the system's.
    pub fanout_clock: Option<gateway::schedule::Clock>,
    /// `(after, count)`: once `after` messages have gone, the next `count` sends write their
    /// line and then hang, as a provider call does when the process is killed mid-send.
    pub stall: Option<(usize, usize)>,
    /// Providers to send through instead of the `log` providers (which then write nothing).
    pub providers: Option<Vec<ProviderConfig>>,
    /// `[push] allow_insecure_hosts`: hosts whose plain-http push endpoints the subscription
    /// API accepts (a push service on loopback).
    pub push_insecure_hosts: Vec<String>,
    /// `[push] allowed_networks`: internal networks push requests may reach. Loopback by
    /// default, for the loopback push services the tests run; empty to see refusals.
    pub push_allowed_networks: Vec<String>,
    /// `[push] allowed_endpoint_hosts`: the browser push services, the test names and
    /// loopback by default.
    pub push_endpoint_hosts: Vec<String>,
    /// Further settings by dotted key, e.g. `("limits.patient_bulk", json!("2/day"))`.
    pub settings: Vec<(&'static str, Value)>,
    /// Status sources to poll instead of the configured ones (none), at any interval.
    pub sources: Vec<gateway::intake::sources::poller::Source>,
    /// Another running app's database URL ([`TestApp::database_url`]) to share instead of a
    /// fresh database: a second instance of the same gateway. The first app owns (and drops)
    /// the database.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lease_seconds: 30,
            concurrency: 8,
            claim_batch: 64,
            stall: None,
            send_delay: Duration::ZERO,
            quiet_hours_end: "21:00",
            fanout_clock: None,
            providers: None,
            push_insecure_hosts: Vec::new(),
            push_allowed_networks: vec!["127.0.0.0/8".into()],
            push_endpoint_hosts: test_push_hosts(),
            settings: Vec::new(),
            sources: Vec::new(),
            database_url: None,
        }
    }
}

/// The browser push services (the shipped default), the names the tests' subscriptions
/// use, and loopback, where the tests' push services listen.
pub fn test_push_hosts() -> Vec<String> {
    [
        "fcm.googleapis.com",
        "push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
        "push.example.com",
        "push.example.net",
        "127.0.0.1",
        "localhost",
    ]
    .map(String::from)
    .to_vec()
}

/// A running gateway with its own database. Dispatch does not run by itself: tests call
/// [`TestApp::drain`] (or start workers) so that what is sent, and when, is theirs to say.
pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub admin_key: String,
    pub sent_log: PathBuf,
    client: reqwest::Client,
    shutdown: CancellationToken,
    _dir: TempDir,
    postgres: Option<(String, String)>,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, Options::default()).await
}

pub async fn spawn_app_with(db: Db, options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, postgres) = match (&db, options.database_url.clone()) {
        (_, Some(shared)) => (shared, None),
        (Db::Sqlite, None) => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("gateway.db").display()
            ),
            None,
        ),
        (Db::Postgres(base), None) => {
            let (url, name) = scratch::create_postgres_database(base, "gw_test")
                .await
                .expect("scratch database");
            (url, Some((base.clone(), name)))
        }
    };
    let sent_log = dir.path().join("sent.jsonl");
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML))
        .merge(Serialized::default("database.url", &url))
        .merge(Serialized::default("server.bind", "127.0.0.1:0"))
        .merge(Serialized::default("dispatch.enabled", false))
        .merge(Serialized::default(
            "dispatch.lease_seconds",
            options.lease_seconds,
        ))
        .merge(Serialized::default(
            "dispatch.concurrency",
            options.concurrency,
        ))
        .merge(Serialized::default(
            "dispatch.claim_batch",
            options.claim_batch,
        ))
        .merge(Serialized::default("dispatch.poll_interval_ms", 20))
        .merge(Serialized::default("fanout.batch_size", 250))
        // Status changes answer once their lists are planned, whatever the machine's speed,
        // so that tests can read the counts from the answer; a test of the background
        // planning sets this lower.
        .merge(Serialized::default("fanout.answer_within_ms", 60_000))
        // Quiet hours off unless a test asks: the suite must pass at any hour.
        .merge(Serialized::default("quiet_hours.start", "21:00"))
        .merge(Serialized::default(
            "quiet_hours.end",
            options.quiet_hours_end,
        ))
        .merge(Serialized::default(
            "receipts.twilio_auth_token_env",
            TWILIO_TOKEN_ENV,
        ))
        .merge(Serialized::default(
            "receipts.notify_callback_token_env",
            NOTIFY_TOKEN_ENV,
        ))
        .merge(Serialized::default(
            "receipts.webhook_secret_env",
            WEBHOOK_SECRET_ENV,
        ))
        .merge(Serialized::default(
            "receipts.unsubscribe_secret_env",
            UNSUBSCRIBE_SECRET_ENV,
        ));
    if !options.push_insecure_hosts.is_empty() {
        figment = figment.merge(Serialized::default(
            "push.allow_insecure_hosts",
            &options.push_insecure_hosts,
        ));
    }
    figment = figment
        .merge(Serialized::default(
            "push.allowed_networks",
            &options.push_allowed_networks,
        ))
        .merge(Serialized::default(
            "push.allowed_endpoint_hosts",
            &options.push_endpoint_hosts,
        ));
    for (key, value) in &options.settings {
        figment = figment.merge(Serialized::default(key, value));
    }
    let mut config = Config::from_figment(figment).expect("test config");
    config.providers = options
        .providers
        .unwrap_or_else(|| log_providers(&sent_log));

    let store = store::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    let providers = match (options.stall, options.send_delay) {
        (None, Duration::ZERO) => ProviderRegistry::for_gateway(&config).expect("providers"),
        (stall, delay) => {
            stalling::registry(&config.providers, stall.unwrap_or((usize::MAX, 0)), delay)
        }
    };
    let mut state = AppState::with_parts(config, store, Arc::new(providers))
        .await
        .expect("state");
    if let Some(clock) = options.fanout_clock.clone() {
        state = state.with_clock(clock);
    }
    if !options.sources.is_empty() {
        state = state.with_sources(options.sources);
    }
    let admin_key =
        gateway::auth::issue_key(state.store.as_ref(), KeyScope::Admin, "test admin", "test")
            .await
            .expect("admin key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    tokio::spawn(app::serve(state.clone(), listener, shutdown.clone()));
    TestApp {
        address,
        state,
        admin_key,
        sent_log,
        client: reqwest::Client::new(),
        shutdown,
        _dir: dir,
        postgres,
    }
}

/// One `log` provider per channel but the NHS App, all writing to `sent_log`. An NHS App
/// provider would give every patient an NHS App contact; tests of it configure their own.
fn log_providers(sent_log: &std::path::Path) -> Vec<ProviderConfig> {
    Channel::ALL
        .iter()
        .filter(|c| **c != Channel::NhsApp)
        .map(|c| ProviderConfig {
            name: format!("log-{c}"),
            kind: "log".into(),
            channel: *c,
            rate: None,
            burst: None,
            price_pence: None,
            settings: serde_json::json!({ "path": sent_log })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

/// A provider of `kind` named `name` on `channel` with the kind's `settings` (a JSON
/// object), no rate, no burst and the channel's default price.
pub fn provider(name: &str, kind: &str, channel: Channel, settings: Value) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        kind: kind.into(),
        channel,
        rate: None,
        burst: None,
        price_pence: None,
        settings: settings.as_object().cloned().unwrap_or_default(),
    }
}

/// A provider that writes through the real `log` provider and then, for a chosen few
/// sends, never returns: the message has left, but its outcome is never recorded.
mod stalling {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use gateway::providers::{Accepted, LogProvider, Outgoing, Provider, SendError};

    struct Stalling {
        inner: LogProvider,
        sent: Arc<AtomicUsize>,
        after: usize,
        count: usize,
        delay: Duration,
    }

    #[async_trait]
    impl Provider for Stalling {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn channel(&self) -> Channel {
            self.inner.channel()
        }
        async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
            // Counted before the line is written: a test that kills the worker once it sees
            // the stalled sends' lines has then used up every stall, so the worker that takes
            // over never meets one (counted after, a kill between the two left a stall for
            // the next worker, which then waited for it forever).
            let n = self.sent.fetch_add(1, Ordering::SeqCst);
            let accepted = self.inner.send(message).await?;
            tokio::time::sleep(self.delay).await;
            if n >= self.after && n - self.after < self.count {
                std::future::pending::<()>().await;
            }
            Ok(accepted)
        }
    }

    pub fn registry(
        configs: &[ProviderConfig],
        (after, count): (usize, usize),
        delay: Duration,
    ) -> ProviderRegistry {
        let mut files = SharedFiles::default();
        let mut registry = ProviderRegistry::default();
        let sent = Arc::new(AtomicUsize::new(0));
        for config in configs {
            let inner = LogProvider::new(config, &mut files).expect("log provider");
            registry.add(Arc::new(Stalling {
                inner,
                sent: sent.clone(),
                after,
                count,
                delay,
            }));
        }
        registry
    }
}

/// The answer's `Content-Type`, or "" without one.
fn content_type_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A response: status and JSON body (Null if none).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl TestApp {
    /// The database this app uses, for a second instance to share (`Options::database_url`).
    pub fn database_url(&self) -> String {
        self.state.config.database.url.clone()
    }

    /// Sends a request with an optional key and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type = content_type_of(&response);
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        conformance::check(&method, path, status, &content_type, &body);
        Reply { status, body }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.request(Method::GET, path, Some(key), None).await
    }

    /// Posts a raw body with the given headers and no API key (as providers call back).
    pub async fn callback(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type = content_type_of(&response);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        conformance::check(&Method::POST, path, status, &content_type, &body);
        Reply { status, body }
    }

    /// Texts `body` from `from` to the gateway through the signed Twilio inbound webhook,
    /// as Twilio does; the webhook must answer 200.
    pub async fn inbound_sms(&self, from: &str, body: &str) {
        let url = format!(
            "{}/api/v1/inbound/sms/twilio",
            self.state.config.receipts.public_url
        );
        let params: Vec<(String, String)> = [
            ("From", from),
            ("To", "+447700900999"),
            ("Body", body),
            ("MessageSid", "SM-inbound"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let signature = gateway::receipts::twilio_signature(TWILIO_TOKEN, &url, &params);
        let reply = self
            .callback(
                "/api/v1/inbound/sms/twilio",
                "application/x-www-form-urlencoded",
                &[("x-twilio-signature", signature)],
                form,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(key), Some(body))
            .await
    }

    /// The row id of the practice with this ODS code (it must exist).
    pub async fn practice_id(&self, ods: &str) -> PracticeId {
        let ods = gateway::domain::OdsCode::parse(ods).expect("ods");
        self.state
            .store
            .practice_by_ods(&ods)
            .await
            .expect("store")
            .expect("practice")
            .id
    }

    /// Creates a practice (as admin) and returns a key scoped to it.
    pub async fn practice_with_key(&self, ods: &str, name: &str) -> String {
        self.practice_with_settings(serde_json::json!({ "ods_code": ods, "name": name }))
            .await
    }

    /// Creates practice `ods` with `patients` patients reachable by SMS only, numbered from
    /// `first` (NHS number `nhs(n)`, mobile `07700 9nnnnn`); returns a key scoped to it.
    pub async fn practice_with_sms_patients(&self, ods: &str, first: u32, patients: u32) -> String {
        let key = self.practice_with_key(ods, &format!("Surgery {ods}")).await;
        let patients: Vec<Value> = (first..first + patients)
            .map(|n| serde_json::json!({ "nhs_number": nhs(n), "contacts": [{ "channel": "sms", "address": format!("07700 9{n:05}") }] }))
            .collect();
        let reply = self
            .post(
                &format!("/api/v1/practices/{ods}/patients"),
                &key,
                &serde_json::json!({ "patients": patients }),
            )
            .await;
        assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
        key
    }

    /// Creates a practice from a full request body (as admin) and returns a key scoped to it.
    pub async fn practice_with_settings(&self, body: Value) -> String {
        let reply = self.post("/api/v1/practices", &self.admin_key, &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let ods = body["ods_code"].as_str().expect("ods_code");
        let practice = self
            .state
            .store
            .practice_by_ods(&gateway::domain::OdsCode::parse(ods).expect("ods"))
            .await
            .expect("store")
            .expect("practice");
        gateway::auth::issue_key(
            self.state.store.as_ref(),
            KeyScope::Practice(practice.id),
            "test",
            "test",
        )
        .await
        .expect("practice key")
    }

    /// Records a status change and its broadcast without fanning out, as a process that
    /// stopped right after the record (or a fan-out not yet started) leaves it. Returns the
    /// broadcast id.
    pub async fn record_status_change_only(&self, ods: &str, kind: &str) -> BroadcastId {
        let ods = gateway::domain::OdsCode::parse(ods).expect("ods");
        let practice = self
            .state
            .store
            .practice_by_ods(&ods)
            .await
            .expect("store")
            .expect("practice");
        let request = gateway::intake::status::StatusChangeRequest {
            kind: kind.into(),
            headline: None,
            details: None,
            ..Default::default()
        };
        let change = request.parse("test").expect("valid status change");
        match self
            .state
            .store
            .start_status_broadcast(practice.id, &change, None, chrono::Utc::now())
            .await
            .expect("store")
        {
            gateway::store::StartOutcome::Started(id) => id,
            other => panic!("not started: {other:?}"),
        }
    }

    /// Sends everything due, with a fresh worker, until nothing is left to claim.
    pub async fn drain(&self) -> u64 {
        self.state
            .dispatcher()
            .run_until_idle()
            .await
            .expect("drain")
    }

    /// Every complete line the log provider wrote (one being written is left out).
    pub fn sent_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.sent_log).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some((base, name)) = self.postgres.take() {
            // Dropped on another thread with its own runtime: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    scratch::drop_postgres_database(&base, &name).await
                })
            })
            .join();
        }
    }
}

/// Books appointment `reference` for patient `nhs(i)` of practice `ods` and moves it to
/// the next day (an urgent one-patient message); the change's answer.
pub async fn move_appointment(
    app: &TestApp,
    key: &str,
    ods: &str,
    reference: &str,
    i: u32,
) -> Value {
    let booked = app
        .post(
            &format!("/api/v1/practices/{ods}/appointments"),
            key,
            &serde_json::json!({ "appointments": [{ "external_ref": reference,
                "nhs_number": nhs(i), "starts_at": "2030-03-04 09:30", "clinician": "Dr Rao",
                "location": "Room 2", "status": "booked" }] }),
        )
        .await;
    assert_eq!(booked.status, StatusCode::OK, "{}", booked.body);
    let moved = app
        .post(
            &format!("/api/v1/practices/{ods}/appointments/{reference}/changes"),
            key,
            &serde_json::json!({ "kind": "moved", "starts_at": "2030-03-05 11:00" }),
        )
        .await;
    assert_eq!(moved.status, StatusCode::CREATED, "{}", moved.body);
    moved.body
}

/// A valid NHS number for test patient `i` (from the 999 test range).
pub fn nhs(i: u32) -> String {
    let mut stem = 999_100_000 + i * 11;
    loop {
        if let Some(n) = gateway::domain::NhsNumber::from_stem(stem) {
            return n.to_string();
        }
        stem += 1;
    }
}
