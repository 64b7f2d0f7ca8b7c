//! The caseledger service crate: court workflow helpers shared by the CLI,
//! the demo and the tests (the HTTP service and SMS come with later issues).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod commitments;
pub mod court;
pub mod service;

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

/// The date in China Standard Time of `ms` since the epoch, `YYYY-MM-DD`.
pub fn date_cst(ms: u64) -> String {
    let (year, month, day) = civil_from_days((ms.saturating_add(8 * 3_600_000) / 86_400_000) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard
/// Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
