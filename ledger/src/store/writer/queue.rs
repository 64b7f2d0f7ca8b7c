//! The group-commit queue: callers queue their commands; the first in
//! line leads (or, for async callers, the writer thread), takes the group,
//! commits it under the writer lock and wakes the others with their
//! answers; the timer thread queues time-based checkpoints.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use caseledger_keys::{note, PublicKey};

use super::*;
use crate::store::schema::*;
use crate::store::verify::{Ahead, AheadQueue, VerifyPool, Work};
use crate::store::{Appended, Authorization, Clock, Options, Shared, WriterState};
use crate::{Error, Result};
use caseledger_verify::entry::Record;

/// How long the writer thread polls for work after a small group: about
/// the time between two requests of one client over HTTP on loopback.
const LEADER_SPIN: Duration = Duration::from_micros(1000);
/// ... and only after a group of at most this many commands.
const SPIN_AFTER_GROUPS_OF: usize = 2;

pub(super) enum Command {
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

pub(super) enum Answer {
    Append(Result<Appended>),
    Checkpoint(Result<String>),
}

/// A caller waiting in the queue.
pub(super) struct Slot {
    id: u64,
    wake: Wake,
}

/// How a queued caller is woken when its answer is ready.
pub(super) enum Wake {
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
pub(super) struct Queue {
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

pub(super) struct Inner {
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

pub(in crate::store) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
pub(super) struct Submission {
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
