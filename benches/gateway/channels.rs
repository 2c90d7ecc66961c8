//! `channels`: what one broadcast costs a practice under the old fixed order (SMS, email,
//! push) and cheapest first (push, email, SMS), on the same patients with a stated
//! reachability mix, each fanned out for real and priced from the planned messages; with
//! each fan-out's time, so that choosing by cost is seen to cost no throughput.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Notify;

use super::{median, BenchStore};
use gateway::config::Config;
use gateway::cost::{BroadcastCost, Prices};
use gateway::domain::{Channel, ChannelOrder, NhsNumber};
use gateway::fanout::Fanout;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::{ContactUpsert, PatientUpsert, PushSubscription, Store};

/// Options of the `channels` benchmark.
#[derive(Debug, clap::Args)]
pub struct ChannelsArgs {
    /// Patients in each practice.
    #[arg(long, default_value_t = 10_000)]
    pub patients: u32,
    /// Fan-outs per order to time; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// A PostgreSQL server URL to run on instead of SQLite.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// How patient `i` can be reached, in twentieths of the list: 15% by push, email and SMS;
/// 45% by email and SMS; 30% by SMS only; 5% by email only; 5% not at all.
fn reach(i: u32) -> (bool, bool, bool) {
    match i % 20 {
        0..=2 => (true, true, true),
        3..=11 => (false, true, true),
        12..=17 => (false, false, true),
        18 => (false, true, false),
        _ => (false, false, false),
    }
}

/// The mix as the report states it.
const MIX: &str =
    "15% push+email+sms, 45% email+sms, 30% sms only, 5% email only, 5% none; no preferences";

/// Seeds both practices, fans out `runs` broadcasts under each order, prints the counts
/// and costs per order and their ratio.
pub async fn channels(
    config: &Config,
    args: ChannelsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = run(bench.store.clone(), config, &args).await;
    bench.close().await?;
    result
}

async fn run(
    store: Arc<dyn Store>,
    config: &Config,
    args: &ChannelsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let prices = Prices::from_config(&config.providers);
    let fanout = Fanout::new(
        store.clone(),
        Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
        config.fanout.batch_size,
        Arc::new(Notify::new()),
    );
    let orders = [
        (
            "fixed sms,email,push",
            ChannelOrder::parse("sms,email,push")?,
            "CHAN1",
        ),
        ("cheapest first", ChannelOrder::cheapest_first(), "CHAN2"),
    ];
    let mut totals = Vec::new();
    for (name, order, ods) in orders {
        let practice = super::seed::practice(store.as_ref(), ods, order).await?;
        seed_mix(store.as_ref(), practice.id, args.patients).await?;
        let mut seconds = Vec::new();
        let mut cost = BroadcastCost::default();
        let mut earlier = Vec::new();
        for _ in 0..args.runs.max(1) {
            gateway::fanout::cancel_unsent(store.as_ref(), &earlier, "bench: next run").await?;
            let id = super::seed::systems_down(store.as_ref(), practice.id, "bench").await?;
            let started = Instant::now();
            fanout.run_broadcast(id).await?;
            seconds.push(started.elapsed().as_secs_f64());
            cost = BroadcastCost::of_rows(&store.broadcast_cost_rows(id).await?, &prices);
            earlier.push(id);
        }
        let lines: Vec<String> = cost
            .estimated
            .per_channel
            .iter()
            .map(|(c, l)| {
                format!(
                    "{c} {} ({} segments, {:.2}p)",
                    l.messages, l.segments, l.pence
                )
            })
            .collect();
        println!(
            "channels: {name}: {} patients: {}; estimated {:.2}p; fan-out median {:.3} s",
            args.patients,
            lines.join(", "),
            cost.estimated.total_pence,
            median(&mut seconds)
        );
        totals.push((cost.estimated.total_pence, median(&mut seconds)));
    }
    let (fixed, cheapest) = (totals[0], totals[1]);
    println!(
        "channels: mix {MIX}; prices: sms {}p/segment, email {}p, push {}p; cheapest-first/fixed cost ratio {:.3}; fan-out time ratio {:.2}",
        prices.of_channel(Channel::Sms).hundredths() as f64 / 100.0,
        prices.of_channel(Channel::Email).hundredths() as f64 / 100.0,
        prices.of_channel(Channel::Push).hundredths() as f64 / 100.0,
        if fixed.0 > 0.0 { cheapest.0 / fixed.0 } else { 0.0 },
        if fixed.1 > 0.0 { cheapest.1 / fixed.1 } else { 0.0 },
    );
    Ok(())
}

/// `count` patients of the practice reachable as [`reach`] says.
async fn seed_mix(
    store: &dyn Store,
    practice_id: gateway::domain::PracticeId,
    count: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc::now();
    let patients: Vec<(NhsNumber, bool, PatientUpsert)> = (1..=count)
        .map(|i| {
            let nhs = nhs_number(i);
            let (push, email, sms) = reach(i);
            let mut contacts = Vec::new();
            if sms {
                contacts.push(ContactUpsert {
                    channel: Channel::Sms,
                    address: format!("+4477009{:05}", i % 100_000),
                    opted_out: false,
                });
            }
            if email {
                contacts.push(ContactUpsert {
                    channel: Channel::Email,
                    address: format!("patient{i}@example.com"),
                    opted_out: false,
                });
            }
            let upsert = PatientUpsert {
                nhs_number: nhs.clone(),
                given_name: Some("Pat".into()),
                family_name: Some("Bench".into()),
                preferred_channel: None,
                language: "en".into(),
                active: true,
                contacts,
            };
            (nhs, push, upsert)
        })
        .collect();
    let upserts: Vec<PatientUpsert> = patients.iter().map(|(_, _, u)| u.clone()).collect();
    for chunk in upserts.chunks(1000) {
        store.upsert_patients(practice_id, chunk, now).await?;
    }
    for (nhs, push, _) in &patients {
        if *push {
            let subscription = PushSubscription {
                endpoint: format!("https://push.example.com/send/{nhs}"),
                p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM".into(),
                auth: "tBHItJI5svbpez7KI4CCXg".into(),
            };
            store
                .add_push_subscription(practice_id, nhs.as_str(), &subscription, now)
                .await?;
        }
    }
    Ok(())
}

/// A valid NHS number for patient `i`, distinct for each `i` (stems eleven apart leave
/// room for the ones skipped for an invalid check digit).
fn nhs_number(i: u32) -> NhsNumber {
    let mut stem = 900_000_000 + (i % 9_000_000) * 11;
    loop {
        if let Some(n) = NhsNumber::from_stem(stem) {
            return n;
        }
        stem += 1;
    }
}
