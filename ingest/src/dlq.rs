//! The dead-letter topic: every message the contract refuses goes there with its
//! original key and bytes and the headers of the contract (`wenming.reason`,
//! `wenming.message`, `wenming.source` = `topic/partition/offset`).
//!
//! Sends are asynchronous; [`Dlq::flush`] waits until every one is acknowledged, and
//! ingest calls it before each lake commit, so an offset is never committed past a
//! rejected message the dead-letter topic does not hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use wenming_schemas::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("cannot create the dead-letter producer: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot send to the dead-letter topic {topic}: {source}")]
    Send {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{failed} message(s) could not be delivered to the dead-letter topic {topic}")]
    Undelivered { topic: String, failed: u64 },
    #[error("the dead-letter topic {topic} did not acknowledge in time: {source}")]
    Flush {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Counts deliveries that failed after librdkafka's own retries.
#[derive(Default)]
struct Deliveries {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            tracing::error!("dead-letter delivery failed: {e}");
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

pub struct Dlq {
    topic: String,
    producer: BaseProducer<Deliveries>,
    failed: Arc<AtomicU64>,
}

impl Dlq {
    pub fn new(mut config: ClientConfig, topic: &str) -> Result<Self, DlqError> {
        let context = Deliveries::default();
        let failed = context.failed.clone();
        // A rejected message may be as large as the largest message the topic holds.
        config.set("message.max.bytes", "16777216");
        let producer = config
            .create_with_context(context)
            .map_err(DlqError::Create)?;
        Ok(Dlq {
            topic: topic.to_owned(),
            producer,
            failed,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one rejected message. Waits (serving delivery reports) while the
    /// producer's queue is full rather than buffering without bound.
    pub fn send(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        rejection: &Rejection,
        source: &str,
    ) -> Result<(), DlqError> {
        let reason = rejection.reason();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "wenming.reason",
                value: Some(reason.as_bytes()),
            })
            .insert(Header {
                key: "wenming.message",
                value: Some(rejection.message.as_bytes()),
            })
            .insert(Header {
                key: "wenming.source",
                value: Some(source.as_bytes()),
            });
        let mut record = BaseRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((source, _)) => {
                    return Err(DlqError::Send {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every queued message is acknowledged; an error if any was not.
    pub fn flush(&self) -> Result<(), DlqError> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|source| DlqError::Flush {
                topic: self.topic.clone(),
                source,
            })?;
        let failed = self.failed.swap(0, Relaxed);
        if failed > 0 {
            return Err(DlqError::Undelivered {
                topic: self.topic.clone(),
                failed,
            });
        }
        Ok(())
    }
}
