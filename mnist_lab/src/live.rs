//! Live training: the stop button, and a progress display that updates while a cell runs.
//!
//! This module is the one place that documents how the crate talks to the project's kernel
//! launcher (`scripts/labkit/kernel.py`), which sits between Jupyter and evcxr as a proxy.
//!
//! # Stopping
//!
//! The launcher starts the kernel with [`STOP_FILE_VAR`] naming a file that does not exist.
//! When the student presses Jupyter's stop button while a cell runs, the launcher creates
//! that file instead of passing the interrupt on (evcxr would kill the process that holds
//! every variable). [`train`](crate::train::train), [`evaluate`](crate::train::evaluate)
//! and the crate's other long loops ask [`StopSignal::requested`] once per step: it looks
//! for the file (one `stat`), removes it when it is there, and the loop ends after the
//! current step and returns normally. The model keeps its training so far, and the cell goes
//! on (its chart still draws). When no loop picks the file up within about 2 seconds (a
//! student's own loop, a `sleep`), the launcher removes it and passes the interrupt on to
//! evcxr after all, saying that the variables were lost.
//!
//! The command line's Ctrl+C calls [`request_stop`], which the same check picks up.
//!
//! # Live displays
//!
//! When [`LIVE_VAR`] is `1`, the launcher turns stdout lines of the form
//!
//! ```text
//! MNIST_LAB_DISPLAY {"id":"mnist-lab-1234-1","update":false,"data":{"text/plain":"...","text/html":"..."}}
//! ```
//!
//! (the prefix [`DISPLAY_MARKER`], then compact JSON on one line) into a Jupyter
//! `display_data` message with that `display_id` (`"update": false`) or an
//! `update_display_data` for it (`"update": true`), and removes the line from the cell's
//! text. Without the launcher (a plain evcxr kernel, the command line, tests) nothing sets
//! [`LIVE_VAR`] and no such line is printed. Jupyter notebooks render whole outputs, not
//! terminal control characters, so this is how a progress bar updates in place.
//!
//! [`train`](crate::train::train) shows one such display: a progress bar with the epoch,
//! step, loss, images/s and time left, and the loss chart, redrawn at most once a second.
//! When training ends the display keeps the finished bar and its summary line only; the
//! chart the cell draws itself (`loss_chart(&report)?`) is the one that stays.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::report::{TrainingReport, thousands};

/// Environment variable naming the stop file (set by the project's kernel launcher).
pub const STOP_FILE_VAR: &str = "MNIST_LAB_STOP_FILE";
/// Environment variable that is `1` when the kernel turns marker lines into live displays.
pub const LIVE_VAR: &str = "MNIST_LAB_LIVE";
/// The start of a marker line (see the module documentation).
pub const DISPLAY_MARKER: &str = "MNIST_LAB_DISPLAY ";

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running loop (or the next one) to stop after its current step, as the stop file
/// does. The command line calls it on the first Ctrl+C.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether the stop button (or [`request_stop`]) asked to stop, for one loop.
///
/// Made once at the start of a loop: it reads [`STOP_FILE_VAR`] then, so that each step
/// costs one `stat` of the file and no look-up of the environment.
///
/// ```
/// use mnist_lab::live::{StopSignal, request_stop};
///
/// let signal = StopSignal::new();
/// assert!(!signal.requested());
/// request_stop();
/// assert!(signal.requested()); // taken: the next loop runs normally
/// assert!(!signal.requested());
/// ```
#[derive(Debug, Default)]
pub struct StopSignal {
    file: Option<PathBuf>,
}

impl StopSignal {
    /// Reads the stop file's path from the environment, if the kernel set one.
    pub fn new() -> Self {
        StopSignal {
            file: std::env::var_os(STOP_FILE_VAR)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
        }
    }

    /// A signal that watches `file` (the tests' stand-in for the kernel's stop file).
    #[cfg(test)]
    pub(crate) fn with_file(file: PathBuf) -> Self {
        StopSignal { file: Some(file) }
    }

    /// True once a stop was asked for since the last call; the request is then used up (the
    /// stop file removed), so that the next loop runs normally.
    pub fn requested(&self) -> bool {
        if STOP.swap(false, Ordering::SeqCst) {
            return true;
        }
        match &self.file {
            // Removing it is what tells the launcher the stop was taken (and not to kill
            // the process); if it vanished meanwhile, it was still asked for.
            Some(file) if file.exists() => {
                let _ = std::fs::remove_file(file);
                true
            }
            _ => false,
        }
    }

