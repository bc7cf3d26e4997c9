//! Messages polled from librdkafka, held back to back in runs that are decoded on the
//! other cores while the main loop polls the next run.

/// Messages polled but not yet routed, copied out of librdkafka back to back, so that
/// they can be decoded on the other cores while the main loop (one thread) polls and
/// routes. Routed in poll order before anything else touches the partitions' state: a
/// rebalance, an end of partition, a flush.
#[derive(Default)]
pub(super) struct Polled {
    pub(super) data: Vec<u8>,
    pub(super) messages: Vec<PolledMessage>,
}

/// A message's event, or why it was rejected.
pub(super) type Decoded = Result<wenming_schemas::Event, wenming_schemas::Rejection>;

/// A run being decoded in the background: it comes back with its events.
pub(super) type Decoding = std::sync::mpsc::Receiver<(Polled, Vec<Decoded>)>;

pub(super) struct PolledMessage {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<std::ops::Range<usize>>,
    pub(super) payload: std::ops::Range<usize>,
}

impl Polled {
    /// Messages routed at a time: enough to keep both cores decoding, few enough
    /// that routing is never far behind polling.
    const MESSAGES: usize = 2048;

    /// Runs being decoded while the main loop polls and routes: the decoding threads
    /// share the cores with the Parquet encoding of the flush in flight, and a queue of
    /// runs rides out the bursts where encoding has them (main loop waiting for
    /// decoding, 2 M events: 1.0 s with one run, 0.27 s with three).
    pub(super) const DECODING: usize = 3;

    pub(super) fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let key = key.map(|k| {
            let start = self.data.len();
            self.data.extend_from_slice(k);
            start..self.data.len()
        });
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.messages.push(PolledMessage {
            partition,
            offset,
            key,
            payload: start..self.data.len(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Full at [`Self::MESSAGES`], or at `flush_rows` if that is smaller, so that a
    /// small flush policy (tests, low-latency setups) is kept to the message.
    pub(super) fn is_full(&self, flush_rows: usize) -> bool {
        self.messages.len() >= Self::MESSAGES.min(flush_rows.max(1))
    }

    pub(super) fn decode(&self) -> Vec<Decoded> {
        use rayon::prelude::*;
        self.messages
            .par_iter()
            .with_min_len(128)
            .map(|m| wenming_schemas::decode(&self.data[m.payload.clone()]))
            .collect()
    }

    /// The same buffers, empty, to fill again without allocating.
    pub(super) fn emptied(mut self) -> Polled {
        self.data.clear();
        self.messages.clear();
        self
    }
}

/// Routed runs' buffers, filled again rather than allocated anew. At most one per run
/// that can be in the pipeline: a partial run is routed whenever librdkafka has no
/// message at hand, and when each such run left a spare behind, a 12 M-event backlog
/// ended with ≈ 220 MB of them (docs/benchmarks.md).
#[derive(Default)]
pub(super) struct Spares(pub(super) Vec<Polled>);

impl Spares {
    pub(super) const MAX: usize = Polled::DECODING + 2;

    /// A run's buffers to fill: a spare, or new ones.
    pub(super) fn take(&mut self) -> Polled {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps a routed run's buffers to fill again, unless enough are kept already.
    pub(super) fn give(&mut self, run: Polled) {
        if self.0.len() < Self::MAX {
            self.0.push(run.emptied());
        }
    }
}
