//! A tiny data-parallel map over a slice, for the CPU- and syscall-bound stages (reading,
//! parsing and hashing thousands of manifests). Order is preserved.
//!
//! Threads take small blocks of items in turn rather than one fixed share each: on a machine
//! shared with other work one thread is often descheduled, and a fixed share would leave the
//! whole map waiting for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Most items a thread takes at a time: enough to make taking cheap, few enough to balance.
const BLOCK: usize = 32;

/// Blocks each thread should get at least, so a short input (a hundred changed objects to
/// render) still ends with every thread busy, not one finishing a last big block alone.
const BLOCKS_PER_THREAD: usize = 8;

/// Maps `f` over `items` on up to `available_parallelism` threads; small inputs stay on the
/// calling thread, where spawning would cost more than it saves.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_init(items, || (), |_, item| f(item))
}

/// `map` where each thread first makes its own state with `init` (a read buffer, say) and
/// hands it to every call it makes.
pub fn map_init<T: Sync, R: Send, S>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    const MIN_PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len() / MIN_PER_THREAD + 1);
    if threads <= 1 {
        let mut state = init();
        return items.iter().map(|item| f(&mut state, item)).collect();
    }
    let block = (items.len() / (threads * BLOCKS_PER_THREAD)).clamp(1, BLOCK);
    let blocks: Vec<&[T]> = items.chunks(block).collect();
    let next = AtomicUsize::new(0);
    // One slot per block, filled by whichever thread took it.
    let done: Mutex<Vec<Option<Vec<R>>>> = Mutex::new((0..blocks.len()).map(|_| None).collect());
    let work = || {
        let mut state = init();
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            let Some(block) = blocks.get(b) else { break };
            let out: Vec<R> = block.iter().map(|item| f(&mut state, item)).collect();
            done.lock().unwrap_or_else(|e| e.into_inner())[b] = Some(out);
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        work();
        for h in helpers {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(items.len());
    for block in done {
        out.extend(block.expect("every block was taken and finished"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_on_many_threads() {
        let items: Vec<u32> = (0..10_000).collect();
        let doubled = super::map(&items, |x| x * 2);
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn each_thread_keeps_its_own_state() {
        let items: Vec<u32> = (0..5_000).collect();
        // Each thread counts the items it saw; every item is seen once.
        let seen = super::map_init(
            &items,
            || 0u32,
            |count, x| {
                *count += 1;
                (*x, *count)
            },
        );
        assert_eq!(seen.iter().map(|(x, _)| *x).collect::<Vec<_>>(), items);
        assert!(seen.iter().all(|(_, c)| *c >= 1));
    }
}
