//! Reads one staff text into a [`StaffCommand`].
//!
//! The grammar, forgiving of case, spacing and punctuation around words:
//!
//! ```text
//! [PIN 4821 | 4821]  CLOSED | PHONES DOWN | SYSTEMS DOWN | RESTORED   [until WHEN]  [headline]
//! [PIN 4821 | 4821]  STATUS | CANCEL
//! [PIN 4821 | 4821]  YES 123456
//! WHEN = [at|on] [today | tomorrow | Monday ...] [at] [2pm | 2.30pm | 14:00 | 1400 | 2 | noon]
//! ```
//!
//! (Welsh and other spellings are in the word table of `words.rs`.) Times are read in the
//! practice's zone and resolved to the first such moment after the text arrived; see
//! [`parse`] for the rules. Nothing here decides whether the sender may post: the caller
//! looks the number up first, and compares a confirmation code itself.

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

use super::words::{phrase_at, Day, Phrase, Word};
use crate::domain::{Language, StatusKind};
use crate::intake::status::StatusChangeRequest;
use crate::schedule::PracticeZone;

/// The longest text read as a command, in characters: Twilio's limit on an inbound body.
/// Anything longer is refused before it is split into words.
pub const MAX_MESSAGE_CHARS: usize = 1_600;

/// The longest headline kept from a command, in characters (the console and API allow the
/// same); the rest is cut off, and the staff member sees the result in the preview.
pub const MAX_HEADLINE_CHARS: usize = 300;

/// The time a status ends when a command names a day but no time (`back tomorrow`): when
/// most practices open.
const OPENING: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(time) => time,
    None => panic!("08:00 is a time"),
};

/// What a staff member asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffCommand {
    /// Prepare a status change (it is posted only after `YES` and its code).
    Post {
        /// Never [`StatusKind::Custom`].
        kind: StatusKind,
        /// When the status is expected to end, always after the text arrived; never set for
        /// [`StatusKind::Restored`].
        ends_at: Option<DateTime<Utc>>,
        /// Free text after the kind and time: trimmed, whitespace collapsed, control and
        /// bidirectional-override characters removed, at most [`MAX_HEADLINE_CHARS`].
        headline: Option<String>,
        /// The language of the words naming the kind (`AR GAU` is Welsh, `CLOSED` English),
        /// taken as the headline's: see [`StaffCommand::status_request`].
        language: Language,
    },
    /// Answer with the practice's current status.
    Status,
    /// Discard the change waiting for its code.
    Cancel,
    /// Post the waiting change if `code` is the one sent to this number. Only digits: spaces
    /// and dashes between groups (`YES 123 456`) are dropped.
    Confirm {
        /// 4 to 12 ASCII digits, to be compared in constant time by the caller.
        code: String,
    },
}

impl StaffCommand {
    /// The status change a `Post` asks for, as the API would take it: a Welsh command's
    /// headline goes in `headline_cy`, and the English headline is the kind's default (so an
    /// English-speaking patient is not sent Welsh they may not read, and a Welsh one gets
    /// the Welsh the staff member typed). `None` for other commands.
    pub fn status_request(&self) -> Option<StatusChangeRequest> {
        let StaffCommand::Post {
            kind,
            ends_at,
            headline,
            language,
        } = self
        else {
            return None;
        };
        let (headline, headline_cy) = match language {
            Language::English => (headline.clone(), None),
            Language::Welsh => (None, headline.clone()),
        };
        Some(StatusChangeRequest {
            kind: kind.as_str().to_string(),
            headline,
            headline_cy,
            ends_at: *ends_at,
            ..Default::default()
        })
    }
}

/// Where and when a text arrived, and what the practice asks of a command. Its `Debug`
/// hides the PIN, so logging an arrival does not log the PIN.
#[derive(Clone, Copy)]
pub struct Arrival<'a> {
    /// When the gateway received the text: times in it are resolved to moments after this.
    pub received_at: DateTime<Utc>,
    /// The practice's zone: `2pm` is 2pm there.
    pub zone: PracticeZone,
    /// The practice's PIN if it requires one in every command but `YES` (the code already
    /// proves the text came from the phone the preview went to). Only 4 to 8 digits can
    /// ever match; a PIN given when none is required is skipped.
    pub pin: Option<&'a str>,
}

