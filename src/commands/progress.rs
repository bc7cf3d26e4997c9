//! Progress bars for long work. indicatif draws only when stderr is a terminal, so
//! scripts, CI and pipes see clean output.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
