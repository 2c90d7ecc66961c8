//! `email`: how fast email leaves through the `smtp` provider into postfix's `smtp-sink` (a
//! real, independent SMTP server that throws messages away), and how much CPU each email costs
//! the gateway, against the sink's own ceiling measured in the same invocation.
//!
//! The benchmark starts `smtp-sink` itself on a free loopback port and measures, each the median
//! of `--runs`:
//!
//! 1. **The sink's ceiling**: a minimal SMTP client in this process (raw tokio; MAIL, RCPT and
//!    DATA as one pipelined write, then the content and its `.` as one write, as the sink offers
//!    PIPELINING) sending the same email over one connection, then over `--connections`.
//! 2. **The provider alone**: `Provider::send` called by `dispatch.concurrency` tasks, no store:
//!    what the `smtp` provider costs by itself.
//! 3. **Dispatch**: a broadcast of `--messages` emails planned by a fan-out into a scratch store,
//!    then `Dispatcher::run_until_idle` with the `smtp` provider pointed at the sink. That is the
//!    code `gateway serve` runs for its dispatch workers, here in the benchmark's process so that
//!    the process's CPU time is the gateway's (the sink is another process).
//!
//! Emails are counted by the sink (`smtp-sink -c` prints its counters); a run whose count does
//! not match what the dispatcher sent is an error. CPU is user + system time from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{cpu_of, median, process_cpu, seed, BenchStore};
use gateway::config::{Config, ProviderConfig};
use gateway::dispatch::{DispatchControl, Dispatcher};
use gateway::domain::{AttemptOutcome, Channel, ChannelOrder, MessageState};
use gateway::fanout::Fanout;
use gateway::links::SignedLinks;
use gateway::providers::{Outgoing, PracticeRef, Provider, ProviderRegistry};
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::{Completion, Practice, Store};

/// Where Debian's `postfix` package installs the sink.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// The sending mailbox of the benchmark's provider.
const FROM: &str = "Benchmark Surgery <noreply@bench.example.nhs.uk>";
/// The public URL the unsubscribe links point at.
const PUBLIC_URL: &str = "https://gateway.example.nhs.uk";

/// Options of the `email` benchmark.
#[derive(Debug, clap::Args)]
pub struct EmailArgs {
    /// Emails per run (each of the ceiling's, the provider's and dispatch's runs).
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Connections of the minimal client's many-connection ceiling.
    #[arg(long, default_value_t = 8)]
    pub connections: u64,
    /// The provider's `pool_max_size` (default: the provider's own default).
    #[arg(long)]
    pub pool_max_size: Option<u32>,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// Runs the three measurements and prints a summary line for each.
pub async fn email(config: &Config, args: EmailArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !Path::new(SMTP_SINK).exists() {
        return Err(format!(
            "the email benchmark needs postfix's smtp-sink at {SMTP_SINK} as its peer, and it \
             is missing: install Debian's `postfix` package (configuration \"No configuration\")"
        )
        .into());
    }
    let sink = Sink::start().await?;
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = run(&sink, &bench, config, &args).await;
    bench.close().await?;
    sink.stop();
    result
}

async fn run(
    sink: &Sink,
    bench: &BenchStore,
    config: &Config,
    args: &EmailArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = bench.store.clone();
    let practice = seed::practice(store.as_ref(), "BENCH5", ChannelOrder::parse("email")?).await?;
    // One synthetic patient in three has an email address.
    seed::synthetic_patients(&bench.url, practice.id, args.messages * 3 + 3).await?;
    let fanout = Fanout::new(
        store.clone(),
        Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
        config.fanout.batch_size,
        Arc::new(Notify::new()),
    );
    let links = SignedLinks::new(PUBLIC_URL, "bench-secret".into());
    let sample = sample_email(store.as_ref(), &fanout, &practice, &links).await?;
    let runs = args.runs.max(1);

    // 1. The sink's ceiling, with the same email as the gateway sends.
    let wire = frame(&sample_bytes(&sample)?);
    let mut ceiling = 0.0;
    for connections in [1, args.connections.max(1)] {
        let mut rates = Vec::new();
        let mut sink_cpu = Vec::new();
        for run in 1..=runs {
            let before = sink.received();
            let cpu = sink.cpu();
            let started = Instant::now();
            minimal_clients(sink.addr, connections, args.messages, &wire).await?;
            let seconds = started.elapsed().as_secs_f64();
            let sent = sink.settle(before + args.messages).await - before;
            let cpu = (sink.cpu() - cpu).as_secs_f64();
            eprintln!(
                "ceiling, {connections} connection(s), run {run}: {sent} emails in {seconds:.2} s = {:.0}/s, sink {:.0} µs CPU each",
                sent as f64 / seconds,
                cpu / sent as f64 * 1e6
            );
            rates.push(sent as f64 / seconds);
            sink_cpu.push(cpu / sent as f64 * 1e6);
        }
        println!(
            "email ceiling: connections={connections} messages={} runs={runs} median={:.0} emails/s sink_cpu_per_email={:.0} µs",
            args.messages,
            median(&mut rates),
            median(&mut sink_cpu),
        );
        // The gateway is compared with the many-connection figure (it uses many too).
        ceiling = median(&mut rates);
    }

    // 2. The provider alone.
    let provider_config = provider_config(sink.addr, args.pool_max_size);
    let concurrency = config.dispatch.concurrency;
    let mut rates = Vec::new();
    let mut cpu_per_email = Vec::new();
    for run in 1..=runs {
        let registry = ProviderRegistry::from_config(std::slice::from_ref(&provider_config))?;
        let provider = registry
            .for_channel(Channel::Email)
            .first()
            .cloned()
            .ok_or("no email provider built")?;
        let before = sink.received();
        let cpu = process_cpu();
        let started = Instant::now();
        let failed = provider_alone(provider, &sample, concurrency, args.messages).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu).as_secs_f64();
        drop(registry);
        let sent = sink.settle(before + args.messages).await - before;
        if failed > 0 || sent != args.messages {
            return Err(format!(
                "provider run {run}: {failed} sends failed, the sink counted {sent} of {}",
                args.messages
            )
            .into());
        }
        eprintln!(
            "provider alone, run {run}: {sent} emails in {seconds:.2} s = {:.0}/s, {:.0} µs CPU each",
            sent as f64 / seconds,
            cpu / sent as f64 * 1e6
        );
        rates.push(sent as f64 / seconds);
        cpu_per_email.push(cpu / sent as f64 * 1e6);
    }
    let rate = median(&mut rates);
    println!(
        "email provider alone: messages={} runs={runs} median={rate:.0} emails/s cpu_per_email={:.0} µs ratio_to_ceiling={:.2} (tasks={concurrency})",
        args.messages,
        median(&mut cpu_per_email),
        rate / ceiling,
    );

