//! Synthetic data for tests and benchmarks, written straight to the database: a practice,
//! and patients in bulk (two in three on SMS, one in three on email), in SQL rather than row
//! by row.

use chrono::Utc;
use gateway::domain::{ChannelOrder, OdsCode};
use gateway::store::{NewPractice, Practice, Store};

/// A practice named "Benchmark Surgery" with the code `ods`, messaging in `channel_order`.
pub async fn practice(
    store: &dyn Store,
    ods: &str,
    channel_order: ChannelOrder,
) -> Result<Practice, Box<dyn std::error::Error>> {
    Ok(store
        .create_practice(
            &NewPractice {
                ods_code: OdsCode::parse(ods)?,
                name: "Benchmark Surgery".into(),
                phone: None,
                website: None,
                email: None,
                timezone: "Europe/London".into(),
                channel_order,
                bilingual: false,
            },
            Utc::now(),
        )
        .await?)
}
