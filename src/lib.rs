//! The caseledger service crate: court workflow helpers shared by the CLI,
//! the demo and the tests (the HTTP service and SMS come with later issues).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod commitments;
pub mod conceal;
pub mod court;
pub mod service;
pub mod witness;

/// Maps every item to zero or more results on all cores, keeping the order
/// of the items. `f` gets the item's index. For signing many records.
pub fn parallel_flat_map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> Vec<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .flat_map(|(i, item)| f(c * chunk + i, item))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

pub use caseledger_verify::text::{civil_from_days, date_cst};
