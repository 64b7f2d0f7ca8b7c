//! The RocksDB store: the only module of the ledger crate that does I/O.
//!
//! Storage contract:
//! * Every append, single or batch, is one atomic `WriteBatch` holding the
//!   entries, their Merkle nodes, key-registry changes, the new head and, when
//!   due, a checkpoint. An append MUST NOT be acknowledged before that batch
//!   is durable (WAL synced).
//! * Concurrent appends are committed together by one writer thread (group
//!   commit): one signature batch and one sync serve many callers.
//! * Every signature is verified before its append is acknowledged, and no
//!   reader sees an entry or derived state before that. A group that makes
//!   no checkpoint and changes no key may be synced while its signatures
//!   are verified; its batch then carries a `pending` undo record, and if a
//!   signature fails the group (never acknowledged, never visible) is undone
//!   at once, or on the next writable open after a crash.
//! * Apart from such an undo, nothing is ever overwritten or deleted; the
//!   writer refuses further writes after a failed commit rather than guess
//!   what reached the disk.
//! * Opening checks the head against the last entry, the stored frontier and
//!   the newest checkpoint without replaying the chain; a mismatch opens the
//!   ledger read-only with the first bad sequence number.

mod audit_driver;
mod bundles;
mod case_reads;
mod private;
mod reads;
mod recovery;
mod schema;
pub mod signed_checkpoint;
mod state_seal;
pub mod storage;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use caseledger_keys::{files, note, Identity, PublicKey};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options as DbOptions, ReadOptions, DB};

use crate::{Error, Result};
use caseledger_verify::audit::{AuditReport, Auditor, CheckedSignature, DerivedTable, StoredEnd, StoredHead};
use caseledger_verify::bundle::ProofBundle;
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::export::ExportLine;
use caseledger_verify::hash::Hash;
use caseledger_verify::merkle::{self, Frontier, NodeSource};
use caseledger_verify::record::{self, Genesis, GenesisKey, KeyText};
use caseledger_verify::registry::{KeyInfo, Registry};
use caseledger_verify::state::StateRead as _;
use caseledger_verify::thread_map::ThreadMap;

use audit_driver::*;
pub use bundles::CodeLookup;
use recovery::*;
use schema::*;
pub use schema::{Head, LedgerMeta, COLUMN_FAMILIES};
pub use writer::AppendFuture;

/// The free space kept where the node key (and the kept checkpoint's
/// second copy) lives, when that is another file system: 1 MiB.
pub const COPY_FOLDER_RESERVE_BYTES: u64 = 1 << 20;

/// Default [`Options::free_space_min_bytes`]: 64 MiB.
pub const FREE_SPACE_MIN_BYTES: u64 = 64 << 20;

/// File name of the node's private key inside the ledger folder.
pub const NODE_KEY_FILE: &str = "node.key";
/// File name of the node's public key inside the ledger folder.
pub const NODE_PUB_FILE: &str = "node.pub";
/// RocksDB lives in this subfolder of the ledger folder.
pub const DB_DIR: &str = "db";

/// Where the ledger's timestamps come from. Injected so tests and
/// simulations control time; the ledger core never reads a clock itself.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// Wall-clock time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Tunables of a writable ledger.
#[derive(Clone, Debug)]
pub struct Options {
    /// Make a checkpoint once this many entries are not covered by one.
    pub checkpoint_every_entries: u64,
    /// Make a checkpoint once uncovered entries are this old.
    pub checkpoint_every_ms: u64,
    /// Most entries committed in one group.
    pub batch_entries_max: usize,
    /// Threads that verify signatures (group commit and audit).
    pub verify_threads: usize,
    /// [`Ledger::create`] only: the genesis entry marks a demo ledger, the
    /// only kind that admits `demo_note` records (tests, benchmarks,
    /// `caseledger demo`).
    pub demo_ledger: bool,
    /// Node private key file; defaults to `<folder>/node.key`.
    pub node_key_path: Option<PathBuf>,
    /// Free space kept in reserve on the ledger's file system: below it the
    /// writer stalls (writes answer [`Error::OutOfSpace`]) before RocksDB
    /// meets a full disk, which would leave a torn record at the end of
    /// its log; 0 leaves it to the disk.
    pub free_space_min_bytes: u64,
    /// Opens a ledger whose write-ahead log ends in a torn record (a write
    /// cut short by a crash or a full disk), dropping that record: what the
    /// operator of `caseledger recover --drop-torn-log-tail` chooses, after
    /// judging the log was not cut. Every other check of the open still
    /// holds (the kept checkpoint above all).
    pub drop_torn_log_tail: bool,
    /// The writer's seam to the disk ([`storage`]): RocksDB as it is, or
    /// in tests, RocksDB behind injected faults.
    pub storage: Arc<dyn storage::Storage>,
    /// Testing only: called right after a group whose signatures are still
    /// being verified is synced (the derived-state gate held); `true` stops
    /// the writer there, as if the process died.
    #[doc(hidden)]
    pub after_speculative_write: Option<TestHook>,
}

