//! `wenming produce --brokers B --topic T FILE.ndjson`: lines onto a topic, each
//! acknowledged before exit.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use wenming_ingest::producer::LineProducer;

use super::kafka::KafkaArgs;

#[derive(clap::Args)]
pub struct Args {
    /// NDJSON file, one event per line; `-` for standard input.
    file: PathBuf,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Topic to write to (created if missing).
    #[arg(long, env = "WENMING_KAFKA__TOPIC", default_value = "wenming.events")]
    topic: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdin = args.file.as_os_str() == "-";
    let (reader, size): (Box<dyn BufRead>, u64) = if stdin {
        (Box::new(io::stdin().lock()), 0)
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::with_capacity(1 << 20, file)), size)
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut producer = runtime.block_on(LineProducer::connect(
        &args.kafka.brokers,
        &args.topic,
        args.kafka.partitions,
        &args.kafka.properties,
    ))?;
    let bar = super::progress::bar(
        size,
        "producing {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    let started = Instant::now();
    producer.send_all(reader, |bytes| bar.set_position(bytes))?;
    bar.set_message("waiting for acknowledgements");
    let done = producer.finish()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} messages ({} bytes) to {} at {}: all acknowledged in {:.1} s ({:.0} msg/s)",
        done.sent,
        done.bytes,
        args.topic,
        args.kafka.brokers,
        secs,
        done.sent as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
