//! The consumer's context: rebalances (positions read from the lake, seeks there) and
//! librdkafka's statistics (consumer lag).

use super::*;

/// The consumer's context: serves rebalances (reading positions from the lake and
/// seeking there) and librdkafka's statistics (consumer lag).
pub(super) struct IngestContext {
    pub(super) pipeline: Arc<Mutex<Pipeline>>,
    pub(super) metrics: Arc<Metrics>,
}

impl ClientContext for IngestContext {
    /// librdkafka reports partition EOF as an error too; it is how ingest knows a
    /// partition is drained, not a fault.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!("{reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = self.metrics.lag.lock().expect("lag lock");
        for topic in statistics.topics.values() {
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    lag.insert(*id, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut pipeline = self.pipeline.lock().expect("pipeline lock");
        // Messages polled before the rebalance belong to the assignment before it.
        pipeline.route_polled();
        pipeline.assignment_changed = Instant::now();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                pipeline.first_assigned.get_or_insert_with(Instant::now);
                // Start every new partition where the lake says, not where Kafka's
                // group offsets say; and learn what other writers stored meanwhile.
                if let Err(e) = pipeline.refresh_ids() {
                    tracing::error!("{e}");
                    pipeline.fatal.get_or_insert(e);
                }
                let topic_of: BTreeMap<i32, String> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), e.topic().to_owned()))
                    .collect();
                let partitions: Vec<i32> = topic_of.keys().copied().collect();
                match pipeline.load(&partitions) {
                    Ok(states) => {
                        for (partition, state) in states {
                            let offset = Offset::Offset(state.start);
                            if let Err(e) =
                                tpl.set_partition_offset(&topic_of[&partition], partition, offset)
                            {
                                pipeline.fatal.get_or_insert(e.into());
                            }
                            tracing::info!(partition, start = state.start, "assigned");
                            pipeline.partitions.insert(partition, state);
                        }
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        pipeline.fatal.get_or_insert(e);
                    }
                }
                // Their messages come to the fetch queue, read in batches; forwarded
                // before the assignment, so that none reaches the consumer's queue.
                if let Some(fetched) = &pipeline.fetched {
                    for (partition, topic) in &topic_of {
                        if !fetched.take_partition(consumer, topic, *partition) {
                            tracing::warn!(partition, "no queue for the partition");
                        }
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    pipeline.fatal.get_or_insert(e.into());
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Hand over cleanly: commit what was read, so the next owner starts
                // exactly here. If that fails, the next owner re-reads from the lake.
                if pipeline.partitions.values().any(|p| p.upto.is_some())
                    && let Err(e) = pipeline.flush(true)
                {
                    tracing::warn!("flush before handing partitions over: {e}");
                }
                for elem in tpl.elements() {
                    tracing::info!(partition = elem.partition(), "revoked");
                    pipeline.partitions.remove(&elem.partition());
                }
                let revoked = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = revoked {
                    tracing::warn!("unassign: {e}");
                }
            }
            other => {
                tracing::error!("rebalance error: {other:?}");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
        }
    }
}
