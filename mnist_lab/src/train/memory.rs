//! The allocator's settings for training on the CPU: freed tensor buffers kept for the next
//! step ([`tune_allocator`]) and given back only when asked ([`release_memory`]).

/// Keeps freed tensor buffers in the process for reuse instead of handing them back to
/// the operating system (Linux with glibc; elsewhere it does nothing). Called by [`train`](super::train),
/// [`evaluate`](super::evaluate) and the benchmark; calling it again does nothing.
///
/// Every operation on the CPU backends allocates its output, and a training step frees
/// megabytes of them (conv2's first Linear layer alone is 58 MB, its gradient another 58).
/// glibc serves blocks from 128 KB up (32 MB at most, as it adapts) with fresh `mmap`s and
/// returns them on `free`, so the next step pays a page fault for every 4 KB it touches:
/// a fifth to a third of the training time here. Telling malloc to keep such blocks in its
/// heap (no `mmap`, no trimming) makes training markedly faster (`bench/README.md` gives
/// the measurement). The price: memory freed after a run stays with the process
/// until it exits, or until [`release_memory`], which `train`, `evaluate` and
/// [`Interpretation::new`](crate::inspect::Interpretation::new) call when they end (it gives
/// memory back only when asked to, through [`RELEASE_MEMORY_VAR`]).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes malloc's settings; it is thread-safe in glibc.
            unsafe {
                // Serve every block from the heap, never from a private mmap...
                libc::mallopt(libc::M_MMAP_MAX, 0);
                // ... never give the heap's free top back to the system ...
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                // ... and grow it 64 MB at a time.
                libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            }
        });
    }
}

/// The environment variable that says whether [`release_memory`] gives memory back: `1`
/// does; unset or anything else, it does not.
///
/// Off by default: measured in the notebook kernel, giving memory back did not stop the cells'
/// process from growing over three lecture runs, and the next run pays the page faults for
/// what it takes back (see the README's set-up section).
pub const RELEASE_MEMORY_VAR: &str = "MNIST_LAB_RELEASE_MEMORY";

/// Gives the memory that [`tune_allocator`] keeps, the freed blocks, back to the operating
/// system (glibc's `malloc_trim`; elsewhere it does nothing), when [`RELEASE_MEMORY_VAR`] is
/// `1`.
///
/// A command-line run ends its process soon after training, but a notebook kernel lives on:
/// without this, the process that runs the cells keeps the peak of its largest run (conv2's
/// steps free hundreds of MB) for as long as the kernel runs. The next run pays the page
/// faults for the memory it takes back once, at its start, not at every step.
///
/// ```
/// // Safe to call at any time, as often as wanted.
/// mnist_lab::train::release_memory();
/// ```
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var(RELEASE_MEMORY_VAR).as_deref() == Ok("1") {
            // SAFETY: malloc_trim only returns free memory; it is thread-safe in glibc.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// Calls [`release_memory`] when dropped, so that a function holding one releases memory
/// whichever way it returns.
pub(crate) struct ReleaseOnReturn;

impl Drop for ReleaseOnReturn {
    fn drop(&mut self) {
        release_memory();
    }
}
