//! What an SMS text will cost: its encoding, its length in units and its segment count.
//!
//! A text that uses only the GSM 03.38 default alphabet (and its extension table) is sent
//! as GSM-7: 160 septets in a single segment, 153 per segment once concatenated. One
//! character outside that alphabet switches the whole message to UCS-2 (in practice
//! UTF-16): 70 code units in a single segment, 67 per segment once concatenated.
//!
//! Segments are counted the way carriers and handsets split a message: units are packed
//! into segments in order and a two-unit item (a GSM-7 extension character's escape pair,
//! or a UTF-16 surrogate pair) is never split across a segment boundary, so it may leave
//! one unit unused at the end of a segment.
//!
//! Pure: no I/O, no allocation beyond the result.

use serde::Serialize;

/// How an SMS is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet, with its extension table.
    Gsm7,
    /// UCS-2 (UTF-16 in practice): any character, at fewer per segment.
    Ucs2,
}

impl Encoding {
    /// The name used in JSON and logs: `"gsm7"` or `"ucs2"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units that fit in a message sent as one segment: 160 for GSM-7, 70 for UCS-2.
    pub const fn single_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units per segment once a message is concatenated (the header takes the rest):
    /// 153 for GSM-7, 67 for UCS-2.
    pub const fn concatenated_segment_units(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// What one SMS text costs and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SmsCost {
    /// The encoding the text will be sent in.
    pub encoding: Encoding,
    /// Characters as the user sees them (Unicode scalar values).
    pub characters: usize,
    /// Units counted against the segment limits: GSM-7 septets (extension characters
    /// count 2), or UCS-2 code units (characters outside the BMP, e.g. emoji, count 2).
    pub units: usize,
    /// Segments the message is sent as (see the module header for how they are packed).
    /// An empty text is 1 segment: a message is still sent.
    pub segments: usize,
    /// Characters that force UCS-2, in order of first appearance, each once, with the
    /// GSM-7 replacement when there is one. Empty exactly when the encoding is GSM-7.
    pub ucs2_characters: Vec<Ucs2Character>,
}

/// A character outside the GSM-7 alphabet, and what to write instead if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ucs2Character {
    /// The character (serialised as a one-character string).
    pub character: char,
    /// GSM-7 text that can stand in for it (`""` means it can simply be removed), or
    /// `None` when there is no faithful replacement (e.g. Welsh `ŵ`, emoji).
    pub replacement: Option<&'static str>,
}

/// Stands in for ESC (0x1B) in [`BASIC`]: it introduces the extension table and is not
/// itself a character, so U+001B in a text is not GSM-7.
const ESC: char = '\u{1B}';

