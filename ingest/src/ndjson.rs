//! Reading NDJSON files of events, streamed: one line at a time, numbered from 1, with a
//! line over the contract's size limit skipped to its end rather than held in memory.

use std::io::{self, BufRead};

use wenming_schemas::{MAX_EVENT_BYTES, RejectCode, Rejection};

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A line's bytes, without the newline (and without a `\r` before it).
    Line { number: u64, bytes: &'a [u8] },
    /// A line longer than the contract allows; only its length was kept.
    Oversize { number: u64, len: u64 },
}

impl Record<'_> {
    pub fn number(&self) -> u64 {
        match self {
            Record::Line { number, .. } | Record::Oversize { number, .. } => *number,
        }
    }

    /// Decodes the line as an event of the contract.
    pub fn decode(&self) -> Result<wenming_schemas::Event, Rejection> {
        match self {
            Record::Line { bytes, .. } => wenming_schemas::decode(bytes),
            Record::Oversize { len, .. } => Err(Rejection::new(
                RejectCode::TooLarge,
                format!("line is {len} bytes; the limit is {MAX_EVENT_BYTES} bytes (1 MiB)"),
            )),
        }
    }
}

/// Streams the lines of an NDJSON source. Blank lines are skipped (they hold no event);
/// a UTF-8 byte order mark at the start of the file is ignored.
pub struct NdjsonReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    bytes_read: u64,
}

impl<R: BufRead> NdjsonReader<R> {
    pub fn new(inner: R) -> Self {
        NdjsonReader {
            inner,
            buf: Vec::with_capacity(4096),
            line: 0,
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far (for progress bars).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next non-blank line, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        loop {
            self.buf.clear();
            self.line += 1;
            let mut len: u64 = 0;
            let mut seen_any = false;
            // Read up to the newline, keeping at most MAX_EVENT_BYTES + 1 bytes: enough to
            // know a line is too large without holding a runaway line in memory.
            loop {
                let chunk = self.inner.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                seen_any = true;
                let (part, done) = match memchr(chunk) {
                    Some(i) => (&chunk[..i], Some(i + 1)),
                    None => (chunk, None),
                };
                let room = (MAX_EVENT_BYTES + 2).saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&part[..part.len().min(room)]);
                len += part.len() as u64;
                let used = done.unwrap_or(chunk.len());
                self.inner.consume(used);
                self.bytes_read += used as u64;
                if done.is_some() {
                    break;
                }
            }
            if !seen_any {
                return Ok(None);
            }
            if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
                len -= 3;
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
                len -= 1;
            }
            if len > MAX_EVENT_BYTES as u64 {
                return Ok(Some(Record::Oversize {
                    number: self.line,
                    len,
                }));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Record::Line {
                number: self.line,
                bytes: &self.buf,
            }));
        }
    }
}

/// A line that owns its bytes, so a chunk of them can be decoded on several threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedRecord {
    Line { number: u64, bytes: Vec<u8> },
    Oversize { number: u64, len: u64 },
}

impl OwnedRecord {
    pub fn as_record(&self) -> Record<'_> {
        match self {
            OwnedRecord::Line { number, bytes } => Record::Line {
                number: *number,
                bytes,
            },
            OwnedRecord::Oversize { number, len } => Record::Oversize {
                number: *number,
                len: *len,
            },
        }
    }

    /// Bytes of the source line (its length for an oversize one).
    pub fn len(&self) -> usize {
        match self {
            OwnedRecord::Line { bytes, .. } => bytes.len(),
            OwnedRecord::Oversize { len, .. } => *len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The line as text for people (lossy), empty for an oversize line.
    pub fn text(&self) -> String {
        match self {
            OwnedRecord::Line { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
            OwnedRecord::Oversize { .. } => String::new(),
        }
    }
}

/// Lines read and decoded per chunk: enough to keep every core busy, small enough
/// that memory stays bounded (about 4 MiB of lines plus their decoded events).
pub const CHUNK_BYTES: usize = 4 << 20;

impl<R: BufRead> NdjsonReader<R> {
    /// The next lines, up to about `max_bytes` of them; empty at the end of the input.
    pub fn next_chunk(&mut self, max_bytes: usize) -> io::Result<Vec<OwnedRecord>> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(record) = self.next_record()? else {
                break;
            };
            let owned = match record {
                Record::Line { number, bytes } => OwnedRecord::Line {
                    number,
                    bytes: bytes.to_vec(),
                },
                Record::Oversize { number, len } => OwnedRecord::Oversize { number, len },
            };
            bytes += owned.len().min(max_bytes);
            chunk.push(owned);
        }
        Ok(chunk)
    }
}

/// Decodes a chunk on all cores; results in the chunk's order.
pub fn decode_chunk(chunk: &[OwnedRecord]) -> Vec<Result<wenming_schemas::Event, Rejection>> {
    use rayon::prelude::*;
    chunk
        .par_iter()
        .with_min_len(256)
        .map(|r| r.as_record().decode())
        .collect()
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut r = NdjsonReader::new(std::io::BufReader::with_capacity(7, input));
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(match rec {
                Record::Line { number, bytes } => (number, Ok(bytes.to_vec())),
                Record::Oversize { number, len } => (number, Err(len)),
            });
        }
        out
    }

    #[test]
    fn numbers_lines_and_skips_blanks_crlf_and_bom() {
        let got = lines(b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}");
        assert_eq!(
            got,
            vec![
                (1, Ok(b"{\"a\":1}".to_vec())),
                (4, Ok(b"{\"b\":2}".to_vec())),
                (5, Ok(b"{\"c\":3}".to_vec())),
            ]
        );
    }

    #[test]
    fn chunks_keep_every_line_in_order_and_decode_in_order() {
        let mut input = Vec::new();
        for i in 0..1000 {
            input.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        let mut r = NdjsonReader::new(std::io::BufReader::new(&input[..]));
        let mut numbers = Vec::new();
        loop {
            let chunk = r.next_chunk(100).unwrap();
            if chunk.is_empty() {
                break;
            }
            let bytes: usize = chunk.iter().map(OwnedRecord::len).sum();
            let last = chunk.last().unwrap().len();
            assert!(
                bytes - last < 100,
                "a chunk stops once it reaches the byte budget"
            );
            let decoded = decode_chunk(&chunk);
            assert_eq!(decoded.len(), chunk.len());
            assert!(
                decoded
                    .iter()
                    .all(|d| d.as_ref().unwrap_err().reason() == "missing_field:schema_version")
            );
            numbers.extend(chunk.iter().map(|c| c.as_record().number()));
        }
        assert_eq!(numbers, (1..=1000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_runaway_line_is_reported_by_length_and_the_next_line_survives() {
        let mut input = vec![b'x'; MAX_EVENT_BYTES * 3];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        let got = lines(&input);
        assert_eq!(got[0], (1, Err((MAX_EVENT_BYTES * 3) as u64)));
        assert_eq!(got[1], (2, Ok(b"{\"ok\":true}".to_vec())));
        // Exactly at the limit is still a line.
        let mut input = vec![b' '; MAX_EVENT_BYTES - 2];
        input.insert(0, b'"');
        input.push(b'"');
        assert!(matches!(lines(&input)[0], (1, Ok(_))));
    }
}
