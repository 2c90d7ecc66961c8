//! `gateway demo`: on a fresh machine, a practice with synthetic patients, a "systems down"
//! broadcast sent through the `log` provider, a summary, and the API left running.
//!
//! The data is safe by construction: NHS numbers from the 999 test range, mobiles from
//! Ofcom's drama range (07700 900000 to 900999) and addresses at example.com.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::config::Config;
use crate::domain::{Channel, ChannelOrder, NhsNumber, OdsCode};
use crate::intake::patients::{parse_batch, ContactInput, PatientInput};
use crate::intake::status::{post_status_change, StatusChangeRequest};
use crate::schedule::PracticeZone;
use crate::store::{KeyScope, NewPractice, Practice};

/// The demo practice's ODS code.
pub const DEMO_ODS: &str = "DEMO01";

/// Synthetic patient number `i` of the demo: a mix of channels, preferences, opt-outs
/// and a few with no usable contact.
pub fn synthetic_patient(i: u32, nhs_number: &NhsNumber) -> PatientInput {
    let mobile = format!("07700 900{:03}", i % 1000);
    let email = format!("patient{i}@example.com");
    let contact = |channel: &str, address: &str, opted_out: bool| ContactInput {
        channel: channel.into(),
        address: address.into(),
        opted_out,
    };
    let (contacts, preferred) = match i % 10 {
        0..=4 => (vec![contact("sms", &mobile, i.is_multiple_of(25))], None),
        5 | 6 => (vec![contact("email", &email, false)], None),
        7 => (
            vec![
                contact("sms", &mobile, false),
                contact("email", &email, false),
            ],
            Some("email"),
        ),
        8 => (
            vec![
                contact("sms", &mobile, i.is_multiple_of(3)),
                contact("email", &email, false),
            ],
            None,
        ),
        _ => (vec![], None),
    };
    PatientInput {
        nhs_number: nhs_number.to_string(),
        given_name: Some(format!("Patient{i}")),
        family_name: Some("Example".into()),
        preferred_channel: preferred.map(str::to_string),
        language: None,
        active: None,
        contacts,
    }
}

