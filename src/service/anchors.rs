//! One small interface for everything outside the operator's reach that
//! vouches for a checkpoint: a witness at another institution
//! (`witnesses.rs`, C2SP tlog-witness), the time-stamp authority
//! (`timestamps.rs`, RFC 3161), and later a province's judicial blockchain
//! platform (ARCHITECTURE.md says what its adapter would send and keep).
//! Each anchor runs on its own thread, offered the node's newest
//! checkpoint, so one that is down or slow delays nothing but itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caseledger_ledger::store::Ledger;

/// What an anchor answered for a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchored {
    /// Anchored; its evidence is kept beside the checkpoint.
    Yes,
    /// Not yet: offer the checkpoint again at once (a witness said which
    /// size it holds, so the next offer carries the proof from there).
    Again,
}

/// An outside party that vouches for checkpoints.
pub trait Anchor: Send {
    /// Its name, for logs, `/readyz` and metrics.
    fn name(&self) -> String;
    /// Anchors the checkpoint `note` of `size` (the node's newest), keeping
    /// its evidence in `ledger`.
    fn anchor(&mut self, ledger: &Ledger, size: u64, note: &str) -> Result<Anchored, String>;
}

/// Offers each new checkpoint to `anchor` until `stop`, pausing `poll`
/// between offers and twice as long after each failure (up to `pause_max`);
/// `report` hears each outcome: the size anchored, or why not.
pub fn spawn(
    ledger: Arc<Ledger>,
    mut anchor: Box<dyn Anchor>,
    poll: Duration,
    pause_max: Duration,
    stop: Arc<AtomicBool>,
    report: Box<dyn Fn(Result<u64, String>) + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("anchor {}", anchor.name()))
        .spawn(move || {
            let mut anchored = 0u64;
            let mut pause = poll;
            while !stop.load(Ordering::SeqCst) {
                let newest = ledger.latest_checkpoint().ok().flatten().filter(|(size, _)| *size > anchored);
                if let Some((size, note)) = newest {
                    match anchor.anchor(&ledger, size, &note) {
                        Ok(Anchored::Yes) => {
                            anchored = size;
                            pause = poll;
                            report(Ok(size));
                        }
                        Ok(Anchored::Again) => continue,
                        Err(error) => {
                            tracing::warn!(anchor = %anchor.name(), size, %error, "an anchor did not vouch for a checkpoint");
                            pause = (pause * 2).min(pause_max);
                            report(Err(error));
                        }
                    }
                }
                let mut slept = Duration::ZERO;
                while slept < pause && !stop.load(Ordering::SeqCst) {
                    let step = Duration::from_millis(50).min(pause);
                    std::thread::sleep(step);
                    slept += step;
                }
            }
        })
        .expect("a thread for an anchor")
}
