//! The date filters templates may use, on an RFC 3339 time such as `appointment.starts_at`:
//!
//! | filter | English | Welsh (`lang="cy"`) |
//! |---|---|---|
//! | `uk_date_time` | Monday 22 July at 10:30 | dydd Llun 22 Gorffennaf am 10:30 |
//! | `uk_date` | Monday 22 July | dydd Llun 22 Gorffennaf |
//! | `uk_time` | 10:30 | 10:30 |
//!
//! Arguments, all optional: `timezone` (an IANA name, default Europe/London), `lang` (`en`,
//! the default, or `cy`) and `mutated=true`, which in Welsh gives the soft-mutated form a
//! Welsh sentence needs after `tan`, `ar`, `o`, `i` or as an adverb of time ("ddydd Llun 22
//! Gorffennaf"; English is unchanged). The words are the ones [`time_words`] gives the
//! shipped variables, so an edited template reads like the shipped ones.

use chrono::{DateTime, Utc};
use tera::Tera;

use super::context::time_words;
use crate::domain::Language;
use crate::schedule::PracticeZone;

/// Which part of the time a filter prints.
#[derive(Debug, Clone, Copy)]
enum Part {
    DateTime,
    Date,
    Time,
}

/// Registers `uk_date_time`, `uk_date` and `uk_time` with `tera`.
pub(super) fn register(tera: &mut Tera) {
    tera.register_filter(
        "uk_date_time",
        |v: &str, k: tera::Kwargs, _: &tera::State| in_words(v, &k, Part::DateTime),
    );
    tera.register_filter("uk_date", |v: &str, k: tera::Kwargs, _: &tera::State| {
        in_words(v, &k, Part::Date)
    });
    tera.register_filter("uk_time", |v: &str, k: tera::Kwargs, _: &tera::State| {
        in_words(v, &k, Part::Time)
    });
}

/// `value` (RFC 3339) in words, in the zone and language the arguments name.
fn in_words(value: &str, kwargs: &tera::Kwargs, part: Part) -> tera::TeraResult<String> {
    let at = DateTime::parse_from_rfc3339(value.trim())
        .map_err(|_| {
            tera::Error::message(format!("{value:?} is not a time like 2024-07-22T09:30:00Z"))
        })?
        .with_timezone(&Utc);
    let zone = match kwargs.get::<&str>("timezone")? {
        Some(name) => PracticeZone::parse(name).map_err(|_| {
            tera::Error::message("timezone must be an IANA name such as Europe/London")
        })?,
        None => PracticeZone::UK,
    };
    let language = match kwargs.get::<&str>("lang")? {
        Some(code) => code
            .parse::<Language>()
            .map_err(|_| tera::Error::message("lang must be \"en\" (English) or \"cy\" (Welsh)"))?,
        None => Language::English,
    };
    let mutated = kwargs.get::<bool>("mutated")?.unwrap_or(false);
    let words = time_words(at, zone, language);
    let text = match part {
        Part::DateTime => words.when,
        Part::Date => words.date,
        Part::Time => return Ok(words.time),
    };
    Ok(if mutated { soft_mutated(text) } else { text })
}

/// Welsh words for a day, soft-mutated: "dydd Llun" becomes "ddydd Llun". Anything else
/// (English) is left as it is.
fn soft_mutated(text: String) -> String {
    match text.strip_prefix("dydd ") {
        Some(rest) => format!("ddydd {rest}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::super::safe_tera;

    fn render(template: &str, at: &str) -> Result<String, tera::Error> {
        let mut tera = safe_tera();
        tera.add_raw_template("t", template)?;
        let mut ctx = tera::Context::new();
        ctx.insert("at", at);
        tera.render("t", &ctx)
    }

    #[test]
    fn uk_date_filters_read_in_practice_time() {
        let template = "{{ at | uk_date_time }}|{{ at | uk_date }}|{{ at | uk_time(timezone=\"America/New_York\") }}";
        assert_eq!(
            render(template, "2024-07-22T09:30:00Z").unwrap(),
            "Monday 22 July at 10:30|Monday 22 July|05:30"
        );
        assert_eq!(
            render(template, "2024-12-02T09:30:00Z").unwrap(),
            "Monday 2 December at 09:30|Monday 2 December|04:30"
        );
        assert!(render(template, "not a time").is_err());
    }

    #[test]
    fn welsh_dates_name_welsh_days_and_months_and_mutate_when_asked() {
        let at = "2024-07-23T07:00:00Z";
        let template = "{{ at | uk_date_time(lang=\"cy\") }}|{{ at | uk_date(lang=\"cy\") }}|{{ at | uk_time(lang=\"cy\") }}";
        assert_eq!(
            render(template, at).unwrap(),
            "dydd Mawrth 23 Gorffennaf am 08:00|dydd Mawrth 23 Gorffennaf|08:00"
        );
        assert_eq!(
            render(
                "Ar gau tan {{ at | uk_date_time(lang=\"cy\", mutated=true) }}.",
                at
            )
            .unwrap(),
            "Ar gau tan ddydd Mawrth 23 Gorffennaf am 08:00."
        );
        assert_eq!(
            render("{{ at | uk_date(lang=\"cy\", mutated=true) }}", at).unwrap(),
            "ddydd Mawrth 23 Gorffennaf"
        );
        // English has no mutation; `lang="en"` is the default spelled out.
        assert_eq!(
            render("{{ at | uk_date(lang=\"en\", mutated=true) }}", at).unwrap(),
            "Tuesday 23 July"
        );
        let winter = "2025-02-05T18:15:00Z";
        assert_eq!(
            render("{{ at | uk_date_time(lang=\"cy\") }}", winter).unwrap(),
            "dydd Mercher 5 Chwefror am 18:15"
        );
    }

    #[test]
    fn a_language_that_is_not_offered_is_refused() {
        let error = render("{{ at | uk_date(lang=\"fr\") }}", "2024-07-23T07:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(!error.is_empty());
        assert!(render(
            "{{ at | uk_date(mutated=\"yes\") }}",
            "2024-07-23T07:00:00Z"
        )
        .is_err());
    }
}
