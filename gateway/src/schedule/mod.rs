//! Time as fan-out and dispatch judge it: where "now" comes from, each practice's
//! timezone, and the quiet hours bulk SMS and push wait out. Both stages read these, so
//! they live below both.

mod quiet;
mod zone;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use quiet::QuietHours;
pub use zone::{PracticeZone, UnknownZone};

/// Where "now" comes from: the system clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
