//! Reading an import file as it arrives, chunk by chunk: lines bounded in length, UTF-8,
//! a CSV header naming exactly the kind's columns (or JSON objects of string members), each
//! row handed on with its line number. What makes the whole file unreadable is an
//! [`Unreadable`] naming the line; what is wrong with one row is that row's problem, found
//! by the kind's check.

use super::{Column, Row};

/// The longest line taken, in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The largest file taken, in bytes.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// A file that cannot be read as the kind's rows: refused whole, at `line`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Unreadable {
    /// The line (1 is the first).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// JSON Lines.
    JsonLines,
}

/// An import file being read.
pub struct Reader {
    format: Format,
    columns: &'static [Column],
    /// The CSV header's columns, once read.
    header: Option<Vec<String>>,
    /// The bytes of the line not yet ended.
    pending: Vec<u8>,
    line: u64,
    total: u64,
}

impl Reader {
    /// A reader of `format` for a kind with `columns`.
    pub fn new(format: Format, columns: &'static [Column]) -> Self {
        Self { format, columns, header: None, pending: Vec::new(), line: 0, total: 0 }
    }

    /// Takes the next bytes of the file; returns the rows they complete, each with its line.
    ///
    /// # Errors
    /// [`Unreadable`]: a line too long or not UTF-8, a wrong header, a line that is not a
    /// JSON object of strings, a file too large.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(u64, Row)>, Unreadable> {
        self.total += bytes.len() as u64;
        if self.total > MAX_FILE_BYTES {
            return Err(self.unreadable(self.line + 1, format!("the file is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut rows = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            self.check_length()?;
            let line = std::mem::take(&mut self.pending);
            self.line += 1;
            if let Some(row) = self.row(&line)? {
                rows.push((self.line, row));
            }
        }
        self.pending.extend_from_slice(rest);
        self.check_length()?;
        Ok(rows)
    }

    /// The end of the file: the last line, if it had no newline.
    ///
    /// # Errors
    /// As [`Reader::feed`]; a CSV without a header.
    pub fn finish(&mut self) -> Result<Vec<(u64, Row)>, Unreadable> {
        let mut rows = Vec::new();
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line += 1;
            if let Some(row) = self.row(&line)? {
                rows.push((self.line, row));
            }
        }
        if self.format == Format::Csv && self.header.is_none() {
            return Err(self.unreadable(1, "no header row".into()));
        }
        Ok(rows)
    }

    fn check_length(&self) -> Result<(), Unreadable> {
        if self.pending.len() > MAX_LINE_BYTES {
            return Err(self.unreadable(self.line + 1, format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        Ok(())
    }

    fn unreadable(&self, line: u64, reason: String) -> Unreadable {
        Unreadable { line, reason }
    }

    /// The row of one line; none for a blank line or the header.
    fn row(&mut self, bytes: &[u8]) -> Result<Option<Row>, Unreadable> {
        let line = self.line;
        let mut text = std::str::from_utf8(bytes)
            .map_err(|e| self.unreadable(line, format!("not UTF-8 (byte {} of the line)", e.valid_up_to() + 1)))?;
        text = text.strip_suffix('\r').unwrap_or(text);
        if line == 1 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        match self.format {
            Format::JsonLines => self.json_row(text).map(Some),
            Format::Csv if self.header.is_none() => {
                let header = split_csv(text).map_err(|r| self.unreadable(line, r))?;
                self.check_header(&header)?;
                self.header = Some(header);
                Ok(None)
            }
            Format::Csv => {
                let values = split_csv(text).map_err(|r| self.unreadable(line, r))?;
                let header = self.header.as_ref().map_or(&[][..], Vec::as_slice);
                if values.len() != header.len() {
                    return Err(self.unreadable(line, format!("{} values for {} columns", values.len(), header.len())));
                }
                Ok(Some(header.iter().cloned().zip(values).filter(|(_, v)| !v.is_empty()).collect()))
            }
        }
    }

    fn check_header(&self, header: &[String]) -> Result<(), Unreadable> {
        let known = |n: &str| self.columns.iter().any(|c| c.name == n);
        // A header cell is named only by its place: a file without a header would otherwise
        // have a person's data said back.
        if let Some(i) = header.iter().position(|h| !known(h)) {
            return Err(self.unreadable(1, format!("column {} is not one of this kind's columns", i + 1)));
        }
        if let Some((i, twice)) = header.iter().enumerate().find(|(i, h)| header[..*i].contains(h)) {
            return Err(self.unreadable(1, format!("column {twice:?} given twice (column {})", i + 1)));
        }
        if let Some(missing) = self.columns.iter().find(|c| c.required && !header.iter().any(|h| h == c.name)) {
            return Err(self.unreadable(1, format!("required column {:?} missing", missing.name)));
        }
        Ok(())
    }

    fn json_row(&self, text: &str) -> Result<Row, Unreadable> {
        let line = self.line;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| self.unreadable(line, "not a JSON object".into()))?;
        let serde_json::Value::Object(members) = value else {
            return Err(self.unreadable(line, "not a JSON object".into()));
        };
        let mut row = Row::new();
        for (name, v) in members {
            if !self.columns.iter().any(|c| c.name == name) {
                return Err(self.unreadable(line, "a member that is not one of this kind's columns".into()));
            }
            match v {
                serde_json::Value::String(s) if !s.is_empty() => {
                    row.insert(name, s);
                }
                serde_json::Value::String(_) | serde_json::Value::Null => {}
                _ => return Err(self.unreadable(line, format!("{name}: not a string"))),
            }
        }
        Ok(row)
    }
}

/// The fields of one CSV line (RFC 4180: fields may be quoted, a quote in a quoted field
/// doubled; one record per line).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(std::mem::take(&mut field).trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column { name: "id", required: true, description: "" },
        Column { name: "name", required: false, description: "" },
    ];

    #[test]
    fn csv_lines_split_with_quotes_across_chunks() {
        let mut r = Reader::new(Format::Csv, COLUMNS);
        let mut rows = r.feed(b"\xef\xbb\xbfid,name\r\n1,\"Wang, \"\"Jr\"\"\"\n2,").unwrap();
        rows.extend(r.feed(b"Li\n3,\n").unwrap());
        rows.extend(r.finish().unwrap());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], (2, Row::from([("id".into(), "1".into()), ("name".into(), "Wang, \"Jr\"".into())])));
        assert_eq!(rows[1].1["name"], "Li");
        assert_eq!(rows[2], (4, Row::from([("id".into(), "3".into())])), "an empty value is absent");
    }

    #[test]
    fn a_malformed_file_names_its_line() {
        let wrong = |bytes: &[u8], format: Format| {
            let mut r = Reader::new(format, COLUMNS);
            r.feed(bytes).and_then(|_| r.finish()).unwrap_err()
        };
        assert_eq!(wrong(b"name\n", Format::Csv).reason, "required column \"id\" missing");
        assert_eq!(wrong(b"id,age\n", Format::Csv).reason, "column 2 is not one of this kind's columns");
        assert_eq!(wrong(b"id\n1\n\xff\xfe\n", Format::Csv).line, 3);
        assert_eq!(wrong(b"id,name\n1\n", Format::Csv).reason, "1 values for 2 columns");
        assert_eq!(wrong(b"", Format::Csv).reason, "no header row");
        assert_eq!(wrong(b"{\"id\":\"1\"}\n[1]\n", Format::JsonLines).line, 2);
        assert_eq!(wrong(b"{\"id\":1}\n", Format::JsonLines).reason, "id: not a string");
        let mut r = Reader::new(Format::JsonLines, COLUMNS);
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert_eq!(r.feed(&long).unwrap_err().line, 1, "a long line is refused before it ends");
    }

    proptest::proptest! {
        #[test]
        fn no_bytes_make_the_reader_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for format in [Format::Csv, Format::JsonLines] {
                let mut r = Reader::new(format, COLUMNS);
                let _ = r.feed(&bytes).and_then(|_| r.finish());
            }
        }
    }
}
