//! Property tests of the staff command parser: any text is read without a panic, and an
//! accepted command keeps the promises its type documents, in any zone and at any time.

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::command::{parse, Arrival, CommandError, StaffCommand, MAX_HEADLINE_CHARS};
use crate::domain::{Language, StatusKind};
use crate::schedule::PracticeZone;

/// Zones with the awkward cases: clocks going back and forward, half-hour shifts (Lord
/// Howe), a skipped day (Apia, 30 December 2011), and none at all.
const ZONES: [&str; 6] = [
    "Europe/London",
    "Europe/Dublin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kolkata",
];

fn received_at() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2100, to the second.
    (0i64..4_102_444_800).prop_map(|secs| DateTime::from_timestamp(secs, 0).expect("in range"))
}

fn zone() -> impl Strategy<Value = PracticeZone> {
    proptest::sample::select(&ZONES[..]).prop_map(|name| PracticeZone::parse(name).expect("a zone"))
}

/// A text shaped like a command: a kind in any case and spacing, maybe a time, maybe a
/// headline of anything.
fn command_like() -> impl Strategy<Value = String> {
    let kind = proptest::sample::select(
        &[
            "closed",
            "CLOSED",
            "Phones  down!!",
            "systems DOWN",
            "restored",
            "ar gau",
            "Ffonau i lawr",
        ][..],
    );
    let until =
        proptest::sample::select(&["", "until", "till", "back", "back at", "tan", "til"][..]);
    let day = proptest::sample::select(
        &[
            "",
            "today",
            "tomorrow",
            "monday",
            "Sun",
            "on friday",
            "yfory",
        ][..],
    );
    let time = prop_oneof![
        Just(String::new()),
        Just("noon".to_string()),
        (
            0u32..30,
            0u32..70,
            proptest::sample::select(&["", "am", "pm", " pm", "a.m."][..]),
            proptest::sample::select(&[":", ".", ""][..])
        )
            .prop_map(|(h, m, suffix, sep)| match sep {
                "" => format!("{h}{suffix}"),
                sep => format!("{h}{sep}{m:02}{suffix}"),
            }),
        "[0-9]{1,5}",
    ];
    let headline = prop_oneof![Just(String::new()), "[a-zA-Z !.-]{0,40}", any::<String>()];
    (kind, until, day, time, any::<bool>(), headline).prop_map(
        |(kind, until, day, time, day_first, headline)| {
            let when = if day_first {
                format!("{day} {time}")
            } else {
                format!("{time} {day}")
            };
            format!("{kind} {until} {when} {headline}")
        },
    )
}

/// The promises of an accepted command.
fn check(
    result: &Result<StaffCommand, CommandError>,
    received_at: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(
            command @ StaffCommand::Post {
                kind,
                ends_at,
                headline,
                language,
            },
        ) => {
            prop_assert!(*kind != StatusKind::Custom);
            if let Some(ends_at) = ends_at {
                prop_assert!(
                    *ends_at > received_at,
                    "{ends_at} is not after {received_at}"
                );
                prop_assert!(*kind != StatusKind::Restored);
            }
            if let Some(headline) = headline {
                prop_assert!(!headline.is_empty());
                prop_assert!(headline.chars().count() <= MAX_HEADLINE_CHARS);
                prop_assert!(!headline.chars().any(char::is_control), "{headline:?}");
                prop_assert_eq!(headline.trim(), headline.as_str());
            }
            // The headline goes to the status change in the command's language, and the
            // request it makes is one the API would take.
            let request = command.status_request();
            prop_assert!(request.is_some());
            if let Some(request) = request {
                let (en, cy) = match language {
                    Language::English => (headline, &None),
                    Language::Welsh => (&None, headline),
                };
                prop_assert_eq!(&request.headline, en);
                prop_assert_eq!(&request.headline_cy, cy);
                prop_assert!(request.parse("staff").is_ok(), "{:?}", request);
            }
        }
        Ok(StaffCommand::Confirm { code }) => {
            prop_assert!((4..=12).contains(&code.len()));
            prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        Ok(StaffCommand::Status | StaffCommand::Cancel) | Err(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_read_without_panic(
        text in prop_oneof![any::<String>(), "\\PC{0,1700}", "[0-9a-zA-Z :.!\n]{0,60}"],
        received_at in received_at(),
        zone in zone(),
        pin in proptest::option::of("[0-9]{4,8}"),
    ) {
        let arrival = Arrival { received_at, zone, pin: pin.as_deref() };
        check(&parse(&text, &arrival), received_at)?;
    }

    #[test]
    fn accepted_posts_end_after_arrival_with_a_capped_headline(
        text in command_like(),
        received_at in received_at(),
        zone in zone(),
    ) {
        let arrival = Arrival { received_at, zone, pin: None };
        let result = parse(&text, &arrival);
        check(&result, received_at)?;
        // A kind was named, so the only refusals are about its time.
        prop_assert!(
            matches!(
                result,
                Ok(StaffCommand::Post { .. })
                    | Err(CommandError::BadTime(_) | CommandError::PastTime | CommandError::TimeAfterRestored)
            ),
            "{text:?}: {result:?}"
        );
    }

    #[test]
    fn case_and_spacing_do_not_change_the_kind_or_time(
        text in "(closed|phones down|systems down|ar gau)( (until|till|back) (tomorrow )?([1-9]|1[0-2])(\\.30)?(am|pm)?)?",
        received_at in received_at(),
    ) {
        let arrival = Arrival { received_at, zone: PracticeZone::UK, pin: None };
        let loud = format!("  {}!! ", text.to_uppercase().replace(' ', "   "));
        prop_assert_eq!(parse(&text, &arrival), parse(&loud, &arrival));
    }

    #[test]
    fn without_the_pin_nothing_but_a_confirmation_is_accepted(
        text in prop_oneof![any::<String>(), "(pin )?[0-9]{4,8} (closed|status|cancel|yes 123456)"],
        received_at in received_at(),
    ) {
        let arrival = Arrival { received_at, zone: PracticeZone::UK, pin: Some("48213579") };
        match parse(&text, &arrival) {
            Ok(StaffCommand::Confirm { .. }) | Err(_) => {}
            Ok(other) => prop_assert!(text.contains("48213579"), "{text:?}: {other:?}"),
        }
    }
}
