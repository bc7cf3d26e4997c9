//! Ingest counters, exposed as Prometheus text and printed at exit.
//!
//! They reconcile at every moment a flush is not in progress:
//! `read = stored + duplicates + rejected + already_stored + pending`, where `pending` is
//! what sits in the buffer (and `already_stored` what a replay after a restart found in
//! the lake already).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Default)]
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

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 12] = [
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
            (
                "pending",
                "Events buffered, not yet committed",
                &self.pending,
            ),
        ];
        for (name, help, value) in counters {
            let kind = if name == "pending" {
                "gauge"
            } else {
                "counter"
            };
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "# HELP wenming_ingest_{name}{suffix} {help}.");
            let _ = writeln!(out, "# TYPE wenming_ingest_{name}{suffix} {kind}");
            let _ = writeln!(out, "wenming_ingest_{name}{suffix} {}", value.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP wenming_ingest_consumer_lag Messages behind the partition end."
        );
        let _ = writeln!(out, "# TYPE wenming_ingest_consumer_lag gauge");
        for (partition, lag) in self.lag.lock().expect("lag lock").iter() {
            let _ = writeln!(
                out,
                "wenming_ingest_consumer_lag{{partition=\"{partition}\"}} {lag}"
            );
        }
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
                    "HTTP/1.0 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(local)
}
