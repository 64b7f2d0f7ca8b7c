//! The writer: group commit of appends and checkpoints.
//!
//! Callers queue their records; the first caller in line becomes the leader
//! (as in LevelDB's write queue), takes everything queued (up to
//! `batch_entries_max` entries), checks every record against the key
//! registry and the rules, hands all signatures to the verifier threads
//! (each checked alone with the one signature rule), writes one synced
//! `WriteBatch`, and
//! answers the group only once both the sync and the verification have
//! succeeded; then the next caller in line leads. One fsync serves every
//! caller of the group, and a lone caller commits
//! its own record without handing it to another thread (waking an idle
//! thread costs tens of µs on a virtual machine). A timer thread queues
//! time-based checkpoints.
//!
//! When the group makes no checkpoint and changes no key, the batch is
//! synced while its signatures are being verified, so that a lone caller
//! waits for about one fsync instead of a verification and then an fsync.
//! Such a batch carries a [`PendingGroup`] record saying how to undo it, and
//! the derived-state gate is held until the verdict: readers see neither its
//! entries (the published size moves only after the verdict) nor its derived
//! state. If a signature fails, the group is undone with a second synced
//! batch and the valid requests are committed again; if the process dies
//! first, opening the ledger for writing checks the group's signatures and
//! undoes it then. Nothing unverified is ever acknowledged or shown.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use caseledger_keys::{note, KeyId, PublicKey};
use rocksdb::WriteBatch;

use super::schema::*;
use super::verify::{Ahead, AheadQueue, Claim, Outcome as AheadOutcome, Verdict, VerifyPool, Work};
use super::{read_node, Appended, Authorization, Clock, Options, Published, Shared, WriterState};
use crate::{Error, Result};
use caseledger_verify::admission::admit_record;
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::funds::Outcome;
use caseledger_verify::hash::Hash;
use caseledger_verify::merkle::{self, NodeSource};
use caseledger_verify::registry::Registry;
use caseledger_verify::state::Overlay;

/// How long the writer thread polls for work after a small group: about
/// the time between two requests of one client over HTTP on loopback.
const LEADER_SPIN: Duration = Duration::from_micros(1000);
/// ... and only after a group of at most this many commands.
const SPIN_AFTER_GROUPS_OF: usize = 2;
/// How often a writer stalled by a full disk tries again without being asked.
const STALL_RETRY_MS: u64 = 1000;

enum Command {
    /// Records to append, and the signature of the request that carried
    /// them, checked with the group but not stored; and the check of their
    /// signatures that an idle verifier thread may do before the group
    /// forms (none if a signer's key is not known yet).
    Append(Vec<Record>, Option<Authorization>, Option<Arc<Ahead>>),
    /// A checkpoint now (`checkpoint_now`).
    Checkpoint,
    /// A time-based checkpoint, from the timer thread.
    Tick,
}

impl Command {
    fn entries(&self) -> usize {
        match self {
            Command::Append(records, ..) => records.len(),
            Command::Checkpoint | Command::Tick => 0,
        }
    }
}

enum Answer {
    Append(Result<Appended>),
    Checkpoint(Result<String>),
}

/// A caller waiting in the queue.
struct Slot {
    id: u64,
    wake: Wake,
}

/// How a queued caller is woken when its answer is ready.
enum Wake {
    /// A thread blocked in [`Inner::submit`]; it is also woken when it is
    /// first in line, to lead the next group.
    Thread(Condvar),
    /// A task awaiting a [`Submission`]. Tasks never lead: the writer
    /// thread leads the groups that start with one.
    Task(Mutex<Option<Waker>>),
}

