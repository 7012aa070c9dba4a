//! Progress of a sweep: a bar on a terminal, a plain line every tenth otherwise (CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports runs done out of a total.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
}

impl Progress {
    /// Starts reporting `total` runs of `what`.
    pub fn new(what: &str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} runs, {per_sec}, eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(what.to_string());
            bar
        });
        if bar.is_none() {
            eprintln!("{what}: {total} runs");
        }
        Progress { bar, total }
    }

    /// One more run is done; `done` counts them all.
    pub fn tick(&self, done: usize) {
        match &self.bar {
            Some(bar) => bar.set_position(done as u64),
            None => {
                let step = (self.total / 10).max(1);
                if done.is_multiple_of(step) || done == self.total {
                    eprintln!("  {done}/{} runs", self.total);
                }
            }
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
