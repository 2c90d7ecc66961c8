//! When a planned notice falls: pure functions from a [`Plan`] and a practice's timezone to
//! UTC instants, with the clock changes decided once here.
//!
//! A local time that does not exist (the spring-forward gap) falls at the first instant
//! after the gap; one that happens twice (the autumn hour) falls once, at the earlier.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono::{Days, Weekday};
use serde::{Deserialize, Serialize};

use crate::schedule::PracticeZone;

/// When a notice is posted, as stored (JSON) and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Once, at this instant.
    Once {
        /// The instant (whole seconds).
        send_at: DateTime<Utc>,
    },
    /// On each of `days`, at local time `at`, up to and including `until`.
    Weekly {
        /// Days of the week, each once, Monday first.
        days: Vec<Weekday>,
        /// Local time of day.
        at: NaiveTime,
        /// The last day it may fall on.
        until: Option<NaiveDate>,
    },
    /// On each of `dates` (sorted, each once), at local time `at`.
    Dates {
        /// The days.
        dates: Vec<NaiveDate>,
        /// Local time of day.
        at: NaiveTime,
    },
}

/// Longest a spring-forward gap is taken to be (real ones are an hour, a few 30 minutes).
const LONGEST_GAP_MINUTES: i64 = 180;

/// The instant local time `time` on `date` falls at in `zone`: the earlier of two in the
/// autumn hour, the first instant after the gap for a time the spring change skips.
pub fn local_instant(zone: PracticeZone, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let tz = zone.tz();
    let local = date.and_time(time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Gaps begin and end on whole minutes: the first local minute after the gap
            // exists, and is the instant the clocks changed.
            for minutes in 1..=LONGEST_GAP_MINUTES {
                let later = local + Duration::minutes(minutes);
                if let Some(t) = tz.from_local_datetime(&later).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            // No zone has such a gap; fall back to reading the time as UTC.
            Utc.from_utc_datetime(&local)
        }
    }
}

