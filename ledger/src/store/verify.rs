//! The verifier threads: signatures of a group checked beside the writer,
//! so that the verification can overlap the group's sync; when they have
//! no group to check, they check the requests still queued behind the
//! group being committed ("ahead"), so that the next group finds its
//! signatures checked already. Each request gets its own verdict: one
//! forgery never sends honest requests back to be checked again. The
//! first thread, which takes the small groups, checks ahead one request at
//! a time and is woken for queued requests last: a group's own signatures
//! are on the writer's path, and must not wait behind a long ahead batch.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use caseledger_keys::{PublicKey, Signature};

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
    pub fn extend_from(&mut self, other: &Work) {
        self.messages.extend(other.messages.iter().cloned());
        self.signatures.extend_from_slice(&other.signatures);
        self.keys.extend_from_slice(&other.keys);
    }

    /// Whether every signature in `range` holds under the one signature
    /// rule ([`PublicKey::verify_raw`], strict RFC 8032), checked one by one:
    /// no batch equation accepts exactly the same set.
    pub fn verify(&self, range: Range<usize>) -> bool {
        range
            .into_iter()
            .all(|i| self.keys[i].verify_raw(&self.messages[i], &self.signatures[i]).is_ok())
    }
}

/// The signatures of one queued request (its records' and its own), with
/// the keys their signers' key ids name: a key id is derived from its key,
/// so the check holds whatever the registry says of the key by the time
/// the request is admitted. An idle verifier thread may check them before
/// the request's group forms.
pub(super) struct Ahead {
    work: Work,
    state: Mutex<AheadState>,
}

enum AheadState {
    /// Waiting for an idle verifier thread.
    Queued,
    /// Its group formed first: the group verifies it.
    Claimed,
    /// Being checked in a batch of queued requests.
    Running(Arc<Outcome>),
    /// Checked: whether its signatures held.
    Done(bool),
}

/// The outcome of one request's ahead check.
#[derive(Default)]
pub(super) struct Outcome {
    valid: Mutex<Option<bool>>,
    ready: Condvar,
}

impl Outcome {
    fn set(&self, valid: bool) {
        *lock(&self.valid) = Some(valid);
        self.ready.notify_all();
    }

