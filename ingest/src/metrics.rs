//! Ingest counters, exposed in the OpenMetrics text format (`prometheus-client`) and
//! printed at exit.
//!
//! They reconcile at every moment a flush is not in progress:
//! `read = stored + duplicates + rejected + already_stored + pending`, where `pending` is
//! what sits in the buffer (and `already_stored` what a replay after a restart found in
//! the lake already).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The media type of the OpenMetrics text `render` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
pub struct Metrics {
    pub read: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub already_stored: AtomicU64,
    /// Buffered, not yet committed (nor dropped by a reset).
    pub pending: AtomicU64,
    /// Buffered events dropped by a reset after a rebalance or a lost commit race; they
    /// are read again, so they are not lost: counted to keep `read` honest.
    pub dropped_for_replay: AtomicU64,
    pub dlq_sent: AtomicU64,
    pub commits: AtomicU64,
    pub flushes: AtomicU64,
    pub stale_commits: AtomicU64,
    pub compactions: AtomicU64,
    /// Dead-lettered rejections by reason code.
    pub rejected_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Consumer lag per partition, from librdkafka's statistics.
    pub lag: Mutex<BTreeMap<i32, i64>>,
    /// Seconds from a flush's start until all its commits landed.
    pub commit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            read: Default::default(),
            stored: Default::default(),
            duplicates: Default::default(),
            rejected: Default::default(),
            already_stored: Default::default(),
            pending: Default::default(),
            dropped_for_replay: Default::default(),
            dlq_sent: Default::default(),
            commits: Default::default(),
            flushes: Default::default(),
            stale_commits: Default::default(),
            compactions: Default::default(),
            rejected_by_reason: Default::default(),
            lag: Default::default(),
            commit_seconds: seconds_histogram(),
        }
    }
}

/// Buckets from 5 ms to about 80 s, doubling: answers and commits alike.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub already_stored: u64,
    pub pending: u64,
    pub dropped_for_replay: u64,
    pub dlq_sent: u64,
    pub commits: u64,
}

impl Snapshot {
    pub fn reconciles(&self) -> bool {
        self.read
            == self.stored
                + self.duplicates
                + self.rejected
                + self.already_stored
                + self.pending
                + self.dropped_for_replay
    }
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            read: self.read.load(Relaxed),
            stored: self.stored.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            already_stored: self.already_stored.load(Relaxed),
            pending: self.pending.load(Relaxed),
            dropped_for_replay: self.dropped_for_replay.load(Relaxed),
            dlq_sent: self.dlq_sent.load(Relaxed),
            commits: self.commits.load(Relaxed),
        }
    }

    /// The counters, the buffer's gauge, the lag per partition and the commit latency,
    /// into `registry` (the API's `/metrics` adds them to its own).
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &AtomicU64); 11] = [
            ("read", "Kafka messages read", &self.read),
            ("stored", "Events committed to the lake", &self.stored),
            ("duplicates", "Re-sent events skipped", &self.duplicates),
            (
                "rejected",
                "Messages refused by the contract (sent to the DLQ)",
                &self.rejected,
            ),
            (
                "already_stored",
                "Replayed messages the lake already held",
                &self.already_stored,
            ),
            (
                "dropped_for_replay",
                "Buffered events dropped to be read again after a rebalance",
                &self.dropped_for_replay,
            ),
            (
                "dlq_sent",
                "Messages written to the dead-letter topic",
                &self.dlq_sent,
            ),
            ("commits", "Delta commits", &self.commits),
            ("flushes", "Flushes of the buffer", &self.flushes),
            (
                "stale_commits",
                "Commits refused because another writer moved the positions",
                &self.stale_commits,
            ),
            (
                "compactions",
                "Background compactions run",
                &self.compactions,
            ),
        ];
        for (name, help, value) in counters {
            registry.register(
                format!("wenming_ingest_{name}"),
                help,
                ConstCounter::new(value.load(Relaxed)),
            );
        }
        registry.register(
            "wenming_ingest_pending",
            "Events buffered, not yet committed",
            ConstGauge::new(self.pending.load(Relaxed) as i64),
        );
        let lag = Family::<Vec<(String, String)>, Gauge>::default();
        for (partition, behind) in self.lag.lock().expect("lag lock").iter() {
            lag.get_or_create(&vec![("partition".into(), partition.to_string())])
                .set(*behind);
        }
        registry.register(
            "wenming_ingest_consumer_lag",
            "Messages behind the partition end",
            lag,
        );
        registry.register_with_unit(
            "wenming_ingest_commit",
            "Time from a flush's start until all its commits landed",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
    }

    /// The OpenMetrics text of these metrics alone (`wenming ingest --metrics`).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String");
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) until the runtime stops. A few lines of
/// HTTP/1.0 rather than a web framework: the ingest crate stays free of axum.
pub async fn serve(
    addr: SocketAddr,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request).await;
                let body = metrics.render();
                let response = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(local)
}