impl Slot {
    fn wake(&self) {
        match &self.wake {
            Wake::Thread(condvar) => condvar.notify_one(),
            Wake::Task(waker) => {
                if let Some(waker) = lock(waker).take() {
                    waker.wake();
                }
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<(Arc<Slot>, Command)>,
    answers: HashMap<u64, Answer>,
    /// Tasks dropped before their answer came: it is thrown away.
    abandoned: HashSet<u64>,
    /// A caller is committing a group.
    leading: bool,
    /// The writer thread sleeps on `leader_wake` (rather than polling).
    leader_parked: bool,
    closed: bool,
    /// When the uncovered entries need a time-based checkpoint (clock ms).
    checkpoint_due_ms: Option<u64>,
}

impl Queue {
    fn enqueue(&mut self, wake: Wake, command: Command) -> Arc<Slot> {
        let slot = Arc::new(Slot { id: self.next_id, wake });
        self.next_id += 1;
        self.waiting.push_back((Arc::clone(&slot), command));
        slot
    }
}

struct Inner {
    queue: Mutex<Queue>,
    /// The ahead checks of the queued appends.
    ahead: Arc<AheadQueue>,
    shared: Arc<Shared>,
    /// Wakes the timer thread when the checkpoint deadline changes.
    timer_wake: Condvar,
    /// Wakes the writer thread when a task's command waits with no leader.
    leader_wake: Condvar,
    /// Only the leader locks it.
    writer: Mutex<Writer>,
    clock: Arc<dyn Clock>,
    batch_entries_max: usize,
}

/// The writer: group commit led by the callers themselves (as in LevelDB).
/// A caller queues its command; the first in line becomes the leader, takes
/// everything queued (up to `batch_entries_max` entries), commits it as one
/// group and wakes the others with their answers, then the next in line
/// leads. A lone caller commits its own record without handing it to
/// another thread. Async callers cannot block to lead: the writer thread
/// leads for them. A timer thread queues time-based checkpoints.
pub(crate) struct Handle {
    inner: Arc<Inner>,
    timer: Option<JoinHandle<()>>,
    leader: Option<JoinHandle<()>>,
}

fn stopped() -> Error {
    Error::Poisoned("the ledger writer has stopped".into())
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    pub(crate) fn start(
        shared: Arc<Shared>,
        state: WriterState,
        signer: note::Signer,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Self {
        let last_checkpoint_ms = clock.now_ms();
        let last_checkpoint_note = state
            .last_checkpoint
            .as_ref()
            .and_then(|c| {
                shared
                    .db
                    .get_cf(shared.cf(CF_CHECKPOINTS), seq_key(c.size))
                    .ok()
                    .flatten()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let batch_entries_max = options.batch_entries_max;
        let ahead = Arc::new(AheadQueue::default());
        let writer = Writer {
            shared: Arc::clone(&shared),
            state,
            signer,
            clock: Arc::clone(&clock),
            pool: VerifyPool::start(options.verify_threads, Arc::clone(&ahead)),
            options,
            last_checkpoint_ms,
            last_checkpoint_note,
            poisoned: None,
            stalled: None,
            unkept: None,
            attempted_write: std::cell::Cell::new(false),
        };
        let queue = Queue {
            checkpoint_due_ms: writer.checkpoint_due_ms(),
            ..Queue::default()
        };
        let inner = Arc::new(Inner {
            queue: Mutex::new(queue),
            ahead,
            shared,
            timer_wake: Condvar::new(),
            leader_wake: Condvar::new(),
            writer: Mutex::new(writer),
            clock,
            batch_entries_max,
        });
        let spawn = |name: &str, run: fn(&Inner)| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&inner))
                .unwrap_or_else(|e| panic!("spawning {name}: {e}"))
        };
        let timer = spawn("ledger-checkpoint-timer", Inner::run_timer);
        let leader = spawn("ledger-writer", Inner::run_leader);
        Self {
            inner,
            timer: Some(timer),
            leader: Some(leader),
        }
    }

    /// [`Handle::append`] without blocking: the future resolves once the
    /// records are durable, or refused. `authorization` is checked with the
    /// group's signatures.
    pub(crate) fn append_async(&self, records: Vec<Record>, authorization: Option<Authorization>) -> AppendFuture {
        AppendFuture(Some(Ok(Submission {
            inner: Arc::clone(&self.inner),
            state: SubmissionState::New(self.inner.append_command(records, authorization)),
        })))
    }

    pub(crate) fn append(&self, records: Vec<Record>) -> Result<Appended> {
        match self.inner.submit(self.inner.append_command(records, None))? {
            Answer::Append(result) => result,
            Answer::Checkpoint(_) => Err(Error::Poisoned("internal: wrong answer".into())),
        }
    }

    /// Signatures the verifier threads have checked ahead of their groups.
    pub(crate) fn signatures_checked_ahead(&self) -> u64 {
        self.inner.ahead.checked()
    }

    pub(crate) fn checkpoint(&self) -> Result<String> {
        match self.inner.submit(Command::Checkpoint)? {
            Answer::Checkpoint(result) => result,
            Answer::Append(_) => Err(Error::Poisoned("internal: wrong answer".into())),
        }
    }

    /// Stops the timer and leaves every entry covered by a checkpoint.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.shut_down(true)
    }

    /// Stops the threads and writes nothing more, as if the process died.
    pub(crate) fn halt(mut self) {
        let _ = self.shut_down(false);
    }

    fn shut_down(&mut self, last_checkpoint: bool) -> Result<()> {
        let Some(timer) = self.timer.take() else {
            return Ok(());
        };
        lock(&self.inner.queue).closed = true;
        self.inner.timer_wake.notify_all();
        self.inner.leader_wake.notify_all();
        // The writer thread first answers every task still queued.
        let joined = timer.join().and(self.leader.take().map_or(Ok(()), JoinHandle::join));
        // Every caller has its answer: the ledger is being closed by its
        // only owner. A clean shutdown leaves no entry uncovered.
        let mut writer = lock(&self.inner.writer);
        if last_checkpoint && writer.uncheckpointed() > 0 {
            writer.commit_group(Vec::new(), Vec::new(), true);
        }
        joined.map_err(|_| Error::Poisoned("the checkpoint timer panicked".into()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shut_down(true);
    }
}

impl Inner {
    /// An append, with the check of its signatures that a verifier thread
    /// may do ahead of its group if every signer's key is known.
    fn append_command(&self, records: Vec<Record>, authorization: Option<Authorization>) -> Command {
        let registry = self.shared.known_keys();
        let authorization_key = authorization.as_ref().map(|a| registry.public_key(&a.signer));
        let keys: Option<Vec<PublicKey>> = records.iter().map(|r| registry.public_key(&r.signer)).collect();
        let ahead = match (authorization_key, keys) {
            (Some(None), _) | (_, None) => None,
            (authorization_key, Some(keys)) => {
                let mut work = Work::default();
                push_request(
                    &mut work,
                    &self.shared.meta.origin,
                    authorization.as_ref().zip(authorization_key.flatten()),
                    records.iter().zip(keys),
                );
                Some(Ahead::new(work))
            }
        };
        Command::Append(records, authorization, ahead)
    }

    /// Queues `command` (and its ahead check) in line.
    fn enqueue(&self, queue: &mut Queue, wake: Wake, command: Command) -> Arc<Slot> {
        if let Command::Append(_, _, Some(ahead)) = &command {
            self.ahead.push(Arc::clone(ahead), queue.leading);
        }
        queue.enqueue(wake, command)
    }

    /// Queues `command` and returns its answer, committing it (and whatever
    /// else is queued) itself when no other caller is leading.
    fn submit(&self, command: Command) -> Result<Answer> {
        let mut queue = lock(&self.queue);
        if queue.closed {
            return Err(stopped());
        }
        let own = self.enqueue(&mut queue, Wake::Thread(Condvar::new()), command);
        loop {
            if let Some(answer) = queue.answers.remove(&own.id) {
                return Ok(answer);
            }
            if queue.leading {
                let Wake::Thread(condvar) = &own.wake else {
                    unreachable!("a thread waits on its condvar")
                };
                queue = condvar.wait(queue).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            queue = self.lead(queue, Some(own.id));
        }
    }

    /// Leads one group: takes everything queued (up to `batch_entries_max`
    /// entries), commits it, stores the answers and wakes their callers
    /// (except `own`, the leading thread's own command), then wakes the next
    /// in line to lead: a thread itself, the writer thread for a task.
    fn lead<'a>(&'a self, mut queue: MutexGuard<'a, Queue>, own: Option<u64>) -> MutexGuard<'a, Queue> {
        queue.leading = true;
        let mut entries = 0;
        let mut group = Vec::new();
        while let Some((_, command)) = queue.waiting.front() {
            if !group.is_empty() && entries + command.entries() > self.batch_entries_max {
                break;
            }
            entries += command.entries();
            group.extend(queue.waiting.pop_front());
        }
        drop(queue);
        let (answers, due) = self.commit(group);
        // The group's ahead checks are claimed: no verifier takes them.
        self.ahead.trim();
        queue = lock(&self.queue);
        queue.leading = false;
        let mut wake = Vec::with_capacity(answers.len() + 1);
        for (slot, answer) in answers {
            if queue.abandoned.remove(&slot.id) {
                continue;
            }
            queue.answers.insert(slot.id, answer);
            if Some(slot.id) != own {
                wake.push(slot);
            }
        }
        if queue.checkpoint_due_ms != due {
            queue.checkpoint_due_ms = due;
            self.timer_wake.notify_all();
        }
        let wake_leader = match queue.waiting.front() {
            Some((next, _)) if matches!(next.wake, Wake::Thread(_)) => {
                wake.push(Arc::clone(next));
                false
            }
            Some(_) => queue.leader_parked,
            None => false,
        };
        // Wake them after unlocking, so that they do not wake only to wait
        // for the lock.
        drop(queue);
        for slot in wake {
            slot.wake();
        }
        if wake_leader {
            self.leader_wake.notify_one();
        }
        lock(&self.queue)
    }

    /// The writer thread: leads whenever commands wait and no caller leads
    /// (async callers cannot); once closed, it answers what is still
    /// queued and stops. After a small group it polls for the next command
    /// for up to [`LEADER_SPIN`] before it parks: a lone async client's
    /// next request then finds it awake (waking a parked thread costs tens
    /// of µs on a virtual machine). Under load it never parks.
    fn run_leader(&self) {
        let mut queue = lock(&self.queue);
        let mut spin_until = None;
        loop {
            if !queue.waiting.is_empty() && !queue.leading {
                let small = queue.waiting.len() <= SPIN_AFTER_GROUPS_OF;
                queue = self.lead(queue, None);
                spin_until = small.then(|| std::time::Instant::now() + LEADER_SPIN);
                continue;
            }
            if queue.closed && queue.waiting.is_empty() {
                return;
            }
            match spin_until {
                Some(deadline) if std::time::Instant::now() < deadline => {
                    drop(queue);
                    std::thread::yield_now();
                    queue = lock(&self.queue);
                }
                _ => {
                    spin_until = None;
                    queue.leader_parked = true;
                    queue = self.leader_wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                    queue.leader_parked = false;
                }
            }
        }
    }

    /// Commits one group under the writer lock; a panic in the writer
    /// poisons it and answers the group with an error instead of hanging.
    fn commit(&self, group: Vec<(Arc<Slot>, Command)>) -> (Vec<(Arc<Slot>, Answer)>, Option<u64>) {
        let slots: Vec<(Arc<Slot>, bool)> = group
            .iter()
            .map(|(slot, command)| (Arc::clone(slot), matches!(command, Command::Append(..))))
            .collect();
        let mut writer = lock(&self.writer);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.commit_commands(group)));
        let answers: Vec<Answer> = match outcome {
            Ok(answers) => answers,
            Err(_) => {
                let reason = "the writer panicked; writes refused until the ledger is reopened";
                writer.poison(reason.to_owned());
                let failed = || Error::Poisoned(reason.to_owned());
                slots
                    .iter()
                    .map(|(_, append)| match append {
                        true => Answer::Append(Err(failed())),
                        false => Answer::Checkpoint(Err(failed())),
                    })
                    .collect()
            }
        };
        let slots = slots.into_iter().map(|(slot, _)| slot);
        (slots.zip(answers).collect(), writer.checkpoint_due_ms())
    }

    /// Queues a time-based checkpoint whenever uncovered entries get old.
    fn run_timer(&self) {
        let mut queue = lock(&self.queue);
        loop {
            if queue.closed {
                return;
            }
            let Some(due) = queue.checkpoint_due_ms else {
                queue = self.timer_wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let now = self.clock.now_ms();
            if now < due {
                let wait = Duration::from_millis(due - now);
                queue = self
                    .timer_wake
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            queue.checkpoint_due_ms = None;
            drop(queue);
            let _ = self.submit(Command::Tick);
            queue = lock(&self.queue);
        }
    }
}

/// A command queued by an async caller, answered by whichever thread leads
/// its group.
struct Submission {
    inner: Arc<Inner>,
    state: SubmissionState,
}

enum SubmissionState {
    New(Command),
    Queued(Arc<Slot>),
    Done,
}

impl Future for Submission {
    type Output = Result<Answer>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut queue = lock(&this.inner.queue);
        match std::mem::replace(&mut this.state, SubmissionState::Done) {
            SubmissionState::New(command) => {
                if queue.closed {
                    return Poll::Ready(Err(stopped()));
                }
                let waker = Mutex::new(Some(cx.waker().clone()));
                let slot = this.inner.enqueue(&mut queue, Wake::Task(waker), command);
                let wake_leader = !queue.leading && queue.leader_parked;
                this.state = SubmissionState::Queued(slot);
                drop(queue);
                if wake_leader {
                    this.inner.leader_wake.notify_one();
                }
                Poll::Pending
            }
            SubmissionState::Queued(slot) => {
                if let Some(answer) = queue.answers.remove(&slot.id) {
                    return Poll::Ready(Ok(answer));
                }
                // Registered under the queue lock: the leader stores the
                // answer under it too, then takes the waker.
                if let Wake::Task(waker) = &slot.wake {
                    *lock(waker) = Some(cx.waker().clone());
                }
                this.state = SubmissionState::Queued(slot);
                Poll::Pending
            }
            SubmissionState::Done => Poll::Ready(Err(Error::Poisoned("internal: polled after completion".into()))),
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        // A dropped task's command still goes ahead (it may be committing
        // already); only its answer is thrown away.
        if let SubmissionState::Queued(slot) = &self.state {
            let mut queue = lock(&self.inner.queue);
            if queue.answers.remove(&slot.id).is_none() {
                queue.abandoned.insert(slot.id);
            }
        }
    }
}

/// An append by an async caller ([`super::Ledger::append_async`]):
/// resolves once the records are durable, or refused. Dropping it does not
/// withdraw the records.
pub struct AppendFuture(Option<std::result::Result<Submission, Error>>);

impl AppendFuture {
    pub(crate) fn refused(error: Error) -> Self {
        Self(Some(Err(error)))
    }
}

impl Future for AppendFuture {
    type Output = Result<Appended>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let submission = match self.0.as_mut() {
            Some(Ok(submission)) => submission,
            Some(Err(_)) => return Poll::Ready(Err(self.0.take().and_then(Result::err).expect("refused"))),
            None => return Poll::Ready(Err(Error::Poisoned("internal: polled after completion".into()))),
        };
        Pin::new(submission).poll(cx).map(|answer| match answer? {
            Answer::Append(result) => result,
            Answer::Checkpoint(_) => Err(Error::Poisoned("internal: wrong answer".into())),
        })
    }
}

struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    signer: note::Signer,
    clock: Arc<dyn Clock>,
    pool: VerifyPool,
    options: Options,
    last_checkpoint_ms: u64,
    last_checkpoint_note: Option<String>,
    poisoned: Option<String>,
    /// Set while the disk is full (see [`Writer::stall`]).
    stalled: Option<String>,
    /// A signed checkpoint stored in the ledger whose kept file could not
    /// be written for want of space: written before anything else.
    unkept: Option<String>,
    /// A batch was handed to the disk during the current group: after a
    /// failure, what reached the disk is unknown unless it was not.
    attempted_write: std::cell::Cell<bool>,
}

/// One caller's request inside a group, and what became of it.
struct Pending {
    /// Its place in the group.
    position: usize,
    records: Vec<Record>,
    /// The request's own signature, checked with the records' signatures.
    authorization: Option<Authorization>,
    /// Its signatures' check by a verifier thread ahead of the group.
    ahead: Option<Arc<Ahead>>,
    /// Its signer's key, found on admission.
    authorization_key: Option<PublicKey>,
    /// Per record: `Some(seq)` when it repeats the record already at `seq`.
    duplicates: Vec<Option<u64>>,
    /// Every signature of the request has been checked on its own (after a
    /// failed group verification).
    verified: bool,
    /// `None` while the request is still going ahead.
    outcome: Option<Result<Appended>>,
    keys: Vec<PublicKey>,
}

impl Pending {
    /// The keys of its signatures, in the order of its ahead check.
    fn expected_keys(&self) -> Vec<PublicKey> {
        self.authorization_key.iter().chain(&self.keys).copied().collect()
    }

    /// Whether the request's own signature (if any) verifies, checked alone.
    fn authorization_holds(&self) -> bool {
        match (&self.authorization, &self.authorization_key) {
            (None, _) => true,
            (Some(authorization), Some(key)) => {
                key.verify_raw(&authorization.message, &authorization.signature).is_ok()
            }
            (Some(_), None) => false,
        }
    }
}

/// What admitting a group produced: the registry after it, the keys it
/// changed, and the derived-state changes to write with the entries.
struct Admission {
    registry: Registry,
    changed: Vec<KeyId>,
    state: std::collections::BTreeMap<String, Option<Vec<u8>>>,
}

/// Nodes written by the current group, in front of the stored ones.
struct NodeOverlay<'a> {
    pending: &'a HashMap<(u32, u64), Hash>,
    shared: &'a Shared,
}

impl NodeSource for NodeOverlay<'_> {
    fn perfect_node(&self, level: u32, index: u64) -> caseledger_verify::Result<Hash> {
        match self.pending.get(&(level, index)) {
            Some(hash) => Ok(*hash),
            None => Ok(read_node(self.shared, level, index)?),
        }
    }
}

impl Writer {
    /// Commits a group of queued commands; one answer per command, in order.
    fn commit_commands(&mut self, group: Vec<(Arc<Slot>, Command)>) -> Vec<Answer> {
        let mut appends = Vec::new();
        let mut checkpoints = Vec::new();
        let mut force_checkpoint = false;
        for (position, (_, command)) in group.into_iter().enumerate() {
            match command {
                Command::Append(records, authorization, ahead) => appends.push(Pending {
                    position,
                    records,
                    authorization,
                    ahead,
                    authorization_key: None,
                    duplicates: Vec::new(),
                    verified: false,
                    outcome: None,
                    keys: Vec::new(),
                }),
                Command::Checkpoint => checkpoints.push(position),
                Command::Tick => {
                    force_checkpoint = true;
                    checkpoints.push(position);
                }
            }
        }
        self.commit_group(appends, checkpoints, force_checkpoint)
    }

