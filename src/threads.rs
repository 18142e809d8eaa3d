//! Work split over threads: a slice in contiguous chunks, one scoped thread
//! each. For lookups that mostly wait for the disk (many small reads with a
//! cold page cache) or hash on every core.
//!
//! Written here rather than taken from rayon: three callers, each needing
//! per-chunk state (a libostree `Repo` is not `Sync`) and their own thread
//! count, do not justify a thread-pool dependency.

use anyhow::{anyhow, Result};

/// Give the calling thread the scheduling priority `nice` (on Linux,
/// setpriority on a thread id affects that thread only): background work
/// that must leave the cores to the compose's own steps.
pub fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Failing leaves the normal priority: only fairness is lost.
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// `f` on `items` split into at most `threads` contiguous chunks, each on a
/// scoped thread of its own; the chunks' outputs concatenated in item
/// order, or the error of the first chunk (in item order) that failed. A
/// panicking chunk is an error naming `what` ("`what` panicked").
pub fn map_chunks<T, U, F>(items: &[T], threads: usize, what: &str, f: F) -> Result<Vec<U>>
where
    T: Sync,
    U: Send,
    F: Fn(&[T]) -> Result<Vec<U>> + Sync,
{
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<U>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(per).map(|part| s.spawn(|| f(part))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("{what} panicked"))))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_item_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..10).collect();
        let doubled = map_chunks(&items, 3, "t", |part| {
            Ok(part.iter().map(|i| i * 2).collect())
        })
        .unwrap();
        assert_eq!(doubled, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        let kept = map_chunks(&items, 4, "t", |part| {
            Ok(part.iter().copied().filter(|i| i % 3 == 0).collect())
        })
        .unwrap();
        assert_eq!(kept, [0, 3, 6, 9]);
        let err = map_chunks(&items, 5, "t", |part| {
            match part.iter().find(|i| **i >= 4) {
                Some(i) => Err(anyhow!("bad {i}")),
                None => Ok(part.to_vec()),
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "bad 4");
        let none: Vec<u32> = map_chunks(&[] as &[u32], 0, "t", |p| Ok(p.to_vec())).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_panicking_chunk_is_an_error() {
        let err = map_chunks(&[1, 2], 2, "a lookup thread", |p: &[i32]| {
            if p[0] == 2 {
                panic!("boom");
            }
            Ok(p.to_vec())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "a lookup thread panicked");
    }
}
