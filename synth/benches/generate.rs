//! `cargo bench -p wenming-synth [-- tiny|district|city]`: how fast a scale generates,
//! into a sink that only counts bytes (the disk is measured by `wenming generate`).

use std::io::{self, Write};
use std::time::Instant;

use wenming_synth::{Options, Scale, generate};

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scales = if wanted.is_empty() {
        vec!["tiny".to_owned(), "district".to_owned()]
    } else {
        wanted
    };
    println!("threads: {}", rayon::current_num_threads());
    for name in scales {
        let Some(scale) = Scale::parse(&name) else {
            eprintln!("unknown scale {name}");
            continue;
        };
        let options = Options::new(scale, 7);
        let mut sink = Counter(0);
        let started = Instant::now();
        let summary = generate(&options, &mut sink, |_| {}).expect("generation succeeds");
        let secs = started.elapsed().as_secs_f64();
        let lines = summary.stats.lines();
        println!(
            "{name:<9} {lines:>11} lines {:>8.1} MiB in {secs:>7.2} s: {:>9.0} lines/s, {:>6.1} MiB/s",
            sink.0 as f64 / 1048576.0,
            lines as f64 / secs,
            sink.0 as f64 / 1048576.0 / secs
        );
    }
}