/// A test hook in [`Options`].
#[doc(hidden)]
#[derive(Clone)]
pub struct TestHook(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1024,
            checkpoint_every_ms: 10_000,
            batch_entries_max: 8192,
            verify_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            demo_ledger: false,
            node_key_path: None,
            free_space_min_bytes: FREE_SPACE_MIN_BYTES,
            drop_torn_log_tail: false,
            storage: Arc::new(storage::RocksStorage),
            after_speculative_write: None,
        }
    }
}

/// The result of an append: the sequence numbers given to the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the first new entry (of the first record if none is new).
    pub first_seq: u64,
    /// New entries written.
    pub count: u64,
    /// Per record: its seq, or the seq of the earlier entry it repeats
    /// (an idempotent retry writes nothing).
    pub seqs: Vec<u64>,
}

/// Why the ledger refuses writes.
#[derive(Clone, Debug)]
enum Mode {
    Writable,
    ReadOnly,
    Corrupt { first_bad_seq: u64, detail: String },
}

/// What readers see of the head: updated by the writer after each commit.
#[derive(Clone, Debug)]
struct Published {
    size: u64,
    root: Hash,
    checkpoint_size: u64,
}

struct Shared {
    db: DB,
    path: PathBuf,
    meta: LedgerMeta,
    node_key: PublicKey,
    published: RwLock<Published>,
    /// Keys as of the last commit.
    keys: RwLock<Arc<Registry>>,
    /// Held for writing by the writer while a group whose signatures are
    /// still being checked is on disk, for reading by every reader of
    /// derived state: nobody reads state an unverified record made.
    state_gate: RwLock<()>,
    /// Why the writer refuses every write, once it does.
    poisoned: std::sync::Mutex<Option<String>>,
    /// Why the writer waits (the disk is full), while it does.
    stalled: std::sync::Mutex<Option<String>>,
    /// A second copy of the kept checkpoint beside the node key, when the
    /// node key lives outside the ledger folder (§8c).
    kept_copy: Option<PathBuf>,
    /// Where entries and Merkle nodes are read ([`Options::storage`]).
    storage: Arc<dyn storage::Storage>,
    /// [`Options::free_space_min_bytes`] (0 on a read-only ledger).
    free_space_min_bytes: u64,
    /// The newest checkpoint with the thread map it commits to, once the
    /// writer has one (bundles prove threads against it).
    checkpoint_threads: RwLock<Option<Arc<CheckpointThreads>>>,
}

/// A signed checkpoint and the thread map as of its size.
pub(crate) struct CheckpointThreads {
    pub size: u64,
    pub note: String,
    pub map: ThreadMap,
}

