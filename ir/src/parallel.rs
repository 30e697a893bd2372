//! Independent work spread over every available core, with results in the
//! order of the input, so that nothing the compiler outputs depends on the
//! number of cores or on scheduling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// `f` of every item, computed on every available core, in item order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let results = try_map(items, |item| Ok::<R, std::convert::Infallible>(f(item)));
    match results {
        Ok(results) => results,
        Err(never) => match never {},
    }
}

/// `f` of every item, computed on every available core, in item order; or
/// the error of the first item (in item order) whose `f` fails. Once one
/// fails no new item is started, but every item before it is finished, so
/// the error returned is the same whatever the number of cores.
pub fn try_map<T: Sync, R: Send, E: Send>(items: &[T], f: impl Fn(&T) -> Result<R, E> + Sync) -> Result<Vec<R>, E> {
    try_map_on(cores(), items, f)
}

/// The number of available cores: the threads [`map`] and [`try_map`] use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`try_map`] on up to `threads` threads: more than the cores for work that
/// mostly waits (the loader's tcx attaches).
pub fn try_map_on<T: Sync, R: Send, E: Send>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        // Nothing to spread: no thread is started (an apply of a small
        // change has no program to attach, for one).
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut done: Vec<(usize, Result<R, E>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    // Items are taken in order and each taken one is
                    // finished, so every item before a failing one is done.
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let result = f(item);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                    done
                })
            })
            .collect();
        // A worker only panics on a bug; re-raise it here.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u64> = (0..1000).collect();
        assert_eq!(map(&items, |n| n * n), items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(map(&[] as &[u8], |_| ()).is_empty());
    }

    #[test]
    fn the_first_failure_in_input_order_is_returned() {
        let items: Vec<u32> = (0..500).collect();
        for _ in 0..20 {
            let result = try_map(&items, |&n| if n % 97 == 13 { Err(n) } else { Ok(n) });
            assert_eq!(result, Err(13));
        }
        assert_eq!(try_map(&items, |&n| Ok::<_, ()>(n + 1)).unwrap()[499], 500);
        assert_eq!(try_map_on(64, &items, |&n| if n > 300 { Err(n) } else { Ok(n) }), Err(301));
    }
}
