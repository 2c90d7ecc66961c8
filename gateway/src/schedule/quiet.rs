//! Quiet hours: when non-urgent texts and push notifications may not go out, in the
//! practice's own time, through clock changes.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A nightly window, in local time, when bulk SMS and push wait (e.g. 21:00 to 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Local time the window opens.
    pub start: NaiveTime,
    /// Local time it closes.
    pub end: NaiveTime,
}

impl QuietHours {
    /// Parses `HH:MM` times; `start == end` means no quiet hours.
    pub fn parse(start: &str, end: &str) -> Result<Self, String> {
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("{t:?} is not a time like 21:00"))
        };
        Ok(Self {
            start: time(start)?,
            end: time(end)?,
        })
    }

    /// The stored form, `HH:MM-HH:MM`.
    pub fn to_text(&self) -> String {
        format!(
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }

    /// A practice's stored quiet hours; `None` (the gateway's apply) if there are none or
    /// the text does not parse, which is logged rather than stopping the practice's sends.
    pub fn of_stored(text: Option<&str>) -> Option<Self> {
        let text = text?;
        let parsed = text
            .split_once('-')
            .ok_or_else(|| "no '-' between the times".to_string())
            .and_then(|(start, end)| Self::parse(start, end));
        match parsed {
            Ok(quiet) => Some(quiet),
            Err(reason) => {
                tracing::warn!(stored = %text, "a practice's stored quiet hours are unreadable ({reason}); using the gateway's");
                None
            }
        }
    }

    /// Whether local time `t` is inside the window (which may run over midnight).
    fn contains(&self, t: NaiveTime) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => t >= self.start && t < self.end,
            std::cmp::Ordering::Greater => t >= self.start || t < self.end,
        }
    }

    /// The first moment at or after `now` when a bulk message may go, in timezone `tz`:
    /// `now` itself outside the window, else the next local `end` (the first valid instant
    /// after it, should a clock change skip it).
    pub fn next_allowed(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = now.with_timezone(&tz);
        if !self.contains(local.time()) {
            return now;
        }
        let mut day = local.date_naive();
        if local.time() >= self.end {
            day = day.succ_opt().unwrap_or(day);
        }
        let mut wall = day.and_time(self.end);
        // In a spring-forward gap the wall time does not exist: take the first that does.
        for _ in 0..4 {
            if let Some(at) = tz.from_local_datetime(&wall).earliest() {
                return at.with_timezone(&Utc);
            }
            wall += Duration::minutes(30);
        }
        now + Duration::hours(1)
    }
}

