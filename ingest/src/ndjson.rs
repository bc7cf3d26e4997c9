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

impl Record<'_> {
    /// Bytes of the source line (its length for an oversize one).
    pub fn len(&self) -> usize {
        match self {
            Record::Line { bytes, .. } => bytes.len(),
            Record::Oversize { len, .. } => *len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The line as text for people (lossy), empty for an oversize line.
    pub fn text(&self) -> String {
        match self {
            Record::Line { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
            Record::Oversize { .. } => String::new(),
        }
    }
}

/// Lines read and decoded per chunk: enough to keep every core busy, small enough
/// that memory stays bounded (about 4 MiB of lines plus their decoded events).
pub const CHUNK_BYTES: usize = 4 << 20;

/// Consecutive lines that own their bytes, so they can be decoded on several threads.
/// The lines share one buffer: a chunk costs two allocations, not one per line (at
/// 200 k lines a second the per-line allocations and frees were a tenth of the reading
/// thread's time).
#[derive(Debug, Default)]
pub struct Chunk {
    data: Vec<u8>,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Line {
        number: u64,
        start: usize,
        end: usize,
    },
    Oversize {
        number: u64,
        len: u64,
    },
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The lines in file order.
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.slots.iter().map(|slot| self.record(slot))
    }

    fn record(&self, slot: &Slot) -> Record<'_> {
        match *slot {
            Slot::Line { number, start, end } => Record::Line {
                number,
                bytes: &self.data[start..end],
            },
            Slot::Oversize { number, len } => Record::Oversize { number, len },
        }
    }
}

impl<R: BufRead> NdjsonReader<R> {
    /// The next lines, up to about `max_bytes` of them; empty at the end of the input.
    pub fn next_chunk(&mut self, max_bytes: usize) -> io::Result<Chunk> {
        self.next_chunk_reusing(max_bytes, Chunk::default())
    }

    /// As [`next_chunk`](Self::next_chunk), filling a spent chunk's buffers: fresh
    /// pages cost the kernel a page fault and a clearing each, 4 MiB a chunk.
    pub fn next_chunk_reusing(&mut self, max_bytes: usize, spent: Chunk) -> io::Result<Chunk> {
        let mut chunk = spent;
        chunk.data.clear();
        chunk.slots.clear();
        chunk.data.reserve(max_bytes.min(CHUNK_BYTES) + 4096);
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(record) = self.next_record()? else {
                break;
            };
            let slot = match record {
                Record::Line { number, bytes } => {
                    let start = chunk.data.len();
                    chunk.data.extend_from_slice(bytes);
                    Slot::Line {
                        number,
                        start,
                        end: chunk.data.len(),
                    }
                }
                Record::Oversize { number, len } => Slot::Oversize { number, len },
            };
            bytes += chunk.record(&slot).len().min(max_bytes);
            chunk.slots.push(slot);
        }
        Ok(chunk)
    }
}

/// Decodes a chunk on all cores; results in the chunk's order.
pub fn decode_chunk(chunk: &Chunk) -> Vec<Result<wenming_schemas::Event, Rejection>> {
    use rayon::prelude::*;
    chunk
        .slots
        .par_iter()
        .with_min_len(256)
        .map(|slot| chunk.record(slot).decode())
        .collect()
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', haystack)
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
        let mut texts = Vec::new();
        let mut spent = Chunk::default();
        loop {
            // Every other chunk refills the buffers of the one before.
            let chunk = if numbers.len() % 2 == 0 {
                r.next_chunk_reusing(100, std::mem::take(&mut spent))
            } else {
                r.next_chunk(100)
            }
            .unwrap();
            if chunk.is_empty() {
                break;
            }
            let bytes: usize = chunk.iter().map(|r| r.len()).sum();
            let last = chunk.iter().last().unwrap().len();
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
            numbers.extend(chunk.iter().map(|c| c.number()));
            texts.extend(chunk.iter().map(|c| c.text()));
            spent = chunk;
        }
        assert_eq!(numbers, (1..=1000).collect::<Vec<u64>>());
        let expected: Vec<String> = (0..1000).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(texts, expected, "a refilled chunk holds only its own lines");
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
