//! Logging: `tracing` to standard error, filtered by `RUST_LOG` (default: warnings),
//! with the `log` records of the Kafka client passed on to it.

use tracing_log::AsLog;

/// Installs the subscriber and the bridge from `log`. Called once, before any thread.
pub fn install() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // tansu logs every client that hangs up as an error; not one for users. Ballista's
        // scheduler logs an error when it cannot lay a stage's metrics over its plan for
        // display, which it cannot for the scope wall's scan (its table's scan is hidden).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,tansu_service=off,ballista_scheduler::display=off",
            )
        });
    let max_level = filter
        .max_level_hint()
        .unwrap_or(tracing::level_filters::LevelFilter::TRACE);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return; // installed already
    }
    if log::set_boxed_logger(Box::new(Bridge(tracing_log::LogTracer::new()))).is_ok() {
        log::set_max_level(max_level.as_log());
    }
}

/// Passes `log` records on to `tracing`, except one that is not an error.
struct Bridge(tracing_log::LogTracer);

impl Bridge {
    /// `ingest` closes its consumer itself, polling for the end of the close every few
    /// milliseconds (rdkafka's drop polls every 100 ms, a tenth of a second on every
    /// exit). rdkafka's drop then closes it again, and reports that the consumer was
    /// closed already as an error.
    fn closed_already(record: &log::Record<'_>) -> bool {
        record.target() == "rdkafka::consumer::base_consumer"
            && record.args().to_string().starts_with(
                "Failed to close consumer queue on drop: Consumer queue close error: BrokerDestroy",
            )
    }
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        log::Log::enabled(&self.0, metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !Self::closed_already(record) {
            log::Log::log(&self.0, record);
        }
    }

    fn flush(&self) {
        log::Log::flush(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, message: std::fmt::Arguments<'_>, test: impl FnOnce(&log::Record<'_>)) {
        test(
            &log::Record::builder()
                .target(target)
                .args(message)
                .level(log::Level::Error)
                .build(),
        );
    }

    /// Only the second close of a closed consumer is dropped: any other error of
    /// rdkafka, or the same words from elsewhere, still reach the log.
    #[test]
    fn only_the_second_close_is_kept_out_of_the_log() {
        let target = "rdkafka::consumer::base_consumer";
        record(
            target,
            format_args!(
                "Failed to close consumer queue on drop: Consumer queue close error: BrokerDestroy (Local: Broker handle destroyed for termination)"
            ),
            |r| assert!(Bridge::closed_already(r)),
        );
        record(
            target,
            format_args!(
                "Failed to close consumer queue on drop: Consumer queue close error: Fail (Local: Communication failure with broker)"
            ),
            |r| assert!(!Bridge::closed_already(r)),
        );
        record(
            target,
            format_args!("Ignored event 'x' on consumer poll"),
            |r| assert!(!Bridge::closed_already(r)),
        );
        record(
            "wenming",
            format_args!(
                "Failed to close consumer queue on drop: Consumer queue close error: BrokerDestroy"
            ),
            |r| assert!(!Bridge::closed_already(r)),
        );
    }
}
