//! `national`: a national outage simulated on PostgreSQL. Hundreds of practices of
//! thousands of patients each (mixed channels, as in the demo, plus one in ten on web push)
//! post `systems_down` within one minute to a gateway run as an operator would: one
//! `gateway serve --role api` process and several `--role worker` processes (the `gateway`
//! binary Cargo built beside this benchmark, or `--gateway`), sharing one scratch database.
//! The providers are loopback peers with contracted rates set on the command line: SMS
//! through the `webhook` kind and web push through the `webpush` kind (real aes128gcm
//! encryption and VAPID signatures) to HTTP peers in this process, and email through the
//! `smtp` kind into postfix's `smtp-sink`, a real independent SMTP server.
//!
//! Meanwhile one more practice posts an appointment change every `--urgent-every-ms`; its
//! messages are urgent and must not queue behind the storm.
//!
//! Every figure is read from the database the gateway wrote (attempts' `finished_at` is
//! when a provider accepted a message), so SMTP and HTTP peers are treated alike: time to
//! plan every broadcast, each provider's achieved rate against its limit, each practice's
//! first message out after its own POST, urgent messages' waits, database growth, and the
//! gateway processes' peak RSS and CPU per message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::dispatch::SECRET_ENV;
use super::workers::{spawn_gateway, stop};
use super::{cpu_of, median, scratch, seed, status_kib_of};
use gateway::config::Config;
use gateway::domain::{ChannelOrder, NhsNumber, PracticeId};
use gateway::store::{KeyScope, PostgresStore, Store};

/// Where Debian's postfix package puts `smtp-sink`.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// The environment variable the push provider reads its VAPID private key from.
const VAPID_ENV: &str = "GATEWAY_BENCH_VAPID_KEY";

/// Patients of the practice that posts appointment changes during the storm.
const URGENT_PATIENTS: u32 = 200;

