//! The verifier threads: signatures of a group checked beside the writer,
//! so that the verification can overlap the group's sync.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use caseledger_keys::{verify_batch, PublicKey, Signature};

use super::writer::lock;

/// Below this many signatures a group is verified by one thread.
const PARALLEL_VERIFY_MIN: usize = 16;

/// Signatures to check, shared with the verifier threads.
#[derive(Default)]
pub(super) struct Work {
    pub messages: Vec<Vec<u8>>,
    pub signatures: Vec<Signature>,
    pub keys: Vec<PublicKey>,
}

impl Work {
    pub fn verify(&self, range: Range<usize>) -> bool {
        let refs: Vec<&[u8]> = self.messages[range.clone()].iter().map(Vec::as_slice).collect();
        match refs.len() {
            0 => true,
            1 => self.keys[range.start]
                .verify_raw(refs[0], &self.signatures[range.start])
                .is_ok(),
            _ => verify_batch(&refs, &self.signatures[range.clone()], &self.keys[range]).is_ok(),
        }
    }
}

struct Job {
    work: Arc<Work>,
    range: Range<usize>,
    answer: mpsc::Sender<bool>,
}

/// One verifier thread's queue.
#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
    ready: Condvar,
}

#[derive(Default)]
struct LaneState {
    jobs: VecDeque<Job>,
    parked: bool,
    closed: bool,
}

impl Lane {
    /// The next job; `None` once the pool is closed. Waits by polling (with
    /// `yield_now`, so other threads run) for up to `spin`, then parks:
    /// waking a parked thread costs the submitter ~15 µs on this virtual
    /// machine, about as much as the rest of a lone append's CPU work.
    fn next(&self, spin: Duration) -> Option<Job> {
        let deadline = std::time::Instant::now() + spin;
        loop {
            {
                let mut state = lock(&self.state);
                if let Some(job) = state.jobs.pop_front() {
                    return Some(job);
                }
                if state.closed {
                    return None;
                }
                if std::time::Instant::now() >= deadline {
                    state.parked = true;
                    while state.jobs.is_empty() && !state.closed {
                        state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    state.parked = false;
                    continue;
                }
            }
            std::thread::yield_now();
        }
    }

    fn push(&self, job: Job) {
        let mut state = lock(&self.state);
        state.jobs.push_back(job);
        if state.parked {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
    }
}

/// How long the first verifier thread polls for work before parking: about
/// the time between two appends of one client (one fsync), so that a steady
/// lone writer never has to wake it.
const VERIFIER_SPIN: Duration = Duration::from_micros(1000);
/// ... and only after a job of at most this many signatures.
const SPIN_AFTER_JOBS_OF: usize = 2;

/// Threads that verify signatures beside the writer, so that a group's
/// verification can overlap its sync. Small groups go to the first thread.
pub(super) struct VerifyPool {
    lanes: Vec<Arc<Lane>>,
    threads: Vec<JoinHandle<()>>,
}

/// The answer to a submitted [`Work`].
pub(super) struct Verdict {
    answers: mpsc::Receiver<bool>,
    parts: usize,
}

impl Verdict {
    /// Whether there is anything to wait for.
    pub fn is_pending(&self) -> bool {
        self.parts > 0
    }

    /// True if every signature is valid.
    pub fn wait(self) -> bool {
        (0..self.parts).all(|_| self.answers.recv().unwrap_or(false))
    }
}

impl VerifyPool {
    pub fn start(threads: usize) -> Self {
        let (lanes, threads) = (0..threads.max(1))
            .map(|n| {
                let lane = Arc::new(Lane::default());
                let spin = if n == 0 { VERIFIER_SPIN } else { Duration::ZERO };
                let thread = {
                    let lane = Arc::clone(&lane);
                    std::thread::Builder::new()
                        .name(format!("ledger-verify-{n}"))
                        .spawn(move || {
                            let mut wait = Duration::ZERO;
                            while let Some(job) = lane.next(wait) {
                                // Poll for the next job only after a small
                                // one: a lone writer's pace. Under load the
                                // polling would take CPU from the callers.
                                wait = if job.range.len() <= SPIN_AFTER_JOBS_OF {
                                    spin
                                } else {
                                    Duration::ZERO
                                };
                                let _ = job.answer.send(job.work.verify(job.range));
                            }
                        })
                        .expect("spawning a verifier thread")
                };
                (lane, thread)
            })
            .unzip();
        Self { lanes, threads }
    }

    /// Starts verifying `work`, split over the threads when it is large
    /// enough to be worth it.
    pub fn submit(&self, work: Work) -> Verdict {
        let (answer, answers) = mpsc::channel();
        let n = work.messages.len();
        if n == 0 {
            return Verdict { answers, parts: 0 };
        }
        let work = Arc::new(work);
        let chunk = if n < PARALLEL_VERIFY_MIN {
            n
        } else {
            n.div_ceil(self.lanes.len())
        };
        let mut parts = 0;
        for (start, lane) in (0..n).step_by(chunk).zip(&self.lanes) {
            lane.push(Job {
                work: Arc::clone(&work),
                range: start..(start + chunk).min(n),
                answer: answer.clone(),
            });
            parts += 1;
        }
        Verdict { answers, parts }
    }
}

impl Drop for VerifyPool {
    fn drop(&mut self) {
        for lane in &self.lanes {
            lane.close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
