//! The words staff may text, English and Welsh, a table per language: add a spelling by
//! adding a row, a language by adding a table to [`WORDS`].

use chrono::Weekday;

use crate::domain::{Language, StatusKind};

/// What a phrase of the table means. Where it may stand is up to the parser: a kind only
/// opens a command, a day only follows an `until` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Word {
    /// Opens a status change of this kind.
    Kind(StatusKind),
    /// Asks for the current status.
    Status,
    /// Discards a change waiting for its code.
    Cancel,
    /// Confirms a change with the code that follows.
    Yes,
    /// Introduces when the status ends: `until 2pm`, `back tomorrow`.
    Until,
    /// A day the status ends on.
    Day(Day),
    /// 12:00.
    Noon,
    /// Allowed before a day or time and otherwise meaningless: `back at 2`, `back on Monday`.
    Filler,
}

/// A day named in a command, relative to the day the text arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Day {
    Today,
    Tomorrow,
    /// The next such weekday, today included if the time is still to come.
    Weekday(Weekday),
}

/// Every phrase, by language: lower case, words separated by one space. The parser compares
/// them with the text's words after lower-casing and trimming punctuation from each word,
/// and the longest phrase wins (`back to normal` before `back`). The language of the phrase
/// that opens a command is the language its headline is taken to be in.
pub(super) const WORDS: &[(Language, &[(&str, Word)])] =
    &[(Language::English, ENGLISH), (Language::Welsh, WELSH)];

const ENGLISH: &[(&str, Word)] = &[
    ("closed", Word::Kind(StatusKind::Closed)),
    ("phones down", Word::Kind(StatusKind::PhonesDown)),
    ("phone down", Word::Kind(StatusKind::PhonesDown)),
    ("phone lines down", Word::Kind(StatusKind::PhonesDown)),
    ("phones are down", Word::Kind(StatusKind::PhonesDown)),
    ("systems down", Word::Kind(StatusKind::SystemsDown)),
    ("system down", Word::Kind(StatusKind::SystemsDown)),
    ("systems are down", Word::Kind(StatusKind::SystemsDown)),
    ("restored", Word::Kind(StatusKind::Restored)),
    ("open", Word::Kind(StatusKind::Restored)),
    ("reopened", Word::Kind(StatusKind::Restored)),
    ("back to normal", Word::Kind(StatusKind::Restored)),
    ("status", Word::Status),
    ("cancel", Word::Cancel),
    ("yes", Word::Yes),
    ("until", Word::Until),
    ("till", Word::Until),
    ("til", Word::Until),
    ("back", Word::Until),
    ("at", Word::Filler),
    ("on", Word::Filler),
    ("today", Word::Day(Day::Today)),
    ("tomorrow", Word::Day(Day::Tomorrow)),
    ("tmrw", Word::Day(Day::Tomorrow)),
    ("noon", Word::Noon),
    ("midday", Word::Noon),
    ("monday", Word::Day(Day::Weekday(Weekday::Mon))),
    ("mon", Word::Day(Day::Weekday(Weekday::Mon))),
    ("tuesday", Word::Day(Day::Weekday(Weekday::Tue))),
    ("tue", Word::Day(Day::Weekday(Weekday::Tue))),
    ("tues", Word::Day(Day::Weekday(Weekday::Tue))),
    ("wednesday", Word::Day(Day::Weekday(Weekday::Wed))),
    ("wed", Word::Day(Day::Weekday(Weekday::Wed))),
    ("thursday", Word::Day(Day::Weekday(Weekday::Thu))),
    ("thu", Word::Day(Day::Weekday(Weekday::Thu))),
    ("thur", Word::Day(Day::Weekday(Weekday::Thu))),
    ("thurs", Word::Day(Day::Weekday(Weekday::Thu))),
    ("friday", Word::Day(Day::Weekday(Weekday::Fri))),
    ("fri", Word::Day(Day::Weekday(Weekday::Fri))),
    ("saturday", Word::Day(Day::Weekday(Weekday::Sat))),
    ("sat", Word::Day(Day::Weekday(Weekday::Sat))),
    ("sunday", Word::Day(Day::Weekday(Weekday::Sun))),
    ("sun", Word::Day(Day::Weekday(Weekday::Sun))),
];