/// Options of the `national` benchmark.
#[derive(Debug, clap::Args)]
pub struct NationalArgs {
    /// Practices that each post `systems_down`.
    #[arg(long, default_value_t = 600)]
    pub practices: u32,
    /// Synthetic patients per practice.
    #[arg(long, default_value_t = 10_000)]
    pub patients: u64,
    /// Storms run one after another (each supersedes the one before); medians reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Worker processes (`gateway serve --role worker`) beside the API process.
    #[arg(long, default_value_t = 3)]
    pub workers: u32,
    /// The SMS provider's contracted rate, messages per second.
    #[arg(long, default_value_t = 1_000)]
    pub sms_rate: u32,
    /// The email provider's contracted rate, messages per second.
    #[arg(long, default_value_t = 3_000)]
    pub email_rate: u32,
    /// The push provider's contracted rate, messages per second.
    #[arg(long, default_value_t = 5_000)]
    pub push_rate: u32,
    /// Every practice posts within this many seconds of the first (evenly spread).
    #[arg(long, default_value_t = 60)]
    pub post_within: u64,
    /// How long each storm goes on being measured once every broadcast is planned, seconds.
    #[arg(long, default_value_t = 30)]
    pub after_planned: u64,
    /// One appointment change posted this often during each storm, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub urgent_every_ms: u64,
    /// Longest a storm may take to plan every broadcast before the benchmark gives up, s.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// The gateway binary to run (default: the one Cargo built beside this benchmark).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// The PostgreSQL server: a scratch database is made on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// Runs the simulation on a scratch database.
pub async fn national(
    config: &Config,
    args: NationalArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let base = args
        .postgres
        .clone()
        .ok_or("national needs --postgres URL: several processes share one PostgreSQL")?;
    if !Path::new(SMTP_SINK).exists() {
        return Err(format!(
            "{SMTP_SINK} is missing: the email peer is postfix's smtp-sink \
             (apt-get install postfix, configuration \"No configuration\")"
        )
        .into());
    }
    let (url, name) = scratch::create_postgres_database(&base, "gw_national").await?;
    let dir = tempfile::tempdir()?;
    let result = simulate(config, &args, &url, dir.path()).await;
    scratch::drop_postgres_database(&base, &name).await?;
    result
}

/// What the loopback HTTP peers have taken.
#[derive(Default)]
struct PeerCounts {
    sms: AtomicU64,
    push: AtomicU64,
}

/// Starts the loopback SMS API (the `webhook` kind's answer) and push service (201 and a
/// `Location`, as RFC 8030 answers); returns their address.
async fn start_http_peers(
    counts: Arc<PeerCounts>,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let sms_counts = counts.clone();
    let app = axum::Router::new()
        .route(
            "/sms",
            axum::routing::post(move || {
                let n = sms_counts.sms.fetch_add(1, Ordering::Relaxed);
                async move { axum::Json(json!({ "id": n })) }
            }),
        )
        .route(
            "/push/{id}",
            axum::routing::post(move || {
                let n = counts.push.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        StatusCode::CREATED,
                        [("location", format!("/receipts/{n}"))],
                        "",
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((address, task))
}

/// A loopback port nobody listens on at the moment.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `smtp-sink` on `port`, taking every message and keeping none.
fn start_smtp_sink(port: u16, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(SMTP_SINK)
        // Run as nobody once listening (it refuses to stay root); backlog of 1,024.
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

async fn simulate(
    config: &Config,
    args: &NationalArgs,
    url: &str,
    dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let pg = PostgresStore::connect(url, 4).await?;
    pg.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    std::env::set_var(SECRET_ENV, "bench-secret");
    let (vapid_public, vapid_private) = gateway::providers::generate_vapid_keys();
    std::env::set_var(VAPID_ENV, vapid_private);

    let counts = Arc::new(PeerCounts::default());
    let (peer, peer_task) = start_http_peers(counts.clone()).await?;
    let smtp_port = free_port()?;
    let mut sink = start_smtp_sink(smtp_port, &dir.join("smtp-sink.log"))?;

    let seeding = Instant::now();
    let mixed = ChannelOrder::parse("sms,email,push")?;
    let mut codes = Vec::new();
    let mut ids: Vec<PracticeId> = Vec::new();
    for p in 0..args.practices {
        let code = format!("N{p:05}");
        ids.push(
            seed::practice(store.as_ref(), &code, mixed.clone())
                .await?
                .id,
        );
        codes.push(code);
    }
    let urgent = seed::practice(store.as_ref(), "U00000", ChannelOrder::parse("sms")?).await?;
    // A subscription key pair for every push contact: any P-256 point will do.
    let (subscriber_key, _) = gateway::providers::generate_vapid_keys();
    seed_mixed_patients(
        &pg,
        &ids,
        args.patients,
        &format!("{peer}/push/"),
        &subscriber_key,
    )
    .await?;
    eprintln!(
        "seeded {} practices of {} patients in {:.1} s",
        ids.len(),
        args.patients,
        seeding.elapsed().as_secs_f64()
    );

    let api_port = free_port()?;
    let config_file = dir.join("gateway.toml");
    std::fs::write(
        &config_file,
        gateway_config(config, args, url, &peer, smtp_port, &vapid_public),
    )?;
    let exe = args
        .gateway
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gateway")));
    let bind = format!("127.0.0.1:{api_port}");
    let mut children = vec![spawn_gateway(
        &exe,
        &config_file,
        &dir.join("api.log"),
        "api",
        &[("GATEWAY__SERVER__BIND", bind.as_str())],
    )?];
    for i in 0..args.workers {
        children.push(spawn_gateway(
            &exe,
            &config_file,
            &dir.join(format!("worker{i}.log")),
            "worker",
            &[],
        )?);
    }
    let admin_key =
        gateway::auth::issue_key(store.as_ref(), KeyScope::Admin, "national", "bench").await?;
    let api = Api {
        base: format!("http://{bind}/api/v1"),
        key: admin_key,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
    };
    let result = async {
        if let Err(e) = api
            .wait_ready(
                &format!("http://{bind}/readyz"),
                Duration::from_secs(60),
                &children[0],
            )
            .await
        {
            let log = std::fs::read_to_string(dir.join("api.log")).unwrap_or_default();
            return Err(format!("{e}; its log:\n{log}").into());
        }
        let appointments = api.book_urgent_patients("U00000").await?;
        let storm = Storm {
            args,
            api: &api,
            pg: &pg,
            codes: &codes,
            urgent: urgent.id,
            appointments: &appointments,
            children: &children,
            dir,
        };
        storm.measure_all().await
    }
    .await;
    stop(&mut children);
    let _ = sink.kill();
    let _ = sink.wait();
    peer_task.abort();
    result
}

/// Seeds `count` patients in each of `practices` in SQL: the demo's mix of contacts (half
/// SMS only, one in five email only, one in five both) and one in ten a web push
/// subscription to the loopback push service at `push_base`.
async fn seed_mixed_patients(
    pg: &PostgresStore,
    practices: &[PracticeId],
    count: u64,
    push_base: &str,
    subscriber_key: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let ids: Vec<i64> = practices.iter().map(|p| p.get()).collect();
    sqlx::query(
        "INSERT INTO patients (practice_id, nhs_number, given_name, family_name, language, active, created_at, updated_at)
         SELECT p, 'S' || lpad(i::text, 9, '0'), 'Pat', 'Bench', 'en', TRUE, $2, $2
         FROM unnest($1::bigint[]) AS p, generate_series(1, $3::bigint) AS i",
    )
    .bind(&ids)
    .bind(now)
    .bind(count as i64)
    .execute(pg.pool())
    .await?;
    sqlx::query(
        "INSERT INTO contacts (patient_id, channel, address, push_p256dh, push_auth, created_at)
         SELECT p.id, mix.channel,
                CASE mix.channel
                    WHEN 'sms' THEN '+447700900' || lpad((p.id % 1000)::text, 3, '0')
                    WHEN 'email' THEN 'patient' || p.id || '@example.com'
                    ELSE $3 || p.id END,
                CASE WHEN mix.channel = 'push' THEN $4 END,
                CASE WHEN mix.channel = 'push' THEN 'AAAAAAAAAAAAAAAAAAAAAA' END,
                $1
         FROM patients p
         JOIN (VALUES (0, 'sms'), (1, 'sms'), (2, 'sms'), (3, 'sms'), (4, 'sms'),
                      (5, 'email'), (6, 'email'), (7, 'sms'), (7, 'email'),
                      (8, 'sms'), (8, 'email'), (9, 'push')) AS mix (remainder, channel)
           ON mix.remainder = p.id % 10
         WHERE p.practice_id = ANY($2)",
    )
    .bind(now)
    .bind(&ids)
    .bind(push_base)
    .bind(subscriber_key)
    .execute(pg.pool())
    .await?;
    sqlx::query("ANALYZE patients, contacts")
        .execute(pg.pool())
        .await?;
    Ok(())
}

/// The settings of every gateway process: this process's dispatch settings, the scratch
/// database, and the three loopback providers at their contracted rates (a burst of 50 ms
/// of traffic each, so that timer jitter does not cost rate).
fn gateway_config(
    config: &Config,
    args: &NationalArgs,
    url: &str,
    peer: &str,
    smtp_port: u16,
    vapid_public: &str,
) -> String {
    let d = &config.dispatch;
    let burst = |rate: u32| (rate / 20).max(1);
    format!(
        r#"[server]
bind = "127.0.0.1:0"

[database]
url = "{url}"
max_connections = {pool}

[dispatch]
concurrency = {concurrency}
claim_batch = {claim_batch}
lease_seconds = {lease}
poll_interval_ms = {poll}

[fanout]
answer_within_ms = {answer_within}

[limits]
patient_bulk = "1000000/day"
patient_burst = 1000000

[quiet_hours]
start = "21:00"
end = "21:00"

[cluster]
heartbeat_seconds = 1

[telemetry]
log_filter = "warn"

[push]
allowed_networks = ["127.0.0.0/8"]

[[providers]]
name = "national-sms"
kind = "webhook"
channel = "sms"
rate = "{sms_rate}/s"
burst = {sms_burst}
url = "{peer}/sms"
signing_secret_env = "{SECRET_ENV}"

[[providers]]
name = "national-email"
kind = "smtp"
channel = "email"
rate = "{email_rate}/s"
burst = {email_burst}
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
from = "GP practice <practice@example.org>"

[[providers]]
name = "national-push"
kind = "webpush"
channel = "push"
rate = "{push_rate}/s"
burst = {push_burst}
vapid_public_key = "{vapid_public}"
vapid_private_key_env = "{VAPID_ENV}"
subject = "mailto:outage-drill@gp-gateway.nhs.uk"
allow_insecure_hosts = ["127.0.0.1"]
allowed_networks = ["127.0.0.0/8"]
"#,
        pool = config.database.max_connections,
        concurrency = d.concurrency,
        claim_batch = d.claim_batch,
        lease = d.lease_seconds,
        poll = d.poll_interval_ms,
        answer_within = config.fanout.answer_within_ms,
        sms_rate = args.sms_rate,
        sms_burst = burst(args.sms_rate),
        email_rate = args.email_rate,
        email_burst = burst(args.email_rate),
        push_rate = args.push_rate,
        push_burst = burst(args.push_rate),
    )
}

/// The API process, driven over HTTP with an admin key.
struct Api {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> Result<Value, Box<dyn std::error::Error>> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {body}").into());
        }
        Ok(body)
    }

    async fn wait_ready(&self, url: &str, within: Duration, process: &Child) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if exited(process) {
                return Err("the API process stopped".into());
            }
            if let Ok(r) = self.client.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the API process was not ready at {url} in time"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Gives practice `ods` its patients (through the API, with real NHS numbers) and one
    /// appointment each a week ahead; returns the appointments' references.
    async fn book_urgent_patients(
        &self,
        ods: &str,
    ) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let numbers: Vec<String> = (999_100_000u32..)
            .filter_map(NhsNumber::from_stem)
            .take(URGENT_PATIENTS as usize)
            .map(|n| n.to_string())
            .collect();
        let patients: Vec<Value> = numbers
            .iter()
            .enumerate()
            .map(|(i, nhs)| {
                json!({
                    "nhs_number": nhs,
                    "given_name": "Urgent",
                    "family_name": format!("Patient{i}"),
                    "contacts": [{ "channel": "sms", "address": format!("07700 900{:03}", i % 1000) }],
                })
            })
            .collect();
        self.post(
            &format!("/practices/{ods}/patients"),
            &json!({ "patients": patients }),
        )
        .await?;
        let starts = (Utc::now() + chrono::Duration::days(7)).to_rfc3339();
        let references: Vec<String> = (0..numbers.len()).map(|i| format!("APT{i}")).collect();
        let appointments: Vec<Value> = numbers
            .iter()
            .zip(&references)
            .map(|(nhs, reference)| {
                json!({ "nhs_number": nhs, "starts_at": starts, "external_ref": reference })
            })
            .collect();
        self.post(
            &format!("/practices/{ods}/appointments"),
            &json!({ "appointments": appointments }),
        )
        .await?;
        Ok(references)
    }
}

/// One storm's measurements.
struct RunFigures {
    plan_all: f64,
    answer_p50_ms: f64,
    answer_max_ms: f64,
    first_out_median: f64,
    first_out_slowest: f64,
    urgent_p99_ms: f64,
    sms_ratio: f64,
    email_ratio: f64,
    push_ratio: f64,
    cpu_us: f64,
}

/// Everything a storm needs.
struct Storm<'a> {
    args: &'a NationalArgs,
    api: &'a Api,
    pg: &'a PostgresStore,
    codes: &'a [String],
    urgent: PracticeId,
    appointments: &'a [String],
    children: &'a [Child],
    dir: &'a Path,
}

/// What each provider did in one storm.
struct ProviderFigures {
    accepted: u64,
    in_window: u64,
    busiest_second: u64,
}

impl Storm<'_> {
    async fn measure_all(&self) -> Result<(), Box<dyn std::error::Error>> {
        let mut figures = Vec::new();
        for run in 1..=self.args.runs.max(1) {
            figures.push(self.once(run).await?);
        }
        let pick = |f: fn(&RunFigures) -> f64| {
            let mut values: Vec<f64> = figures.iter().map(f).collect();
            median(&mut values)
        };
        println!(
            "national: practices={} patients={} workers={} runs={} median plan_all={:.1} s answer p50={:.0} ms max={:.0} ms first_out median={:.1} s slowest={:.1} s urgent p99={:.0} ms sms={:.3} email={:.3} push={:.3} of their limits cpu={:.1} µs/msg",
            self.codes.len(),
            self.args.patients,
            self.args.workers,
            figures.len(),
            pick(|f| f.plan_all),
            pick(|f| f.answer_p50_ms),
            pick(|f| f.answer_max_ms),
            pick(|f| f.first_out_median),
            pick(|f| f.first_out_slowest),
            pick(|f| f.urgent_p99_ms),
            pick(|f| f.sms_ratio),
            pick(|f| f.email_ratio),
            pick(|f| f.push_ratio),
            pick(|f| f.cpu_us),
        );
        Ok(())
    }

