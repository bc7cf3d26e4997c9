//! NDJSON lines onto a Kafka topic: `wenming produce` and `wenming generate --brokers`.
//!
//! The key is the event's `unit_id`, so one station's events stay in one partition and
//! in order. Lines are sent as they are, broken ones too: refusing them is ingest's
//! job (they reach the dead-letter topic with a reason), not the producer's.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::topics::{self, TopicError};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("cannot create the producer: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot send line {line}: {source}")]
    Send {
        line: u64,
        #[source]
        source: KafkaError,
    },
    #[error(
        "{failed} of {sent} messages were not acknowledged by the brokers; first error: {first}"
    )]
    Undelivered {
        sent: u64,
        failed: u64,
        first: String,
    },
    #[error("the brokers did not acknowledge every message in time: {0}")]
    Flush(#[source] KafkaError),
    #[error("cannot read the input: {0}")]
    Read(#[source] io::Error),
}

#[derive(Default)]
struct Acks {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Relaxed);
                self.first_error
                    .lock()
                    .expect("error lock")
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// What a produce run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Produced {
    pub sent: u64,
    pub acked: u64,
    pub bytes: u64,
}

/// A producer of lines, each acknowledged by the brokers before [`LineProducer::finish`]
/// returns.
pub struct LineProducer {
    topic: String,
    producer: BaseProducer<Acks>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    sent: u64,
    bytes: u64,
}

impl LineProducer {
    /// Connects, creating the topic with `partitions` if it does not exist.
    pub async fn connect(
        brokers: &str,
        topic: &str,
        partitions: i32,
        properties: &[String],
    ) -> Result<Self, ProduceError> {
        topics::ensure_with(brokers, &[topic.to_owned()], partitions, properties).await?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "10")
            .set("batch.size", "1048576")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.kbytes", "65536")
            .set("message.max.bytes", "16777216");
        topics::apply_properties(&mut config, properties)?;
        let context = Acks::default();
        let (acked, failed, first_error) = (
            context.acked.clone(),
            context.failed.clone(),
            context.first_error.clone(),
        );
        let producer = config
            .create_with_context(context)
            .map_err(ProduceError::Create)?;
        Ok(LineProducer {
            topic: topic.to_owned(),
            producer,
            acked,
            failed,
            first_error,
            sent: 0,
            bytes: 0,
        })
    }

    /// Queues one line (without its newline). Blank lines are skipped. Waits while the
    /// local queue is full: backpressure, not unbounded buffering.
    pub fn send(&mut self, line: &[u8]) -> Result<(), ProduceError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let key = unit_id(line);
        let mut record = BaseRecord::to(&self.topic).payload(line);
        if let Some(key) = key.as_deref() {
            record = record.key(key.as_bytes());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(20));
                }
                Err((source, _)) => {
                    return Err(ProduceError::Send {
                        line: self.sent + 1,
                        source,
                    });
                }
            }
        }
        self.sent += 1;
        self.bytes += line.len() as u64;
        if self.sent.is_multiple_of(1024) {
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    /// Messages acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Relaxed)
    }

    /// Waits for every acknowledgement; an error names how many were refused.
    pub fn finish(self) -> Result<Produced, ProduceError> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(ProduceError::Flush)?;
        let failed = self.failed.load(Relaxed);
        if failed > 0 {
            let first = self
                .first_error
                .lock()
                .expect("error lock")
                .clone()
                .unwrap_or_default();
            return Err(ProduceError::Undelivered {
                sent: self.sent,
                failed,
                first,
            });
        }
        Ok(Produced {
            sent: self.sent,
            acked: self.acked.load(Relaxed),
            bytes: self.bytes,
        })
    }

    /// Sends every line of a reader; `progress` is told the bytes read so far.
    pub fn send_all(
        &mut self,
        mut reader: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> Result<(), ProduceError> {
        let mut line = Vec::with_capacity(4096);
        let mut read = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(ProduceError::Read)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            self.send(text)?;
            if self.sent.is_multiple_of(4096) {
                progress(read);
            }
        }
        progress(read);
        Ok(())
    }
}

/// The `unit_id` of a line, when it is a JSON object with a string `unit_id`.
fn unit_id(line: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Keyed<'a> {
        #[serde(borrow)]
        unit_id: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Keyed<'_>>(line).ok()?.unit_id
}

/// A `Write` that sends each complete line it is given: lets the generator write
/// straight onto a topic.
pub struct LineWriter<'a> {
    producer: &'a mut LineProducer,
    partial: Vec<u8>,
}

impl<'a> LineWriter<'a> {
    pub fn new(producer: &'a mut LineProducer) -> Self {
        LineWriter {
            producer,
            partial: Vec::new(),
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(end);
            let send = |p: &mut LineProducer, line: &[u8]| {
                p.send(line).map_err(|e| io::Error::other(e.to_string()))
            };
            if self.partial.is_empty() {
                send(self.producer, head)?;
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                send(self.producer, &line)?;
            }
            rest = &tail[1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.producer
                .send(&line)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_unit_id_when_there_is_one() {
        assert_eq!(
            unit_id(br#"{"event_id":"x","unit_id":"u-1","data":{}}"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(
            unit_id(br#"{"unit_id":"u-\u0031"}"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(unit_id(br#"{"unit_id":7}"#), None);
        assert_eq!(unit_id(b"not json"), None);
    }
}
