//! The layers' call recorder: while [`crate::inspect::summary`] runs one image through a
//! model, each of the crate's layers records its call (its settings and its output's shape),
//! so the summary lists the layers in the order the data flows. It lives with the layers, the
//! lowest level of the crate, so that they need nothing of the inspection that reads it.

use std::cell::RefCell;

use burn::module::ParamId;

/// One call of a mnist_lab layer's `forward`, recorded while [`crate::inspect::summary`]
/// measures a model.
#[derive(Clone, Debug)]
pub(crate) struct LayerCall {
    /// The id of the layer's weight, which names the layer.
    pub weight: ParamId,
    /// The layer's kind and settings, e.g. `Conv2d 1 -> 10, 7 x 7`.
    pub kind: String,
    /// Its output's shape, batch axis included.
    pub output: Vec<usize>,
    /// The inputs each output value is a weighted sum of (multiply-adds per output value).
    pub fan_in: usize,
}

thread_local! {
    /// The calls recorded on this thread; `None` when nothing records (almost always).
    static CALLS: RefCell<Option<Vec<LayerCall>>> = const { RefCell::new(None) };
}

/// Whether a [`crate::inspect::summary`] is recording layer calls on this thread: one thread-local read,
/// which is all a layer's `forward` pays when nothing records.
#[inline]
pub(crate) fn recording() -> bool {
    CALLS.with(|calls| calls.borrow().is_some())
}

/// Records a layer call (only while [`recording`]; the layers check that first).
pub(crate) fn record(call: LayerCall) {
    CALLS.with(|calls| {
        if let Some(calls) = calls.borrow_mut().as_mut() {
            calls.push(call);
        }
    });
}

/// Runs `f` while recording the mnist_lab layers it calls on this thread, in order.
pub(crate) fn record_calls<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerCall>) {
    /// Puts back what was recording before, even when `f` panics.
    struct Restore(Option<Option<Vec<LayerCall>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                CALLS.with(|calls| *calls.borrow_mut() = previous);
            }
        }
    }
    let mut restore = Restore(Some(
        CALLS.with(|calls| calls.borrow_mut().replace(Vec::new())),
    ));
    let value = f();
    let previous = restore.0.take().unwrap_or_default();
    let calls = CALLS.with(|calls| std::mem::replace(&mut *calls.borrow_mut(), previous));
    (value, calls.unwrap_or_default())
}