    fn wait(&self) -> bool {
        let mut valid = lock(&self.valid);
        loop {
            if let Some(valid) = *valid {
                return valid;
            }
            valid = self.ready.wait(valid).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn known(&self) -> Option<bool> {
        *lock(&self.valid)
    }
}

/// What a group still has to do about a request's ahead check.
pub(super) enum Claim {
    /// Its signatures are valid.
    Valid,
    /// They are being checked: wait for this outcome.
    Running(Arc<Outcome>),
    /// Nobody has checked them: verify this work.
    Verify,
}

impl Ahead {
    pub fn new(work: Work) -> Arc<Self> {
        Arc::new(Self {
            work,
            state: Mutex::new(AheadState::Queued),
        })
    }

    pub fn work(&self) -> &Work {
        &self.work
    }

    /// Called by the request's group: verifier threads no longer take it.
    pub fn claim(&self) -> Claim {
        let mut state = lock(&self.state);
        match &*state {
            AheadState::Queued | AheadState::Claimed => {
                *state = AheadState::Claimed;
                Claim::Verify
            }
            AheadState::Running(outcome) => Claim::Running(Arc::clone(outcome)),
            AheadState::Done(true) => Claim::Valid,
            // Checked and found bad: the group's check finds it again and
            // the request is refused.
            AheadState::Done(false) => Claim::Verify,
        }
    }

    fn queued(&self) -> bool {
        matches!(*lock(&self.state), AheadState::Queued)
    }
}

/// The ahead checks of queued requests, in queue order.
#[derive(Default)]
pub(super) struct AheadQueue {
    checks: Mutex<VecDeque<Arc<Ahead>>>,
    /// The lanes of the verifier threads that check ahead, to wake one for
    /// queued work.
    lanes: std::sync::OnceLock<Vec<Arc<Lane>>>,
    /// Signatures checked ahead so far.
    checked: std::sync::atomic::AtomicU64,
}

impl AheadQueue {
    /// Queues `check`. While a group is being committed (`busy`), every
    /// [`AHEAD_WAKE`] queued requests wake a parked verifier thread to
    /// check them.
    pub fn push(&self, check: Arc<Ahead>, busy: bool) {
        let queued = {
            let mut checks = lock(&self.checks);
            checks.push_back(check);
            checks.len()
        };
        if busy && queued % AHEAD_WAKE == 0 {
            if let Some(lanes) = self.lanes.get() {
                let _ = lanes.iter().any(|lane| lane.poke());
            }
        }
    }

    /// Signatures checked ahead so far.
    pub fn checked(&self) -> u64 {
        self.checked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the checks at the front that no verifier thread will take.
    pub fn trim(&self) {
        let mut checks = lock(&self.checks);
        while checks.front().is_some_and(|c| !c.queued()) {
            checks.pop_front();
        }
    }

    /// Takes queued checks for about `signatures` signatures (at least
    /// one request) and marks each running with its own outcome.
    fn take(&self, signatures: usize) -> Vec<(Arc<Ahead>, Arc<Outcome>)> {
        let mut checks = lock(&self.checks);
        let mut taken = Vec::new();
        let mut count = 0;
        while count < signatures {
            let Some(check) = checks.pop_front() else { break };
            let mut state = lock(&check.state);
            if matches!(*state, AheadState::Queued) {
                let outcome = Arc::new(Outcome::default());
                *state = AheadState::Running(Arc::clone(&outcome));
                count += check.work.signatures.len();
                drop(state);
                taken.push((check, outcome));
            }
        }
        taken
    }

    /// Checks queued requests of about `signatures` signatures, each on
    /// its own (one forgery leaves the verdicts of the others standing);
    /// false if there was none.
    fn run_one(&self, signatures: usize) -> bool {
        let taken = self.take(signatures);
        for (check, outcome) in &taken {
            let count = check.work.messages.len();
            let valid = check.work.verify(0..count);
            self.checked
                .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
            *lock(&check.state) = AheadState::Done(valid);
            outcome.set(valid);
        }
        !taken.is_empty()
    }
}

/// Signatures checked together ahead of their groups, by one thread.
const AHEAD_BATCH: usize = 16;
/// Queued requests that wake a parked verifier thread.
const AHEAD_WAKE: usize = 8;

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
    /// Woken for queued requests to check ahead.
    poked: bool,
    closed: bool,
}

/// What a verifier thread does next.
enum Next {
    Job(Job),
    /// Check queued requests ahead.
    Ahead,
    Closed,
}

impl Lane {
    /// The next job if one is queued now.
    fn try_next(&self) -> Option<Job> {
        lock(&self.state).jobs.pop_front()
    }

    /// The next job; `None` once the pool is closed. Waits by polling (with
    /// `yield_now`, so other threads run) for up to `spin`, then parks:
    /// waking a parked thread costs the submitter ~15 µs on this virtual
    /// machine, about as much as the rest of a lone append's CPU work.
    fn next(&self, spin: Duration) -> Next {
        let deadline = std::time::Instant::now() + spin;
        loop {
            {
                let mut state = lock(&self.state);
                if let Some(job) = state.jobs.pop_front() {
                    return Next::Job(job);
                }
                if state.closed {
                    return Next::Closed;
                }
                if std::time::Instant::now() >= deadline {
                    state.parked = true;
                    while state.jobs.is_empty() && !state.closed && !state.poked {
                        state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    state.parked = false;
                    if std::mem::take(&mut state.poked) && state.jobs.is_empty() {
                        return Next::Ahead;
                    }
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

    /// Wakes the thread if it is parked, to check queued requests ahead;
    /// false if it was not parked. A thread not yet parked (still polling,
    /// or not scheduled since its polling time ran out) keeps the poke and
    /// checks ahead instead of parking: a poke that came just before it
    /// parked is not lost (the queued requests would otherwise wait for
    /// their own group).
    fn poke(&self) -> bool {
        let mut state = lock(&self.state);
        if state.poked {
            return false;
        }
        state.poked = true;
        if !state.parked {
            return false;
        }
        self.ready.notify_one();
        true
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
    /// Ahead checks of the group's requests still running.
    ahead: Vec<Arc<Outcome>>,
}

impl Verdict {
    /// Whether there is anything to wait for.
    pub fn is_pending(&self) -> bool {
        self.parts > 0 || self.ahead.iter().any(|outcome| outcome.known().is_none())
    }

    /// True if every signature is valid.
    pub fn wait(self) -> bool {
        (0..self.parts).all(|_| self.answers.recv().unwrap_or(false)) && self.ahead.iter().all(|o| o.wait())
    }
}

impl VerifyPool {
    pub fn start(threads: usize, ahead: Arc<AheadQueue>) -> Self {
        let count = threads.max(1);
        let (lanes, threads): (Vec<Arc<Lane>>, Vec<JoinHandle<()>>) = (0..count)
            .map(|n| {
                let lane = Arc::new(Lane::default());
                let spin = if n == 0 { VERIFIER_SPIN } else { Duration::ZERO };
                let ahead_step = ahead_step(n, count);
                let thread = {
                    let lane = Arc::clone(&lane);
                    let ahead = Arc::clone(&ahead);
                    std::thread::Builder::new()
                        .name(format!("ledger-verify-{n}"))
                        .spawn(move || {
                            lower_priority();
                            let mut wait = Duration::ZERO;
                            // Queued requests are checked ahead only by a
                            // thread that has just worked or was woken for
                            // them, never by one just started.
                            let mut worked = false;
                            loop {
                                // A group's own job first, then queued
                                // requests, then wait for a group.
                                let job = match lane.try_next() {
                                    Some(job) => job,
                                    None if worked && ahead.run_one(ahead_step) => continue,
                                    None => match lane.next(wait) {
                                        Next::Job(job) => job,
                                        Next::Ahead => {
                                            worked = true;
                                            continue;
                                        }
                                        Next::Closed => break,
                                    },
                                };
                                worked = true;
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
        // The first thread is woken for queued requests last.
        let checking: Vec<Arc<Lane>> = lanes.iter().skip(1).chain(lanes.first()).map(Arc::clone).collect();
        let _ = ahead.lanes.set(checking);
        Self { lanes, threads }
    }

    /// Starts verifying `work`, split over the threads when it is large
    /// enough to be worth it; the verdict also waits for `ahead`.
    pub fn submit(&self, work: Work, ahead: Vec<Arc<Outcome>>) -> Verdict {
        let (answer, answers) = mpsc::channel();
        let n = work.messages.len();
        if n == 0 {
            return Verdict {
                answers,
                parts: 0,
                ahead,
            };
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
        Verdict { answers, parts, ahead }
    }
}

/// How many signatures verifier thread `n` of `count` checks ahead
/// between two looks at its own queue: the first thread, which takes the
/// small groups, checks one request at a time (about 40 µs a signature),
/// so that a group's own signatures never wait long behind it.
fn ahead_step(n: usize, count: usize) -> usize {
    if n == 0 && count > 1 {
        1
    } else {
        AHEAD_BATCH
    }
}

/// The niceness of the verifier threads.
const VERIFIER_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority to [`VERIFIER_NICE`].
///
/// Signature checks keep both cores busy under load. At equal priority
/// the writer thread, woken when its fsync completes, and the callers'
/// threads waited behind it for the rest of a verifier's time slice (about
/// 300 µs of each 620 µs sync, measured with `/proc/thread-self/schedstat`);
/// at nice 10 they run at once and the verifier threads take the CPU that
/// is left, which is what checking queued requests ahead needs.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take plain integers and touch
        // no memory of ours; on Linux a thread id names just this thread.
        #[allow(unsafe_code)]
        let tid = unsafe { libc::gettid() };
        // Raising one's own niceness needs no privilege; if it still fails,
        // the thread runs at the default priority, which is only slower.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, VERIFIER_NICE) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use caseledger_keys::Identity;

    fn check(signer: &Identity, message: &[u8], forged: bool) -> Arc<Ahead> {
        let signed: &[u8] = if forged { b"other bytes" } else { message };
        Ahead::new(Work {
            messages: vec![message.to_vec()],
            signatures: vec![signer.sign_raw(signed)],
            keys: vec![signer.public_key()],
        })
    }

    #[test]
    fn every_verifier_thread_checks_ahead_and_the_first_is_woken_last() {
        for threads in [1, 2, 4] {
            let ahead = Arc::new(AheadQueue::default());
            let pool = VerifyPool::start(threads, Arc::clone(&ahead));
            let lanes = ahead.lanes.get().expect("set by start");
            assert_eq!(lanes.len(), threads);
            assert!(
                Arc::ptr_eq(lanes.last().expect("one lane at least"), &pool.lanes[0]),
                "{threads} threads: the first thread is woken last"
            );
            assert_eq!(ahead_step(0, threads), if threads == 1 { AHEAD_BATCH } else { 1 });
            // Queued checks are checked once parked threads are woken for
            // them (a thread never checks ahead on its first loop).
            wait_until("the threads park", || lanes.iter().all(|lane| lock(&lane.state).parked));
            let signer = Identity::generate();
            for n in 0..AHEAD_WAKE {
                ahead.push(check(&signer, format!("m{n}").as_bytes(), false), true);
            }
            wait_until("the queued requests are checked ahead", || {
                ahead.checked() == AHEAD_WAKE as u64
            });
        }
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn claimed_checks_are_left_to_their_group_and_each_request_has_its_own_verdict() {
        let signer = Identity::generate();
        let queue = AheadQueue::default();
        let (claimed, good, forged, after) = (
            check(&signer, b"claimed", false),
            check(&signer, b"good", false),
            check(&signer, b"forged", true),
            check(&signer, b"after", false),
        );
        for c in [&claimed, &good, &forged, &after] {
            queue.push(Arc::clone(c), false);
        }
        assert!(matches!(claimed.claim(), Claim::Verify));
        assert!(queue.run_one(AHEAD_BATCH), "the three unclaimed checks are taken");
        assert!(
            !queue.run_one(AHEAD_BATCH),
            "nothing is left; the claimed check was skipped"
        );
        assert_eq!(queue.checked(), 3);
        // The forgery is left to its group (which refuses it); the honest
        // requests checked with it, before and after, stay valid.
        assert!(matches!(good.claim(), Claim::Valid));
        assert!(matches!(forged.claim(), Claim::Verify));
        assert!(matches!(after.claim(), Claim::Valid));

        // A step of one signature takes one request at a time.
        let (first, second) = (check(&signer, b"first", false), check(&signer, b"second", false));
        queue.push(Arc::clone(&first), false);
        queue.push(Arc::clone(&second), false);
        let taken = queue.take(1);
        assert_eq!(taken.len(), 1);
        assert!(Arc::ptr_eq(&taken[0].0, &first));
        assert!(matches!(second.claim(), Claim::Verify), "the second was not taken");
        let Claim::Running(outcome) = first.claim() else {
            panic!("a running check is waited for")
        };
        assert!(Arc::ptr_eq(&outcome, &taken[0].1));
        assert_eq!(outcome.known(), None);
        taken[0].1.set(true);
        assert!(outcome.wait());
    }
}