    fn uncheckpointed(&self) -> u64 {
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        self.state.frontier.size() - covered
    }

    /// When a time-based checkpoint is due (clock ms); `None` if nothing
    /// waits. While the disk is full, the tick comes every
    /// [`STALL_RETRY_MS`] to try again.
    fn checkpoint_due_ms(&self) -> Option<u64> {
        if self.poisoned.is_some() {
            return None;
        }
        if self.stalled.is_some() {
            return Some(self.clock.now_ms() + STALL_RETRY_MS);
        }
        if self.uncheckpointed() == 0 {
            return None;
        }
        Some(self.last_checkpoint_ms + self.options.checkpoint_every_ms)
    }

    /// Checks every record against the registry and the case-fund rules, in
    /// order, as it will be written. Requests already refused are skipped.
    fn admit(&self, appends: &mut [Pending], timestamp_ms: u64) -> Admission {
        let mut registry = self.state.registry.clone();
        let mut changed = Vec::new();
        let mut seq = self.state.frontier.size();
        let base = super::SharedState(&self.shared);
        let mut overlay = Overlay::new(&base);
        for pending in appends.iter_mut().filter(|p| p.outcome.is_none()) {
            if let Some(authorization) = &pending.authorization {
                pending.authorization_key = registry.public_key(&authorization.signer);
                if pending.authorization_key.is_none() {
                    pending.outcome = Some(Err(Error::BadRequestSignature));
                    continue;
                }
            }
            // Only records that change the registry need a way back.
            let changes_keys = pending
                .records
                .iter()
                .any(|r| caseledger_verify::record::changes_registry(r.kind));
            let snapshot = changes_keys.then(|| registry.clone());
            let mark = overlay.mark();
            let mut keys = Vec::with_capacity(pending.records.len());
            let mut duplicates = Vec::with_capacity(pending.records.len());
            let mut request_changes = Vec::new();
            let mut next = seq;
            for (index, record) in pending.records.iter().enumerate() {
                match admit_record(&mut registry, &mut overlay, next, timestamp_ms, record) {
                    Ok((admitted, outcome)) => {
                        keys.push(admitted.key);
                        request_changes.extend(admitted.changed);
                        match outcome {
                            Outcome::New => {
                                duplicates.push(None);
                                next += 1;
                            }
                            Outcome::Duplicate(original) => duplicates.push(Some(original)),
                        }
                    }
                    Err(source) => {
                        // A request or a record that is not what its signer
                        // signed is refused as such, before any rule speaks
                        // about it.
                        let error = if !pending.authorization_holds() {
                            Error::BadRequestSignature
                        } else if let Some(index) =
                            first_bad_signature(&self.shared.meta.origin, &registry, &pending.records)
                        {
                            Error::BadSignature { index }
                        } else {
                            Error::Rejected { index, source }
                        };
                        pending.outcome = Some(Err(error));
                        break;
                    }
                }
            }
            if pending.outcome.is_some() {
                if let Some(snapshot) = snapshot {
                    registry = snapshot;
                }
                overlay.rollback(mark);
                continue;
            }
            seq = next;
            pending.keys = keys;
            pending.duplicates = duplicates;
            changed.extend(request_changes);
        }
        Admission {
            registry,
            changed,
            state: overlay.into_changes(),
        }
    }

