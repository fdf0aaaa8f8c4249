//! Panics turned into messages: [`quietly`] runs code whose panic becomes an error (a model
//! checked on a sample batch, a file loaded into a model), and [`install_panic_hook`] makes a
//! panic that reaches a notebook cell one short paragraph. A leaf module: it uses nothing of
//! the crate, and [`crate::check`] re-exports its public part.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs [`quietly`]: the panic hooks print nothing then.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's panics silenced, and turns a panic into its message.
///
/// The process-wide panic hook is never swapped back and forth (two threads doing that at
/// once could leave the silent one installed for good): the hook, installed once, asks a
/// flag of the panicking thread.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static WRAPPED: Once = Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info);
            }
        }));
    });
    let was_quiet = QUIET.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was_quiet);
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

pub(crate) fn first_line(message: &str) -> &str {
    message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
}

/// Replaces the default panic output (message, location, backtrace hint) with a short
/// paragraph, so that a panic that still reaches a notebook cell reads as an error message.
///
/// In evcxr the kernel keeps the variables of earlier cells after such a panic.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if QUIET.get() {
            return; // a panic that `quietly` turns into an error
        }
        let message = first_line(&panic_message(info.payload())).to_string();
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: {message}{place}. The cell stopped here; fix the cause and run it again."
        );
        // evcxr reads a cell's stderr on another thread than the one that reports the cell's
        // end: without a moment's pause, the message sometimes arrives after the notebook
        // has closed the cell, and the student sees nothing at all.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quietly_silences_only_its_own_thread_and_only_meanwhile() {
        let inside = quietly(|| {
            let nested = quietly(|| panic!("inner"));
            assert_eq!(nested.unwrap_err(), "inner");
            // Still quiet after the nested call; another thread is not.
            let other = std::thread::spawn(|| QUIET.get()).join().unwrap();
            (QUIET.get(), other)
        });
        assert_eq!(inside, Ok((true, false)));
        assert_eq!(quietly(|| panic!("outer")).unwrap_err(), "outer");
        assert!(!QUIET.get(), "a caught panic leaves the thread heard again");
    }
}
