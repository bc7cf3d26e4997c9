//! What the end-to-end tests share: running the binary, a broker to talk to, and
//! counting what the lake holds.
#![allow(dead_code)] // each test file uses its own part of this

pub mod server;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use deltalake::datafusion::prelude::SessionContext;
use wenming_schemas::Family;

pub fn wenming(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wenming"))
        .args(args)
        .output()
        .expect("wenming runs")
}

/// Panics with both streams when a run failed.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// (rows, distinct event ids) over every table of the lake.
pub async fn lake_counts(lake: &Path) -> (u64, u64) {
    let ctx = SessionContext::new();
    let mut selects = Vec::new();
    for family in Family::ALL {
        let path = lake.join(family.table_name());
        let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
        let Ok(table) = deltalake::open_table(url).await else {
            continue;
        };
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table(family.table_name(), table.table_provider().await.unwrap())
            .unwrap();
        selects.push(format!("SELECT event_id FROM {}", family.table_name()));
    }
    let sql = format!(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM ({})",
        selects.join(" UNION ALL ")
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let col = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Int64Array>()
            .unwrap()
            .value(0) as u64
    };
    (col(0), col(1))
}

/// A Kafka to talk to: the one `KAFKA_BROKERS` names, or a `wenming broker --memory`
/// process of this test's own (killed when dropped).
pub struct Broker {
    pub bootstrap: String,
    process: Option<Child>,
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(external) = std::env::var("KAFKA_BROKERS")
            && !external.is_empty()
        {
            return Broker {
                bootstrap: external,
                process: None,
            };
        }
        Broker::spawn(&["--memory"])
    }

    /// A `wenming broker` process with these arguments besides its address and
    /// partitions (the external Kafka is not used).
    pub fn spawn(args: &[&str]) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
            .args(["broker", "--listen", "127.0.0.1:0", "--partitions", "3"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wenming broker starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let bootstrap = loop {
            let line = lines
                .next()
                .expect("broker printed its bootstrap address before exiting")
                .unwrap();
            if let Some(addr) = line.strip_prefix("bootstrap: ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            bootstrap,
            process: Some(child),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A topic name of this test's own, so tests can share an external Kafka.
pub fn unique_topic(test: &str) -> String {
    format!("wenming.test.{test}.{}", uuid::Uuid::now_v7().simple())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on `addr`.
pub fn listening(addr: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
