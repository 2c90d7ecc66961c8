//! `sms`: SMS dispatch through the `twilio` provider into nginx answering Twilio-shaped
//! `201`s, beside nginx's own ceiling measured in the same invocation.
//!
//! The benchmark starts nginx itself (`config/bench/nginx.conf`, filled in with a free
//! loopback port and a temporary prefix folder), then for each run:
//!
//! 1. **Ceiling**: a minimal keep-alive HTTP/1.1 client in this process (raw requests over
//!    `--connections` sockets, one request in flight on each, as `wrk` does) POSTs the same
//!    number of Twilio-shaped requests: the most nginx takes on this machine, with a client
//!    that costs next to nothing.
//! 2. **Gateway**: a broadcast to `--messages` patients is queued in a scratch store and
//!    `Dispatcher::run_until_idle` sends it through a `twilio` provider whose `base_url` is
//!    nginx. That is the code `gateway serve` runs for its dispatch workers (the same
//!    claimer, lanes, lease fence, rate limits, provider and outcome writer), in this
//!    process so that its CPU can be read apart from nginx's and the database server's.
//!
//! Each prints messages/s, CPU µs per message (this process, from /proc), nginx's CPU per
//! request, and the gateway's rate as a ratio of the ceiling; the summary gives medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{cpu_of, median, process_cpu, seed, BenchStore};
use gateway::config::{Config, ProviderConfig};
use gateway::dispatch::{DispatchControl, Dispatcher};
use gateway::domain::{BroadcastId, Channel, ChannelOrder, MessageState};
use gateway::fanout::Fanout;
use gateway::providers::ProviderRegistry;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::Store;

/// The nginx configuration template, with `{{port}}` and `{{prefix}}` to fill in.
const NGINX_CONF: &str = include_str!("../../config/bench/nginx.conf");
/// Environment variable holding the (fake) Twilio auth token.
const TOKEN_ENV: &str = "GATEWAY_BENCH_TWILIO_TOKEN";
/// The account SID in every request's path and basic auth.
const ACCOUNT_SID: &str = "AC00000000000000000000000000bench";

/// Options of the `sms` benchmark.
#[derive(Debug, clap::Args)]
pub struct SmsArgs {
    /// Messages per run (and requests per ceiling run).
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// Runs to time (each a ceiling run then a gateway run); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Connections of the ceiling client (default: dispatch's concurrency).
    #[arg(long)]
    pub connections: Option<usize>,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
}

/// Runs the benchmark and prints a line per run and a summary.
pub async fn sms(config: &Config, args: SmsArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !args.nginx.is_file() {
        return Err(format!(
            "nginx is missing at {}: the sms benchmark needs a real nginx as its peer \
             (Debian: apt-get install nginx-light, or name one with --nginx)",
            args.nginx.display()
        )
        .into());
    }
    let nginx = Nginx::start(&args.nginx)?;
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = measure(config, &args, &nginx, &bench).await;
    bench.close().await?;
    drop(nginx);
    result
}

/// One run's figures.
struct Figures {
    per_second: f64,
    cpu_us: f64,
    nginx_cpu_us: f64,
}