/// The GSM 03.38 default alphabet, indexed by septet value (3GPP TS 23.038, 6.2.1).
#[rustfmt::skip]
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ESC, 'Æ', 'æ', 'ß', 'É',
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table (3GPP TS 23.038, 6.2.1.1): each is sent as ESC + septet, so 2 units.
const EXTENSION: [char; 10] = ['\x0C', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Septets a character takes in GSM-7, or `None` if it is not in the alphabet.
fn gsm7_septets(c: char) -> Option<usize> {
    if c == ESC {
        None
    } else if BASIC.contains(&c) {
        Some(1)
    } else if EXTENSION.contains(&c) {
        Some(2)
    } else {
        None
    }
}

/// GSM-7 text that can stand in for a character outside the alphabet.
///
/// Punctuation and spacing only: letters keep their accents (Welsh `ŵ` is not `w`).
fn replacement(c: char) -> Option<&'static str> {
    Some(match c {
        // Single quotes, primes, backtick, acute accent, single guillemets.
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{2035}' | '`'
        | '\u{B4}' | '\u{2039}' | '\u{203A}' => "'",
        // Double quotes, double primes, guillemets.
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{2036}' | '\u{AB}'
        | '\u{BB}' => "\"",
        // Hyphens, dashes, minus sign, bullet.
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{2022}' => "-",
        '\u{2026}' => "...",
        // Tab, non-breaking and other Unicode spaces.
        '\t' | '\u{A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => " ",
        // Invisible: zero-width space, byte order mark, soft hyphen.
        '\u{200B}' | '\u{FEFF}' | '\u{AD}' => "",
        // Line and paragraph separators.
        '\u{2028}' | '\u{2029}' => "\n",
        // Look-alikes of the Greek letters in the alphabet.
        '\u{2126}' => "Ω",
        '\u{2206}' => "Δ",
        _ => return None,
    })
}

/// Units and segments for items of the given widths (1 or 2 units each).
fn pack(widths: impl Iterator<Item = usize> + Clone, encoding: Encoding) -> (usize, usize) {
    let units: usize = widths.clone().sum();
    if units <= encoding.single_segment_units() {
        return (units, 1);
    }
    let per_segment = encoding.concatenated_segment_units();
    let mut segments = 1;
    let mut used = 0;
    for width in widths {
        if used + width > per_segment {
            segments += 1;
            used = 0;
        }
        used += width;
    }
    (units, segments)
}

/// Measures a text: its encoding, characters, units, segments and what forces UCS-2.
pub fn cost(text: &str) -> SmsCost {
    let mut characters = 0;
    let mut ucs2_characters: Vec<Ucs2Character> = Vec::new();
    for c in text.chars() {
        characters += 1;
        if gsm7_septets(c).is_none() && !ucs2_characters.iter().any(|u| u.character == c) {
            ucs2_characters.push(Ucs2Character {
                character: c,
                replacement: replacement(c),
            });
        }
    }
    let encoding = if ucs2_characters.is_empty() {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    };
    let (units, segments) = match encoding {
        Encoding::Gsm7 => pack(text.chars().map(|c| gsm7_septets(c).unwrap_or(1)), encoding),
        Encoding::Ucs2 => pack(text.chars().map(char::len_utf16), encoding),
    };
    SmsCost {
        encoding,
        characters,
        units,
        segments,
        ucs2_characters,
    }
}

/// The text with every character that has a GSM-7 replacement replaced (curly quotes,
/// dashes, ellipsis, Unicode spaces and the like), leaving other characters alone.
pub fn to_gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match gsm7_septets(c).is_none().then(|| replacement(c)).flatten() {
            Some(instead) => out.push_str(instead),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Gsm7, Ucs2};

    fn a(n: usize) -> String {
        "a".repeat(n)
    }

    /// (label, text, encoding, characters, units, segments)
    fn cases() -> Vec<(&'static str, String, Encoding, usize, usize, usize)> {
        let all_basic: String = BASIC.iter().filter(|&&c| c != ESC).collect();
        vec![
            ("empty", String::new(), Gsm7, 0, 0, 1),
            ("plain word", "Hello".into(), Gsm7, 5, 5, 1),
            (
                "plain sentence",
                "The surgery is closed today. Call 111.".into(),
                Gsm7,
                38,
                38,
                1,
            ),
            ("gsm 160", a(160), Gsm7, 160, 160, 1),
            ("gsm 161", a(161), Gsm7, 161, 161, 2),
            ("gsm 306", a(306), Gsm7, 306, 306, 2),
            ("gsm 307", a(307), Gsm7, 307, 307, 3),
            ("gsm 459", a(459), Gsm7, 459, 459, 3),
            ("gsm 460", a(460), Gsm7, 460, 460, 4),
            ("ucs2 70 of ŵ", "ŵ".repeat(70), Ucs2, 70, 70, 1),
            ("ucs2 70", format!("ŵ{}", a(69)), Ucs2, 70, 70, 1),
            ("ucs2 71", format!("ŵ{}", a(70)), Ucs2, 71, 71, 2),
            ("ucs2 134", format!("ŵ{}", a(133)), Ucs2, 134, 134, 2),
            ("ucs2 135", format!("ŵ{}", a(134)), Ucs2, 135, 135, 3),
            ("ucs2 201", format!("ŵ{}", a(200)), Ucs2, 201, 201, 3),
            ("ucs2 202", format!("ŵ{}", a(201)), Ucs2, 202, 202, 4),
            ("euro", "€".into(), Gsm7, 1, 2, 1),
            ("price in euro", "€5".into(), Gsm7, 2, 3, 1),
            (
                "every extension character",
                "[]{}~^\\|€\x0C".into(),
                Gsm7,
                10,
                20,
                1,
            ),
            ("brackets in text", "Ring [today]".into(), Gsm7, 12, 14, 1),
            (
                "extension fills 160",
                format!("{}€", a(158)),
                Gsm7,
                159,
                160,
                1,
            ),
            (
                "extension makes 161",
                format!("{}€", a(159)),
                Gsm7,
                160,
                161,
                2,
            ),
            (
                "extension not split at 153",
                format!("{}€{}", a(152), a(152)),
                Gsm7,
                305,
                306,
                3,
            ),
            (
                "extension starts segment 2",
                format!("{}€{}", a(153), a(151)),
                Gsm7,
                305,
                306,
                2,
            ),
            (
                "pipe not split at 153",
                format!("{}|{}", a(152), a(10)),
                Gsm7,
                163,
                164,
                2,
            ),
            ("pound and café", "£5.00 café".into(), Gsm7, 10, 10, 1),
            (
                "gsm beyond ascii",
                "Ø Δ ß ¿ É Ñ ¡ § ¤ ¥".into(),
                Gsm7,
                19,
                19,
                1,
            ),
            ("greek capitals", "ΔΦΓΛΩΠΨΣΘΞ".into(), Gsm7, 10, 10, 1),
            (
                "gsm accented letters",
                "ä ö ü ñ à è é ù ì ò Ç".into(),
                Gsm7,
                21,
                21,
                1,
            ),
            ("whole basic table", all_basic, Gsm7, 127, 127, 1),
            ("welsh dŵr", "dŵr".into(), Ucs2, 3, 3, 1),
            ("welsh ŷ", "tŷ".into(), Ucs2, 2, 2, 1),
            ("welsh capitals", "Ŵ Ŷ".into(), Ucs2, 3, 3, 1),
            (
                "circumflex and diaeresis",
                "â ê î ô û ï ë".into(),
                Ucs2,
                13,
                13,
                1,
            ),
            ("small c cedilla", "ç".into(), Ucs2, 1, 1, 1),
            ("curly quotes", "‘quoted’ “text”".into(), Ucs2, 15, 15, 1),
            ("dashes", "9–5 — closed".into(), Ucs2, 12, 12, 1),
            ("ellipsis", "Wait…".into(), Ucs2, 5, 5, 1),
            ("non-breaking space", "10\u{A0}am".into(), Ucs2, 5, 5, 1),
            ("one emoji", "😀".into(), Ucs2, 1, 2, 1),
            ("35 emoji", "😀".repeat(35), Ucs2, 35, 70, 1),
            ("36 emoji", "😀".repeat(36), Ucs2, 36, 72, 2),
            (
                "emoji and text",
                "Thanks 😀 see you".into(),
                Ucs2,
                16,
                17,
                1,
            ),
            ("emoji makes 71", format!("{}😀", a(69)), Ucs2, 70, 71, 2),
            (
                "surrogate pair not split at 67",
                format!("{}😀{}", "ŵ".repeat(66), "ŵ".repeat(66)),
                Ucs2,
                133,
                134,
                3,
            ),
            (
                "surrogate pair starts segment 2",
                format!("{}😀{}", "ŵ".repeat(67), "ŵ".repeat(65)),
                Ucs2,
                133,
                134,
                2,
            ),
            ("newline", "Line one\nLine two".into(), Gsm7, 17, 17, 1),
            ("carriage return", "a\r\nb".into(), Gsm7, 4, 4, 1),
            ("tab", "a\tb".into(), Ucs2, 3, 3, 1),
            ("backtick", "`".into(), Ucs2, 1, 1, 1),
            ("escape is not a character", "\u{1B}".into(), Ucs2, 1, 1, 1),
            ("greek small letter", "α".into(), Ucs2, 1, 1, 1),
            (
                "extension in ucs2 counts 1",
                format!("ŵ€{}", a(68)),
                Ucs2,
                70,
                70,
                1,
            ),
        ]
    }

    #[test]
    fn table() {
        let cases = cases();
        assert!(cases.len() >= 35);
        for (label, text, encoding, characters, units, segments) in cases {
            let got = cost(&text);
            assert_eq!(
                (got.encoding, got.characters, got.units, got.segments),
                (encoding, characters, units, segments),
                "{label}"
            );
            assert_eq!(
                got.encoding == Gsm7,
                got.ucs2_characters.is_empty(),
                "{label}"
            );
        }
    }

    #[test]
    fn alphabet_tables() {
        assert_eq!(BASIC[0x1B], ESC);
        let basic: Vec<char> = BASIC.iter().copied().filter(|&c| c != ESC).collect();
        assert_eq!(basic.len(), 127);
        for (i, c) in basic.iter().enumerate() {
            assert!(!basic[..i].contains(c), "{c:?} twice in the basic table");
            assert!(!EXTENSION.contains(c), "{c:?} in both tables");
            assert_eq!(gsm7_septets(*c), Some(1), "{c:?}");
        }
        for c in EXTENSION {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        // Spot-check positions against 3GPP TS 23.038.
        assert_eq!(BASIC[0x00], '@');
        assert_eq!(BASIC[0x09], 'Ç');
        assert_eq!(BASIC[0x10], 'Δ');
        assert_eq!(BASIC[0x24], '¤');
        assert_eq!(BASIC[0x40], '¡');
        assert_eq!(BASIC[0x5F], '§');
        assert_eq!(BASIC[0x60], '¿');
        assert_eq!(BASIC[0x7F], 'à');
    }

    #[test]
    fn printable_ascii() {
        for c in ' '..='~' {
            let expected = match c {
                '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' => Some(2),
                '`' => None,
                _ => Some(1),
            };
            assert_eq!(gsm7_septets(c), expected, "{c:?}");
        }
    }

    #[test]
    fn replacements_are_gsm7_and_only_for_non_gsm7() {
        for c in ('\0'..='\u{FFFF}').chain(['😀']) {
            if let Some(instead) = replacement(c) {
                assert_eq!(gsm7_septets(c), None, "{c:?} is GSM-7 already");
                assert_eq!(cost(instead).encoding, Gsm7, "replacement for {c:?}");
            }
        }
    }

    #[test]
    fn lists_ucs2_characters_once_in_order() {
        let got = cost("It’s – fine… isn’t it? 😀 dŵr – ŵ");
        assert_eq!(
            got.ucs2_characters,
            vec![
                Ucs2Character {
                    character: '’',
                    replacement: Some("'")
                },
                Ucs2Character {
                    character: '–',
                    replacement: Some("-")
                },
                Ucs2Character {
                    character: '…',
                    replacement: Some("...")
                },
                Ucs2Character {
                    character: '😀',
                    replacement: None
                },
                Ucs2Character {
                    character: 'ŵ',
                    replacement: None
                },
            ]
        );
        assert!(cost("Plain text € [ok]").ucs2_characters.is_empty());
    }

    #[test]
    fn to_gsm7_replaces_punctuation() {
        let fixed = to_gsm7("It’s – fine…");
        assert_eq!(fixed, "It's - fine...");
        let got = cost(&fixed);
        assert_eq!((got.encoding, got.units, got.segments), (Gsm7, 14, 1));

        assert_eq!(
            to_gsm7("“Quoted” ‘single’ „low‟"),
            "\"Quoted\" 'single' \"low\""
        );
        assert_eq!(
            to_gsm7("a\u{A0}b\u{2002}c\u{2009}d\u{202F}e\tf"),
            "a b c d e f"
        );
        assert_eq!(to_gsm7("9—5 −3 • item"), "9-5 -3 - item");
        assert_eq!(to_gsm7("zero\u{200B}width"), "zerowidth");
        assert_eq!(to_gsm7(""), "");
    }

    #[test]
    fn to_gsm7_leaves_other_characters_alone() {
        let text = "dŵr 😀 £5 € [é] Ø\r\n";
        assert_eq!(to_gsm7(text), text);
        assert_eq!(to_gsm7("dŵr — “hi”"), "dŵr - \"hi\"");
    }

    #[test]
    fn welsh_stays_ucs2() {
        let text = "Mae’r feddygfa ar gau heddiw. Ffoniwch 111 os yw’n argyfwng, neu 999. \
                    Peidiwch ag yfed y dŵr.";
        let before = cost(text);
        assert_eq!(before.encoding, Ucs2);
        assert_eq!(
            before.ucs2_characters,
            vec![
                Ucs2Character {
                    character: '’',
                    replacement: Some("'")
                },
                Ucs2Character {
                    character: 'ŵ',
                    replacement: None
                },
            ]
        );

        let fixed = to_gsm7(text);
        assert_eq!(
            fixed,
            "Mae'r feddygfa ar gau heddiw. Ffoniwch 111 os yw'n argyfwng, neu 999. \
             Peidiwch ag yfed y dŵr."
        );
        let after = cost(&fixed);
        assert_eq!(after.encoding, Ucs2);
        assert_eq!(
            after.ucs2_characters,
            vec![Ucs2Character {
                character: 'ŵ',
                replacement: None
            }]
        );
        assert_eq!(after.characters, before.characters);

        // Without the ŵ, the apostrophe fix alone brings it back to GSM-7.
        let plain =
            to_gsm7("Mae’r feddygfa ar gau heddiw. Ffoniwch 111 os yw’n argyfwng, neu 999.");
        assert_eq!(cost(&plain).encoding, Gsm7);
    }

    #[test]
    fn encoding_names_and_limits() {
        assert_eq!(Gsm7.as_str(), "gsm7");
        assert_eq!(Ucs2.as_str(), "ucs2");
        assert_eq!(
            (
                Gsm7.single_segment_units(),
                Gsm7.concatenated_segment_units()
            ),
            (160, 153)
        );
        assert_eq!(
            (
                Ucs2.single_segment_units(),
                Ucs2.concatenated_segment_units()
            ),
            (70, 67)
        );
    }

    #[test]
    fn serialises_for_the_api() {
        let json = serde_json::to_value(cost("dŵr’ 😀")).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "encoding": "ucs2",
                "characters": 6,
                "units": 7,
                "segments": 1,
                "ucs2_characters": [
                    { "character": "ŵ", "replacement": null },
                    { "character": "’", "replacement": "'" },
                    { "character": "😀", "replacement": null },
                ],
            })
        );
        let json = serde_json::to_value(cost("€")).expect("serialises");
        assert_eq!(json["encoding"], "gsm7");
        assert_eq!(json["units"], 2);
    }
}