impl Shared {
    fn publish_keys(&self, registry: &Registry) {
        let registry = Arc::new(registry.clone());
        match self.keys.write() {
            Ok(mut guard) => *guard = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
    }

    fn publish_checkpoint_threads(&self, threads: CheckpointThreads) {
        let threads = Some(Arc::new(threads));
        match self.checkpoint_threads.write() {
            Ok(mut guard) => *guard = threads,
            Err(poisoned) => *poisoned.into_inner() = threads,
        }
    }

    fn checkpoint_threads(&self) -> Option<Arc<CheckpointThreads>> {
        match self.checkpoint_threads.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn known_keys(&self) -> Arc<Registry> {
        match self.keys.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// [`storage::space_left`] of the ledger folder's file system, and of
    /// the folder of the kept checkpoint's second copy (beside the node
    /// key) if it has one: that copy needs only a few kilobytes, so there
    /// the reserve is at most [`COPY_FOLDER_RESERVE_BYTES`].
    fn space_left(&self, reserve: u64) -> Result<()> {
        storage::space_left(&self.path, reserve)?;
        match self.kept_copy.as_deref().and_then(Path::parent) {
            Some(folder) => storage::space_left(folder, reserve.min(COPY_FOLDER_RESERVE_BYTES)),
            None => Ok(()),
        }
    }

    fn state_read(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.state_gate.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created with the database")
    }
}

fn storage(e: rocksdb::Error) -> Error {
    let text = e.into_string();
    // A checksum that fails on a read is damage, like one found on open.
    if is_damage(&text) {
        Error::Damaged(text)
    } else {
        Error::Storage(text)
    }
}

/// A signature the ledger checks with a group's signatures but does not
/// store: the signature of the request that carried the records (an HTTP
/// request signature), over `message` by the registered key `signer`.
#[derive(Clone, Debug)]
pub struct Authorization {
    pub signer: caseledger_keys::KeyId,
    pub message: Vec<u8>,
    pub signature: caseledger_keys::Signature,
}

/// An open ledger folder.
pub struct Ledger {
    shared: Arc<Shared>,
    mode: Mode,
    writer: Option<writer::Handle>,
    /// The node's key, on a writable ledger: it signs checkpoints and the
    /// SMS challenge commitments.
    node: Option<Identity>,
}

fn db_options(create: bool) -> DbOptions {
    let mut options = DbOptions::default();
    options.create_if_missing(create);
    // A column family added by a newer version starts empty; creating it
    // loses nothing. Only a writable open does it.
    options.create_missing_column_families(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // A damaged write-ahead log stops the open instead of being replayed up
    // to the damage (RocksDB's default drops the rest: acknowledged
    // entries would vanish without a word); a missing or shortened closed
    // log is caught through the MANIFEST. docs/FORMAT.md §8c.
    options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    options.set_track_and_verify_wals_in_manifest(true);
    options.set_paranoid_checks(true);
    // Most rule look-ups of request ids and references are misses: a bloom
    // filter answers them without reading table blocks.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
    options
}

fn open_db(path: &Path, create: bool, torn_tail: bool) -> Result<DB> {
    let options = || {
        let mut options = db_options(create);
        if torn_tail {
            options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        }
        options
    };
    let descriptors = COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, options()));
    DB::open_cf_descriptors(&options(), path.join(DB_DIR), descriptors).map_err(|e| {
        let text = e.into_string();
        if text.contains("lock") || text.contains("LOCK") {
            Error::Locked {
                path: path.display().to_string(),
                detail: text,
            }
        } else if !create && text.contains("does not exist") {
            // RocksDB's files are there but its CURRENT is not: damage.
            let files_left = std::fs::read_dir(path.join(DB_DIR)).is_ok_and(|mut d| d.next().is_some());
            if files_left {
                Error::Damaged(format!("{text} (the database folder holds files)"))
            } else {
                Error::NotFound(format!("no ledger in {} ({text})", path.display()))
            }
        } else if text.contains("truncated record") || text.contains("truncated header") {
            Error::Damaged(format!(
                "{text}: the write-ahead log ends in the middle of a record. A write was cut short \
                 (the disk filled up past the free-space reserve, or the machine lost power) or the \
                 log was cut; nothing acknowledged is in a torn record, but a cut log loses entries, \
                 so the ledger is not opened as if whole"
            ))
        } else if is_damage(&text) {
            Error::Damaged(text)
        } else {
            Error::Storage(text)
        }
    })
}

/// Whether a RocksDB error says its files are damaged or missing (as
/// opposed to locked, absent or out of space).
fn is_damage(text: &str) -> bool {
    // A full disk is no damage: space freed, the same files open.
    if text.contains("No space left") {
        return false;
    }
    text.contains("Corruption")
        || text.contains("checksum mismatch")
        || text.contains("missing WAL")
        || text.contains("WAL file")
        || text.contains("MANIFEST")
        || text.contains("CURRENT")
}

fn read_json<T: serde::de::DeserializeOwned>(db: &DB, cf: &ColumnFamily, key: &[u8], what: &str) -> Result<Option<T>> {
    match db.get_pinned_cf(cf, key).map_err(storage)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Storage(format!("stored {what} is unreadable: {e}"))),
    }
}

