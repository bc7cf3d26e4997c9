//! The assigned partitions' messages, taken from librdkafka a batch at a time.
//!
//! Why not `BaseConsumer::poll`: it hands over one message per call, and each call reads
//! the clock four times, takes the queue's lock and wraps the message in a
//! reference-counted event; taking batches instead cut ingest's CPU on a 2 M-event
//! backlog by 9 % (docs/benchmarks.md, session 21). librdkafka's batch call cannot read the consumer's
//! own queue here: rdkafka serves rebalances as events on that queue, and the batch call
//! would answer each one by unassigning everything. So every partition's queue is
//! forwarded, before the partition is assigned, to a queue of ours, read in batches,
//! and the consumer's queue keeps what rdkafka serves: rebalances, errors, statistics.
//! A partition's messages and its end-of-partition marker arrive here in offset order.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

/// A queue of fetched messages, owned by ingest, fed by the partitions forwarded to it.
pub struct FetchQueue {
    /// `None` once closed: librdkafka's queues must be destroyed before their client.
    queue: Mutex<Option<NonNull<rdsys::rd_kafka_queue_t>>>,
}

// SAFETY: librdkafka's queues are thread-safe (every operation takes the queue's lock),
// and the pointer is only used while the mutex is held, so never after it is destroyed.
unsafe impl Send for FetchQueue {}
unsafe impl Sync for FetchQueue {}

impl FetchQueue {
    /// A new, empty queue of `consumer`'s client.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<Self> {
        // SAFETY: the client pointer is valid while `consumer` is; the new queue is
        // destroyed by `close` (or drop), which the caller runs before dropping it.
        let queue = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        NonNull::new(queue).map(|q| FetchQueue {
            queue: Mutex::new(Some(q)),
        })
    }

    /// Sends `partition`'s messages here from now on. Called before the partition is
    /// assigned, so that none of them reaches the consumer's queue first (the two
    /// queues are read one after the other, which would reorder them). A partition
    /// forwarded once stays forwarded: librdkafka leaves an application's forward in
    /// place across assignments. `false` if librdkafka knows no such partition.
    pub fn take_partition<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let guard = self.queue.lock().expect("fetch queue lock");
        let (Some(ours), Ok(topic)) = (*guard, CString::new(topic)) else {
            return false;
        };
        // SAFETY: the client pointer is valid while `consumer` is and `topic` is a C
        // string; the partition's queue handle is released right after forwarding,
        // which keeps the forward (it belongs to the partition, not the handle).
        unsafe {
            let theirs = rdsys::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            );
            if theirs.is_null() {
                return false;
            }
            rdsys::rd_kafka_queue_forward(theirs, ours.as_ptr());
            rdsys::rd_kafka_queue_destroy(theirs);
        }
        true
    }

    /// Moves up to `batch`'s capacity of messages into it, waiting at most `wait` for
    /// the first. Returns how many; none once closed.
    pub fn consume(&self, wait: Duration, batch: &mut Batch) -> usize {
        batch.clear();
        let guard = self.queue.lock().expect("fetch queue lock");
        let Some(ours) = *guard else {
            return 0;
        };
        // librdkafka's batch call waits until the batch is full or the time is up, so a
        // few messages would wait the whole time: what is at hand is taken without
        // waiting, and only an empty queue is waited on, for one message.
        let mut n = take(ours, 0, batch, batch.messages.capacity());
        if n == 0 && !wait.is_zero() {
            let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
            n = take(ours, wait_ms, batch, 1);
        }
        n
    }

    /// Destroys the queue; the consumer must still exist. Messages still in it are
    /// dropped: they are past what the lake recorded, so the next reader reads them.
    pub fn close(&self) {
        if let Some(queue) = self.queue.lock().expect("fetch queue lock").take() {
            // SAFETY: the queue is ours and destroyed once (it is taken out here).
            unsafe { rdsys::rd_kafka_queue_destroy(queue.as_ptr()) };
        }
    }
}

/// A queue still open when dropped is destroyed then; `ingest` closes it before, while
/// its consumer exists (`consumer::run`'s guard), so this only covers other owners.
impl Drop for FetchQueue {
    fn drop(&mut self) {
        self.close();
    }
}

/// Up to `size` (at most the batch's capacity) messages from `queue` into the empty
/// `batch`, waiting at most `wait_ms` for them all.
fn take(
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    wait_ms: i32,
    batch: &mut Batch,
    size: usize,
) -> usize {
    debug_assert!(batch.messages.is_empty());
    let size = size.min(batch.messages.capacity());
    // SAFETY: `messages` has room for `size` pointers, which librdkafka fills from the
    // front; each one it returns is ours until `rd_kafka_message_destroy`.
    let n = unsafe {
        rdsys::rd_kafka_consume_batch_queue(
            queue.as_ptr(),
            wait_ms,
            batch.messages.as_mut_ptr(),
            size,
        )
    };
    let n = usize::try_from(n).unwrap_or(0).min(size);
    // SAFETY: librdkafka wrote the first `n` pointers.
    unsafe { batch.messages.set_len(n) };
    n
}

/// Messages taken from a [`FetchQueue`], freed when the next batch is taken or the batch
/// is dropped.
pub struct Batch {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

/// One fetched message, or a partition's end or error.
pub enum Fetched<'a> {
    Message {
        partition: i32,
        offset: i64,
        key: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    End {
        partition: i32,
    },
    Error {
        partition: i32,
        error: String,
    },
}

impl Batch {
    pub fn with_capacity(capacity: usize) -> Self {
        Batch {
            messages: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// The messages in the order librdkafka gave them.
    pub fn iter(&self) -> impl Iterator<Item = Fetched<'_>> {
        self.messages.iter().map(|m| {
            // SAFETY: every pointer in `messages` is a live message until `clear`, and
            // its key and payload (`len` bytes, or null) live as long as it does.
            let m = unsafe { &**m };
            let bytes = |ptr: *mut std::ffi::c_void, len: usize| {
                (!ptr.is_null())
                    .then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
            };
            match m.err {
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Fetched::Message {
                    partition: m.partition,
                    offset: m.offset,
                    key: bytes(m.key, m.key_len),
                    payload: bytes(m.payload, m.len).unwrap_or(&[]),
                },
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Fetched::End {
                    partition: m.partition,
                },
                code => Fetched::Error {
                    partition: m.partition,
                    error: rdkafka::error::RDKafkaErrorCode::from(code).to_string(),
                },
            }
        })
    }

    /// Frees the messages.
    pub fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message was handed over by librdkafka and is freed once.
            unsafe { rdsys::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}
