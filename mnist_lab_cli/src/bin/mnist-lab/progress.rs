//! The progress bar on a terminal: one line on stderr, redrawn in place, with the log lines
//! printed above it.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mnist_lab::live::{Observer, Progress};

/// A one-line progress bar on stderr, for a terminal: the log lines print above it.
#[derive(Default)]
pub struct Bar {
    /// The bar's text and when it was last drawn.
    state: Mutex<(String, Option<Instant>)>,
}

impl Bar {
    const WIDTH: usize = 24;

    fn draw(text: &str) {
        // Carriage return and "erase line": only ever sent to a terminal.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
    }
}

impl Observer for Bar {
    fn progress(&self, progress: &Progress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .1
            .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let filled = Self::WIDTH * progress.step / progress.total_steps.max(1);
        state.0 = format!(
            "[{}{}] {}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled.min(Self::WIDTH)),
            progress.line()
        );
        state.1 = Some(Instant::now());
        Self::draw(&state.0);
    }

    fn line(&self, text: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::draw("");
        println!("{text}");
        if state.1.is_some() {
            Self::draw(&state.0);
        }
    }

    fn finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1.take().is_some() {
            Self::draw("");
        }
    }
}