const WELSH: &[(&str, Word)] = &[
    ("ar gau", Word::Kind(StatusKind::Closed)),
    ("ffonau i lawr", Word::Kind(StatusKind::PhonesDown)),
    ("systemau i lawr", Word::Kind(StatusKind::SystemsDown)),
    ("ar agor", Word::Kind(StatusKind::Restored)),
    ("wedi adfer", Word::Kind(StatusKind::Restored)),
    ("statws", Word::Status),
    ("canslo", Word::Cancel),
    ("ie", Word::Yes),
    ("tan", Word::Until),
    ("heddiw", Word::Day(Day::Today)),
    ("yfory", Word::Day(Day::Tomorrow)),
    ("hanner dydd", Word::Noon),
    ("dydd llun", Word::Day(Day::Weekday(Weekday::Mon))),
    ("dydd mawrth", Word::Day(Day::Weekday(Weekday::Tue))),
    ("dydd mercher", Word::Day(Day::Weekday(Weekday::Wed))),
    ("dydd iau", Word::Day(Day::Weekday(Weekday::Thu))),
    ("dydd gwener", Word::Day(Day::Weekday(Weekday::Fri))),
    ("dydd sadwrn", Word::Day(Day::Weekday(Weekday::Sat))),
    ("dydd sul", Word::Day(Day::Weekday(Weekday::Sun))),
];

/// A phrase of [`WORDS`] found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Phrase {
    /// What it means.
    pub(super) word: Word,
    /// How many of the text's words it takes.
    pub(super) len: usize,
    /// Which language's table it is from.
    pub(super) language: Language,
}

/// The longest phrase of [`WORDS`] that `words` starts with.
pub(super) fn phrase_at(words: &[&str]) -> Option<Phrase> {
    WORDS
        .iter()
        .flat_map(|(language, table)| table.iter().map(move |row| (*language, row)))
        .filter_map(|(language, (phrase, word))| {
            let len = phrase.split(' ').count();
            let matches = words.len() >= len && phrase.split(' ').zip(words).all(|(p, w)| p == *w);
            matches.then_some(Phrase {
                word: *word,
                len,
                language,
            })
        })
        .max_by_key(|phrase| phrase.len)
}

/// Every phrase of every language.
#[cfg(test)]
fn all_phrases() -> impl Iterator<Item = &'static str> {
    WORDS
        .iter()
        .flat_map(|(_, table)| table.iter().map(|(phrase, _)| *phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_is_lower_case_single_spaced_and_listed_once() {
        let phrases: Vec<&str> = all_phrases().collect();
        for (i, phrase) in phrases.iter().enumerate() {
            assert_eq!(*phrase, phrase.to_lowercase(), "{phrase}");
            assert!(
                phrase
                    .split(' ')
                    .all(|w| !w.is_empty() && w.chars().all(char::is_alphanumeric)),
                "{phrase:?}"
            );
            assert!(!phrases[..i].contains(phrase), "{phrase} twice");
        }
    }

    #[test]
    fn the_longest_phrase_wins() {
        let found = |words: &[&str]| phrase_at(words).map(|p| (p.word, p.len));
        assert_eq!(
            found(&["back", "to", "normal"]),
            Some((Word::Kind(StatusKind::Restored), 3))
        );
        assert_eq!(found(&["back", "to", "work"]), Some((Word::Until, 1)));
        assert_eq!(
            found(&["phones", "down", "x"]),
            Some((Word::Kind(StatusKind::PhonesDown), 2))
        );
        assert_eq!(found(&["phones"]), None);
        assert_eq!(found(&[]), None);
    }

    #[test]
    fn each_phrase_knows_its_language() {
        let language = |words: &[&str]| phrase_at(words).map(|p| p.language);
        assert_eq!(language(&["closed"]), Some(Language::English));
        assert_eq!(language(&["ar", "gau"]), Some(Language::Welsh));
        assert_eq!(language(&["systemau", "i", "lawr"]), Some(Language::Welsh));
        assert_eq!(language(&["status"]), Some(Language::English));
        assert_eq!(language(&["statws"]), Some(Language::Welsh));
    }
}
