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

use super::words::{phrase_at, Day, Word};
use crate::domain::StatusKind;
use crate::schedule::PracticeZone;

/// The longest text read as a command, in characters: Twilio's limit on an inbound body.
/// Anything longer is refused before it is split into words.
pub const MAX_MESSAGE_CHARS: usize = 1_600;

/// The longest headline kept from a command, in characters (the console and API allow the
/// same); the rest is cut off, and the staff member sees the result in the preview.
pub const MAX_HEADLINE_CHARS: usize = 300;

/// The time a status ends when a command names a day but no time (`back tomorrow`): when
/// most practices open.
const OPENING: (u32, u32) = (8, 0);

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

/// Where and when a text arrived, and what the practice asks of a command.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// When the gateway received the text: times in it are resolved to moments after this.
    pub received_at: DateTime<Utc>,
    /// The practice's zone: `2pm` is 2pm there.
    pub zone: PracticeZone,
    /// The practice's PIN if it requires one in every command but `YES` (the code already
    /// proves the text came from the phone the preview went to).
    pub pin: Option<&'a str>,
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
    let (word, len) = phrase_at(&words[at..]).ok_or(CommandError::NotUnderstood)?;
    if arrival.pin.is_some() && given_pin.is_none() && word != Word::Yes {
        return Err(CommandError::PinMissing);
    }
    at += len;
    match word {
        Word::Kind(kind) => post(kind, text, &tokens, &words, at, arrival),
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
fn post(
    kind: StatusKind,
    text: &str,
    tokens: &[Token],
    words: &[&str],
    mut at: usize,
    arrival: &Arrival<'_>,
) -> Result<StaffCommand, CommandError> {
    let mut ends_at = None;
    if let Some((Word::Until, len)) = phrase_at(&words[at..]) {
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
            Some((Word::Filler, len)) => at += len,
            Some((Word::Day(d), len)) if day.is_none() => {
                day = Some(d);
                at += len;
                used = at;
            }
            Some((Word::Noon, len)) if time.is_none() => {
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
    let time = time
        .or_else(|| NaiveTime::from_hms_opt(OPENING.0, OPENING.1, 0))
        .ok_or(CommandError::PastTime)?;
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