impl Ledger {
    /// Creates a new ledger in `path` (which must not hold one): writes the
    /// node key files, the genesis entry and the first checkpoint.
    pub fn create(
        path: &Path,
        origin: &str,
        node: &Identity,
        administrators: &[(String, PublicKey)],
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self> {
        record::check_origin(origin).map_err(Error::InvalidArgument)?;
        let copy = options
            .node_key_path
            .as_deref()
            .and_then(|key| signed_checkpoint::copy_beside(key, path));
        if let Some(copy) = copy.filter(|copy| copy.exists()) {
            return Err(Error::InvalidArgument(format!(
                "{} holds the signed checkpoint of an earlier ledger",
                copy.display()
            )));
        }
        if signed_checkpoint::path_in(path).exists() {
            return Err(Error::InvalidArgument(format!(
                "{} holds the signed checkpoint of an earlier ledger ({})",
                path.display(),
                signed_checkpoint::LATEST_CHECKPOINT_FILE
            )));
        }
        if path.join(DB_DIR).exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a ledger",
                path.display()
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        if options.node_key_path.is_none() {
            files::write_private_key(&path.join(NODE_KEY_FILE), node)?;
        }
        files::write_public_key(&path.join(NODE_PUB_FILE), &node.public_key())?;
        let db = open_db(path, true, false)?;
        let meta = LedgerMeta {
            storage_version: STORAGE_VERSION,
            origin: origin.to_owned(),
            node_key: node.public_key().to_base64(),
        };
        let meta_cf = db.cf_handle(CF_META).expect("created");
        let head = Head::new(&Frontier::new(), &[0; 32], 0, 0);
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(meta_cf, META_LEDGER, serde_json::to_vec(&meta).expect("serialisable"));
        batch.put_cf(meta_cf, META_HEAD, serde_json::to_vec(&head).expect("serialisable"));
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).map_err(storage)?;
        drop(db);
        let demo = options.demo_ledger;
        let ledger = Self::open_with_identity(path, Some(node.clone()), clock, options)?;
        let genesis = Genesis {
            origin: origin.to_owned(),
            node_key: KeyText::from_key(&node.public_key()),
            administrators: administrators
                .iter()
                .map(|(name, key)| GenesisKey {
                    name: name.clone(),
                    public_key: KeyText::from_key(key),
                })
                .collect(),
            demo,
        };
        let payload = serde_json::to_vec(&genesis).expect("serialisable");
        ledger.append(vec![Record::sign(origin, record::KIND_GENESIS, payload, node)])?;
        ledger.checkpoint_now()?;
        Ok(ledger)
    }