impl std::fmt::Debug for Arrival<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("received_at", &self.received_at)
            .field("zone", &self.zone)
            .field("pin", &self.pin.map(|_| "<hidden>"))
            .finish()
    }
}

/// A text that is not a command. The message is the SMS answer for the sender (a
/// registered number): short, in plain words, saying what would work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Too long for a command. Send e.g. CLOSED until 2pm Flooding, STATUS or CANCEL.")]
    TooLong,
    #[error("Not understood. Send CLOSED, PHONES DOWN, SYSTEMS DOWN or RESTORED (e.g. CLOSED until 2pm Flooding), STATUS, CANCEL, or YES and the code.")]
    NotUnderstood,
    #[error("Start with your practice PIN, e.g. PIN 1234 CLOSED until 2pm.")]
    PinMissing,
    #[error("That PIN is not right. Start with your practice PIN, e.g. PIN 1234 CLOSED.")]
    PinWrong,
    /// The text after an `until` word that could not be read, cut short.
    #[error("Could not read the time {0:?}. Try e.g. until 2pm, until 14:00, back tomorrow 8am or back Monday 8am.")]
    BadTime(String),
    #[error("That time has already passed. Try e.g. back tomorrow 8am.")]
    PastTime,
    #[error("RESTORED takes no time: send RESTORED on its own or with a headline.")]
    TimeAfterRestored,
    #[error("Send YES and the code from our text, e.g. YES 123456.")]
    CodeMissing,
}

/// A word of the text: lower-cased and trimmed of punctuation, with where it ends in the
/// original text (the headline is cut from there, keeping the sender's case).
struct Token {
    word: String,
    end: usize,
}

/// Reads `text` as a staff command.
///
/// Times (`until WHEN`):
/// - `2pm`, `2.30pm`, `2:30 p.m.`, `14:00`, `14.00`, `1400`, `noon` are read as written.
/// - A time without am/pm and without a leading zero is taken in working hours: `7` to `11`
///   are the morning, `12` is noon and `1` to `6` are the afternoon (`until 2` is 14:00,
///   `until 2.30` is 14:30); `02:00` and `0200` are 2am.
/// - With no day, the first such time after arrival: `closed till 2` at 11:00 is 14:00
///   today, at 15:00 it is 14:00 tomorrow. `today` must still be to come; `tomorrow` is the
///   next calendar day; a weekday is the next such day, today included if the time is still
///   to come. A day without a time means [`OPENING`] (08:00).
/// - Wall-clock times in the practice's zone. A time that happens twice when the clocks go
///   back is the first one after arrival; a time skipped when they go forward is the moment
///   they went forward.
/// - Dates (`until 5th`) are not understood; `until` followed by words that are not a time
///   (`CLOSED until further notice`) is part of the headline.
pub fn parse(text: &str, arrival: &Arrival<'_>) -> Result<StaffCommand, CommandError> {
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        return Err(CommandError::TooLong);
    }
    let tokens = tokens(text);
    let words: Vec<&str> = tokens.iter().map(|t| t.word.as_str()).collect();
    let (given_pin, mut at) = leading_pin(&words);
    if let (Some(expected), Some(given)) = (arrival.pin, given_pin) {
        if !same_pin(expected, given) {
            return Err(CommandError::PinWrong);
        }
    }
    let Phrase {
        word,
        len,
        language,
    } = phrase_at(&words[at..]).ok_or(CommandError::NotUnderstood)?;
    if arrival.pin.is_some() && given_pin.is_none() && word != Word::Yes {
        return Err(CommandError::PinMissing);
    }
    at += len;
    match word {
        Word::Kind(kind) => post(kind, language, text, &tokens, &words, at, arrival),
        Word::Status => Ok(StaffCommand::Status),
        Word::Cancel => Ok(StaffCommand::Cancel),
        Word::Yes => confirmation(&words[at..]),
        Word::Until | Word::Day(_) | Word::Noon | Word::Filler => Err(CommandError::NotUnderstood),
    }
}