impl QuietHours {
    /// Until when a bulk SMS or push message due at `due` is held by these quiet hours, seen
    /// at `now`: the window's end if it falls due inside the window (or is already due and
    /// the window is open now), or `due` itself if it was planned to wait for the end of the
    /// window open now. `None` if quiet hours do not hold it.
    pub fn holds(&self, now: DateTime<Utc>, due: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let from = due.max(now);
        let allowed = self.next_allowed(from, tz);
        if allowed > from {
            return Some(allowed);
        }
        (due > now && self.next_allowed(now, tz) == due).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn london() -> Tz {
        chrono_tz::Europe::London
    }

    fn night() -> QuietHours {
        QuietHours::parse("21:00", "08:00").unwrap()
    }

    #[test]
    fn stored_text_reads_back_and_unreadable_text_falls_back() {
        let quiet = night();
        assert_eq!(quiet.to_text(), "21:00-08:00");
        assert_eq!(QuietHours::of_stored(Some(&quiet.to_text())), Some(quiet));
        assert_eq!(QuietHours::of_stored(Some("21:00")), None);
        assert_eq!(QuietHours::of_stored(Some("25:00-08:00")), None);
        assert_eq!(QuietHours::of_stored(None), None);
    }

    #[test]
    fn a_message_says_it_is_held_only_while_quiet_hours_hold_it() {
        let q = night();
        let tz = london();
        let night_time = utc("2026-07-01T21:30:00Z"); // 22:30 BST
        let eight = utc("2026-07-02T07:00:00Z"); // 08:00 BST
                                                 // Due now, in the window: held until eight.
        assert_eq!(q.holds(night_time, night_time, tz), Some(eight));
        // Planned to wait for the window's end: held until then.
        assert_eq!(q.holds(night_time, eight, tz), Some(eight));
        // A retry due after the window: not held.
        let nine = utc("2026-07-02T08:00:00Z");
        assert_eq!(q.holds(night_time, nine, tz), None);
        // Daytime, due now: not held.
        let noon = utc("2026-07-01T11:00:00Z");
        assert_eq!(q.holds(noon, noon, tz), None);
        // Daytime, a retry due in the night: held until eight.
        assert_eq!(q.holds(noon, night_time, tz), Some(eight));
    }

    #[test]
    fn daytime_goes_at_once_and_night_waits_for_eight() {
        let noon = utc("2026-07-01T11:00:00Z"); // 12:00 BST
        assert_eq!(night().next_allowed(noon, london()), noon);
        let late = utc("2026-07-01T20:30:00Z"); // 21:30 BST
        assert_eq!(
            night().next_allowed(late, london()),
            utc("2026-07-02T07:00:00Z")
        ); // 08:00 BST
        let early = utc("2026-12-01T06:00:00Z"); // 06:00 GMT
        assert_eq!(
            night().next_allowed(early, london()),
            utc("2026-12-01T08:00:00Z")
        );
        let edge = utc("2026-12-01T21:00:00Z"); // 21:00 GMT: the window has opened
        assert_eq!(
            night().next_allowed(edge, london()),
            utc("2026-12-02T08:00:00Z")
        );
        let just_before = utc("2026-12-01T20:59:59Z");
        assert_eq!(night().next_allowed(just_before, london()), just_before);
    }

    #[test]
    fn spring_clock_change_night_ends_at_eight_summer_time() {
        // 29 March 2026: clocks go from 01:00 GMT to 02:00 BST.
        let before = utc("2026-03-28T22:00:00Z"); // 22:00 GMT on the 28th
        assert_eq!(
            night().next_allowed(before, london()),
            utc("2026-03-29T07:00:00Z")
        ); // 08:00 BST
        let in_gap_hour = utc("2026-03-29T01:30:00Z"); // 02:30 BST
        assert_eq!(
            night().next_allowed(in_gap_hour, london()),
            utc("2026-03-29T07:00:00Z")
        );
    }

    #[test]
    fn autumn_clock_change_night_ends_at_eight_winter_time() {
        // 25 October 2026: clocks go from 02:00 BST back to 01:00 GMT.
        let before = utc("2026-10-24T21:00:00Z"); // 22:00 BST on the 24th
        assert_eq!(
            night().next_allowed(before, london()),
            utc("2026-10-25T08:00:00Z")
        ); // 08:00 GMT
        let repeated_hour = utc("2026-10-25T01:30:00Z"); // 01:30 GMT, the second time round
        assert_eq!(
            night().next_allowed(repeated_hour, london()),
            utc("2026-10-25T08:00:00Z")
        );
    }

    #[test]
    fn a_window_that_ends_in_a_skipped_hour_ends_at_the_first_real_time() {
        let odd = QuietHours::parse("00:00", "01:30").unwrap(); // 01:30 does not exist on 29 March
        let at = utc("2026-03-29T00:45:00Z"); // 00:45 GMT
        assert_eq!(odd.next_allowed(at, london()), utc("2026-03-29T01:00:00Z")); // 02:00 BST
        assert!(QuietHours::parse("9pm", "08:00").is_err());
        let none = QuietHours::parse("08:00", "08:00").unwrap();
        assert_eq!(none.next_allowed(at, london()), at);
    }
}