    /// One storm: every practice posts `systems_down` within `post_within`, urgent changes
    /// go on meanwhile, and the figures are read once every broadcast is planned and
    /// `after_planned` has passed.
    async fn once(&self, run: u32) -> Result<RunFigures, Box<dyn std::error::Error>> {
        let size_before = self.database_size().await?;
        for child in self.children {
            let _ = std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5");
        }
        let cpu_before: Vec<Duration> = self
            .children
            .iter()
            .map(|c| cpu_of(&c.id().to_string()))
            .collect();
        let started = Utc::now();
        let clock = Instant::now();

        let stop_urgent = tokio_util::sync::CancellationToken::new();
        let urgent_task = self.post_urgent_changes(run, stop_urgent.clone());
        let posting = self.post_status_changes(run);
        let (urgent_posted, posted) = tokio::join!(urgent_task, async {
            let posted = posting.await;
            if let Ok(posted) = &posted {
                let broadcasts: Vec<i64> = posted.values().map(|p| p.1).collect();
                let planned = self.wait_planned(&broadcasts, clock).await;
                tokio::time::sleep(Duration::from_secs(self.args.after_planned)).await;
                stop_urgent.cancel();
                return planned.map(|at| (posted.clone(), at));
            }
            stop_urgent.cancel();
            posted.map(|p| (p, Duration::ZERO))
        });
        let (posted, plan_all) = posted?;
        let ended = Utc::now();
        self.check_children()?;

        let cpu: Duration = self
            .children
            .iter()
            .zip(&cpu_before)
            .map(|(c, before)| cpu_of(&c.id().to_string()).saturating_sub(*before))
            .sum();
        let rss: Vec<String> = self
            .children
            .iter()
            .map(|c| {
                format!(
                    "{} MiB",
                    status_kib_of(&c.id().to_string(), "VmHWM:") / 1024
                )
            })
            .collect();

        // The providers' rates over the storm once the posts have begun to be planned.
        // (Ten seconds in, or a quarter of a short storm, as in CI's small run.)
        let window_start = started + chrono::Duration::seconds(10).min((ended - started) / 4);
        let providers = self.provider_figures(started, window_start, ended).await?;
        let window = (ended - window_start).num_milliseconds() as f64 / 1e3;
        let ratio = |name: &str, limit: u32| -> (f64, u64, u64) {
            providers.get(name).map_or((0.0, 0, 0), |p| {
                (
                    p.in_window as f64 / window / limit as f64,
                    p.busiest_second,
                    p.accepted,
                )
            })
        };
        let (sms_ratio, sms_peak, sms_all) = ratio("national-sms", self.args.sms_rate);
        let (email_ratio, email_peak, email_all) = ratio("national-email", self.args.email_rate);
        let (push_ratio, push_peak, push_all) = ratio("national-push", self.args.push_rate);
        let accepted = sms_all + email_all + push_all;

        let mut first_out = self.first_out(&posted).await?;
        let slowest = first_out.iter().copied().fold(0.0, f64::max);
        let first_median = median(&mut first_out);
        let (mut urgent_waits, urgent_unsent) = self.urgent_waits(started).await?;
        let urgent_p50 = percentile(&mut urgent_waits, 0.5);
        let urgent_p99 = percentile(&mut urgent_waits, 0.99);
        let mut answers: Vec<f64> = posted.values().map(|p| p.2).collect();
        let answer_p50 = percentile(&mut answers, 0.5);
        let answer_max = answers.iter().copied().fold(0.0, f64::max);
        let size_after = self.database_size().await?;
        let figures = RunFigures {
            plan_all: plan_all.as_secs_f64(),
            answer_p50_ms: answer_p50,
            answer_max_ms: answer_max,
            first_out_median: first_median,
            first_out_slowest: slowest,
            urgent_p99_ms: urgent_p99,
            sms_ratio,
            email_ratio,
            push_ratio,
            cpu_us: cpu.as_secs_f64() / (accepted.max(1) as f64) * 1e6,
        };
        println!(
            "national run {run}: practices={} posted={} patients={} workers={} plan_all={:.1} s answers p50={answer_p50:.0} ms max={answer_max:.0} ms \
             first_out median={first_median:.1} s slowest={slowest:.1} s \
             urgent posted={urgent_posted} p50={urgent_p50:.0} ms p99={urgent_p99:.0} ms unsent={urgent_unsent} \
             sms={sms_ratio:.3} (busiest second {sms_peak}/{}) email={email_ratio:.3} (busiest {email_peak}/{}) push={push_ratio:.3} (busiest {push_peak}/{}) over {window:.0} s \
             accepted={accepted} cpu={:.1} µs/msg (api+workers) rss=[{}] db_growth={:.0} MiB",
            self.codes.len(),
            posted.len(),
            self.args.patients,
            self.args.workers,
            figures.plan_all,
            self.args.sms_rate,
            self.args.email_rate,
            self.args.push_rate,
            figures.cpu_us,
            rss.join(", "),
            (size_after - size_before) as f64 / 1_048_576.0,
        );
        Ok(figures)
    }

