//! Property tests of the CSV reader and the contact-row checks: any bytes read without a
//! panic, in bounded memory, and rows keep the numbers a spreadsheet shows.

use proptest::prelude::*;

use super::mapping::Layout;
use super::phones::PhoneBook;
use super::reader::{Record, Rows};
use super::rows::parse_row;
use crate::config::ImportConfig;

/// A record as read: its row, its fields and whether it was too long to keep.
type Kept = (u64, Vec<Vec<u8>>, bool);

/// Every record of `bytes`, or `None` if the header is refused.
fn records(bytes: &[u8], max_row_bytes: usize) -> Option<Vec<Kept>> {
    let mut rows = Rows::open(bytes).ok()?.with_max_row_bytes(max_row_bytes);
    let mut record = Record::default();
    let mut out = Vec::new();
    while let Ok(Some(row)) = rows.next_into(&mut record) {
        let fields = record.iter().map(<[u8]>::to_vec).collect();
        out.push((row, fields, record.oversized()));
    }
    Some(out)
}

/// A cell: plain text, or quoted text holding separators, quotes and line breaks.
fn cell() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,8}".prop_map(|s| (s.clone(), s)),
        "[a-z,;\"\n]{0,8}".prop_map(|s| (format!("\"{}\"", s.replace('"', "\"\"")), s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_read_without_panic_in_bounded_memory(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        limit in 1usize..256,
    ) {
        if let Some(records) = records(&bytes, limit) {
            let mut last = 1;
            for (row, fields, oversized) in &records {
                prop_assert!(*row >= last, "rows go forward");
                last = *row;
                let size: usize = fields.iter().map(Vec::len).sum();
                prop_assert!(size <= limit, "kept {size} bytes over a {limit} limit");
                prop_assert!(!oversized || fields.is_empty());
            }
        }
        // The contact checks take whatever the reader gives.
        let config = ImportConfig::default();
        if let Ok(mut rows) = Rows::open(&bytes[..]) {
            if let Ok(layout) = Layout::from_headers(&config, rows.headers().to_vec()) {
                let mut phones = PhoneBook::default();
                let mut record = Record::default();
                while let Ok(Some(row)) = rows.next_into(&mut record) {
                    let _ = parse_row(&config, &layout, &mut phones, row, &record);
                }
            }
        }
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them(
        lines in proptest::collection::vec(
            (proptest::collection::vec(cell(), 1..4), 0usize..3, any::<bool>()),
            1..40,
        ),
    ) {
        let mut text = String::from("NHS Number,Mobile,Notes\n");
        let mut expected = Vec::new();
        let mut row = 1u64;
        for (cells, blanks, crlf) in &lines {
            for _ in 0..*blanks {
                text.push_str(if *crlf { "\r\n" } else { "\n" });
                row += 1;
            }
            let written: Vec<&str> = cells.iter().map(|(w, _)| w.as_str()).collect();
            let meant: Vec<Vec<u8>> = cells.iter().map(|(_, m)| m.as_bytes().to_vec()).collect();
            // A row whose only cell is empty is a blank line: a spreadsheet row, no record.
            row += 1;
            text.push_str(&written.join(","));
            text.push_str(if *crlf { "\r\n" } else { "\n" });
            if !(meant.len() == 1 && written[0].is_empty()) {
                expected.push((row, meant));
            }
        }
        let read = records(text.as_bytes(), 1 << 16).expect("header");
        let read: Vec<(u64, Vec<Vec<u8>>)> = read.into_iter().map(|(r, f, _)| (r, f)).collect();
        prop_assert_eq!(read, expected);
    }
}