async fn measure(
    config: &Config,
    args: &SmsArgs,
    nginx: &Nginx,
    bench: &BenchStore,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = bench.store.clone();
    let kind = store.kind();
    std::env::set_var(TOKEN_ENV, "bench-token");
    let practice = seed::practice(store.as_ref(), "BENCH5", ChannelOrder::parse("sms")?).await?;
    // Two in three synthetic patients have a mobile; the practice messages by SMS only.
    seed::synthetic_patients(&bench.url, practice.id, args.messages * 3 / 2 + 3).await?;
    let fanout = Fanout::new(
        store.clone(),
        Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
        config.fanout.batch_size,
        Arc::new(Notify::new()),
    );
    let connections = args
        .connections
        .unwrap_or(config.dispatch.concurrency)
        .max(1);
    let mut ceilings = Vec::new();
    let mut gateways = Vec::new();
    for run in 1..=args.runs.max(1) {
        let ceiling = ceiling(nginx, args.messages, connections).await?;
        eprintln!(
            "run {run}: ceiling {:.0} requests/s over {connections} connections, client {:.1} µs CPU and nginx {:.1} µs CPU per request",
            ceiling.per_second, ceiling.cpu_us, ceiling.nginx_cpu_us
        );
        let (broadcast, planned) =
            super::dispatch::start_broadcast(store.as_ref(), &fanout, practice.id).await?;
        let dispatcher = dispatcher(store.clone(), config, nginx.port)?;
        let cpu = process_cpu();
        let nginx_cpu = nginx.cpu();
        let started = Instant::now();
        dispatcher.run_until_idle().await?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu).as_secs_f64();
        let nginx_cpu = (nginx.cpu() - nginx_cpu).as_secs_f64();
        let sent = sent_of(store.as_ref(), broadcast).await?;
        if sent < planned {
            return Err(format!("run {run}: only {sent} of {planned} messages were sent").into());
        }
        let sent = sent as f64;
        let gateway = Figures {
            per_second: sent / seconds,
            cpu_us: cpu / sent * 1e6,
            nginx_cpu_us: nginx_cpu / sent * 1e6,
        };
        eprintln!(
            "run {run}: gateway {sent} messages in {seconds:.2} s = {:.0}/s, {:.1} µs CPU each (nginx {:.1} µs), {:.3} of the ceiling",
            gateway.per_second,
            gateway.cpu_us,
            gateway.nginx_cpu_us,
            gateway.per_second / ceiling.per_second
        );
        ceilings.push(ceiling);
        gateways.push(gateway);
    }
    let med = |figures: &[Figures], f: fn(&Figures) -> f64| {
        median(&mut figures.iter().map(f).collect::<Vec<_>>())
    };
    let ceiling = med(&ceilings, |f| f.per_second);
    let rate = med(&gateways, |f| f.per_second);
    println!(
        "sms {kind} nginx ceiling: requests={} runs={} connections={connections} median={ceiling:.0} requests/s client_cpu={:.1} µs nginx_cpu={:.1} µs per request",
        args.messages,
        ceilings.len(),
        med(&ceilings, |f| f.cpu_us),
        med(&ceilings, |f| f.nginx_cpu_us),
    );
    println!(
        "sms {kind} gateway: messages={} runs={} median={rate:.0} messages/s cpu_per_message={:.1} µs nginx_cpu={:.1} µs ratio={:.3} (concurrency={} claim_batch={})",
        args.messages,
        gateways.len(),
        med(&gateways, |f| f.cpu_us),
        med(&gateways, |f| f.nginx_cpu_us),
        rate / ceiling,
        config.dispatch.concurrency,
        config.dispatch.claim_batch,
    );
    Ok(())
}

