//! Kafka client settings and topics: what `ingest`, `produce` and `broker` share.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(
        "cannot reach the brokers at {brokers}: {source} (is a broker running there? \
         `wenming broker` starts a development one)"
    )]
    Connect {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("bad client property {0:?}: expected key=value")]
    Property(String),
}

/// librdkafka properties given on the command line as `key=value`, applied last so
/// they override wenming's defaults.
pub fn apply_properties(
    config: &mut ClientConfig,
    properties: &[String],
) -> Result<(), TopicError> {
    for p in properties {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| TopicError::Property(p.clone()))?;
        config.set(k.trim(), v.trim());
    }
    Ok(())
}

/// Creates the topics that do not exist yet (replication 1 on a one-node broker; a
/// real cluster's defaults apply otherwise). Existing topics are left as they are.
pub async fn ensure(brokers: &str, topics: &[String], partitions: i32) -> Result<(), TopicError> {
    ensure_with(brokers, topics, partitions, &[]).await
}

/// [`ensure`] with extra client properties (security settings of a real cluster).
pub async fn ensure_with(
    brokers: &str,
    topics: &[String],
    partitions: i32,
    properties: &[String],
) -> Result<(), TopicError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Connect at once. With sparse connections (the default) librdkafka connects
        // when something needs a broker, and a metadata request that comes before the
        // first connection has started is held back for `reconnect.backoff.ms` / 2:
        // 50 ms of about every other `ingest` start (docs/benchmarks.md). This client
        // lives for one request, so connecting to every bootstrap broker costs nothing.
        .set("enable.sparse.connections", "false");
    apply_properties(&mut config, properties)?;
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| TopicError::Connect {
            brokers: brokers.to_owned(),
            source,
        })?;
    // Which exist already: creating only the missing ones keeps this quiet on a real
    // cluster whose ACLs allow describe but not create.
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|source| TopicError::Connect {
            brokers: brokers.to_owned(),
            source,
        })?;
    let existing: Vec<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.name())
        .collect();
    let missing: Vec<NewTopic> = topics
        .iter()
        .filter(|t| !existing.contains(&t.as_str()))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    if missing.is_empty() {
        drop_in_background(admin);
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&missing, &options)
        .await
        .map_err(|source| TopicError::Connect {
            brokers: brokers.to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    drop_in_background(admin);
    Ok(())
}

/// Drops the admin client on a thread of its own: dropping it joins its polling
/// thread, which wakes every 100 ms, and that wait was most of every `ingest` start.
fn drop_in_background(admin: AdminClient<DefaultClientContext>) {
    std::thread::spawn(move || drop(admin));
}
