//! `signin`: `/healthz` latency (p50, p99) on a real server on loopback, alone
//! and while anonymous clients loop on console sign-in with wrong passwords, in one
//! invocation. Three phases: `/healthz` alone; during the loops with throttling off (every
//! attempt costs an Argon2 check, so this measures the hashing limit alone); and during the
//! loops with the `[signin]` settings as configured (names and the address lock).
//!
//! The server runs on its own runtime (two worker threads, as on a two-core host), the load
//! on another, so the clients' own scheduling does not count as the server's latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::BenchStore;
use gateway::app::{self, AppState};
use gateway::config::Config;
use gateway::providers::ProviderRegistry;
use gateway::store::KeyScope;

/// Options of the `signin` benchmark.
#[derive(Debug, clap::Args)]
pub struct SigninBenchArgs {
    /// Parallel sign-in loops.
    #[arg(long, default_value_t = 16)]
    pub loops: usize,
    /// Seconds each phase lasts.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Milliseconds between two `/healthz` probes.
    #[arg(long, default_value_t = 5)]
    pub probe_ms: u64,
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    p50: f64,
    p99: f64,
    probes: usize,
    attempts: u64,
    refused: u64,
}

/// Runs the three phases and prints one line each.
pub async fn signin(
    config: &Config,
    args: SigninBenchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut phases = Vec::new();
    for (name, loops, throttled) in [
        ("alone", 0, true),
        ("unthrottled", args.loops, false),
        ("throttled", args.loops, true),
    ] {
        phases.push(phase(config, &args, name, loops, throttled).await?);
    }
    for p in &phases {
        println!(
            "signin {}: loops={} healthz p50={:.2} ms p99={:.2} ms probes={} \
             signin_attempts={} refused_429_503={}",
            p.name,
            if p.name == "alone" { 0 } else { args.loops },
            p.p50,
            p.p99,
            p.probes,
            p.attempts,
            p.refused
        );
    }
    Ok(())
}

/// One phase on a fresh server and database.
async fn phase(
    config: &Config,
    args: &SigninBenchArgs,
    name: &'static str,
    loops: usize,
    throttled: bool,
) -> Result<Phase, Box<dyn std::error::Error>> {
    let mut config = config.clone();
    config.dispatch.enabled = false;
    if !throttled {
        config.signin.free_failures = u32::MAX;
        config.signin.address_failures = u32::MAX;
    }
    let bench = BenchStore::open(None).await?;
    let state = AppState::with_parts(
        config,
        bench.store.clone(),
        Arc::new(ProviderRegistry::default()),
    )
    .await?;
    gateway::auth::create_user(
        state.store.as_ref(),
        "bench.admin",
        "a long enough password",
        KeyScope::Admin,
    )
    .await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                app::serve(state, listener, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()?;
    // Wait for the server.
    let ready = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if ready.elapsed() > Duration::from_secs(10) {
            return Err("the server did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut loads = Vec::new();
    for i in 0..loops {
        let (client, base) = (client.clone(), base.clone());
        let (stop, attempts, refused) = (stop.clone(), attempts.clone(), refused.clone());
        loads.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = sign_in_wrong(&client, &base, i).await;
                attempts.fetch_add(1, Ordering::Relaxed);
                if matches!(status, Some(429 | 503)) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                if status.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    // Let the loops get going before measuring.
    if loops > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < until {
        let started = Instant::now();
        let ok = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(args.probe_ms)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        let _ = load.await;
    }
    shutdown.cancel();
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    bench.close().await?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let measured = Phase {
        name,
        p50: at(0.50),
        p99: at(0.99),
        probes: latencies.len(),
        attempts: attempts.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
    };
    eprintln!(
        "{name}: healthz p50 {:.2} ms p99 {:.2} ms over {} probes; {} sign-ins ({} refused)",
        measured.p50, measured.p99, measured.probes, measured.attempts, measured.refused
    );
    Ok(measured)
}

/// One anonymous sign-in with a wrong password (the form's cookie first); its status.
async fn sign_in_wrong(client: &reqwest::Client, base: &str, i: usize) -> Option<u16> {
    let page = client
        .get(format!("{base}/console/signin"))
        .send()
        .await
        .ok()?;
    let cookie = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("gw_signin="))
        .and_then(|v| v.split(';').next())?
        .to_string();
    let response = client
        .post(format!("{base}/console/signin"))
        .header(reqwest::header::COOKIE, format!("gw_signin={cookie}"))
        .form(&[
            (
                "username",
                if i.is_multiple_of(2) {
                    "bench.admin".to_string()
                } else {
                    format!("guess{i}")
                },
            ),
            ("password", "not the password".to_string()),
            ("csrf", cookie),
        ])
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}