    /// Posts every practice's `systems_down`, evenly spread over `post_within`; returns
    /// each practice's (posted at, broadcast, answer in ms).
    async fn post_status_changes(
        &self,
        run: u32,
    ) -> Result<HashMap<String, (DateTime<Utc>, i64, f64)>, String> {
        let spacing = Duration::from_secs(self.args.post_within)
            .checked_div(self.codes.len().max(1) as u32)
            .unwrap_or_default();
        let clock = Instant::now();
        let mut posts = tokio::task::JoinSet::new();
        for (i, code) in self.codes.iter().enumerate() {
            let at = clock + spacing * i as u32;
            let (client, base, key) = (
                self.api.client.clone(),
                self.api.base.clone(),
                self.api.key.clone(),
            );
            let code = code.clone();
            posts.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let posted = Utc::now();
                let sent = Instant::now();
                let body = json!({ "kind": "systems_down", "headline": format!("National run {run}: systems down") });
                let response = client
                    .post(format!("{base}/practices/{code}/status"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("{code}: {e}"))?;
                let status = response.status();
                let answer: Value = response.json().await.map_err(|e| format!("{code}: {e}"))?;
                let took = sent.elapsed().as_secs_f64() * 1e3;
                let broadcast = answer["id"]
                    .as_i64()
                    .ok_or_else(|| format!("{code}: {status} {answer}"))?;
                Ok::<_, String>((code, (posted, broadcast, took)))
            });
        }
        let mut posted = HashMap::new();
        let mut refused = Vec::new();
        while let Some(done) = posts.join_next().await {
            // A refused or failed post is counted and shown, and the storm goes on.
            match done.map_err(|e| e.to_string())? {
                Ok((code, figures)) => {
                    posted.insert(code, figures);
                }
                Err(e) => refused.push(e),
            }
        }
        if let Some(first) = refused.first() {
            eprintln!(
                "national run {run}: {} status posts failed; the first: {first}",
                refused.len()
            );
        }
        if posted.is_empty() {
            return Err("every status post failed".into());
        }
        Ok(posted)
    }

    /// Posts an appointment change every `urgent_every_ms` until `stop`; returns how many.
    async fn post_urgent_changes(
        &self,
        run: u32,
        stop: tokio_util::sync::CancellationToken,
    ) -> u64 {
        let mut posted = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(self.args.urgent_every_ms));
        while !stop.is_cancelled() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some(reference) = self
                .appointments
                .get(posted as usize % self.appointments.len().max(1))
            else {
                break;
            };
            // A new time each change, so that none is a repeat of the one before.
            let minutes = (run as i64) * 100_000 + posted as i64;
            let starts = (Utc::now()
                + chrono::Duration::days(8)
                + chrono::Duration::minutes(minutes % 10_000))
            .to_rfc3339();
            let body = json!({ "kind": "moved", "starts_at": starts, "reason": "The clinic is running from paper records." });
            match self
                .api
                .post(
                    &format!("/practices/U00000/appointments/{reference}/changes"),
                    &body,
                )
                .await
            {
                Ok(_) => posted += 1,
                Err(e) => eprintln!("urgent change: {e}"),
            }
        }
        posted
    }

    /// Waits until every broadcast's fan-out has finished; returns how long after `clock`.
    async fn wait_planned(&self, broadcasts: &[i64], clock: Instant) -> Result<Duration, String> {
        let deadline = clock + Duration::from_secs(self.args.timeout);
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM broadcasts
                 WHERE id = ANY($1) AND fanout_done_at IS NULL AND failed_at IS NULL",
            )
            .bind(broadcasts)
            .fetch_one(self.pg.pool())
            .await
            .map_err(|e| e.to_string())?;
            if left == 0 {
                return Ok(clock.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!("{left} broadcasts unplanned at the deadline"));
            }
            self.check_children()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every accepted attempt per provider in the storm, those in the window, and the most
    /// in any one second.
    async fn provider_figures(
        &self,
        started: DateTime<Utc>,
        window_start: DateTime<Utc>,
        ended: DateTime<Utc>,
    ) -> Result<HashMap<String, ProviderFigures>, sqlx::Error> {
        let rows: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT provider, date_trunc('second', finished_at) AS second, count(*)
             FROM attempts
             WHERE outcome = 'accepted' AND finished_at >= $1 AND finished_at < $2
             GROUP BY 1, 2",
        )
        .bind(started)
        .bind(ended)
        .fetch_all(self.pg.pool())
        .await?;
        let mut figures: HashMap<String, ProviderFigures> = HashMap::new();
        for (provider, second, count) in rows {
            let entry = figures.entry(provider).or_insert(ProviderFigures {
                accepted: 0,
                in_window: 0,
                busiest_second: 0,
            });
            let count = count as u64;
            entry.accepted += count;
            // Whole seconds inside the window only.
            if second >= window_start && second + chrono::Duration::seconds(1) <= ended {
                entry.in_window += count;
                entry.busiest_second = entry.busiest_second.max(count);
            }
        }
        Ok(figures)
    }

    /// Seconds from each practice's POST to its first message accepted by a provider. A
    /// broadcast's first messages are its first turns, which have its lowest ids.
    async fn first_out(
        &self,
        posted: &HashMap<String, (DateTime<Utc>, i64, f64)>,
    ) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        let broadcasts: Vec<i64> = posted.values().map(|p| p.1).collect();
        let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT b.id,
                    (SELECT min(a.finished_at)
                     FROM (SELECT id FROM messages WHERE broadcast_id = b.id ORDER BY id LIMIT 1000) m
                     JOIN attempts a ON a.message_id = m.id AND a.outcome = 'accepted')
             FROM unnest($1::bigint[]) AS b (id)",
        )
        .bind(&broadcasts)
        .fetch_all(self.pg.pool())
        .await?;
        let first: HashMap<i64, Option<DateTime<Utc>>> = rows.into_iter().collect();
        let mut waits = Vec::new();
        for (code, (at, broadcast, _)) in posted {
            match first.get(broadcast).copied().flatten() {
                Some(out) => waits.push((out - *at).num_milliseconds() as f64 / 1e3),
                None => return Err(format!("{code}: no message out by the end of the run").into()),
            }
        }
        Ok(waits)
    }

    /// Milliseconds from each urgent message's creation to its acceptance, for those made
    /// since `started`, and how many were still unsent at the end.
    async fn urgent_waits(&self, started: DateTime<Utc>) -> Result<(Vec<f64>, i64), sqlx::Error> {
        let rows: Vec<(Option<f64>,)> = sqlx::query_as(
            "SELECT EXTRACT(EPOCH FROM (min(a.finished_at) - m.created_at))::float8 * 1000
             FROM messages m
             LEFT JOIN attempts a ON a.message_id = m.id AND a.outcome = 'accepted'
             WHERE m.practice_id = $1 AND m.created_at >= $2
             GROUP BY m.id, m.created_at",
        )
        .bind(self.urgent)
        .bind(started)
        .fetch_all(self.pg.pool())
        .await?;
        let unsent = rows.iter().filter(|r| r.0.is_none()).count() as i64;
        Ok((rows.into_iter().filter_map(|r| r.0).collect(), unsent))
    }

    async fn database_size(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(self.pg.pool())
            .await
    }

    /// An error naming the first gateway process that has stopped, with its log.
    fn check_children(&self) -> Result<(), String> {
        for (i, child) in self.children.iter().enumerate() {
            if exited(child) {
                let name = if i == 0 {
                    "api".to_string()
                } else {
                    format!("worker{}", i - 1)
                };
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                return Err(format!("the {name} process stopped:\n{log}"));
            }
        }
        Ok(())
    }
}

/// Whether `child` has stopped (an exited process stays a zombie, state Z, until it is
/// waited for).
fn exited(child: &Child) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z"))
}

/// The `q` quantile of `values` (0 for none).
fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}
