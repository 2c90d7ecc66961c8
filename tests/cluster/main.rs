//! Several gateway instances on one database: real `gateway serve` processes sharing one
//! PostgreSQL database and one rate-limited loopback provider, plus the store's side of it
//! (leader election, the shared per-patient cap, the retention purge).
//!
//! PostgreSQL comes from `GATEWAY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it cannot be reached, the PostgreSQL tests
//! are reported as ignored with the reason, unless `GATEWAY_REQUIRE_POSTGRES=1` (as in CI),
//! which makes that a failure.

mod fenced;
mod fleet;
mod peer;
mod proxy;
mod scale_out;
// Shared with the API tests and the benchmarks; each includer uses only some of them.
#[allow(dead_code)]
#[path = "../support/scratch.rs"]
mod scratch;
#[allow(dead_code)]
#[path = "../support/seed.rs"]
mod seed;
mod stores;

use std::future::Future;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn main() {
    let args = Arguments::from_args();
    let postgres = postgres_server();
    if let Err(reason) = &postgres {
        if std::env::var("GATEWAY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("error: GATEWAY_REQUIRE_POSTGRES=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("note: PostgreSQL cluster tests skipped (reported as ignored): {reason}");
    }
    let mut trials = vec![
        Trial::test(
            "sqlite::retention_blanks_old_messages_and_keeps_their_record",
            || {
                run(stores::retention_blanks_old_messages(None));
                Ok(())
            },
        ),
        Trial::test("scratch::database_is_swapped_in_the_url", || {
            scratch::database_is_swapped_in_the_url();
            Ok(())
        }),
    ];
    type PgTest = fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
    let pg_tests: Vec<(&str, PgTest)> = vec![
        (
            "postgres::retention_blanks_old_messages_and_keeps_their_record",
            |url| Box::pin(stores::retention_blanks_old_messages(Some(url))),
        ),
        (
            "postgres::one_instance_leads_and_another_takes_over",
            |url| Box::pin(stores::one_instance_leads_and_another_takes_over(url)),
        ),
        ("postgres::patient_cap_holds_across_instances", |url| {
            Box::pin(stores::patient_cap_holds_across_instances(url))
        }),
        (
            "postgres::instances_share_one_rate_survive_a_kill_and_a_join",
            |url| Box::pin(scale_out::instances_share_one_rate_survive_a_kill_and_a_join(url)),
        ),
        (
            "postgres::frozen_leader_and_stalled_worker_give_way",
            |url| Box::pin(fenced::frozen_leader_and_stalled_worker_give_way(url)),
        ),
    ];
    for (name, test) in pg_tests {
        let url = postgres.clone().ok();
        trials.push(
            Trial::test(name, move || {
                let url = url.ok_or("PostgreSQL unavailable")?;
                run(test(url));
                Ok(())
            })
            .with_ignored_flag(postgres.is_err()),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The PostgreSQL server URL, or why it cannot be used.
fn postgres_server() -> Result<String, String> {
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
fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(test);
}
