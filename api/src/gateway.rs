//! The events gateway: station apps that cannot speak Kafka post events over HTTP;
//! each is checked against the contract and the token's scope, then produced to the
//! topic (key = unit_id) and acknowledged by the brokers before the answer says
//! "accepted".

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Clone)]
pub struct Gateway {
    producer: FutureProducer,
    topic: String,
}

impl Gateway {
    pub fn new(brokers: &str, topic: &str) -> Result<Gateway, rdkafka::error::KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "15000")
            .create()?;
        Ok(Gateway {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Produce one event; `Err` carries a sentence for the caller.
    pub async fn send(&self, key: &str, payload: &[u8]) -> Result<(), String> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        self.producer
            .send(record, Duration::from_secs(15))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("the broker did not take the event: {e}"))
    }
}
