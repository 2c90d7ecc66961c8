//! The store's side of several instances: one leader at a time, one per-patient cap for
//! all, and the retention purge.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gateway::domain::{AttemptOutcome, Channel, ChannelOrder, MessageState, PatientId, Priority};
use gateway::store::{Completion, NewMessage, PostgresStore, Recipient, SqliteStore, Store};

use crate::scratch;

/// A migrated store: a fresh SQLite file, or a scratch database on the server at `base`.
/// Returns it with what `drop_store` needs and its URL.
async fn open(
    base: Option<&str>,
    dir: &std::path::Path,
) -> (Arc<dyn Store>, Option<String>, String) {
    match base {
        Some(base) => {
            let (url, name) = scratch::create_postgres_database(base, "gw_cluster")
                .await
                .expect("scratch database");
            let store = PostgresStore::connect(&url, 4).await.expect("connect");
            store.migrate().await.expect("migrate");
            (Arc::new(store), Some(name), url)
        }
        None => {
            let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
            let store = SqliteStore::connect(&url, 4).await.expect("connect");
            store.migrate().await.expect("migrate");
            (Arc::new(store), None, url)
        }
    }
}

async fn drop_store(store: Arc<dyn Store>, base: Option<&str>, name: Option<String>) {
    drop(store);
    if let (Some(base), Some(name)) = (base, name) {
        let _ = scratch::drop_postgres_database(base, &name).await;
    }
}