impl Plan {
    /// The plan's first occurrence at or after `from`, if any is left.
    pub fn first_from(&self, zone: PracticeZone, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Plan::Once { send_at } => (*send_at >= from).then_some(*send_at),
            Plan::Weekly { days, at, until } => {
                // From the day before `from`'s local date: a gap can push an occurrence
                // past midnight no further than a few hours.
                let start = from
                    .with_timezone(&zone.tz())
                    .date_naive()
                    .checked_sub_days(Days::new(1))?;
                (0..9)
                    .filter_map(|n| start.checked_add_days(Days::new(n)))
                    .take_while(|day| until.is_none_or(|until| *day <= until))
                    .filter(|day| days.contains(&day.weekday()))
                    .map(|day| local_instant(zone, day, *at))
                    .find(|instant| *instant >= from)
            }
            Plan::Dates { dates, at } => dates
                .iter()
                .map(|day| local_instant(zone, *day, *at))
                .find(|instant| *instant >= from),
        }
    }

    /// The occurrence after the one at `due`, if any is left.
    pub fn after(&self, zone: PracticeZone, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_from(zone, due + Duration::seconds(1))
    }

    /// The last day it can fall on, if it ends (a weekly rule without `until` does not).
    pub fn last_day(&self) -> Option<NaiveDate> {
        match self {
            Plan::Once { send_at } => Some(send_at.date_naive()),
            Plan::Weekly { until, .. } => *until,
            Plan::Dates { dates, .. } => dates.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn time(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn a_time_in_the_spring_gap_falls_when_the_clocks_change() {
        // 2026-03-29: UK clocks go from 01:00 GMT to 02:00 BST.
        let at = local_instant(PracticeZone::UK, day("2026-03-29"), time("01:30"));
        assert_eq!(at, utc("2026-03-29T01:00:00Z"));
        let at = local_instant(PracticeZone::UK, day("2026-03-29"), time("02:00"));
        assert_eq!(at, utc("2026-03-29T01:00:00Z"));
        let at = local_instant(PracticeZone::UK, day("2026-03-29"), time("00:59"));
        assert_eq!(at, utc("2026-03-29T00:59:00Z"));
    }

    #[test]
    fn a_time_in_the_autumn_hour_falls_once_at_the_earlier_instant() {
        // 2026-10-25: 01:00-02:00 happens twice (BST, then GMT).
        let at = local_instant(PracticeZone::UK, day("2026-10-25"), time("01:30"));
        assert_eq!(at, utc("2026-10-25T00:30:00Z"));
        let plan = Plan::Dates {
            dates: vec![day("2026-10-25")],
            at: time("01:30"),
        };
        let first = plan.first_from(PracticeZone::UK, utc("2026-10-24T00:00:00Z"));
        assert_eq!(first, Some(utc("2026-10-25T00:30:00Z")));
        assert_eq!(plan.after(PracticeZone::UK, first.unwrap()), None);
    }

    #[test]
    fn a_weekly_rule_keeps_its_local_time_across_the_autumn_change() {
        let plan = Plan::Weekly {
            days: vec![Weekday::Wed],
            at: time("13:00"),
            until: None,
        };
        let zone = PracticeZone::UK;
        let first = plan.first_from(zone, utc("2026-10-19T00:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-10-21T12:00:00Z"), "13:00 BST");
        let second = plan.after(zone, first).unwrap();
        assert_eq!(second, utc("2026-10-28T13:00:00Z"), "13:00 GMT");
        let third = plan.after(zone, second).unwrap();
        assert_eq!(third, utc("2026-11-04T13:00:00Z"));
        // An occurrence due exactly now is still to come.
        assert_eq!(plan.first_from(zone, second), Some(second));
    }

    #[test]
    fn weekly_rules_take_several_days_and_stop_after_until() {
        let plan = Plan::Weekly {
            days: vec![Weekday::Mon, Weekday::Fri],
            at: time("08:00"),
            until: Some(day("2026-12-07")),
        };
        let zone = PracticeZone::UK;
        let mut at = plan.first_from(zone, utc("2026-11-30T09:00:00Z")).unwrap();
        assert_eq!(at, utc("2026-12-04T08:00:00Z"), "Friday");
        at = plan.after(zone, at).unwrap();
        assert_eq!(at, utc("2026-12-07T08:00:00Z"), "Monday, the last day");
        assert_eq!(plan.after(zone, at), None);
    }

    #[test]
    fn dates_fall_in_order_and_end() {
        let plan = Plan::Dates {
            dates: vec![day("2026-12-25"), day("2026-12-28")],
            at: time("08:00"),
        };
        let zone = PracticeZone::parse("America/New_York").unwrap();
        let first = plan.first_from(zone, utc("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-12-25T13:00:00Z"));
        let second = plan.after(zone, first).unwrap();
        assert_eq!(second, utc("2026-12-28T13:00:00Z"));
        assert_eq!(plan.after(zone, second), None);
        assert_eq!(plan.last_day(), Some(day("2026-12-28")));
    }

    #[test]
    fn a_one_off_falls_once() {
        let plan = Plan::Once {
            send_at: utc("2026-11-02T09:30:00Z"),
        };
        let zone = PracticeZone::UK;
        assert_eq!(
            plan.first_from(zone, utc("2026-11-01T00:00:00Z")),
            Some(utc("2026-11-02T09:30:00Z"))
        );
        assert_eq!(plan.after(zone, utc("2026-11-02T09:30:00Z")), None);
    }

    #[test]
    fn plans_are_stored_as_readable_json() {
        let plan = Plan::Weekly {
            days: vec![Weekday::Wed],
            at: time("13:00"),
            until: Some(day("2027-06-30")),
        };
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(
            json,
            r#"{"weekly":{"days":["Wed"],"at":"13:00:00","until":"2027-06-30"}}"#
        );
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }
}