    /// Every signature of the requests still going ahead that has not been
    /// checked on its own yet, and the ahead checks of such requests still
    /// running. Requests checked ahead with the keys admission found are
    /// left out.
    fn unverified(origin: &str, appends: &[Pending]) -> (Work, Vec<Arc<AheadOutcome>>) {
        let mut work = Work::default();
        let mut running: Vec<Arc<AheadOutcome>> = Vec::new();
        for pending in appends.iter().filter(|p| p.outcome.is_none() && !p.verified) {
            if let Some(ahead) = pending
                .ahead
                .as_ref()
                .filter(|a| a.work().keys == pending.expected_keys())
            {
                match ahead.claim() {
                    Claim::Valid => {}
                    Claim::Running(outcome) => {
                        if !running.iter().any(|o| Arc::ptr_eq(o, &outcome)) {
                            running.push(outcome);
                        }
                    }
                    Claim::Verify => work.extend_from(ahead.work()),
                }
                continue;
            }
            push_request(
                &mut work,
                origin,
                pending.authorization.as_ref().zip(pending.authorization_key),
                pending.records.iter().zip(pending.keys.iter().copied()),
            );
        }
        (work, running)
    }

    /// After a failed group verification: checks each request's signatures
    /// one by one, refuses the requests with a bad one and marks the others
    /// verified.
    fn refuse_bad_signatures(origin: &str, appends: &mut [Pending]) {
        for pending in appends.iter_mut().filter(|p| p.outcome.is_none() && !p.verified) {
            if !pending.authorization_holds() {
                pending.outcome = Some(Err(Error::BadRequestSignature));
                continue;
            }
            let bad = pending
                .records
                .iter()
                .zip(&pending.keys)
                .position(|(record, key)| record.verify(origin, key).is_err());
            match bad {
                Some(index) => pending.outcome = Some(Err(Error::BadSignature { index })),
                None => pending.verified = true,
            }
        }
    }

