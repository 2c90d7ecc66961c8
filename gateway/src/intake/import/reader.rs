//! Reading a CSV file as a spreadsheet shows it: UTF-8 with or without a byte-order mark,
//! comma, semicolon or tab separated (told from the header line), quoted fields that hold
//! separators or line breaks, CRLF or LF, and rows numbered with the header as row 1.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use csv_core::ReadRecordResult;

use crate::config::DEFAULT_MAX_ROW_BYTES;

/// Longest header line read before giving up on the file as not a CSV.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Why a file cannot be read as a CSV at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a usable CSV file (no header, unreadable header).
    #[error("{0}")]
    Format(String),
    /// Reading failed (the upload broke off, the disk failed).
    #[error("reading the file failed: {0}")]
    Io(#[from] io::Error),
}

/// One record's fields, unquoted, as bytes.
#[derive(Debug, Clone, Default)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// The record was longer than the reader keeps: its fields were dropped.
    oversized: bool,
}

impl Record {
    /// A record of these fields.
    pub fn from_fields<T: AsRef<[u8]>>(fields: &[T]) -> Self {
        let mut record = Self::default();
        for f in fields {
            record.data.extend_from_slice(f.as_ref());
            record.ends.push(record.data.len());
        }
        record
    }

    /// How many fields it has.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it has no fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    /// Every field in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Whether the record was longer than the reader's limit. Its fields were dropped (it
    /// reads as empty) so that one runaway row, such as a quote left open, cannot fill memory.
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    fn breaks(&self) -> u64 {
        self.data.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// Records of a CSV file, each with the row a spreadsheet shows it on.
///
/// Rows are counted from the bytes the parser consumes: the line a record ends on, less the
/// line breaks inside quoted fields so far (a spreadsheet shows those inside one row). Blank
/// lines, which the parser skips, still count, as a spreadsheet shows them as empty rows.
pub struct Rows<R: Read> {
    input: io::Chain<Cursor<Vec<u8>>, BufReader<R>>,
    parser: csv_core::Reader,
    headers: Vec<String>,
    /// Line feeds consumed so far, and whether the last byte consumed was one.
    line_feeds: u64,
    ends_with_line_feed: bool,
    /// Line breaks inside quoted fields so far.
    inner_breaks: u64,
    /// The separator found in the header line.
    pub delimiter: u8,
    /// Longest record kept; longer ones come back [`Record::oversized`] and empty.
    max_row_bytes: usize,
}

impl<R: Read> Rows<R> {
    /// Reads the header line, telling the separator from it.
    pub fn open(input: R) -> Result<Self, ReadError> {
        let mut input = BufReader::with_capacity(256 * 1024, input);
        let mut first = header_line(&mut input)?;
        if first.starts_with(b"\xEF\xBB\xBF") {
            first.drain(..3);
        }
        if first.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ReadError::Format(
                "the file is empty: the first row must name the columns".into(),
            ));
        }
        let delimiter = delimiter_of(&first);
        let parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        let mut rows = Self {
            input: Cursor::new(first).chain(input),
            parser,
            headers: Vec::new(),
            line_feeds: 0,
            ends_with_line_feed: false,
            inner_breaks: 0,
            delimiter,
            max_row_bytes: MAX_HEADER_BYTES,
        };
        let mut raw = Record::default();
        rows.next_into(&mut raw)?;
        for field in raw.iter() {
            let text = std::str::from_utf8(field).map_err(|_| {
                ReadError::Format(
                    "the header row is not UTF-8 text: save the file as \"CSV UTF-8\"".into(),
                )
            })?;
            rows.headers.push(text.trim().to_string());
        }
        rows.max_row_bytes = DEFAULT_MAX_ROW_BYTES;
        Ok(rows)
    }

    /// Keeps records of at most `bytes` (unquoted); a longer record is read to its end but
    /// returned empty and [`Record::oversized`], with its row number still right.
    pub fn with_max_row_bytes(mut self, bytes: usize) -> Self {
        self.max_row_bytes = bytes.max(1);
        self
    }

    /// The header row, trimmed.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Reads the next record into `record`, returning its row number, or `None` at the end.
    pub fn next_into(&mut self, record: &mut Record) -> Result<Option<u64>, ReadError> {
        record.data.clear();
        record.ends.clear();
        record.oversized = false;
        let (mut out_len, mut ends_len) = (0, 0);
        loop {
            if out_len > self.max_row_bytes || ends_len > self.max_row_bytes {
                // Too long to keep: count its line breaks for the row numbers, then drop
                // what was read and go on to the record's end.
                self.inner_breaks += record.data[..out_len]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64;
                record.oversized = true;
                out_len = 0;
                ends_len = 0;
            }
            if record.data.len() < out_len + 1024 {
                record
                    .data
                    .resize((out_len + 1024).max(record.data.len() * 2), 0);
            }
            if record.ends.len() < ends_len + 16 {
                record
                    .ends
                    .resize((ends_len + 16).max(record.ends.len() * 2), 0);
            }
            let input = self.input.fill_buf()?;
            let (result, n_in, n_out, n_ends) = self.parser.read_record(
                input,
                &mut record.data[out_len..],
                &mut record.ends[ends_len..],
            );
            let consumed = &input[..n_in];
            self.line_feeds += consumed.iter().filter(|&&b| b == b'\n').count() as u64;
            if let Some(&last) = consumed.last() {
                self.ends_with_line_feed = last == b'\n';
            }
            self.input.consume(n_in);
            out_len += n_out;
            ends_len += n_ends;
            match result {
                ReadRecordResult::InputEmpty
                | ReadRecordResult::OutputFull
                | ReadRecordResult::OutputEndsFull => continue,
                ReadRecordResult::Record => {
                    if out_len > self.max_row_bytes || ends_len > self.max_row_bytes {
                        record.oversized = true;
                    }
                    if record.oversized {
                        ends_len = 0;
                        self.inner_breaks += record.data[..out_len]
                            .iter()
                            .filter(|&&b| b == b'\n')
                            .count() as u64;
                        out_len = 0;
                    }
                    record.ends.truncate(ends_len);
                    record.data.truncate(out_len);
                    // The line the record ends on: its own line feed, if this call consumed
                    // it, is not before it. A record ended by the end of the file (nothing
                    // consumed now) has no line feed of its own: a last line feed consumed
                    // earlier sits inside an unclosed quote and is one of its inner breaks.
                    let own_line_feed = n_in > 0 && self.ends_with_line_feed;
                    let line = 1 + self.line_feeds - u64::from(own_line_feed);
                    self.inner_breaks += record.breaks();
                    return Ok(Some(line.saturating_sub(self.inner_breaks)));
                }
                ReadRecordResult::End => {
                    record.data.clear();
                    record.ends.clear();
                    return Ok(None);
                }
            }
        }
    }
}

