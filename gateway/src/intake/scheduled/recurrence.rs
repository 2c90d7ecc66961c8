//! When a planned notice falls: pure functions from a [`Plan`] and a practice's timezone to
//! UTC instants, with the clock changes decided once here.
//!
//! A local time that does not exist (the spring-forward gap) falls at the first instant
//! after the gap; one that happens twice (the autumn hour) falls once, at the earlier.
//! A plan with `ends_at` has two events a day: its start (the notice's status change) and
//! its end (the practice's service restored).

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
        /// When the service is restored, if it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<DateTime<Utc>>,
    },
    /// On each of `days`, at local time `at`, up to and including `until`.
    Weekly {
        /// Days of the week, each once, Monday first.
        days: Vec<Weekday>,
        /// Local time of day.
        at: NaiveTime,
        /// The last day it may fall on.
        until: Option<NaiveDate>,
        /// Local time the same day the service is restored, if it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<NaiveTime>,
    },
    /// On each of `dates` (sorted, each once), at local time `at`.
    Dates {
        /// The days.
        dates: Vec<NaiveDate>,
        /// Local time of day.
        at: NaiveTime,
        /// Local time the same day the service is restored, if it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<NaiveTime>,
    },
}

/// What an occurrence does (a start sorts before an end at the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Posts the notice's status change.
    Start,
    /// Posts `restored`: the end of the day's disruption.
    End,
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
    /// Every event on the local days around `from` (or of a one-off), in time order.
    fn events_near(&self, zone: PracticeZone, from: DateTime<Utc>) -> Vec<(DateTime<Utc>, Event)> {
        let day_events = |day: NaiveDate, at: NaiveTime, ends_at: Option<NaiveTime>| {
            let mut events = vec![(local_instant(zone, day, at), Event::Start)];
            if let Some(end) = ends_at {
                events.push((local_instant(zone, day, end), Event::End));
            }
            events
        };
        let mut events: Vec<(DateTime<Utc>, Event)> = match self {
            Plan::Once { send_at, ends_at } => {
                let mut events = vec![(*send_at, Event::Start)];
                events.extend(ends_at.map(|end| (end, Event::End)));
                events
            }
            Plan::Weekly {
                days,
                at,
                until,
                ends_at,
            } => {
                // From the day before `from`'s local date: a gap can push an event past
                // midnight no further than a few hours.
                let Some(start) = from
                    .with_timezone(&zone.tz())
                    .date_naive()
                    .checked_sub_days(Days::new(1))
                else {
                    return Vec::new();
                };
                (0..9)
                    .filter_map(|n| start.checked_add_days(Days::new(n)))
                    .take_while(|day| until.is_none_or(|until| *day <= until))
                    .filter(|day| days.contains(&day.weekday()))
                    .flat_map(|day| day_events(day, *at, *ends_at))
                    .collect()
            }
            Plan::Dates { dates, at, ends_at } => dates
                .iter()
                .flat_map(|day| day_events(*day, *at, *ends_at))
                .collect(),
        };
        events.sort();
        events
    }

    /// The plan's first event at or after `from`, if any is left.
    pub fn first_event(
        &self,
        zone: PracticeZone,
        from: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Event)> {
        self.events_near(zone, from)
            .into_iter()
            .find(|(instant, _)| *instant >= from)
    }

    /// The plan's first occurrence (of either event) at or after `from`, if any is left.
    pub fn first_from(&self, zone: PracticeZone, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_event(zone, from).map(|(instant, _)| instant)
    }

    /// The occurrence after the one at `due`, if any is left.
    pub fn after(&self, zone: PracticeZone, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_from(zone, due + Duration::seconds(1))
    }

    /// What the occurrence at `due` does: the end of a day's disruption, or its start.
    pub fn event_at(&self, zone: PracticeZone, due: DateTime<Utc>) -> Event {
        match self.first_event(zone, due) {
            Some((instant, Event::End)) if instant == due => Event::End,
            _ => Event::Start,
        }
    }

    /// The local time of day its disruption ends, if it does.
    pub fn end_time(&self, zone: PracticeZone) -> Option<NaiveTime> {
        match self {
            Plan::Once { ends_at, .. } => ends_at.map(|end| end.with_timezone(&zone.tz()).time()),
            Plan::Weekly { ends_at, .. } | Plan::Dates { ends_at, .. } => *ends_at,
        }
    }

    /// The last day it can fall on, if it ends (a weekly rule without `until` does not).
    pub fn last_day(&self) -> Option<NaiveDate> {
        match self {
            Plan::Once { send_at, .. } => Some(send_at.date_naive()),
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
            ends_at: None,
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
            ends_at: None,
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
    fn an_afternoon_closure_starts_and_ends_each_week_across_the_change() {
        let plan = Plan::Weekly {
            days: vec![Weekday::Wed],
            at: time("13:00"),
            until: None,
            ends_at: Some(time("17:00")),
        };
        let zone = PracticeZone::UK;
        let mut events = Vec::new();
        let mut from = utc("2026-10-19T00:00:00Z");
        while let Some((at, event)) = plan.first_event(zone, from) {
            if at > utc("2026-10-29T00:00:00Z") {
                break;
            }
            assert_eq!(plan.event_at(zone, at), event);
            events.push((at, event));
            from = at + Duration::seconds(1);
        }
        assert_eq!(
            events,
            [
                (utc("2026-10-21T12:00:00Z"), Event::Start),
                (utc("2026-10-21T16:00:00Z"), Event::End),
                (utc("2026-10-28T13:00:00Z"), Event::Start),
                (utc("2026-10-28T17:00:00Z"), Event::End),
            ]
        );
        let once = Plan::Once {
            send_at: utc("2026-11-02T09:30:00Z"),
            ends_at: Some(utc("2026-11-02T12:00:00Z")),
        };
        assert_eq!(
            once.event_at(zone, utc("2026-11-02T09:30:00Z")),
            Event::Start
        );
        assert_eq!(once.event_at(zone, utc("2026-11-02T12:00:00Z")), Event::End);
        assert_eq!(once.after(zone, utc("2026-11-02T12:00:00Z")), None);
    }

    #[test]
    fn weekly_rules_take_several_days_and_stop_after_until() {
        let plan = Plan::Weekly {
            days: vec![Weekday::Mon, Weekday::Fri],
            at: time("08:00"),
            until: Some(day("2026-12-07")),
            ends_at: None,
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
            ends_at: None,
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
            ends_at: None,
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
            ends_at: None,
        };
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(
            json,
            r#"{"weekly":{"days":["Wed"],"at":"13:00:00","until":"2027-06-30"}}"#
        );
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }
}