    // 3. Dispatch from the outbox.
    let mut rates = Vec::new();
    let mut cpu_per_email = Vec::new();
    for run in 1..=runs {
        let planned =
            super::dispatch::queue_broadcast(store.as_ref(), &fanout, practice.id).await?;
        let dispatcher = dispatcher(store.clone(), config, &provider_config, &links)?;
        let before = sink.received();
        let sessions = sink.sessions();
        let cpu = process_cpu();
        let started = Instant::now();
        let claimed = dispatcher.run_until_idle().await?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu).as_secs_f64();
        drop(dispatcher);
        let sent = sink.settle(before + claimed).await - before;
        if sent != claimed {
            return Err(format!(
                "dispatch run {run}: claimed {claimed} emails but the sink counted {sent}"
            )
            .into());
        }
        // The pool's connections end when the dispatcher (and its provider) is dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        eprintln!(
            "dispatch, run {run}: {sent} emails (planned {planned}) in {seconds:.2} s = {:.0}/s, {:.0} µs CPU each, {} SMTP connections",
            sent as f64 / seconds,
            cpu / sent as f64 * 1e6,
            sink.sessions() - sessions,
        );
        rates.push(sent as f64 / seconds);
        cpu_per_email.push(cpu / sent as f64 * 1e6);
    }
    let rate = median(&mut rates);
    println!(
        "email dispatch {}: messages={} runs={runs} median={rate:.0} emails/s cpu_per_email={:.0} µs ratio_to_ceiling={:.2} (concurrency={} claim_batch={} pool_max_size={})",
        store.kind(),
        args.messages,
        median(&mut cpu_per_email),
        rate / ceiling,
        config.dispatch.concurrency,
        config.dispatch.claim_batch,
        args.pool_max_size
            .map_or("default".to_string(), |size| size.to_string()),
    );
    Ok(())
}

/// The `smtp` provider pointed at the sink, unlimited.
fn provider_config(sink: SocketAddr, pool_max_size: Option<u32>) -> ProviderConfig {
    let mut settings = json!({
        "host": sink.ip().to_string(),
        "port": sink.port(),
        "security": "plain",
        "from": FROM,
    });
    if let Some(size) = pool_max_size {
        settings["pool_max_size"] = json!(size);
    }
    ProviderConfig {
        name: "bench-smtp".into(),
        kind: "smtp".into(),
        channel: Channel::Email,
        rate: None,
        burst: None,
        price_pence: None,
        settings: settings.as_object().cloned().unwrap_or_default(),
    }
}