/// A dispatcher with one unlimited `twilio` provider whose API root is nginx.
fn dispatcher(store: Arc<dyn Store>, config: &Config, port: u16) -> Result<Dispatcher, String> {
    let provider = ProviderConfig {
        name: "bench-twilio".into(),
        kind: "twilio".into(),
        channel: Channel::Sms,
        rate: None,
        burst: None,
        price_pence: None,
        settings: json!({
            "base_url": format!("http://127.0.0.1:{port}"),
            "account_sid": ACCOUNT_SID,
            "auth_token_env": TOKEN_ENV,
            "from": "OAKSURGERY",
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    };
    let mut config = config.clone();
    config.providers = vec![provider];
    // Every run messages the same patients: no daily cap here.
    config.limits.patient_bulk = None;
    let registry = ProviderRegistry::from_config(&config.providers).map_err(|e| e.to_string())?;
    let control = Arc::new(DispatchControl::new(&registry, &config));
    Ok(Dispatcher::new(
        store,
        control,
        config.dispatch.clone(),
        Arc::new(Notify::new()),
    ))
}

/// How many of the broadcast's messages are recorded sent.
async fn sent_of(
    store: &dyn Store,
    broadcast: BroadcastId,
) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(store
        .broadcast_counts(broadcast)
        .await?
        .iter()
        .filter(|(_, state, _)| *state == MessageState::Sent)
        .map(|(_, _, n)| *n as u64)
        .sum())
}

/// nginx running from a temporary prefix folder, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Fills in the template, starts nginx in the foreground and waits until it accepts.
    fn start(binary: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let prefix = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = NGINX_CONF
            .replace("{{port}}", &port.to_string())
            .replace("{{prefix}}", &prefix.display().to_string());
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let error_log = prefix.join("error.log");
        let child = Command::new(binary)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut nginx = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = nginx.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                return Err(format!("nginx exited ({status}): {stderr}{log}").into());
            }
            if Instant::now() > deadline {
                return Err("nginx did not accept connections within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time nginx's processes (master and its one worker) have used.
    fn cpu(&self) -> Duration {
        let master = self.child.id().to_string();
        let workers = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        workers
            .split_whitespace()
            .map(cpu_of)
            .fold(cpu_of(&master), |sum, cpu| sum + cpu)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a killed master would leave its worker running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx's ceiling: `requests` Twilio-shaped POSTs over `connections` keep-alive
/// connections from a minimal client, one request in flight on each.
async fn ceiling(
    nginx: &Nginx,
    requests: u64,
    connections: usize,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let body = "To=%2B447700900123&From=OAKSURGERY&Body=Our+computer+systems+are+down.+We+cannot+book+appointments+or+issue+prescriptions+until+they+are+back.";
    let request: Arc<[u8]> = format!(
        "POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Authorization: Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMGJlbmNoOmJlbmNoLXRva2Vu\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        port = nginx.port,
    )
    .into_bytes()
    .into();
    let left = Arc::new(AtomicU64::new(requests));
    let cpu = process_cpu();
    let nginx_cpu = nginx.cpu();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let request = request.clone();
        let left = left.clone();
        let port = nginx.port;
        clients.spawn(async move { client(port, &request, &left).await });
    }
    let mut done = 0u64;
    while let Some(joined) = clients.join_next().await {
        done += joined.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu).as_secs_f64();
    let nginx_cpu = (nginx.cpu() - nginx_cpu).as_secs_f64();
    let done = done.max(1) as f64;
    Ok(Figures {
        per_second: done / seconds,
        cpu_us: cpu / done * 1e6,
        nginx_cpu_us: nginx_cpu / done * 1e6,
    })
}

/// One connection of the ceiling client: sends `request` and reads each `201` answer
/// (headers, then `Content-Length` bytes) until `left` runs out; returns how many it made.
async fn client(port: u16, request: &[u8], left: &AtomicU64) -> std::io::Result<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut buffer = vec![0u8; 4096];
    let mut made = 0;
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        stream.write_all(request).await?;
        let mut filled = 0;
        let (head, length) = loop {
            let n = stream.read(&mut buffer[filled..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            if let Some(head) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break (head + 4, content_length(&buffer[..head])?);
            }
            if filled == buffer.len() {
                return Err(std::io::Error::other("answer headers too long"));
            }
        };
        if !buffer.starts_with(b"HTTP/1.1 201") {
            return Err(std::io::Error::other(format!(
                "nginx answered {}",
                String::from_utf8_lossy(&buffer[..head.min(40)])
            )));
        }
        let mut body = filled - head;
        while body < length {
            let n = stream.read(&mut buffer[..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            body += n;
        }
        made += 1;
    }
    Ok(made)
}

/// The `Content-Length` of an answer's headers.
fn content_length(head: &[u8]) -> std::io::Result<usize> {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .ok_or_else(|| std::io::Error::other("answer without Content-Length"))
}