/// The words of `text`, split at whitespace, without those that are only punctuation or
/// symbols (`-`, `!!`, an emoji).
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut start = None;
    let ends = text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')));
    for (i, c) in ends {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                start = None;
                let word = text[s..i]
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase();
                if !word.is_empty() {
                    out.push(Token { word, end: i });
                }
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// A PIN at the start (`PIN 4821`, `PIN:4821`, `pin4821` or a bare `4821`: 4 to 8 digits)
/// and how many words it takes. A PIN is skipped when the practice requires none.
fn leading_pin<'w>(words: &[&'w str]) -> (Option<&'w str>, usize) {
    match words {
        [first, second, ..] if *first == "pin" && is_pin(second) => (Some(second), 2),
        [first, ..] => match first.strip_prefix("pin").filter(|p| is_pin(p)) {
            Some(pin) => (Some(pin), 1),
            None if is_pin(first) => (Some(first), 1),
            None => (None, 0),
        },
        [] => (None, 0),
    }
}

fn is_pin(word: &str) -> bool {
    (4..=8).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_digit())
}

/// Compares PINs in constant time for a given length.
fn same_pin(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The code after `YES`: digit groups, joined (`123 456`, `123-456`).
fn confirmation(words: &[&str]) -> Result<StaffCommand, CommandError> {
    let mut code = String::new();
    for word in words {
        if !word.bytes().all(|b| b.is_ascii_digit() || b == b'-') || code.len() > 12 {
            return Err(CommandError::CodeMissing);
        }
        code.extend(word.chars().filter(char::is_ascii_digit));
    }
    if (4..=12).contains(&code.len()) {
        Ok(StaffCommand::Confirm { code })
    } else {
        Err(CommandError::CodeMissing)
    }
}

/// The rest of a status command, from word `at`: an optional `until WHEN`, then the headline.
/// `language` is that of the words that named the kind.
fn post(
    kind: StatusKind,
    language: Language,
    text: &str,
    tokens: &[Token],
    words: &[&str],
    mut at: usize,
    arrival: &Arrival<'_>,
) -> Result<StaffCommand, CommandError> {
    let mut ends_at = None;
    if let Some(Phrase {
        word: Word::Until,
        len,
        ..
    }) = phrase_at(&words[at..])
    {
        let rest = &words[at + len..];
        if rest.is_empty() {
            return Err(CommandError::BadTime(String::new()));
        }
        if let Some((moment, used)) = when(rest, arrival)? {
            ends_at = Some(moment);
            at += len + used;
        }
    }
    if kind == StatusKind::Restored && ends_at.is_some() {
        return Err(CommandError::TimeAfterRestored);
    }
    // `at` is at least 1: the kind's words were read.
    let from = at
        .checked_sub(1)
        .and_then(|i| tokens.get(i))
        .map_or(0, |t| t.end);
    Ok(StaffCommand::Post {
        kind,
        ends_at,
        headline: headline(text.get(from..).unwrap_or_default()),
        language,
    })
}

/// Reads `WHEN` from the start of `words`: the moment and how many words it takes, or
/// `None` when the words are no time at all (they belong to the headline).
fn when(
    words: &[&str],
    arrival: &Arrival<'_>,
) -> Result<Option<(DateTime<Utc>, usize)>, CommandError> {
    let (mut day, mut time) = (None, None);
    let (mut at, mut used) = (0, 0);
    while let Some(first) = words.get(at) {
        match phrase_at(&words[at..]) {
            Some(Phrase {
                word: Word::Filler,
                len,
                ..
            }) => at += len,
            Some(Phrase {
                word: Word::Day(d),
                len,
                ..
            }) if day.is_none() => {
                day = Some(d);
                at += len;
                used = at;
            }
            Some(Phrase {
                word: Word::Noon,
                len,
                ..
            }) if time.is_none() => {
                time = NaiveTime::from_hms_opt(12, 0, 0);
                at += len;
                used = at;
            }
            _ if time.is_none() && first.starts_with(|c: char| c.is_ascii_digit()) => {
                let (clock, len) = clock(&words[at..]).ok_or_else(|| bad_time(&words[at..]))?;
                time = Some(clock);
                at += len;
                used = at;
            }
            _ => break,
        }
    }
    if day.is_none() && time.is_none() {
        return Ok(None);
    }
    resolve(day, time, arrival).map(|moment| Some((moment, used)))
}

/// The time the words start with, and how many words it takes (`2 pm` takes two).
fn clock(words: &[&str]) -> Option<(NaiveTime, usize)> {
    let first = words.first()?;
    match words.get(1) {
        Some(next) if ["am", "pm", "a.m", "p.m"].contains(next) => {
            time_of_day(&format!("{first}{next}")).map(|t| (t, 2))
        }
        _ => time_of_day(first).map(|t| (t, 1)),
    }
}

/// One lower-case word read as a time of day, by the rules in [`parse`].
fn time_of_day(word: &str) -> Option<NaiveTime> {
    if !word.is_ascii() {
        return None;
    }
    let word = word.replace("a.m", "am").replace("p.m", "pm");
    let (digits, pm) = match (word.strip_suffix("am"), word.strip_suffix("pm")) {
        (Some(d), _) => (d, Some(false)),
        (_, Some(d)) => (d, Some(true)),
        _ => (word.as_str(), None),
    };
    let (hour_text, minute_text) = match digits.split_once([':', '.']) {
        Some((h, m)) => (h, m),
        None if digits.len() >= 3 => digits.split_at(digits.len() - 2),
        None => (digits, "00"),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if hour_text.len() > 2
        || !all_digits(hour_text)
        || minute_text.len() != 2
        || !all_digits(minute_text)
    {
        return None;
    }
    let hour: u32 = hour_text.parse().ok()?;
    let minute: u32 = minute_text.parse().ok()?;
    let hour = match pm {
        Some(pm) if (1..=12).contains(&hour) => hour % 12 + if pm { 12 } else { 0 },
        Some(_) => return None,
        None if (1..=6).contains(&hour) && !hour_text.starts_with('0') => hour + 12,
        None => hour,
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// The words that could not be read as a time, cut short for the answer.
fn bad_time(words: &[&str]) -> CommandError {
    CommandError::BadTime(
        words
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(20)
            .collect(),
    )
}

/// The first moment after arrival that is `time` (or [`OPENING`]) on `day` (or on any day)
/// in the practice's zone.
fn resolve(
    day: Option<Day>,
    time: Option<NaiveTime>,
    arrival: &Arrival<'_>,
) -> Result<DateTime<Utc>, CommandError> {
    let tz = arrival.zone.tz();
    let time = time.unwrap_or(OPENING);
    let today = arrival.received_at.with_timezone(&tz).date_naive();
    let offsets = match day {
        None => 0..=1,
        Some(Day::Today) => 0..=0,
        Some(Day::Tomorrow) => 1..=1,
        Some(Day::Weekday(_)) => 0..=7,
    };
    for offset in offsets {
        let Some(date) = today.checked_add_days(Days::new(offset)) else {
            continue;
        };
        if let Some(Day::Weekday(weekday)) = day {
            if date.weekday() != weekday {
                continue;
            }
        }
        match instant(tz, date.and_time(time), arrival.received_at) {
            Some(moment) if moment > arrival.received_at => return Ok(moment),
            _ => {}
        }
    }
    Err(CommandError::PastTime)
}

/// The moment a wall-clock time in `tz` stands for: of two (clocks going back), the first
/// after `after`; of none (clocks going forward), the first valid time after it.
fn instant(tz: Tz, local: NaiveDateTime, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(moment) => Some(moment.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            Some(if early > after { early } else { late })
        }
        LocalResult::None => (1..=16)
            .filter_map(|quarters| local.checked_add_signed(Duration::minutes(15 * quarters)))
            .find_map(|later| tz.from_local_datetime(&later).earliest())
            .map(|moment| moment.with_timezone(&Utc)),
    }
}

/// The headline typed after the kind and time, made safe to show and send.
fn headline(rest: &str) -> Option<String> {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let cleaned: String = rest
        .chars()
        .map(|c| if invisible(c) { ' ' } else { c })
        .collect();
    let joined = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = joined.trim_start_matches(|c: char| c.is_whitespace() || "-–—:;,.!?".contains(c));
    let capped: String = trimmed.chars().take(MAX_HEADLINE_CHARS).collect();
    let capped = capped.trim_end();
    (!capped.is_empty()).then(|| capped.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thursday 3 December 2026, 11:00 in London (GMT).
    const THURSDAY_11AM: &str = "2026-12-03T11:00:00Z";

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("a test time")
    }

    fn read_at(text: &str, received: &str) -> Result<StaffCommand, CommandError> {
        let arrival = Arrival {
            received_at: utc(received),
            zone: PracticeZone::UK,
            pin: None,
        };
        parse(text, &arrival)
    }

    fn read(text: &str) -> Result<StaffCommand, CommandError> {
        read_at(text, THURSDAY_11AM)
    }

    /// An English command's status change.
    fn post(kind: StatusKind, ends_at: Option<&str>, headline: Option<&str>) -> StaffCommand {
        StaffCommand::Post {
            kind,
            ends_at: ends_at.map(utc),
            headline: headline.map(str::to_string),
            language: Language::English,
        }
    }

    /// The same in Welsh words.
    fn cy(command: StaffCommand) -> StaffCommand {
        match command {
            StaffCommand::Post {
                kind,
                ends_at,
                headline,
                ..
            } => StaffCommand::Post {
                kind,
                ends_at,
                headline,
                language: Language::Welsh,
            },
            other => other,
        }
    }

    use StatusKind::{Closed, PhonesDown, Restored, SystemsDown};

    #[test]
    fn real_looking_status_commands() {
        let cases = [
            (
                "closed till 2",
                post(Closed, Some("2026-12-03T14:00:00Z"), None),
            ),
            (
                "Closed until 14:00",
                post(Closed, Some("2026-12-03T14:00:00Z"), None),
            ),
            ("CLOSED", post(Closed, None, None)),
            ("CLOSED.", post(Closed, None, None)),
            ("closed", post(Closed, None, None)),
            ("phones down!!", post(PhonesDown, None, None)),
            ("  Phones   down!! ", post(PhonesDown, None, None)),
            ("Phone lines down", post(PhonesDown, None, None)),
            (
                "SYSTEMS DOWN back tomorrow 8am",
                post(SystemsDown, Some("2026-12-04T08:00:00Z"), None),
            ),
            (
                "systems down back at 8am tomorrow",
                post(SystemsDown, Some("2026-12-04T08:00:00Z"), None),
            ),
            (
                "systems down back tomorrow",
                post(SystemsDown, Some("2026-12-04T08:00:00Z"), None),
            ),
            ("RESTORED", post(Restored, None, None)),
            ("back to normal", post(Restored, None, None)),
            (
                "CLOSED Flooding in the waiting room",
                post(Closed, None, Some("Flooding in the waiting room")),
            ),
            (
                "CLOSED until 2pm Flooding",
                post(Closed, Some("2026-12-03T14:00:00Z"), Some("Flooding")),
            ),
            ("Closed - flooding!", post(Closed, None, Some("flooding!"))),
            ("closed: Burst pipe", post(Closed, None, Some("Burst pipe"))),
            (
                "closed till 2 staff meeting",
                post(Closed, Some("2026-12-03T14:00:00Z"), Some("staff meeting")),
            ),
            (
                "CLOSED until further notice",
                post(Closed, None, Some("until further notice")),
            ),
            ("🚨 CLOSED 🚨 flood", post(Closed, None, Some("🚨 flood"))),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn times_of_day_in_every_usual_spelling() {
        let cases = [
            ("2pm", "2026-12-03T14:00:00Z"),
            ("2 pm", "2026-12-03T14:00:00Z"),
            ("2.30pm", "2026-12-03T14:30:00Z"),
            ("2:30 p.m.", "2026-12-03T14:30:00Z"),
            ("14:00", "2026-12-03T14:00:00Z"),
            ("14.15", "2026-12-03T14:15:00Z"),
            ("1400", "2026-12-03T14:00:00Z"),
            ("noon", "2026-12-03T12:00:00Z"),
            ("12pm", "2026-12-03T12:00:00Z"),
            ("12am", "2026-12-04T00:00:00Z"),
            // Working hours without am/pm: 1 to 6 are the afternoon, 7 to 11 the morning.
            ("2", "2026-12-03T14:00:00Z"),
            ("2.30", "2026-12-03T14:30:00Z"),
            ("6", "2026-12-03T18:00:00Z"),
            ("12", "2026-12-03T12:00:00Z"),
            ("8", "2026-12-04T08:00:00Z"),
            ("11", "2026-12-04T11:00:00Z"),
            // A leading zero means the 24-hour clock.
            ("02:00", "2026-12-04T02:00:00Z"),
            ("0200", "2026-12-04T02:00:00Z"),
            ("10am", "2026-12-04T10:00:00Z"),
            ("2pm tomorrow", "2026-12-04T14:00:00Z"),
            ("tomorrow at 2pm", "2026-12-04T14:00:00Z"),
            ("today 4pm", "2026-12-03T16:00:00Z"),
        ];
        for (time, expected) in cases {
            let text = format!("closed until {time}");
            assert_eq!(
                read(&text),
                Ok(post(Closed, Some(expected), None)),
                "{text:?}"
            );
        }
        // The same time after it has passed today is tomorrow's.
        assert_eq!(
            read_at("closed till 2", "2026-12-03T15:00:00Z"),
            Ok(post(Closed, Some("2026-12-04T14:00:00Z"), None))
        );
    }

    #[test]
    fn weekdays_are_the_next_such_day_today_included_while_still_to_come() {
        let cases = [
            ("closed back monday 8am", "2026-12-07T08:00:00Z"),
            ("closed back Mon", "2026-12-07T08:00:00Z"),
            ("closed back on Friday at 9am", "2026-12-04T09:00:00Z"),
            ("closed until thursday 2pm", "2026-12-03T14:00:00Z"),
            ("closed until thursday 8am", "2026-12-10T08:00:00Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                read(text),
                Ok(post(Closed, Some(expected), None)),
                "{text:?}"
            );
        }
        assert_eq!(
            read("ar gau tan dydd llun 8am"),
            Ok(cy(post(Closed, Some("2026-12-07T08:00:00Z"), None)))
        );
    }

    #[test]
    fn welsh_commands() {
        let cases = [
            ("AR GAU", cy(post(Closed, None, None))),
            (
                "ar gau tan 2pm",
                cy(post(Closed, Some("2026-12-03T14:00:00Z"), None)),
            ),
            (
                "Ar gau tan yfory 8am Llifogydd",
                cy(post(
                    Closed,
                    Some("2026-12-04T08:00:00Z"),
                    Some("Llifogydd"),
                )),
            ),
            (
                "ar gau tan hanner dydd",
                cy(post(Closed, Some("2026-12-03T12:00:00Z"), None)),
            ),
            ("FFONAU I LAWR", cy(post(PhonesDown, None, None))),
            ("SYSTEMAU I LAWR", cy(post(SystemsDown, None, None))),
            ("AR AGOR", cy(post(Restored, None, None))),
            ("Wedi adfer", cy(post(Restored, None, None))),
            // The language is the kind's words', whatever words follow.
            (
                "AR GAU until 2pm Flooding",
                cy(post(Closed, Some("2026-12-03T14:00:00Z"), Some("Flooding"))),
            ),
            (
                "CLOSED tan 2pm Llifogydd",
                post(Closed, Some("2026-12-03T14:00:00Z"), Some("Llifogydd")),
            ),
            ("STATWS", StaffCommand::Status),
            ("canslo", StaffCommand::Cancel),
            (
                "IE 123456",
                StaffCommand::Confirm {
                    code: "123456".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn a_welsh_commands_headline_is_the_welsh_headline_of_its_status_change() {
        let welsh = read("AR GAU tan 2pm Llifogydd yn yr ystafell aros")
            .unwrap()
            .status_request()
            .unwrap();
        assert_eq!(welsh.kind, "closed");
        assert_eq!(welsh.headline, None, "English patients get the default");
        assert_eq!(
            welsh.headline_cy.as_deref(),
            Some("Llifogydd yn yr ystafell aros")
        );
        assert_eq!(welsh.ends_at, Some(utc("2026-12-03T14:00:00Z")));
        let change = welsh.parse("staff").unwrap();
        assert_eq!(change.headline, "The surgery is closed.");
        let english = read("CLOSED Flooding").unwrap().status_request().unwrap();
        assert_eq!(english.headline.as_deref(), Some("Flooding"));
        assert_eq!(english.headline_cy, None);
        let bare = read("AR GAU").unwrap().status_request().unwrap();
        assert_eq!((bare.headline, bare.headline_cy), (None, None));
        assert!(read("STATUS").unwrap().status_request().is_none());
    }

    #[test]
    fn status_cancel_and_confirmations() {
        let confirm = |code: &str| Ok(StaffCommand::Confirm { code: code.into() });
        assert_eq!(read("STATUS"), Ok(StaffCommand::Status));
        assert_eq!(read("status?"), Ok(StaffCommand::Status));
        assert_eq!(read("Cancel"), Ok(StaffCommand::Cancel));
        assert_eq!(read("yes 123456"), confirm("123456"));
        assert_eq!(read("Yes  123 456"), confirm("123456"));
        assert_eq!(read("YES 123-456."), confirm("123456"));
        for text in [
            "yes",
            "YES please",
            "yes 12",
            "yes 1234567890123",
            "yes 123456 thanks",
        ] {
            assert_eq!(read(text), Err(CommandError::CodeMissing), "{text:?}");
        }
    }

    #[test]
    fn what_is_not_a_command_says_so() {
        let cases = [
            ("", CommandError::NotUnderstood),
            ("   \n ", CommandError::NotUnderstood),
            ("🚨🚨🚨", CommandError::NotUnderstood),
            ("hello is anyone there", CommandError::NotUnderstood),
            ("until 2pm", CommandError::NotUnderstood),
            ("closed till 25", CommandError::BadTime("25".into())),
            (
                "closed till 2nd Jan",
                CommandError::BadTime("2nd jan".into()),
            ),
            ("closed until 13pm", CommandError::BadTime("13pm".into())),
            ("closed until 2:75", CommandError::BadTime("2:75".into())),
            ("closed until", CommandError::BadTime(String::new())),
            ("closed until today 8am", CommandError::PastTime),
            ("RESTORED until 2pm", CommandError::TimeAfterRestored),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn answers_fit_in_one_text() {
        let long_time = read(&format!("closed until 1{}", "9".repeat(100))).unwrap_err();
        for error in [
            CommandError::TooLong,
            CommandError::NotUnderstood,
            CommandError::PinMissing,
            CommandError::PinWrong,
            long_time,
            CommandError::PastTime,
            CommandError::TimeAfterRestored,
            CommandError::CodeMissing,
        ] {
            let answer = error.to_string();
            assert!(
                answer.chars().count() <= 160,
                "{} chars: {answer}",
                answer.chars().count()
            );
        }
    }

    #[test]
    fn long_texts_are_refused_and_headlines_capped_and_cleaned() {
        let at_limit = format!("closed {}", "a".repeat(MAX_MESSAGE_CHARS - 7));
        let Ok(StaffCommand::Post {
            headline: Some(headline),
            ..
        }) = read(&at_limit)
        else {
            panic!("a text at the limit is read");
        };
        assert_eq!(headline.chars().count(), MAX_HEADLINE_CHARS);
        assert_eq!(read(&format!("{at_limit}a")), Err(CommandError::TooLong));
        assert_eq!(
            read(&"é".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(CommandError::TooLong)
        );

        assert_eq!(
            read("CLOSED Flood\u{0}ing\r\n in\u{202E}side \u{7}"),
            Ok(post(Closed, None, Some("Flood ing in side")))
        );
    }

    #[test]
    fn a_practice_pin_is_required_except_to_confirm() {
        let arrival = Arrival {
            received_at: utc(THURSDAY_11AM),
            zone: PracticeZone::UK,
            pin: Some("4821"),
        };
        let read = |text: &str| parse(text, &arrival);
        for text in [
            "PIN 4821 CLOSED",
            "pin: 4821 closed",
            "PIN4821 closed",
            "4821 closed",
        ] {
            assert_eq!(read(text), Ok(post(Closed, None, None)), "{text:?}");
        }
        assert_eq!(read("4821 status"), Ok(StaffCommand::Status));
        assert_eq!(read("closed"), Err(CommandError::PinMissing));
        assert_eq!(read("status"), Err(CommandError::PinMissing));
        assert_eq!(read("PIN 1234 closed"), Err(CommandError::PinWrong));
        assert_eq!(read("48210 closed"), Err(CommandError::PinWrong));
        assert_eq!(read("482 closed"), Err(CommandError::NotUnderstood));
        assert_eq!(
            read("yes 123456"),
            Ok(StaffCommand::Confirm {
                code: "123456".into()
            })
        );
        assert_eq!(read("PIN 1234 yes 123456"), Err(CommandError::PinWrong));
        // Without a practice PIN, a leading one is skipped.
        assert_eq!(
            read_at("PIN 4821 closed till 2", THURSDAY_11AM),
            Ok(post(Closed, Some("2026-12-03T14:00:00Z"), None))
        );
    }

    #[test]
    fn times_stay_right_across_clock_changes() {
        // 00:30 UTC on 25 October 2026 is 01:30 BST; at 01:00 UTC the clocks go back to GMT.
        let autumn = "2026-10-25T00:30:00Z";
        let cases = [
            ("closed till 2", "2026-10-25T14:00:00Z"),
            ("closed until 9am", "2026-10-25T09:00:00Z"),
            // 01:30 happens twice: 00:30 UTC (now, not after arrival) and 01:30 UTC.
            ("closed until 1.30am", "2026-10-25T01:30:00Z"),
            ("closed back monday 8am", "2026-10-26T08:00:00Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                read_at(text, autumn),
                Ok(post(Closed, Some(expected), None)),
                "{text:?}"
            );
        }
        // Before the change, the first 01:30 is still to come.
        assert_eq!(
            read_at("closed until 1.30am", "2026-10-24T23:00:00Z"),
            Ok(post(Closed, Some("2026-10-25T00:30:00Z"), None))
        );
        // 23:00 GMT on Saturday 28 March 2026; at 01:00 UTC the clocks go forward to BST, so
        // 01:30 never happens and the status ends when the clocks jump (02:00 BST).
        let spring = "2026-03-28T23:00:00Z";
        assert_eq!(
            read_at("closed until 1.30am", spring),
            Ok(post(Closed, Some("2026-03-29T01:00:00Z"), None))
        );
        assert_eq!(
            read_at("closed until 9am", spring),
            Ok(post(Closed, Some("2026-03-29T08:00:00Z"), None))
        );
    }

    #[test]
    fn the_pin_stays_out_of_debug_output() {
        let arrival = Arrival {
            received_at: utc(THURSDAY_11AM),
            zone: PracticeZone::UK,
            pin: Some("4821"),
        };
        assert!(!format!("{arrival:?}").contains("4821"));
    }

    #[test]
    fn times_are_in_the_practice_zone() {
        let arrival = Arrival {
            received_at: utc(THURSDAY_11AM),
            zone: PracticeZone::parse("America/New_York").expect("a zone"),
            pin: None,
        };
        // 11:00 UTC is 06:00 in New York.
        assert_eq!(
            parse("closed until 2pm", &arrival),
            Ok(post(Closed, Some("2026-12-03T19:00:00Z"), None))
        );
    }
}