/// A dispatcher sending email through `provider`, with signed unsubscribe links.
fn dispatcher(
    store: Arc<dyn Store>,
    config: &Config,
    provider: &ProviderConfig,
    links: &SignedLinks,
) -> Result<Dispatcher, String> {
    let mut config = config.clone();
    config.providers = vec![provider.clone()];
    // Every run emails the same patients: no daily cap here.
    config.limits.patient_bulk = None;
    let registry = ProviderRegistry::from_config(&config.providers).map_err(|e| e.to_string())?;
    let control = Arc::new(DispatchControl::new(&registry, &config));
    Ok(Dispatcher::new(
        store,
        control,
        config.dispatch.clone(),
        Arc::new(Notify::new()),
    )
    .with_unsubscribe_links(Some(links.clone())))
}

/// One email as dispatch would hand it over: a broadcast is planned, its first message taken
/// as the sample, and all of its messages withdrawn (so dispatch runs start from nothing).
async fn sample_email(
    store: &dyn Store,
    fanout: &Fanout,
    practice: &Practice,
    links: &SignedLinks,
) -> Result<Outgoing, Box<dyn std::error::Error>> {
    super::dispatch::queue_broadcast(store, fanout, practice.id).await?;
    let now = Utc::now();
    let lease = now + chrono::Duration::minutes(5);
    let mut sample = None;
    loop {
        let claimed = store
            .claim_due("bench-sample", now, lease, 5_000, false, &[])
            .await?;
        if claimed.is_empty() {
            break;
        }
        if sample.is_none() {
            sample = claimed.first().cloned();
        }
        let withdrawn: Vec<_> = claimed
            .iter()
            .map(|m| Completion {
                message_id: m.id,
                attempt_no: m.attempt_no,
                provider: None,
                outcome: AttemptOutcome::Permanent,
                provider_ref: None,
                error: Some("the benchmark's sample".into()),
                new_state: MessageState::Cancelled,
                next_attempt_at: None,
                started_at: now,
                finished_at: now,
                fallback_due_at: None,
            })
            .collect();
        store.complete_many("bench-sample", &withdrawn).await?;
    }
    let message = sample.ok_or("the broadcast planned no email")?;
    Ok(Outgoing {
        message_id: message.id.get(),
        template_key: "status.closed".into(),
        channel: message.channel,
        address: message.address,
        subject: message.subject,
        body: message.body,
        html: message.body_html,
        link: message.link,
        priority: message.priority,
        practice: PracticeRef::of(practice),
        unsubscribe_url: message.contact_id.map(|id| links.unsubscribe_url(id)),
        push: None,
        receipt_token: None,
    })
}

/// The sample as the provider builds it (same parts and headers), for the minimal client.
fn sample_bytes(sample: &Outgoing) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use lettre::message::{header::ContentType, MultiPart};
    let builder = lettre::Message::builder()
        .from(FROM.parse()?)
        .to(sample.address.parse()?)
        .subject(sample.subject.clone().unwrap_or_default())
        .message_id(Some(format!(
            "<{}.{}@bench.example.nhs.uk>",
            "0".repeat(32),
            sample.message_id
        )));
    let email = match &sample.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            sample.body.clone(),
            html.clone(),
        ))?,
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(sample.body.clone())?,
    };
    Ok(email.formatted())
}

/// `email` as DATA carries it: dot-stuffed, then `CRLF . CRLF`.
fn frame(email: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(email.len() + 16);
    let mut line_start = true;
    for &byte in email {
        if line_start && byte == b'.' {
            wire.push(b'.');
        }
        wire.push(byte);
        line_start = byte == b'\n';
    }
    wire.extend_from_slice(b"\r\n.\r\n");
    wire
}

/// Sends `messages` emails over `connections` connections of the minimal client.
async fn minimal_clients(
    sink: SocketAddr,
    connections: u64,
    messages: u64,
    wire: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let wire: Arc<[u8]> = wire.into();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..connections {
        let count = messages / connections + u64::from(i < messages % connections);
        let wire = wire.clone();
        clients.spawn(async move { minimal_client(sink, count, &wire).await });
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    Ok(())
}

/// One connection sending `count` emails as fast as the sink answers.
async fn minimal_client(sink: SocketAddr, count: u64, wire: &[u8]) -> std::io::Result<()> {
    let stream = TcpStream::connect(sink).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    expect(&mut read, &mut line, b'2').await?;
    write.write_all(b"EHLO bench.example\r\n").await?;
    let offered = expect(&mut read, &mut line, b'2').await?;
    if !offered.contains("PIPELINING") {
        return Err(std::io::Error::other("the sink does not offer PIPELINING"));
    }
    let envelope =
        b"MAIL FROM:<noreply@bench.example.nhs.uk>\r\nRCPT TO:<patient@example.com>\r\nDATA\r\n";
    for _ in 0..count {
        write.write_all(envelope).await?;
        expect(&mut read, &mut line, b'2').await?;
        expect(&mut read, &mut line, b'2').await?;
        expect(&mut read, &mut line, b'3').await?;
        write.write_all(wire).await?;
        expect(&mut read, &mut line, b'2').await?;
    }
    write.write_all(b"QUIT\r\n").await?;
    expect(&mut read, &mut line, b'2').await?;
    Ok(())
}

/// Reads one (possibly multi-line) reply, which must start with `class`; returns its text.
async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    text: &mut String,
    class: u8,
) -> std::io::Result<String> {
    text.clear();
    loop {
        let start = text.len();
        if read.read_line(text).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = &text.as_bytes()[start..];
        if line.first() != Some(&class) {
            return Err(std::io::Error::other(format!(
                "unexpected reply from the sink: {}",
                text.trim_end()
            )));
        }
        if line.get(3) != Some(&b'-') {
            return Ok(std::mem::take(text));
        }
    }
}

