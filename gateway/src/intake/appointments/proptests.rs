//! Property tests of appointment CSV reading and row checks: any bytes read without a
//! panic, every kept value bounded, rows numbered as a spreadsheet shows them.

use proptest::prelude::*;

use super::csv::read;
use super::parse_row;
use crate::config::DEFAULT_MAX_ROW_BYTES;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_read_and_check_without_panic(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        header in prop_oneof![
            Just(&b"nhs_number,starts_at,external_ref,clinician,location,mode,status\n"[..]),
            Just(&b"Reference;NHS No;Start\r\n"[..]),
            Just(&b""[..]),
        ],
    ) {
        let mut bytes = header.to_vec();
        bytes.extend(&body);
        if let Ok(rows) = read(&bytes) {
            let mut last = 1;
            for row in &rows {
                let line = row.line.expect("a file row has its number");
                prop_assert!(line >= last);
                last = line;
                if let Ok(input) = &row.input {
                    let kept = input.nhs_number.len() + input.starts_at.len() + input.external_ref.len();
                    prop_assert!(kept <= DEFAULT_MAX_ROW_BYTES);
                    let _ = parse_row(input, chrono_tz::Europe::London);
                }
            }
        }
    }

    #[test]
    fn rows_keep_their_spreadsheet_numbers(
        rows in proptest::collection::vec(
            ("[0-9]{10}", "[a-z ]{0,6}", 0usize..3, any::<bool>(), any::<bool>()),
            1..60,
        ),
    ) {
        let mut text = String::from("external_ref,nhs_number,starts_at,location\n");
        let mut expected = Vec::new();
        let mut row = 1u64;
        for (i, (nhs, place, blanks, two_lines, crlf)) in rows.iter().enumerate() {
            let end = if *crlf { "\r\n" } else { "\n" };
            for _ in 0..*blanks {
                text.push_str(end);
                row += 1;
            }
            row += 1;
            let location = if *two_lines { format!("\"{place}\n{place}\"") } else { place.clone() };
            text.push_str(&format!("R-{i},{nhs},2031-01-01 09:00,{location}{end}"));
            expected.push((Some(row), format!("R-{i}")));
        }
        let read = read(text.as_bytes()).expect("a valid file");
        let got: Vec<(Option<u64>, String)> = read
            .into_iter()
            .map(|r| (r.line, r.input.map(|i| i.external_ref).unwrap_or_default()))
            .collect();
        prop_assert_eq!(got, expected);
    }
}