/// Old final messages lose their wording and address; their state, attempts and counts
/// stay. Recent ones, and old ones not yet final, are left alone.
pub async fn retention_blanks_old_messages(base: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (store, name, url) = open(base.as_deref(), dir.path()).await;
    let sms = ChannelOrder::parse("sms").unwrap();
    let practice = crate::seed::practice(store.as_ref(), "C10002", sms)
        .await
        .unwrap();
    crate::seed::synthetic_patients(&url, practice.id, 3)
        .await
        .unwrap();
    let patients = store
        .fanout_page(practice.id, PatientId::new(0), 10)
        .await
        .unwrap();
    let now = Utc::now();
    let message = |i: usize, age_days: i64| {
        let patient = &patients[i % patients.len()];
        NewMessage {
            idempotency_key: format!("retention-{i}"),
            broadcast_id: None,
            practice_id: practice.id,
            recipient: Recipient::Patient {
                patient_id: patient.id,
                contact_id: patient.contacts[0].id,
            },
            channel: Channel::Sms,
            address: format!("+4477009001{i:02}"),
            priority: Priority::Urgent,
            template_key: "appointment.moved".into(),
            template_version: 1,
            subject: Some("Moved".into()),
            body: format!("Your appointment has moved ({i})."),
            body_html: None,
            link: None,
            next_attempt_at: now - chrono::Duration::days(age_days),
            created_at: now - chrono::Duration::days(age_days),
            turn: 0,
        }
    };
    // Three old ones sent, one old one left queued, one recent one sent.
    let batch: Vec<NewMessage> = vec![
        message(0, 100),
        message(1, 100),
        message(2, 95),
        message(3, 10),
    ];
    store.insert_messages(&batch).await.unwrap();
    let lease = now + chrono::Duration::minutes(1);
    let claimed = store
        .claim_due("t", now, lease, 10, false, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let done: Vec<Completion> = claimed
        .iter()
        .map(|m| Completion {
            message_id: m.id,
            attempt_no: m.attempt_no,
            provider: Some("p".into()),
            outcome: AttemptOutcome::Accepted,
            provider_ref: Some(format!("ref-{}", m.id)),
            error: None,
            new_state: MessageState::Sent,
            next_attempt_at: None,
            started_at: now,
            finished_at: now,
            fallback_due_at: None,
        })
        .collect();
    store.complete_many("t", &done).await.unwrap();
    store.insert_messages(&[message(4, 120)]).await.unwrap();

    let mut leadership = store
        .try_lead("t", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("alone, so leading");
    let before = now - chrono::Duration::days(90);
    assert_eq!(leadership.purge(before, now, 2).await.unwrap(), 2);
    assert_eq!(leadership.purge(before, now, 2).await.unwrap(), 1);
    assert_eq!(leadership.purge(before, now, 2).await.unwrap(), 0);
    drop(leadership);

    for m in &claimed {
        let (view, attempts) = store.message(m.id).await.unwrap().unwrap();
        assert_eq!(view.state, "sent");
        assert_eq!(attempts.len(), 1, "attempts are kept");
        if view.created_at < before {
            assert_eq!(view.body, "", "old wording is purged");
            assert_eq!(view.address, "", "old address is purged");
            assert_eq!(view.subject, None);
            assert!(
                view.provider_ref.is_some(),
                "the provider's reference is kept"
            );
        } else {
            assert!(
                view.body.starts_with("Your appointment"),
                "recent wording stays"
            );
            assert!(view.address.starts_with("+44"));
        }
    }
    let pending = store.pending_count().await.unwrap();
    assert_eq!(pending, 1, "the old queued message is still there");
    drop_store(store, base.as_deref(), name).await;
}

/// Only one instance holds the leader's lease; one that stops renewing it loses it when it
/// expires (however open its connections), its jobs then change nothing, and a resigning
/// leader hands over at once.
pub async fn one_instance_leads_and_another_takes_over(base: String) {
    let dir = tempfile::tempdir().unwrap();
    let (store, name, _) = open(Some(&base), dir.path()).await;
    let lease = Duration::from_millis(1_500);
    let mut first = store
        .try_lead("first", lease)
        .await
        .unwrap()
        .expect("free lease");
    assert!(store.try_lead("second", lease).await.unwrap().is_none());
    first.confirm().await.unwrap();
    assert!(store.try_lead("third", lease).await.unwrap().is_none());
    // An instance that stopped beating, for the leader to remove.
    let dead = gateway::store::NewInstance {
        id: "dead".into(),
        role: "worker".into(),
        dispatches: true,
        host: "h".into(),
        pid: 1,
    };
    store.register_instance(&dead, lease).await.unwrap();
    // The first leader stops renewing (frozen): the second takes over after the lease.
    let mut second = None;
    for _ in 0..100 {
        second = store.try_lead("second", lease).await.unwrap();
        if second.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut second = second.expect("the lease is free once it expires");
    // The frozen leader wakes: its jobs change nothing and it learns it lost the lead.
    assert_eq!(first.remove_dead(Duration::ZERO).await.unwrap(), 0);
    assert!(matches!(
        first.confirm().await,
        Err(gateway::store::StoreError::LeaseLost(_))
    ));
    assert_eq!(second.remove_dead(Duration::ZERO).await.unwrap(), 1);
    second.confirm().await.unwrap();
    assert!(store.try_lead("first", lease).await.unwrap().is_none());
    // A clean stop hands over at once.
    second.resign().await.unwrap();
    let mut third = store
        .try_lead("third", lease)
        .await
        .unwrap()
        .expect("resigned");
    third.confirm().await.unwrap();
    drop_store(store, Some(&base), name).await;
}

/// Four instances claiming for the same patients at once never let more than the cap go.
pub async fn patient_cap_holds_across_instances(base: String) {
    let dir = tempfile::tempdir().unwrap();
    let (store, name, _) = open(Some(&base), dir.path()).await;
    let url = scratch::with_database(&base, name.as_deref().unwrap());
    let now = Utc::now();
    let day = Duration::from_secs(86_400);
    let mut tasks = Vec::new();
    for instance in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let store = PostgresStore::connect(&url, 2).await.unwrap();
            let mut allowed = vec![0u32; 20];
            for round in 0..5 {
                // Each instance asks for two messages per patient, in its own order.
                let mut wanted: Vec<(PatientId, u32)> =
                    (0..20).map(|p| (PatientId::new(p), 2)).collect();
                wanted.rotate_left((instance * 5 + round) % 20);
                let got = gateway::store::ClusterStore::take_patient_quota(
                    &store,
                    &wanted,
                    now,
                    day / 6,
                    6,
                )
                .await
                .unwrap();
                for (patient, n) in got {
                    allowed[patient.get() as usize] += n;
                }
            }
            allowed
        }));
    }
    let mut total = vec![0u32; 20];
    for task in tasks {
        for (patient, n) in task.await.unwrap().into_iter().enumerate() {
            total[patient] += n;
        }
    }
    assert!(
        total.iter().all(|n| *n == 6),
        "each patient got exactly their cap of 6: {total:?}"
    );
    drop_store(store, Some(&base), name).await;
}
