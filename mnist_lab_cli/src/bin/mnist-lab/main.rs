//! `mnist-lab`: the lecture from the command line.
//!
//! - `mnist-lab lecture` runs the lecture's five trainings in order and writes a loss plot
//!   and a JSON report.
//! - `mnist-lab train --model conv` trains one model.
//! - `mnist-lab bench` measures training and evaluation images/s and prints JSON.
//!
//! Every output path is checked before any work starts. On a terminal, training shows a
//! progress bar; the first Ctrl+C stops the current run after its step and still writes the
//! results so far, a second one exits at once.

mod args;
mod commands;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use mnist_lab::live;

use crate::args::Cli;
use crate::progress::Bar;

fn main() -> ExitCode {
    exit_quietly_on_a_closed_pipe();
    mnist_lab::check::install_panic_hook();
    stop_on_ctrl_c();
    if std::io::stdout().is_terminal() {
        live::set_observer(Bar::default());
    }
    match commands::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mnist-lab train | head` closes the pipe early: end as other command-line tools do, at
/// once and without a message, rather than panic at the next line printed (and abort when
/// the panic's own message cannot be printed either). Rust programs ignore SIGPIPE unless
/// told otherwise; this restores the system's default.
fn exit_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13; // the same number on Linux and macOS
        const SIG_DFL: usize = 0;
        // SAFETY: called first thing in main, before any thread starts; restores a default.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

/// The first Ctrl+C asks the running loop to stop after its step (the results so far are
/// still written); the second exits at once.
fn stop_on_ctrl_c() {
    static PRESSED: AtomicUsize = AtomicUsize::new(0);
    let installed = ctrlc::set_handler(|| {
        if PRESSED.fetch_add(1, Ordering::SeqCst) == 0 {
            live::request_stop();
            eprintln!(
                "\nStopping after this step; the results so far will be written. Press Ctrl+C \
                 again to quit at once."
            );
        } else {
            std::process::exit(130);
        }
    });
    if let Err(error) = installed {
        eprintln!("warning: Ctrl+C will quit at once ({error})");
    }
}
