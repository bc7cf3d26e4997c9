//! The Kafka options `ingest`, `produce` and `generate --brokers` share.

#[derive(clap::Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port, comma-separated): `wenming broker` or a real
    /// Kafka cluster.
    #[arg(long, env = "WENMING_KAFKA__BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A librdkafka property `key=value`, applied over wenming's defaults (repeatable),
    /// e.g. `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Partitions of a topic that has to be created.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
}
