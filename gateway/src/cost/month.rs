//! A practice's cost for a calendar month (UTC): what the API's `/costs` and the console's
//! practice page show.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;

use super::{actual_cost, Cost, Prices};
use crate::domain::{Invalid, PracticeId};
use crate::store::{CostStore, StoreResult};

/// A practice's cost for a month: the messages providers took, planned in that month
/// (UTC), priced at the price of the provider that took each.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonthlyCost {
    /// The practice's ODS code.
    pub practice: String,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Its first instant (UTC).
    pub from: DateTime<Utc>,
    /// The first instant after it (UTC).
    pub until: DateTime<Utc>,
    /// Messages, segments and pence, in all and by channel.
    pub cost: Cost,
}

/// A month from its first instant to the next month's (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Month {
    /// A month written `YYYY-MM` (years 2000 to 2999).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let refuse = || Invalid::new("month", format!("{text:?} is not a month: use YYYY-MM"));
        let (year, month) = text.trim().split_once('-').ok_or_else(refuse)?;
        let year: i32 = year.parse().map_err(|_| refuse())?;
        let month: u32 = month.parse().map_err(|_| refuse())?;
        if !(2000..=2999).contains(&year) {
            return Err(refuse());
        }
        let first = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(refuse)?;
        let next = match month {
            12 => NaiveDate::from_ymd_opt(year + 1, 1, 1),
            _ => NaiveDate::from_ymd_opt(year, month + 1, 1),
        }
        .ok_or_else(refuse)?;
        let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
        Ok(Self {
            from: at(first),
            until: at(next),
        })
    }

    /// The month `now` falls in.
    pub fn of(now: DateTime<Utc>) -> Self {
        let first = now.date_naive().with_day(1).unwrap_or(now.date_naive());
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(first);
        let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
        Self {
            from: at(first),
            until: at(next),
        }
    }

    /// `YYYY-MM`.
    pub fn name(&self) -> String {
        format!("{:04}-{:02}", self.from.year(), self.from.month())
    }
}

/// The practice's cost for `month`.
pub async fn monthly_cost(
    store: &dyn CostStore,
    prices: &Prices,
    (ods, practice_id): (&str, PracticeId),
    month: Month,
) -> StoreResult<MonthlyCost> {
    let rows = store
        .practice_cost_rows(practice_id, month.from, month.until)
        .await?;
    Ok(MonthlyCost {
        practice: ods.to_string(),
        month: month.name(),
        from: month.from,
        until: month.until,
        cost: actual_cost(&rows, prices),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_run_from_their_first_instant_to_the_next_months() {
        let december = Month::parse("2026-12").unwrap();
        assert_eq!(december.from.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(december.until.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(december.name(), "2026-12");
        let mid = Utc.with_ymd_and_hms(2026, 12, 17, 15, 4, 5).unwrap();
        assert_eq!(Month::of(mid), december);
        assert!(Month::parse("2026-13").is_err());
        assert!(Month::parse("26-1x").is_err());
        assert!(Month::parse("1999-01").is_err());
        assert!(Month::parse("December").is_err());
    }
}