    /// [`requested`](StopSignal::requested) for a pass over `of` images that has seen
    /// `images`; when a stop was asked for, it also prints what the result is then made of:
    /// `Stopped after 300 of the 2000 {what}`, where `what` names the images and their result
    /// (`"test images: the accuracy below is on those"`).
    pub(crate) fn requested_after(&self, images: usize, of: usize, what: &str) -> bool {
        let stop = self.requested();
        if stop {
            println!("Stopped after {images} of the {of} {what}");
        }
        stop
    }
}

/// Whether the kernel shows live displays ([`LIVE_VAR`] is `1`).
pub fn enabled() -> bool {
    std::env::var_os(LIVE_VAR).is_some_and(|v| v == "1")
}

/// A display that can be shown once and then updated in place, through the launcher.
///
/// Outside the project's kernel ([`enabled`] is false) it prints nothing.
#[derive(Debug)]
pub struct LiveDisplay {
    id: Option<String>,
    shown: bool,
}

impl LiveDisplay {
    /// A new display with an id of its own, or an inert one outside the project's kernel.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = enabled().then(|| {
            format!(
                "mnist-lab-{}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        });
        LiveDisplay { id, shown: false }
    }

    /// Whether anything will be shown.
    pub fn is_active(&self) -> bool {
        self.id.is_some()
    }

    /// Shows `html` (with `text` for plain-text front ends) the first time, then replaces it.
    pub fn show(&mut self, text: &str, html: &str) {
        let Some(id) = &self.id else { return };
        let line = serde_json::json!({
            "id": id,
            "update": self.shown,
            "data": {"text/plain": text, "text/html": html},
        });
        // One whole line: evcxr streams stdout line by line, and the launcher reads it so.
        println!("{DISPLAY_MARKER}{line}");
        self.shown = true;
    }
}

impl Default for LiveDisplay {
    fn default() -> Self {
        Self::new()
    }
}

/// How far a training run has got.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The current epoch, from 1.
    pub epoch: usize,
    /// Epochs asked for.
    pub num_epochs: usize,
    /// Steps taken so far, all epochs together.
    pub step: usize,
    /// Steps the run will take (fewer than the epochs hold when `max_steps` cuts it short).
    pub total_steps: usize,
    /// The last step's loss; on a GPU, the loss last read (they are read once per log
    /// interval: see [`train`](crate::train::train)).
    pub loss: f32,
    /// Training images per second so far.
    pub images_per_second: f64,
    /// Seconds of training so far.
    pub elapsed_seconds: f64,
}

impl Progress {
    /// Seconds left at the rate so far.
    pub fn remaining_seconds(&self) -> f64 {
        let per_step = self.elapsed_seconds / self.step.max(1) as f64;
        per_step * self.total_steps.saturating_sub(self.step) as f64
    }

    /// One line: `epoch 2/3, step 150/240, loss 1.2345, 8,000 images/s, 4 s left`.
    ///
    /// ```
    /// let progress = mnist_lab::live::Progress {
    ///     epoch: 2, num_epochs: 3, step: 150, total_steps: 240, loss: 1.23456,
    ///     images_per_second: 8000.0, elapsed_seconds: 6.0,
    /// };
    /// assert_eq!(progress.line(), "epoch 2/3, step 150/240, loss 1.2346, 8,000 images/s, 4 s left");
    /// ```
    pub fn line(&self) -> String {
        format!(
            "epoch {}/{}, step {}/{}, loss {:.4}, {} images/s, {} left",
            self.epoch,
            self.num_epochs,
            self.step,
            self.total_steps,
            self.loss,
            thousands(self.images_per_second),
            duration(self.remaining_seconds())
        )
    }

    /// The progress bar as HTML: a `<progress>` element and [`Progress::line`].
    pub fn html(&self) -> String {
        format!(
            "<div style=\"font-family: monospace\"><progress value=\"{}\" max=\"{}\" \
             style=\"width: 20em; vertical-align: middle\"></progress> {}</div>",
            self.step,
            self.total_steps.max(1),
            html_escape(&self.line())
        )
    }
}