/// Runs the demo, then serves until Ctrl-C.
pub async fn run(mut config: Config, patient_count: u32) -> Result<(), Box<dyn std::error::Error>> {
    // The demo sends at once whatever the hour: its messages go nowhere.
    config.quiet_hours.end = config.quiet_hours.start.clone();
    let bind = config.server.bind;
    let log_files: Vec<String> = config
        .providers
        .iter()
        .filter_map(|p| {
            crate::providers::LogProvider::path_in(p).map(|path| path.display().to_string())
        })
        .collect();
    let state = AppState::build(config).await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e} (set GATEWAY__SERVER__BIND to another address, e.g. 127.0.0.1:8081)"))?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    app::cancel_on_signal(shutdown.clone());
    let server = tokio::spawn(app::serve(state.clone(), listener, shutdown.clone()));

    let practice = demo_practice(&state).await?;
    println!(
        "Demo practice {} ({}): adding {patient_count} synthetic patients...",
        practice.name, practice.ods_code
    );
    let mut stems = 999_000_000u32..;
    let mut batch = Vec::with_capacity(1000);
    for i in 0..patient_count {
        let nhs = loop {
            let stem = stems.next().ok_or("ran out of test NHS numbers")?;
            if let Some(n) = NhsNumber::from_stem(stem) {
                break n;
            }
        };
        batch.push(synthetic_patient(i, &nhs));
        if batch.len() == 1000 || i + 1 == patient_count {
            let (accepted, rejected) = parse_batch(&batch);
            if let Some(r) = rejected.first() {
                return Err(format!(
                    "synthetic patient {} was rejected: {:?}",
                    r.nhs_number, r.errors
                )
                .into());
            }
            state
                .store
                .upsert_patients(practice.id, &accepted, chrono::Utc::now())
                .await?;
            batch.clear();
        }
    }
    let key = crate::auth::issue_key(
        state.store.as_ref(),
        KeyScope::Practice(practice.id),
        "demo",
        "demo",
    )
    .await?;

    // A console sign-in for the demo: a fresh admin user each run, password printed below.
    let console_user = format!("demo-admin-{}", &crate::auth::session::random_token()[..6]);
    let console_password = crate::auth::session::random_token()[..20].to_string();
    crate::auth::create_user(
        state.store.as_ref(),
        &console_user,
        &console_password,
        KeyScope::Admin,
    )
    .await?;

    let started = Instant::now();
    let request = StatusChangeRequest {
        kind: "systems_down".into(),
        headline: Some("Our clinical computer systems are down because of a global IT outage.".into()),
        details: Some("We cannot see records or book appointments at the moment. We will text you when we are back.".into()),
        starts_at: Some(chrono::Utc::now()),
        ..Default::default()
    };
    let posted =
        post_status_change(&state.status_changes(), &practice, &request, "demo", None).await?;
    let broadcast = state
        .store
        .broadcast(posted.broadcast_id)
        .await?
        .ok_or("broadcast vanished")?;
    println!(
        "Posted \"systems_down\": broadcast {} planned; {} patients have no usable contact.",
        posted.broadcast_id, broadcast.skipped_no_contact
    );
    let counts = loop {
        let counts = state.store.broadcast_counts(posted.broadcast_id).await?;
        let pending: i64 = counts
            .iter()
            .filter(|(_, s, _)| !s.is_final())
            .map(|(_, _, n)| n)
            .sum();
        if pending == 0 {
            break counts;
        }
        if server.is_finished() || started.elapsed() > Duration::from_secs(600) {
            return Err("the broadcast did not finish: see the log above".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "\nBroadcast {} finished in {:.2} s:",
        posted.broadcast_id,
        started.elapsed().as_secs_f64()
    );
    for channel in Channel::ALL {
        let line: Vec<String> = counts
            .iter()
            .filter(|(c, _, _)| *c == channel)
            .map(|(_, s, n)| format!("{n} {s}"))
            .collect();
        if !line.is_empty() {
            println!("  {:<6} {}", channel.as_str(), line.join(", "));
        }
    }
    let base = format!("http://{address}/api/v1");
    println!("\nWhere to look:");
    println!(
        "  messages as sent (log provider): {}",
        log_files.first().map(String::as_str).unwrap_or("(none)")
    );
    println!("  console:      http://{address}/console   (sign in as {console_user} / {console_password})");
    println!("  API:          {base}   (practice API key below)");
    println!("  API key:      {key}");
    println!(
        "  progress:     curl -H 'Authorization: Bearer {key}' {base}/broadcasts/{}",
        posted.broadcast_id
    );
    println!("  messages:     curl -H 'Authorization: Bearer {key}' '{base}/broadcasts/{}/messages?limit=5'", posted.broadcast_id);
    println!(
        "  post another: curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n                  -d '{{\"kind\":\"restored\"}}' {base}/practices/{}/status",
        practice.ods_code
    );
    println!("\nServing until Ctrl-C.");
    server.await??;
    Ok(())
}

async fn demo_practice(state: &AppState) -> Result<Practice, Box<dyn std::error::Error>> {
    let ods = OdsCode::parse(DEMO_ODS)?;
    if let Some(existing) = state.store.practice_by_ods(&ods).await? {
        return Ok(existing);
    }
    let practice = NewPractice {
        ods_code: ods,
        name: "Riverside Surgery".into(),
        phone: Some("01632 960000".into()),
        website: Some("riverside-surgery.example.com".into()),
        email: Some("reception@riverside-surgery.example.com".into()),
        timezone: PracticeZone::parse(&state.config.practice_defaults.timezone)?,
        channel_order: ChannelOrder::parse("sms,email,push")?,
        urgent_channel_order: ChannelOrder::fastest_first(),
        order_overrides_preference: false,
        bilingual: false,
        senders: Default::default(),
        quiet_hours: None,
    };
    Ok(state
        .store
        .create_practice(&practice, chrono::Utc::now())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::patients::parse_patient;

    #[test]
    fn every_synthetic_patient_passes_validation() {
        let mut stem = 999_000_000;
        for i in 0..2000 {
            let nhs = loop {
                stem += 1;
                if let Some(n) = NhsNumber::from_stem(stem) {
                    break n;
                }
            };
            parse_patient(&synthetic_patient(i, &nhs)).unwrap();
        }
    }
}