    /// Refuses every later write, and says why to whoever asks the ledger
    /// (`/readyz` answers 503).
    fn poison(&mut self, reason: String) {
        *lock(&self.shared.poisoned) = Some(reason.clone());
        self.poisoned = Some(reason);
    }

    /// Waits for space after a synced write failed for want of it. Nothing
    /// of that write was applied (RocksDB applies a batch only after its
    /// log record is written and synced) and the writer's state is still
    /// what is stored; RocksDB, in its error state until then, recovers by
    /// itself once there is room (its `SstFileManager` polls the free space
    /// every five seconds), and [`Writer::resume`] finds out.
    fn stall(&mut self, reason: String) {
        if self.stalled.is_none() {
            tracing::error!(%reason, "the disk is full: writes wait until space is freed");
        }
        *lock(&self.shared.stalled) = Some(reason.clone());
        self.stalled = Some(reason);
    }

    /// [`Error::OutOfSpace`] when the ledger's file system has less free
    /// space than the reserve. If the free space cannot be read, the write
    /// itself finds out.
    fn space_left(&self) -> Result<()> {
        let reserve = self.options.free_space_min_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let Ok(stat) = rustix::fs::statvfs(&self.shared.path) else {
            return Ok(());
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < reserve {
            return Err(Error::OutOfSpace(format!(
                "{free} bytes free on the ledger's file system, below the {reserve} kept in reserve"
            )));
        }
        Ok(())
    }

    /// After a stall: whether writes go through again. A synced empty
    /// batch tells whether RocksDB accepts writes; before the writer goes
    /// on, the stored head must still be its own (else it stops: what
    /// reached the disk is not what it knows).
    fn resume(&mut self) -> bool {
        let Some(reason) = self.stalled.clone() else {
            return true;
        };
        if let Err(Error::OutOfSpace(now)) = self.space_left() {
            self.stall(now);
            return false;
        }
        if let Some(note) = self.unkept.clone() {
            match self.keep_checkpoint(&note) {
                Ok(()) => self.unkept = None,
                Err(Error::OutOfSpace(now)) => {
                    self.stall(now);
                    return false;
                }
                Err(e) => {
                    self.poison(format!(
                        "after a full disk ({reason}), keeping the checkpoint failed: {e}"
                    ));
                    return false;
                }
            }
        }
        match self.sync(WriteBatch::default()) {
            Ok(()) => {}
            Err(Error::OutOfSpace(now)) => {
                self.stall(now);
                return false;
            }
            Err(e) => {
                self.poison(format!("after a full disk ({reason}), storage failed: {e}"));
                return false;
            }
        }
        let stored: Result<Option<Head>> =
            super::read_json(&self.shared.db, self.shared.cf(CF_META), META_HEAD, "head");
        match stored {
            Ok(Some(head)) if head == self.head() => {
                tracing::warn!("space was freed: writes resume");
                *lock(&self.shared.stalled) = None;
                self.stalled = None;
                true
            }
            other => {
                self.poison(format!(
                    "after a full disk, the stored head is not the writer's ({}); writes refused until the ledger is reopened",
                    match other {
                        Ok(Some(head)) => format!("stored size {}", head.size),
                        Ok(None) => "no stored head".to_owned(),
                        Err(e) => e.to_string(),
                    }
                ));
                false
            }
        }
    }

    /// Commits the appends (and a checkpoint if asked or due); returns the
    /// answers of the appends and of the checkpoint requests at
    /// `checkpoints`, in group order.
    fn commit_group(
        &mut self,
        mut appends: Vec<Pending>,
        checkpoints: Vec<usize>,
        force_checkpoint: bool,
    ) -> Vec<Answer> {
        if self.poisoned.is_none() {
            // Stopped from outside (an integrity failure found by a reader).
            self.poisoned = lock(&self.shared.poisoned).clone();
        }
        self.attempted_write.set(false);
        if self.poisoned.is_none() && self.resume() {
            self.attempted_write.set(false);
            let timestamp_ms = self.clock.now_ms().max(self.state.last_timestamp_ms);
            let want_checkpoint = force_checkpoint || !checkpoints.is_empty();
            let committed = self
                .space_left()
                .and_then(|()| self.commit(&mut appends, timestamp_ms, want_checkpoint));
            match committed {
                Ok(admission) => {
                    if !admission.changed.is_empty() {
                        self.shared.publish_keys(&admission.registry);
                    }
                    self.state.registry = admission.registry;
                }
                Err(Error::OutOfSpace(reason)) => self.stall(reason),
                Err(e) if !self.attempted_write.get() => {
                    // Failed before anything was written (a read of a
                    // Merkle node, say): the group is refused, the writer
                    // goes on.
                    for pending in appends.iter_mut().filter(|p| p.outcome.is_none()) {
                        pending.outcome = Some(Err(Error::Storage(e.to_string())));
                    }
                }
                Err(e) => self.poison(format!(
                    "commit failed, writes refused until the ledger is reopened: {e}"
                )),
            }
        }
        let mut answers: Vec<Option<Answer>> = Vec::new();
        answers.resize_with(appends.len() + checkpoints.len(), || None);
        for pending in appends {
            let answer = match (&self.poisoned, pending.outcome) {
                (_, Some(outcome @ Err(_))) => outcome,
                (Some(reason), _) => Err(Error::Poisoned(reason.clone())),
                (None, None) if self.stalled.is_some() => {
                    Err(Error::OutOfSpace(self.stalled.clone().unwrap_or_default()))
                }
                (None, Some(outcome)) => outcome,
                (None, None) => Err(Error::Poisoned("internal: request left without an answer".into())),
            };
            answers[pending.position] = Some(Answer::Append(answer));
        }
        for position in checkpoints {
            let answer = match (&self.poisoned, &self.last_checkpoint_note) {
                (Some(reason), _) => Err(Error::Poisoned(reason.clone())),
                (None, _) if self.stalled.is_some() => Err(Error::OutOfSpace(self.stalled.clone().unwrap_or_default())),
                (None, Some(note)) => Ok(note.clone()),
                (None, None) => Err(Error::InvalidArgument(
                    "the ledger is empty; there is nothing to checkpoint".into(),
                )),
            };
            answers[position] = Some(Answer::Checkpoint(answer));
        }
        answers
            .into_iter()
            .map(|a| a.expect("one answer per command"))
            .collect()
    }

    /// Admits, verifies and writes the group; sets each request's outcome
    /// once its entries are durable and verified. Requests with a bad
    /// signature are refused and the rest committed without them.
    fn commit(&mut self, appends: &mut [Pending], timestamp_ms: u64, force_checkpoint: bool) -> Result<Admission> {
        let admission = self.admit(appends, timestamp_ms);
        let (work, running) = Self::unverified(&self.shared.meta.origin, appends);
        let verdict = self.pool.submit(work, running);
        let built = self.build(appends, &admission, timestamp_ms, force_checkpoint)?;
        // Only a group that adds entries is written before its verdict:
        // its undo record then names them.
        let speculate = verdict.is_pending()
            && admission.changed.is_empty()
            && built
                .as_ref()
                .is_some_and(|b| b.checkpoint.is_none() && b.frontier.size() > b.first_seq);
        let valid = match built {
            Some(built) if speculate => self.write_while_verifying(built, &admission, verdict, appends)?,
            Some(built) => {
                let valid = verdict.wait();
                if valid {
                    self.write_verified(built, appends)?;
                }
                valid
            }
            None => verdict.wait(),
        };
        if valid {
            return Ok(admission);
        }
        // Someone sent a bad signature: refuse them and commit the rest
        // again (a refused key registration changes what follows).
        Self::refuse_bad_signatures(&self.shared.meta.origin, appends);
        self.commit(appends, timestamp_ms, force_checkpoint)
    }

    /// Syncs `built` while the verifier threads check its signatures, with
    /// the derived-state gate held and an undo record in the batch; undoes
    /// it if a signature fails. True if every signature held and the group
    /// is committed.
    fn write_while_verifying(
        &mut self,
        mut built: Built,
        admission: &Admission,
        verdict: Verdict,
        appends: &mut [Pending],
    ) -> Result<bool> {
        let gate = self.shared.state_gate.write().unwrap_or_else(|p| p.into_inner());
        let undo = self.undo_record(&built, admission, appends)?;
        built.batch.put_cf(
            self.shared.cf(CF_META),
            META_PENDING,
            serde_json::to_vec(&undo).expect("serialisable"),
        );
        self.sync(std::mem::take(&mut built.batch))?;
        if self
            .options
            .after_speculative_write
            .as_ref()
            .is_some_and(|hook| (hook.0)())
        {
            return Err(Error::Poisoned(
                "halted after a speculative write (test failpoint)".into(),
            ));
        }
        if !verdict.wait() {
            // The group is applied: a full disk now is no stall but a stop.
            self.sync(undo_batch(&self.shared, &undo, &self.head()))
                .map_err(|e| Error::Storage(e.to_string()))?;
            return Ok(false);
        }
        drop(gate);
        self.finish(built, appends);
        Ok(true)
    }

    /// Syncs a group whose signatures are all verified.
    fn write_verified(&mut self, mut built: Built, appends: &mut [Pending]) -> Result<()> {
        built.batch.delete_cf(self.shared.cf(CF_META), META_PENDING);
        self.sync(std::mem::take(&mut built.batch))?;
        // The checkpoint is kept where a lost write-ahead log cannot take
        // it, before anyone hears of the group.
        let unkept = built.checkpoint.as_ref().map(|(_, note)| note.clone());
        let kept = unkept.as_deref().map_or(Ok(()), |note| self.keep_checkpoint(note));
        self.finish(built, appends);
        match kept {
            Ok(()) => Ok(()),
            Err(Error::OutOfSpace(reason)) => {
                // The group is durable and the writer's state follows it,
                // but no one is told until its checkpoint is kept: the
                // requests are answered "disk full" (a retry finds its
                // records stored) and the writer stalls until the file is
                // written ([`Writer::resume`]).
                for pending in appends.iter_mut() {
                    if matches!(pending.outcome, Some(Ok(_))) {
                        pending.outcome = None;
                    }
                }
                self.unkept = unkept;
                self.stall(reason);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the kept checkpoint file(s) (docs/FORMAT.md §8c).
    fn keep_checkpoint(&self, note: &str) -> Result<()> {
        let storage = self.options.storage.as_ref();
        super::signed_checkpoint::write_through(storage, &super::signed_checkpoint::path_in(&self.shared.path), note)?;
        if let Some(copy) = &self.shared.kept_copy {
            super::signed_checkpoint::write_through(storage, copy, note)?;
        }
        Ok(())
    }

    /// Writes `batch` and syncs the log. A full disk is
    /// [`Error::OutOfSpace`]: nothing of the batch was applied.
    fn sync(&self, batch: WriteBatch) -> Result<()> {
        self.attempted_write.set(true);
        self.options
            .storage
            .write_synced(&self.shared.db, batch)
            .map_err(|text| {
                if text.contains("No space left") || text.contains("Space limit") {
                    Error::OutOfSpace(text)
                } else {
                    Error::Storage(text)
                }
            })
    }

    /// How to undo `built`: the head and the derived state before it.
    fn undo_record(&self, built: &Built, admission: &Admission, appends: &[Pending]) -> Result<PendingGroup> {
        let cf = self.shared.cf(CF_STATE);
        let mut state = Vec::with_capacity(admission.state.len());
        for key in admission.state.keys() {
            let before = self
                .shared
                .db
                .get_cf(cf, key.as_bytes())
                .map_err(|e| Error::Storage(e.into_string()))?;
            state.push((key.clone(), before.map(hex::encode)));
        }
        Ok(PendingGroup {
            first_seq: built.first_seq,
            size: built.frontier.size(),
            last_timestamp_ms: self.state.last_timestamp_ms,
            state,
            request_signatures: appends
                .iter()
                .filter(|p| p.outcome.is_none())
                .filter_map(|p| p.authorization.as_ref())
                .map(RequestSignature::new)
                .collect(),
        })
    }

    /// The head as stored now.
    fn head(&self) -> Head {
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        Head::new(
            &self.state.frontier,
            &self.state.last_hash,
            self.state.last_timestamp_ms,
            covered,
        )
    }

    /// Builds the batch of the admitted records (and of a checkpoint if
    /// due), without writing it. `None` if there is nothing to write.
    fn build(
        &self,
        appends: &[Pending],
        admission: &Admission,
        timestamp_ms: u64,
        force_checkpoint: bool,
    ) -> Result<Option<Built>> {
        let shared = &self.shared;
        let mut batch = WriteBatch::default();
        let mut frontier = self.state.frontier.clone();
        let first_seq = frontier.size();
        let mut last_hash = self.state.last_hash;
        let mut pending_nodes = HashMap::new();
        let mut accepted = Vec::new();
        for (position, pending) in appends.iter().enumerate() {
            if pending.outcome.is_some() {
                continue;
            }
            let request_first = frontier.size();
            let mut seqs = Vec::with_capacity(pending.records.len());
            for (record, duplicate) in pending.records.iter().zip(&pending.duplicates) {
                if let Some(original) = duplicate {
                    seqs.push(*original);
                    continue;
                }
                seqs.push(frontier.size());
                let entry = Entry {
                    seq: frontier.size(),
                    timestamp_ms,
                    prev_hash: last_hash,
                    record: record.clone(),
                };
                let bytes = entry.encode();
                last_hash = Entry::hash_of(&bytes);
                batch.put_cf(shared.cf(CF_ENTRIES), seq_key(entry.seq), &bytes);
                for (level, index, hash) in frontier.push(last_hash) {
                    batch.put_cf(shared.cf(CF_NODES), node_key(level, index), hash);
                    pending_nodes.insert((level, index), hash);
                }
            }
            let count = frontier.size() - request_first;
            let request_first = if count == 0 {
                seqs.first().copied().unwrap_or(request_first)
            } else {
                request_first
            };
            accepted.push((
                position,
                Appended {
                    first_seq: request_first,
                    count,
                    seqs,
                },
            ));
        }
        for id in &admission.changed {
            if let Some(info) = admission.registry.info(id) {
                batch.put_cf(
                    shared.cf(CF_KEYS),
                    id.0,
                    serde_json::to_vec(info).expect("serialisable"),
                );
            }
        }
        for (key, value) in &admission.state {
            match value {
                Some(value) => batch.put_cf(shared.cf(CF_STATE), key.as_bytes(), value),
                None => batch.delete_cf(shared.cf(CF_STATE), key.as_bytes()),
            }
        }
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        let uncovered = frontier.size() - covered;
        let checkpoint = if uncovered > 0 && (force_checkpoint || uncovered >= self.options.checkpoint_every_entries) {
            let overlay = NodeOverlay {
                pending: &pending_nodes,
                shared,
            };
            let (checkpoint, note) = self.sign_checkpoint(&overlay, &frontier)?;
            batch.put_cf(shared.cf(CF_CHECKPOINTS), seq_key(checkpoint.size), note.as_bytes());
            Some((checkpoint, note))
        } else {
            None
        };
        if accepted.is_empty() && checkpoint.is_none() {
            return Ok(None);
        }
        let checkpoint_size = checkpoint.as_ref().map_or(covered, |(c, _)| c.size);
        // The head's timestamp is the last entry's: a group that adds no
        // entry (a checkpoint alone, retries) leaves it, so the auditor can
        // hold the head to the entries.
        let timestamp_ms = if frontier.size() > first_seq {
            timestamp_ms
        } else {
            self.state.last_timestamp_ms
        };
        let head = Head::new(&frontier, &last_hash, timestamp_ms, checkpoint_size);
        batch.put_cf(
            shared.cf(CF_META),
            META_HEAD,
            serde_json::to_vec(&head).expect("serialisable"),
        );
        Ok(Some(Built {
            batch,
            first_seq,
            frontier,
            last_hash,
            timestamp_ms,
            checkpoint,
            checkpoint_size,
            accepted,
        }))
    }

    /// After the batch is durable and every signature verified: the state
    /// moves on, readers see the new size and callers hear about it.
    fn finish(&mut self, built: Built, appends: &mut [Pending]) {
        self.state.frontier = built.frontier;
        self.state.last_hash = built.last_hash;
        self.state.last_timestamp_ms = built.timestamp_ms;
        if let Some((checkpoint, note)) = built.checkpoint {
            self.state.last_checkpoint = Some(checkpoint);
            self.last_checkpoint_note = Some(note);
            self.last_checkpoint_ms = self.clock.now_ms();
        }
        self.publish(built.checkpoint_size);
        for (position, appended) in built.accepted {
            appends[position].outcome = Some(Ok(appended));
        }
    }

    /// Signs a checkpoint of `frontier`, after proving it consistent with the
    /// previous one: the ledger never signs two inconsistent checkpoints.
    fn sign_checkpoint(&self, nodes: &dyn NodeSource, frontier: &merkle::Frontier) -> Result<(Checkpoint, String)> {
        let checkpoint = Checkpoint {
            origin: self.shared.meta.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
        };
        if let Some(previous) = &self.state.last_checkpoint {
            let proof = merkle::consistency_proof(nodes, previous.size, checkpoint.size)?;
            merkle::verify_consistency(previous.size, checkpoint.size, &proof, &previous.root, &checkpoint.root)
                .map_err(|e| Error::Integrity {
                    seq: checkpoint.size - 1,
                    check: "checkpoint_consistency".into(),
                    detail: format!(
                        "refusing to sign a checkpoint inconsistent with size {}: {e}",
                        previous.size
                    ),
                })?;
        }
        let note = checkpoint
            .sign(&self.signer)
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok((checkpoint, note))
    }

    fn publish(&self, checkpoint_size: u64) {
        let published = Published {
            size: self.state.frontier.size(),
            root: self.state.frontier.root(),
            checkpoint_size,
        };
        match self.shared.published.write() {
            Ok(mut guard) => *guard = published,
            Err(poisoned) => *poisoned.into_inner() = published,
        }
    }
}

/// Adds the signatures of one request to `work`: the request's own first,
/// then its records', each with its signer's key (the order of
/// [`Pending::expected_keys`]).
fn push_request<'a>(
    work: &mut Work,
    origin: &str,
    authorization: Option<(&Authorization, PublicKey)>,
    records: impl Iterator<Item = (&'a Record, PublicKey)>,
) {
    if let Some((authorization, key)) = authorization {
        work.messages.push(authorization.message.clone());
        work.signatures.push(authorization.signature);
        work.keys.push(key);
    }
    for (record, key) in records {
        work.messages.push(record.signed_message(origin));
        work.signatures.push(record.signature);
        work.keys.push(key);
    }
}

/// The first record whose signature, as a record of the ledger named
/// `origin`, fails against its signer's key in `registry` (records of
/// unknown signers are skipped).
fn first_bad_signature(origin: &str, registry: &Registry, records: &[Record]) -> Option<usize> {
    records.iter().position(|record| {
        registry
            .public_key(&record.signer)
            .is_some_and(|key| record.verify(origin, &key).is_err())
    })
}

/// A group's batch, built but not yet written, and the state it leads to.
struct Built {
    batch: WriteBatch,
    first_seq: u64,
    frontier: merkle::Frontier,
    last_hash: Hash,
    timestamp_ms: u64,
    checkpoint: Option<(Checkpoint, String)>,
    checkpoint_size: u64,
    /// (position in the group, result) of every request going ahead.
    accepted: Vec<(usize, Appended)>,
}

/// The batch that undoes a group written while its signatures were being
/// checked: its entries and Merkle nodes removed (both are keyed by seq or
/// last leaf, so two range deletions), the derived state and the head
/// before the group (`head`) put back, the pending record cleared.
pub(crate) fn undo_batch(shared: &Shared, undo: &PendingGroup, head: &Head) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(shared.cf(CF_ENTRIES), seq_key(undo.first_seq), seq_key(undo.size));
    batch.delete_range_cf(shared.cf(CF_NODES), node_key(0, undo.first_seq), node_key(0, undo.size));
    for (key, before) in &undo.state {
        match before.as_deref().map(hex::decode) {
            Some(Ok(value)) => batch.put_cf(shared.cf(CF_STATE), key.as_bytes(), value),
            _ => batch.delete_cf(shared.cf(CF_STATE), key.as_bytes()),
        }
    }
    batch.put_cf(
        shared.cf(CF_META),
        META_HEAD,
        serde_json::to_vec(head).expect("serialisable"),
    );
    batch.delete_cf(shared.cf(CF_META), META_PENDING);
    batch
}