/// `75` as `1 min 15 s`, `12.3` as `12 s`.
pub(crate) fn duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// Receives a training run's progress instead of the printed log lines: the command line's
/// progress bar is one.
pub trait Observer: Send + Sync {
    /// After every step.
    fn progress(&self, progress: &Progress);
    /// A log line the loop would otherwise print (`Epoch [1/3], Step [100/600], ...`).
    fn line(&self, text: &str);
    /// After the last step (or a stop).
    fn finished(&self) {}
}

static OBSERVER: RwLock<Option<Arc<dyn Observer>>> = RwLock::new(None);

/// Sends every training run's progress in this process to `observer` (the command line
/// does this when its output is a terminal). Log lines then go to it instead of stdout.
pub fn set_observer(observer: impl Observer + 'static) {
    *OBSERVER.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(observer));
}

/// Sends progress to no observer again (for the tests that set one).
#[cfg(test)]
pub(crate) fn clear_observer() {
    *OBSERVER.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The observer set with [`set_observer`], if any.
pub(crate) fn observer() -> Option<Arc<dyn Observer>> {
    OBSERVER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Prints a log line, or hands it to the observer.
pub(crate) fn log(observer: Option<&Arc<dyn Observer>>, text: &str) {
    match observer {
        Some(observer) => observer.line(text),
        None => println!("{text}"),
    }
}

/// Escapes text for HTML.
pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What [`train`](crate::train::train) shows as it goes: the log lines, the live display of the project's
/// notebook kernel, and the command line's progress bar.
pub(crate) struct Watch {
    observer: Option<Arc<dyn Observer>>,
    display: LiveDisplay,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl Watch {
    /// Redraws of the live display are at most this often.
    const REDRAW_EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Watch {
            observer: observer(),
            display: LiveDisplay::new(),
            started: Instant::now(),
            last_drawn: None,
        }
    }

    pub(crate) fn line(&self, text: &str) {
        log(self.observer.as_ref(), text);
    }

    /// Seconds since the watch began.
    pub(crate) fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Whether anything watches the steps (outside the notebook kernel and a terminal,
    /// nothing does, and a step costs nothing more).
    pub(crate) fn is_watched(&self) -> bool {
        self.observer.is_some() || self.display.is_active()
    }

    /// After each step.
    pub(crate) fn step(&mut self, report: &TrainingReport, progress: &Progress) {
        if let Some(observer) = &self.observer {
            observer.progress(progress);
        }
        let due = self
            .last_drawn
            .is_none_or(|at| at.elapsed() >= Self::REDRAW_EVERY);
        if self.display.is_active() && due {
            let chart = crate::plot::loss_chart_svg(report).unwrap_or_default();
            self.display
                .show(&progress.line(), &format!("{}{chart}", progress.html()));
            self.last_drawn = Some(Instant::now());
        }
    }

    /// At the end: the finished bar and its summary stay, without the chart (the cell
    /// draws its own).
    pub(crate) fn finish(&mut self, last: Option<Progress>, summary: &str) {
        if let Some(observer) = &self.observer {
            observer.finished();
        }
        if let (true, Some(progress)) = (self.display.is_active(), last) {
            let html = progress
                .html()
                .replace(&html_escape(&progress.line()), &html_escape(summary));
            self.display.show(summary, &html);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inert_display_prints_nothing_and_says_so() {
        // The tests never run under the project's kernel.
        if enabled() {
            return;
        }
        let mut display = LiveDisplay::new();
        assert!(!display.is_active());
        display.show("text", "<b>html</b>");
        assert!(!display.shown);
    }

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(duration(0.4), "0 s");
        assert_eq!(duration(59.4), "59 s");
        assert_eq!(duration(75.0), "1 min 15 s");
        assert_eq!(duration(7300.0), "2 h 1 min");
    }

    #[test]
    fn the_stop_file_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stop");
        let signal = StopSignal::with_file(file.clone());
        assert!(!signal.requested());
        std::fs::write(&file, "").unwrap();
        assert!(signal.requested());
        assert!(!file.exists(), "the signal removes the file it took");
        assert!(!signal.requested());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(html_escape("a < b & c"), "a &lt; b &amp; c");
    }
}