/// Sends `messages` copies of `sample` from `tasks` tasks; returns how many failed.
async fn provider_alone(
    provider: Arc<dyn Provider>,
    sample: &Outgoing,
    tasks: usize,
    messages: u64,
) -> u64 {
    let left = Arc::new(AtomicI64::new(messages as i64));
    let failed = Arc::new(AtomicU64::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (provider, left, failed) = (provider.clone(), left.clone(), failed.clone());
        let message = sample.clone();
        senders.spawn(async move {
            while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                if let Err(e) = provider.send(&message).await {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("send failed: {e}");
                    }
                }
            }
        });
    }
    while senders.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// A running `smtp-sink` and its counters.
struct Sink {
    child: std::process::Child,
    pid: String,
    addr: SocketAddr,
    counters: Arc<Counters>,
}

/// The sink's counters as it last printed them.
#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    messages: AtomicU64,
}

impl Sink {
    /// Starts `smtp-sink -c` on a free loopback port and waits until it accepts connections.
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = std::process::Command::new(SMTP_SINK);
        // -c: print counters; -m: connections it serves at once (more than the gateway opens).
        command.args(["-c", "-m", "1024"]);
        if running_as_root() {
            // smtp-sink refuses to keep root privileges.
            command.args(["-u", "nobody"]);
        }
        command
            .arg(addr.to_string())
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let pid = child.id().to_string();
        let counters = Arc::new(Counters::default());
        let stdout = child.stdout.take().ok_or("no stdout from smtp-sink")?;
        let following = counters.clone();
        std::thread::spawn(move || read_counters(stdout, &following));
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                // That probe is a session of its own, counted when it ends.
                return Ok(Self {
                    child,
                    pid,
                    addr,
                    counters,
                });
            }
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
                }
                return Err(format!("smtp-sink exited ({status}): {}", stderr.trim()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("smtp-sink did not listen on {addr} within 2 s").into())
    }

    /// Emails the sink has taken so far.
    fn received(&self) -> u64 {
        self.counters.messages.load(Ordering::SeqCst)
    }

    /// SMTP sessions that have ended so far.
    fn sessions(&self) -> u64 {
        self.counters.sessions.load(Ordering::SeqCst)
    }

    /// Waits (up to 2 s) until the sink has printed a count of at least `expected`; returns
    /// the count.
    async fn settle(&self, expected: u64) -> u64 {
        for _ in 0..100 {
            if self.received() >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }

    /// The sink process's CPU time so far.
    fn cpu(&self) -> Duration {
        cpu_of(&self.pid)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Killed even when the benchmark stops on an error.
        let _ = self.child.kill();
    }
}

/// Follows `smtp-sink -c`'s output, `sess=N quit=N mesg=N` each time a counter moves.
fn read_counters(mut stdout: std::process::ChildStdout, counters: &Counters) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(read) = std::io::Read::read(&mut stdout, &mut chunk) {
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        // Keep only what follows the last complete line (lines end with CR or LF).
        let Some(end) = buffer.iter().rposition(|b| *b == b'\r' || *b == b'\n') else {
            continue;
        };
        let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..=end);
        let Some(last) = text
            .split(['\r', '\n'])
            .rev()
            .find(|line| line.contains("mesg="))
        else {
            continue;
        };
        for field in last.split_whitespace() {
            let value = |prefix: &str| field.strip_prefix(prefix).and_then(|v| v.parse().ok());
            if let Some(n) = value("sess=") {
                counters.sessions.store(n, Ordering::SeqCst);
            }
            if let Some(n) = value("mesg=") {
                counters.messages.store(n, Ordering::SeqCst);
            }
        }
    }
}

/// Whether this process runs as root (effective uid 0, from /proc).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
