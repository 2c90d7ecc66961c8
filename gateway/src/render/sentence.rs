//! The `sentence` filter: ends a value typed by a person as a sentence, so the template's
//! next sentence does not run into it.
//!
//! Headlines come from the console, the API, staff text messages and supplier feeds, and
//! most arrive without a full stop ("Our clinical systems are down today"); a template that
//! prints `{{ status.headline }} We may not be able to book...` would read as one sentence.

/// Marks that already end a sentence, in English and Welsh alike.
const TERMINAL: &[char] = &['.', '!', '?', '…'];

/// Marks that may close a quotation or an aside after the sentence's own mark
/// (`"...today."`, `(back at 2pm!)`).
const CLOSING: &[char] = &['"', '\'', '”', '’', '»', ')', ']'];

/// Marks that leave a sentence unfinished when they are the last thing typed
/// (`Closed today,`): they become the full stop rather than sit before it.
const TRAILING_PAUSE: &[char] = &[',', ';', ':'];

/// `text` without surrounding whitespace, ending with terminal punctuation: a full stop is
/// added unless it ends with `.`, `!`, `?` or `…` (perhaps followed by closing quotes or
/// brackets), and a trailing comma, semicolon or colon becomes the full stop. Empty (or
/// blank) text stays empty.
pub fn end_sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let before_closing = text.trim_end_matches(CLOSING);
    if before_closing.ends_with(TERMINAL) {
        return text.to_string();
    }
    if text.ends_with(TRAILING_PAUSE) {
        let unfinished =
            text.trim_end_matches(|c: char| TRAILING_PAUSE.contains(&c) || c.is_whitespace());
        if unfinished.is_empty() {
            // Nothing but punctuation: not a sentence to end.
            return text.to_string();
        }
        return format!("{unfinished}.");
    }
    format!("{text}.")
}

/// The Tera filter: text is ended as a sentence, an absent value (`null` or undefined)
/// prints as nothing, so `{{ status.details | sentence }}` is safe when details are empty.
pub(crate) fn filter(
    value: tera::Value,
    _: tera::Kwargs,
    _: &tera::State,
) -> tera::TeraResult<String> {
    if value.is_none() || value.is_undefined() {
        return Ok(String::new());
    }
    match value.as_str() {
        Some(text) => Ok(end_sentence(text)),
        None => Err(tera::Error::message(format!(
            "sentence ends text, not {}",
            value.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ends_what_was_typed_as_a_sentence() {
        let table = [
            ("Closed today", "Closed today."),
            ("Closed!", "Closed!"),
            ("Closed.", "Closed."),
            ("Closed?", "Closed?"),
            ("Closed…", "Closed…"),
            ("\"Closed.\"", "\"Closed.\""),
            ("“Closed today!”", "“Closed today!”"),
            ("(back at 2pm.)", "(back at 2pm.)"),
            ("\"Closed\"", "\"Closed\"."),
            ("Closed (flood)", "Closed (flood)."),
            ("  Closed today  ", "Closed today."),
            ("Closed today.  \n", "Closed today."),
            ("Closed today,", "Closed today."),
            ("Closed today :", "Closed today."),
            ("", ""),
            ("   ", ""),
            (",", ","),
            ("Closed today,;", "Closed today."),
            (
                "Mae'r feddygfa ar gau heddiw",
                "Mae'r feddygfa ar gau heddiw.",
            ),
            (
                "Mae'r feddygfa ar gau heddiw.",
                "Mae'r feddygfa ar gau heddiw.",
            ),
            ("Dŵr yn y tŷ", "Dŵr yn y tŷ."),
            ("Ar gau tan ddydd Llun’", "Ar gau tan ddydd Llun’."),
            ("Ar agor eto!", "Ar agor eto!"),
        ];
        for (typed, sent) in table {
            assert_eq!(end_sentence(typed), sent, "{typed:?}");
        }
    }

    #[test]
    fn filter_prints_nothing_for_absent_values_and_refuses_non_text() {
        let mut tera = tera::Tera::new();
        tera.register_filter("sentence", filter);
        tera.add_raw_template("t", "[{{ v | sentence }}]").unwrap();
        let render = |v: serde_json::Value| {
            let mut ctx = tera::Context::new();
            ctx.insert("v", &v);
            tera.render("t", &ctx)
        };
        assert_eq!(render(serde_json::json!("Closed")).unwrap(), "[Closed.]");
        assert_eq!(render(serde_json::Value::Null).unwrap(), "[]");
        assert!(render(serde_json::json!([1])).is_err());
        tera.add_raw_template("u", "[{{ missing | sentence }}]")
            .unwrap();
        assert_eq!(tera.render("u", &tera::Context::new()).unwrap(), "[]");
    }

    proptest! {
        #[test]
        fn ends_any_text_once(text in "\\PC{0,40}") {
            let once = end_sentence(&text);
            prop_assert_eq!(&end_sentence(&once), &once);
            if !once.is_empty() {
                let last = once.trim_end_matches(CLOSING);
                prop_assert!(
                    last.ends_with(TERMINAL) || once.ends_with(TRAILING_PAUSE),
                    "{:?} -> {:?}", text, once
                );
            }
        }
    }
}