/// The bytes of the first line (up to a line break outside quotes), including the break.
fn header_line<R: Read>(input: &mut BufReader<R>) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let mut quoted = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(line);
        }
        let mut end = None;
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let take = end.unwrap_or(chunk.len());
        line.extend_from_slice(&chunk[..take]);
        input.consume(take);
        if end.is_some() {
            return Ok(line);
        }
        if line.len() > MAX_HEADER_BYTES {
            return Err(ReadError::Format(
                "the first row is longer than 1 MiB: is this a CSV file?".into(),
            ));
        }
    }
}

/// The separator used most outside quotes in the header line: `;` (Excel in many European
/// locales), tab, or `,` (the default, also on a tie).
fn delimiter_of(line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    match counts {
        [c, s, _] if s > c && s >= counts[2] => b';',
        [c, s, t] if t > c && t > s => b'\t',
        _ => b',',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (Vec<String>, Vec<(u64, Vec<String>)>) {
        let mut rows = Rows::open(bytes).unwrap();
        let headers = rows.headers().to_vec();
        let mut out = Vec::new();
        let mut record = Record::default();
        while let Some(row) = rows.next_into(&mut record).unwrap() {
            let fields = record
                .iter()
                .map(|f| String::from_utf8(f.to_vec()).unwrap())
                .collect();
            out.push((row, fields));
        }
        (headers, out)
    }

    #[test]
    fn bom_crlf_and_semicolons_are_handled() {
        let (headers, rows) = read_all(b"\xEF\xBB\xBFNHS Number;Mobile\r\n1;2\r\n3;4\r\n");
        assert_eq!(headers, ["NHS Number", "Mobile"]);
        assert_eq!(
            rows,
            [
                (2, vec!["1".into(), "2".into()]),
                (3, vec!["3".into(), "4".into()])
            ]
        );
    }

    #[test]
    fn quoted_separators_and_line_breaks_stay_in_their_field_and_row() {
        let (_, rows) = read_all(
            b"nhs,name,notes\n1,\"Smith, Jo\",\"two\r\nlines\"\n2,\"A \"\"quoted\"\" name\",x\n\n3,b,c\n",
        );
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1[1], "Smith, Jo");
        assert_eq!(rows[0].1[2], "two\r\nlines");
        // The row after a two-line field is row 3, as a spreadsheet shows it.
        assert_eq!(
            rows[1],
            (3, vec!["2".into(), "A \"quoted\" name".into(), "x".into()])
        );
        // A blank line is a row of its own in a spreadsheet.
        assert_eq!(rows[2].0, 5);
    }

    #[test]
    fn blank_crlf_lines_count_as_rows() {
        let (_, rows) = read_all(b"nhs\r\n1\r\n\r\n\"2\r\n2\"\r\n3\r\n");
        let numbers: Vec<u64> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [2, 4, 5]);
    }

    #[test]
    fn the_separator_is_told_from_the_header_line() {
        assert_eq!(delimiter_of(b"a,b,c\n"), b',');
        assert_eq!(delimiter_of(b"a;b;c\n"), b';');
        assert_eq!(delimiter_of(b"\"x;y\",b,c\n"), b',');
        assert_eq!(delimiter_of(b"a\tb\tc\n"), b'\t');
        assert_eq!(delimiter_of(b"nhs\n"), b',');
    }

    #[test]
    fn a_header_with_a_quoted_break_and_no_final_newline() {
        let (headers, rows) = read_all(b"\"NHS\nNumber\",Mobile\n1,2");
        assert_eq!(headers, ["NHS\nNumber", "Mobile"]);
        assert_eq!(rows, [(2, vec!["1".into(), "2".into()])]);
    }

    #[test]
    fn a_quote_left_open_to_the_end_keeps_its_row_number() {
        // The file ends inside a quoted field whose last byte is a line break: that break
        // belongs to the field, so the row is still the one after the previous.
        let (_, rows) = read_all(b"nhs,notes\n1,a\n2,\"open\n");
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[1], (3, vec!["2".into(), "open\n".into()]));
    }

    #[test]
    fn empty_and_non_utf8_headers_are_refused() {
        assert!(matches!(Rows::open(&b""[..]), Err(ReadError::Format(_))));
        assert!(matches!(
            Rows::open(&b"\xEF\xBB\xBF\r\n"[..]),
            Err(ReadError::Format(_))
        ));
        assert!(matches!(
            Rows::open(&b"NHS \xff\n1\n"[..]),
            Err(ReadError::Format(_))
        ));
    }
}
