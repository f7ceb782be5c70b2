//! Progress of long work on standard error, shown only when standard error is a terminal
//! (so scripts and logs never see it), redrawn at most ten times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// One line of progress for one piece of work.
#[derive(Debug)]
pub(crate) struct Progress {
    label: &'static str,
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// Progress of `label`, shown when standard error is a terminal.
    pub(crate) fn new(label: &'static str) -> Progress {
        Progress {
            label,
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
        }
    }

    fn due(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return false;
        }
        self.last = Some(now);
        true
    }

    fn draw(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}: {text} ({:.1} s)",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Bytes done out of `total`.
    pub(crate) fn bytes(&mut self, done: u64, total: u64) {
        if self.due() {
            let pct = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            self.draw(&format!("{pct:.0}% of {}", human_bytes(total)));
        }
    }

    /// A count of items (entries, versions) done.
    pub(crate) fn count(&mut self, done: u64, what: &str) {
        if self.due() {
            self.draw(&format!("{done} {what}"));
        }
    }

    /// Bytes done, total unknown.
    pub(crate) fn bytes_so_far(&mut self, done: u64) {
        if self.due() {
            self.draw(&human_bytes(done));
        }
    }

    /// Just the elapsed time.
    pub(crate) fn tick(&mut self) {
        if self.due() {
            self.draw("running");
        }
    }

    /// Clears the line.
    pub(crate) fn finish(self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// `12.3 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}