    /// Opens a ledger for writing. Fails with [`Error::Locked`] if another
    /// process has it open; opens read-only (writes fail with
    /// [`Error::Corrupt`]) if the integrity check on open fails.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, options: Options) -> Result<Self> {
        Self::open_with_identity(path, None, clock, options)
    }

    fn open_with_identity(
        path: &Path,
        node: Option<Identity>,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self> {
        let node = match node {
            Some(node) => node,
            None => {
                let key_path = options
                    .node_key_path
                    .clone()
                    .unwrap_or_else(|| path.join(NODE_KEY_FILE));
                files::read_private_key(&key_path)?
            }
        };
        let db = open_db(path, false, options.drop_torn_log_tail)?;
        let mut shared = Self::load_shared(db, path)?;
        shared.kept_copy = options
            .node_key_path
            .as_deref()
            .and_then(|key| signed_checkpoint::copy_beside(key, path));
        shared.storage = Arc::clone(&options.storage);
        shared.free_space_min_bytes = options.free_space_min_bytes;
        let shared = Arc::new(shared);
        if shared.node_key != node.public_key() {
            return Err(Error::InvalidArgument(
                "the node key file does not match the ledger's node key".into(),
            ));
        }
        let checked = settle_pending_group(&shared)
            .and_then(|()| check_on_open(&shared))
            .and_then(|state| check_derived_tables(&shared, &node, state.frontier.size(), &options).map(|()| state))
            .and_then(|state| with_thread_map(&shared, state));
        match checked {
            Ok(state) => {
                shared.publish_keys(&state.registry);
                // Settling a pending group may have undone it: readers see
                // the head as checked, not as first read.
                let published = Published {
                    size: state.frontier.size(),
                    root: state.frontier.root(),
                    checkpoint_size: state.last_checkpoint.as_ref().map_or(0, |c| c.size),
                };
                *shared.published.write().unwrap_or_else(|p| p.into_inner()) = published;
                let signer = note::Signer::new(&shared.meta.origin, node.clone())?;
                let writer = writer::Handle::start(Arc::clone(&shared), state, signer, clock, options);
                Ok(Self {
                    shared,
                    mode: Mode::Writable,
                    writer: Some(writer),
                    node: Some(node),
                })
            }
            Err(Error::Integrity { seq, check, detail }) => Ok(Self {
                shared: {
                    if let Ok(registry) = load_registry(&shared) {
                        shared.publish_keys(&registry);
                    }
                    shared
                },
                mode: Mode::Corrupt {
                    first_bad_seq: seq,
                    detail: format!("{check}: {detail}"),
                },
                writer: None,
                node: None,
            }),
            Err(other) => Err(other),
        }
    }

    /// Opens a ledger read-only (it may be open for writing elsewhere).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.join(DB_DIR).exists() {
            return Err(Error::NotFound(format!("no ledger in {}", path.display())));
        }
        let db =
            DB::open_cf_for_read_only(&db_options(false), path.join(DB_DIR), COLUMN_FAMILIES, false).map_err(|e| {
                let text = e.into_string();
                if is_damage(&text) {
                    Error::Damaged(text)
                } else {
                    Error::Storage(text)
                }
            })?;
        let shared = Arc::new(Self::load_shared(db, path)?);
        if let Ok(registry) = load_registry(&shared) {
            shared.publish_keys(&registry);
        }
        Ok(Self {
            shared,
            mode: Mode::ReadOnly,
            writer: None,
            node: None,
        })
    }

    fn load_shared(db: DB, path: &Path) -> Result<Shared> {
        let meta_cf = db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Storage("meta column family missing".into()))?;
        let meta: LedgerMeta = read_json(&db, meta_cf, META_LEDGER, "ledger meta")?
            .ok_or_else(|| Error::NotFound(format!("{} is not a caseledger ledger", path.display())))?;
        if meta.storage_version != STORAGE_VERSION {
            return Err(Error::Storage(format!(
                "unknown storage version {}",
                meta.storage_version
            )));
        }
        let head: Head = read_json(&db, meta_cf, META_HEAD, "head")?.ok_or_else(|| Error::Integrity {
            seq: 0,
            check: "head".into(),
            detail: "the head record is missing".into(),
        })?;
        let node_key = PublicKey::from_base64(&meta.node_key)?;
        let published = Published {
            size: head.size,
            root: head.root().unwrap_or([0; 32]),
            checkpoint_size: head.checkpoint_size,
        };
        Ok(Shared {
            db,
            path: path.to_owned(),
            meta,
            node_key,
            published: RwLock::new(published),
            keys: RwLock::new(Arc::new(Registry::new(node_key))),
            state_gate: RwLock::new(()),
            poisoned: std::sync::Mutex::default(),
            stalled: std::sync::Mutex::default(),
            kept_copy: None,
            storage: Arc::new(storage::RocksStorage),
            free_space_min_bytes: 0,
            checkpoint_threads: RwLock::new(None),
        })
    }

    pub fn origin(&self) -> &str {
        &self.shared.meta.origin
    }

    pub fn node_key(&self) -> PublicKey {
        self.shared.node_key
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn published(&self) -> Published {
        self.shared
            .published
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.published().size
    }

    /// Merkle root of all entries.
    pub fn root(&self) -> Hash {
        self.published().root
    }

    /// `Some(first bad seq, detail)` if the open-time integrity check failed.
    /// Why the writer refuses every write (it panicked or a commit failed),
    /// until the ledger is reopened; `None` while it writes.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why writes wait (the disk is full) while they do: the writer
    /// retries every second and resumes by itself once a synced write
    /// succeeds again; `None` otherwise.
    pub fn stalled(&self) -> Option<String> {
        self.shared.stalled.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// [`Error::OutOfSpace`] while the ledger's file system has less free
    /// space than the reserve (`/readyz` asks before any write fails).
    pub fn space_left(&self) -> Result<()> {
        self.shared.space_left(self.shared.free_space_min_bytes)
    }

    pub fn corruption(&self) -> Option<(u64, &str)> {
        match &self.mode {
            Mode::Corrupt { first_bad_seq, detail } => Some((*first_bad_seq, detail)),
            _ => None,
        }
    }

    fn writer(&self) -> Result<&writer::Handle> {
        match (&self.mode, &self.writer) {
            (Mode::Writable, Some(writer)) => Ok(writer),
            (Mode::Corrupt { first_bad_seq, detail }, _) => Err(Error::Corrupt {
                first_bad_seq: *first_bad_seq,
                detail: detail.clone(),
            }),
            _ => Err(Error::ReadOnly),
        }
    }

    /// Appends records atomically, all or none, after checking each against
    /// the key registry and verifying its signature. Returns once durable.
    pub fn append(&self, records: Vec<Record>) -> Result<Appended> {
        if records.is_empty() {
            return Err(Error::InvalidArgument("nothing to append".into()));
        }
        self.writer()?.append(records)
    }

    /// [`Ledger::append`] for async callers, without blocking a thread: the
    /// same group commit, led for them by the writer thread. The future
    /// owns what it needs (it may outlive `self`) and resolves once the
    /// records are durable, or refused; dropping it does not withdraw them.
    pub fn append_async(&self, records: Vec<Record>) -> AppendFuture {
        self.append_authorized(records, None)
    }

    /// [`Ledger::append_async`] of records that came with a signature of
    /// their own request (an HTTP request signature): it is verified in the
    /// group's signature checks, before anything is acknowledged, and not
    /// stored. A bad one refuses the request with
    /// [`Error::BadRequestSignature`], before any rule speaks.
    pub fn append_authorized(&self, records: Vec<Record>, authorization: Option<Authorization>) -> AppendFuture {
        if records.is_empty() {
            return AppendFuture::refused(Error::InvalidArgument("nothing to append".into()));
        }
        match self.writer() {
            Ok(writer) => writer.append_async(records, authorization),
            Err(e) => AppendFuture::refused(e),
        }
    }

    /// Appends one record; returns its sequence number once durable.
    pub fn append_one(&self, record: Record) -> Result<u64> {
        self.append(vec![record]).map(|a| a.seqs[0])
    }

    /// How many signatures the verifier threads have checked ahead of their
    /// groups since the ledger was opened (requests that queued while a
    /// group was being committed); 0 for a read-only ledger.
    pub fn signatures_checked_ahead(&self) -> u64 {
        self.writer().map_or(0, |w| w.signatures_checked_ahead())
    }

    /// Signs a checkpoint of the current size now (if it has none yet) and returns it.
    pub fn checkpoint_now(&self) -> Result<String> {
        self.writer()?.checkpoint()
    }

    /// The key registry as of the last commit (cheap: shared, not read from disk).
    pub fn keys(&self) -> Arc<Registry> {
        self.shared.known_keys()
    }

    /// The key registry as stored (current state).
    pub fn registry(&self) -> Result<Registry> {
        load_registry(&self.shared)
    }

    /// Replays and checks the whole ledger; see [`Auditor`]. `node_key`
    /// defaults to the one recorded in the ledger; an auditor should pass the
    /// key it trusts. `progress` is called with the entries checked so far.
    pub fn audit(&self, node_key: Option<PublicKey>, threads: usize, progress: &dyn Fn(u64)) -> Result<AuditReport> {
        // A writable ledger first covers every entry with a checkpoint
        // (the audit reports entries no checkpoint covers).
        if self.writer.is_some() {
            match self.checkpoint_now() {
                // A ledger that failed its open checks makes none; the
                // audit still says what is wrong.
                Ok(_) | Err(Error::ReadOnly | Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let node_key = node_key.unwrap_or(self.shared.node_key);
        let mut report = audit_driver(self, node_key, threads, progress)?;
        let finding = match self.kept_checkpoint() {
            Ok(Some(note)) => {
                self.check_against(&mut report, &note, node_key);
                None
            }
            // Every ledger since its genesis checkpoint has one (§8c).
            Ok(None) if report.checkpoints > 0 => Some(caseledger_verify::audit::Finding {
                seq: 0,
                check: "checkpoint_missing".into(),
                detail: format!(
                    "{} is missing although the ledger holds signed checkpoints",
                    signed_checkpoint::LATEST_CHECKPOINT_FILE
                ),
            }),
            Ok(None) => None,
            Err(Error::Integrity { seq, check, detail }) => {
                Some(caseledger_verify::audit::Finding { seq, check, detail })
            }
            Err(other) => return Err(other),
        };
        if let Some(finding) = finding {
            report.ok = false;
            if report.first_error.as_ref().is_none_or(|f| f.seq > finding.seq) {
                report.first_error = Some(finding);
            }
        }
        Ok(report)
    }

    /// Adds to `report` what [`Ledger::check_signed_checkpoint`] finds
    /// wrong with the ledger against `note`.
    pub fn check_against(&self, report: &mut AuditReport, note: &str, node_key: PublicKey) {
        let checked = self.check_signed_checkpoint(note, node_key).and_then(|checkpoint| {
            // Witnesses vouch for size and root only: the thread map the
            // note commits to must be the ledger's too (FORMAT §6b).
            if checkpoint.size > 0 && self.thread_map_at(checkpoint.size)?.root() != checkpoint.threads {
                return Err(Error::Integrity {
                    seq: checkpoint.size - 1,
                    check: "checkpoint_threads".into(),
                    detail: format!(
                        "the checkpoint of size {} commits to a thread map the ledger's first {} entries do not produce",
                        checkpoint.size, checkpoint.size
                    ),
                });
            }
            Ok(checkpoint)
        });
        let finding = match checked {
            Ok(_) => return,
            Err(Error::Integrity { seq, check, detail }) => caseledger_verify::audit::Finding { seq, check, detail },
            Err(other) => caseledger_verify::audit::Finding {
                seq: 0,
                check: "checkpoint_signature".into(),
                detail: other.to_string(),
            },
        };
        report.ok = false;
        if report.first_error.as_ref().is_none_or(|f| f.seq > finding.seq) {
            report.first_error = Some(finding);
        }
    }

    /// Audits a consistent snapshot of a ledger that may be written to
    /// meanwhile: RocksDB makes a checkpoint (hard links) in the ledger
    /// folder, the audit runs on it read-only, and the copy is removed.
    pub fn audit_live(&self, threads: usize) -> Result<AuditReport> {
        self.audit_live_paced(threads, &|_| {})
    }

    /// [`Ledger::audit_live`], calling `pace` with the entries replayed
    /// every 4,096 entries: a background audit sleeps there to leave the
    /// cores to the writer.
    pub fn audit_live_paced(&self, threads: usize, pace: &dyn Fn(u64)) -> Result<AuditReport> {
        // Every entry of the copy is covered by a checkpoint, so the audit
        // can vouch for all of them (a read-only ledger makes none).
        if self.writer.is_some() {
            match self.checkpoint_now() {
                Ok(_) | Err(Error::ReadOnly | Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = self
            .shared
            .path
            .join(format!("audit-snapshot-{}-{n}", std::process::id()));
        let result = (|| {
            std::fs::create_dir_all(&copy).map_err(|e| Error::Storage(format!("{}: {e}", copy.display())))?;
            // The kept checkpoint first: every note it holds is in the
            // database already (it is written after its group is synced).
            if let Some(note) = self.kept_checkpoint()? {
                signed_checkpoint::write(&signed_checkpoint::path_in(&copy), &note)?;
            }
            {
                // Never copy a group whose signatures are still being checked.
                let _gate = self.shared.state_read();
                rocksdb::checkpoint::Checkpoint::new(&self.shared.db)
                    .and_then(|c| c.create_checkpoint(copy.join(DB_DIR)))
                    .map_err(storage)?;
            }
            let snapshot = Ledger::open_read_only(&copy)?;
            snapshot.audit(Some(self.shared.node_key), threads, pace)
        })();
        let _ = std::fs::remove_dir_all(&copy);
        result
    }

    /// Signs a record with the node key (SMS challenge commitments only: the
    /// registry refuses the node key for anything else).
    pub fn sign_as_node(&self, kind: u16, payload: Vec<u8>) -> Result<Record> {
        let node = self.node.as_ref().ok_or(Error::ReadOnly)?;
        Ok(Record::sign(&self.shared.meta.origin, kind, payload, node))
    }

    /// Testing only: stops the writer and leaves the ledger as a killed
    /// process would (no seal, no flush: what is not in the tables is in
    /// the write-ahead log only).
    #[doc(hidden)]
    pub fn crash(mut self) {
        if let Some(writer) = self.writer.take() {
            writer.halt();
        }
    }

    /// Stops the writer after it has committed everything queued.
    pub fn close(mut self) -> Result<()> {
        self.close_cleanly()
    }

    /// Stops the writer (a last checkpoint), seals the derived tables
    /// (§8d) and flushes: nothing is left only in the write-ahead log.
    fn close_cleanly(&mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        writer.stop()?;
        // A writer that stopped on a failure may have left a group to be
        // settled on the next open: nothing is sealed then.
        let pending = self
            .shared
            .db
            .get_pinned_cf(self.shared.cf(CF_META), META_PENDING)
            .map_err(storage)?
            .is_some();
        let stopped_cleanly = self.poisoned().is_none() && !pending;
        if let (Some(node), true) = (&self.node, stopped_cleanly) {
            let seal = state_seal::StateSeal {
                size: self.size(),
                mac: state_seal::mac(&self.shared.db, node, self.size())?,
            };
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            self.shared
                .db
                .put_cf_opt(
                    self.shared.cf(CF_META),
                    META_STATE_SEAL,
                    serde_json::to_vec(&seal).expect("serialisable"),
                    &sync,
                )
                .map_err(storage)?;
        }
        self.flush()
    }

    /// Writes every column family's memtable to its tables and waits.
    fn flush(&self) -> Result<()> {
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        let families: Vec<&ColumnFamily> = COLUMN_FAMILIES.iter().map(|name| self.shared.cf(name)).collect();
        self.shared.db.flush_cfs_opt(&families, &options).map_err(storage)
    }

    /// Checks the ledger against a checkpoint note the node signed (the
    /// latest one kept beside the database, or one saved earlier by
    /// anyone): its signature with `node_key` under the ledger's origin
    /// (`checkpoint_signature`), then that the ledger holds its entries
    /// (`checkpoint_lost`) with its root (`checkpoint_root`).
    pub fn check_signed_checkpoint(&self, note: &str, node_key: PublicKey) -> Result<Checkpoint> {
        // The origin the genesis entry names (the stored meta may have been
        // changed; the audit reports that apart).
        let origin = self
            .entry(0)
            .ok()
            .and_then(|genesis| serde_json::from_slice::<Genesis>(&genesis.record.payload).ok())
            .map_or_else(|| self.shared.meta.origin.clone(), |genesis| genesis.origin);
        let verifier = note::Verifier::new(&origin, node_key)?;
        let checkpoint = Checkpoint::open(note, &verifier).map_err(|e| Error::Integrity {
            seq: 0,
            check: "checkpoint_signature".into(),
            detail: e.to_string(),
        })?;
        signed_checkpoint::check(&SharedNodes(&self.shared), self.size(), &checkpoint)?;
        Ok(checkpoint)
    }

    /// The node's latest signed checkpoint kept beside the database
    /// (docs/FORMAT.md §8c), if the folder has one.
    pub fn kept_checkpoint(&self) -> Result<Option<String>> {
        let path = signed_checkpoint::path_in(&self.shared.path);
        match std::fs::read(&path) {
            // Not UTF-8: its signature check says so.
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Integrity {
                seq: 0,
                check: "checkpoint_signature".into(),
                detail: format!("{} is unreadable: {e}", path.display()),
            }),
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // A failure leaves no seal: the next open replays instead.
        let _ = self.close_cleanly();
    }
}

impl NodeSource for Ledger {
    fn perfect_node(&self, level: u32, index: u64) -> caseledger_verify::Result<Hash> {
        Ok(read_node(&self.shared, level, index)?)
    }
}

fn read_node(shared: &Shared, level: u32, index: u64) -> Result<Hash> {
    let value = shared
        .storage
        .get(&shared.db, shared.cf(CF_NODES), &node_key(level, index))
        .map_err(Error::Storage)?;
    let last_leaf = ((index + 1) << level) - 1;
    value
        .and_then(|bytes| <Hash>::try_from(&bytes[..]).ok())
        .ok_or_else(|| Error::Integrity {
            seq: last_leaf,
            check: "merkle_node".into(),
            detail: format!("stored node (level {level}, index {index}) is missing or malformed"),
        })
}

struct SharedNodes<'a>(&'a Shared);

/// The stored derived state.
struct SharedState<'a>(&'a Shared);

impl caseledger_verify::state::StateRead for SharedState<'_> {
    fn get(&self, key: &str) -> caseledger_verify::Result<Option<Vec<u8>>> {
        let _gate = self.0.state_read();
        Ok(self.0.db.get_cf(self.0.cf(CF_STATE), key.as_bytes()).map_err(storage)?)
    }
}

impl NodeSource for SharedNodes<'_> {
    fn perfect_node(&self, level: u32, index: u64) -> caseledger_verify::Result<Hash> {
        Ok(read_node(self.0, level, index)?)
    }
}

fn load_registry(shared: &Shared) -> Result<Registry> {
    let mut infos = Vec::new();
    for item in shared.db.iterator_cf(shared.cf(CF_KEYS), IteratorMode::Start) {
        let (key, value) = item.map_err(storage)?;
        let id = caseledger_keys::KeyId(
            key.as_ref()
                .try_into()
                .map_err(|_| Error::Storage("bad key id in keys column family".into()))?,
        );
        let info: KeyInfo =
            serde_json::from_slice(&value).map_err(|e| Error::Storage(format!("stored key info unreadable: {e}")))?;
        infos.push((id, info));
    }
    let genesis = shared
        .db
        .get_cf(shared.cf(CF_ENTRIES), seq_key(0))
        .map_err(storage)?
        .and_then(|bytes| Entry::decode(&bytes).ok())
        .and_then(|entry| serde_json::from_slice::<Genesis>(&entry.record.payload).ok())
        .ok_or_else(|| integrity(0, "genesis", "the genesis entry is missing or unreadable"))?;
    Registry::from_parts(&genesis, shared.node_key, infos).map_err(Error::Storage)
}

fn integrity(seq: u64, check: &str, detail: impl Into<String>) -> Error {
    Error::Integrity {
        seq,
        check: check.into(),
        detail: detail.into(),
    }
}
