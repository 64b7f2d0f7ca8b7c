//! A witness (C2SP tlog-witness, c2sp.org/tlog-witness) that another
//! institution runs on its own machine: it cosigns (C2SP tlog-cosignature
//! v1, Ed25519) each checkpoint a log submits, once it has checked the
//! log's signature and that the new tree extends the last one it cosigned
//! (an RFC 6962 consistency proof). It never cosigns two inconsistent
//! checkpoints of one log, nor a smaller tree after a larger one, across
//! restarts too: its state is persisted before it answers, and it refuses
//! to run without it.
//!
//! Files: this one (the folder, the state and `add-checkpoint`'s checks),
//! `http.rs` (the HTTP interface).
//!
//! The folder (`caseledger witness-init --data DIR --name NAME`):
//!
//! ```text
//! DIR/witness.key    the cosigning key (PKCS#8 PEM, mode 0600)
//! DIR/state.json     {name, public_key, logs: {origin: {size, root, note}}},
//!                    replaced atomically (write, fsync, rename, fsync DIR)
//! ```

pub mod http;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::cosignature::Cosigner;
use caseledger_keys::{files, note, Identity};
use caseledger_verify::hash::Hash;
use caseledger_verify::merkle;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The cosigning key's file in the witness's folder.
pub const KEY_FILE: &str = "witness.key";
/// The state's file in the witness's folder.
pub const STATE_FILE: &str = "state.json";
/// Most consistency-proof lines a request may carry (tlog-witness).
pub const PROOF_LINES_MAX: usize = 63;

/// What the witness last cosigned of one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    pub size: u64,
    /// Root hash, standard base64.
    pub root: String,
    /// The checkpoint as submitted (the log's signature), with this
    /// witness's cosignature line: what the monitoring endpoint serves.
    pub note: String,
}

/// The witness's persistent state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The witness's name (its cosignature key name).
    pub name: String,
    /// Its cosigning public key (base64), checked against the key file.
    pub public_key: String,
    pub logs: BTreeMap<String, LogState>,
}

/// Creates a witness folder: a new cosigning key and an empty state.
/// Refuses a folder that has either already (a witness whose state was
/// lost must not start afresh under the key that cosigned before).
pub fn init(dir: &Path, name: &str) -> anyhow::Result<Cosigner> {
    let key = dir.join(KEY_FILE);
    let state = dir.join(STATE_FILE);
    if key.exists() || state.exists() {
        anyhow::bail!(
            "{} already holds a witness; a witness that lost its state is not made again in place \
             (restore the state from its backup, or start a new witness with a new key in a new folder)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let identity = Identity::generate();
    let cosigner = Cosigner::new(name, identity.clone()).map_err(anyhow::Error::msg)?;
    files::write_private_key(&key, &identity)?;
    write_state(
        dir,
        &State {
            name: name.to_owned(),
            public_key: identity.public_key().to_base64(),
            logs: BTreeMap::new(),
        },
    )?;
    Ok(cosigner)
}

/// Replaces the state file atomically and durably.
fn write_state(dir: &Path, state: &State) -> anyhow::Result<()> {
    let path = dir.join(STATE_FILE);
    let temporary = dir.join(format!("{STATE_FILE}.new"));
    let mut file = std::fs::File::create(&temporary).with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(&serde_json::to_vec_pretty(state)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A log the witness cosigns: its origin and the key that signs it.
#[derive(Clone, Debug)]
pub struct Log {
    pub verifier: note::Verifier,
}

impl Log {
    /// `ORIGIN=VKEY`, VKEY the log's signed-note verifier key
    /// (`<origin>+<hex id>+<base64(0x01 || key)>`, `GET /v1/node-key`'s
    /// `note_verifier_key`), whose name must be the origin.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (origin, vkey) = text
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("a log is ORIGIN=VKEY"))?;
        let verifier = note::Verifier::parse(vkey).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            verifier.name() == origin,
            "the key of log {origin} is named {}, not its origin",
            verifier.name()
        );
        Ok(Self { verifier })
    }
}

/// A running witness: its key, the logs it knows, its state.
pub struct Witness {
    dir: PathBuf,
    cosigner: Cosigner,
    logs: BTreeMap<String, Log>,
    /// The state, changed only with the lock held: a request is checked
    /// against the stored size and persisted under one lock, so two
    /// requests never both pass the check of one old size.
    state: Mutex<State>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The answer to `add-checkpoint`, as tlog-witness specifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature line(s).
    Cosigned(String),
    /// 409: the size of the last checkpoint cosigned for the origin.
    Conflict(u64),
    /// 400: the request is malformed, or its old size is above its size.
    BadRequest(String),
    /// 403: no valid signature by the log's key.
    Forbidden(String),
    /// 404: the origin is not a log this witness knows.
    UnknownLog(String),
    /// 422: the proof does not hold, or the roots of one size differ.
    Unprocessable(String),
    /// 500: the state could not be persisted (nothing was cosigned).
    Failed(String),
}

/// The root of the empty tree (RFC 6962): SHA-256 of the empty string.
fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// `old N`, up to 63 proof lines, an empty line, then the checkpoint.
fn parse_request(body: &str) -> Result<(u64, Vec<Hash>, &str), String> {
    let (header, note) = body
        .split_once("\n\n")
        .ok_or("the request is an old size line, proof lines, an empty line and a checkpoint")?;
    let mut lines = header.split('\n');
    let old = lines
        .next()
        .and_then(|line| line.strip_prefix("old "))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == &"0" || !n.starts_with('0')))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or("the first line is `old <size>` in decimal")?;
    let proof = lines
        .map(|line| {
            BASE64
                .decode(line)
                .ok()
                .and_then(|bytes| <Hash>::try_from(bytes).ok())
                .ok_or_else(|| format!("a proof line is a hash in base64: {line:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if proof.len() > PROOF_LINES_MAX {
        return Err(format!("at most {PROOF_LINES_MAX} proof lines"));
    }
    Ok((old, proof, note))
}

/// The origin, size and root of a checkpoint's text (extension lines may
/// follow; the log's signature covers them, the cosignature too).
fn parse_checkpoint(text: &str) -> Result<(u64, Hash), String> {
    if text.trim_end_matches('\n').split('\n').any(str::is_empty) {
        return Err("a checkpoint's lines are not empty".into());
    }
    let mut lines = text.split('\n');
    let _origin = lines.next();
    let size = lines
        .next()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == &"0" || !n.starts_with('0')))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or("the checkpoint's second line is its size in decimal")?;
    let root = lines
        .next()
        .and_then(|line| BASE64.decode(line).ok())
        .and_then(|bytes| <Hash>::try_from(bytes).ok())
        .ok_or("the checkpoint's third line is its root hash in base64")?;
    Ok((size, root))
}

impl Witness {
    /// Opens the witness in `dir` for `logs`. Refuses a folder whose state
    /// is missing (it never cosigns afresh: that would let a log it
    /// cosigned fork under its key) or whose state is another key's.
    pub fn open(dir: &Path, logs: Vec<Log>) -> anyhow::Result<Self> {
        let key_path = dir.join(KEY_FILE);
        let state_path = dir.join(STATE_FILE);
        let identity = files::read_private_key(&key_path).with_context(|| {
            format!(
                "{} is not a witness folder (run `caseledger witness-init`)",
                dir.display()
            )
        })?;
        let bytes = std::fs::read(&state_path).map_err(|e| {
            anyhow::anyhow!(
                "the witness's state {} is missing or unreadable ({e}): refusing to run, since cosigning afresh \
                 could cosign a fork of a log this key cosigned before; restore the state from its backup",
                state_path.display()
            )
        })?;
        let state: State =
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", state_path.display()))?;
        anyhow::ensure!(
            state.public_key == identity.public_key().to_base64(),
            "{} belongs to another key than {}",
            state_path.display(),
            key_path.display()
        );
        let cosigner = Cosigner::new(&state.name, identity).map_err(anyhow::Error::msg)?;
        let mut by_origin = BTreeMap::new();
        for log in logs {
            let origin = log.verifier.name().to_owned();
            anyhow::ensure!(
                by_origin.insert(origin.clone(), log).is_none(),
                "the log {origin} is given twice: one key per log"
            );
        }
        let logs = by_origin;
        Ok(Self {
            dir: dir.to_owned(),
            cosigner,
            logs,
            state: Mutex::new(state),
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(1)
            }),
        })
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The last checkpoint cosigned for `origin`, with its cosignature.
    pub fn latest(&self, origin: &str) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.logs.get(origin).map(|log| log.note.clone())
    }

    /// The log whose origin hashes to `origin_hash` (lower-case hex SHA-256).
    pub fn origin_of_hash(&self, origin_hash: &str) -> Option<String> {
        self.logs
            .keys()
            .find(|origin| hex::encode(Sha256::digest(origin.as_bytes())) == origin_hash)
            .cloned()
    }

    /// `add-checkpoint`: checks the request as tlog-witness says, in its
    /// order, and cosigns only if the new tree extends the last one
    /// cosigned for the log, after persisting it.
    pub fn add_checkpoint(&self, body: &str) -> Answer {
        let (old, proof, submitted) = match parse_request(body) {
            Ok(parts) => parts,
            Err(detail) => return Answer::BadRequest(detail),
        };
        let origin = submitted.split('\n').next().unwrap_or_default();
        let Some(log) = self.logs.get(origin) else {
            return Answer::UnknownLog(format!("this witness does not know the log {origin:?}"));
        };
        let opened = match note::open(submitted, std::slice::from_ref(&log.verifier)) {
            Ok(opened) => opened,
            Err(e) => return Answer::Forbidden(format!("the checkpoint is not signed by the log's key: {e}")),
        };
        let (size, root) = match parse_checkpoint(opened.text) {
            Ok(parts) => parts,
            Err(detail) => return Answer::BadRequest(detail),
        };
        if old > size {
            return Answer::BadRequest(format!("the old size {old} is above the checkpoint's size {size}"));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let known = state.logs.get(origin);
        let (known_size, known_root) = match known {
            Some(log) => (
                log.size,
                BASE64
                    .decode(&log.root)
                    .ok()
                    .and_then(|bytes| <Hash>::try_from(bytes).ok())
                    .unwrap_or_default(),
            ),
            None => (0, empty_root()),
        };
        if old != known_size {
            return Answer::Conflict(known_size);
        }
        if size == 0 && root != empty_root() {
            return Answer::Unprocessable("a checkpoint of size 0 has the empty tree's root".into());
        }
        if old == 0 {
            if !proof.is_empty() {
                return Answer::Unprocessable("no proof is sent from size 0".into());
            }
        } else if old == size {
            if !proof.is_empty() {
                return Answer::Unprocessable("no proof is sent for the size cosigned".into());
            }
            if root != known_root {
                return Answer::Unprocessable(format!(
                    "a checkpoint of size {size} with another root than the one cosigned"
                ));
            }
        } else if let Err(e) = merkle::verify_consistency(old, size, &proof, &known_root, &root) {
            return Answer::Unprocessable(format!("the consistency proof from {old} to {size} does not hold: {e}"));
        }
        let timestamp = (self.clock)().max(1);
        let line = match self.cosigner.cosign(opened.text, timestamp) {
            Ok(line) => line,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let mut next = state.clone();
        next.logs.insert(
            origin.to_owned(),
            LogState {
                size,
                root: BASE64.encode(root),
                note: format!("{submitted}{line}"),
            },
        );
        // Persisted before the answer: a cosignature the log holds is one
        // the witness remembers, whatever happens next.
        if let Err(e) = write_state(&self.dir, &next) {
            return Answer::Failed(format!("the state could not be saved: {e:#}"));
        }
        *state = next;
        Answer::Cosigned(line)
    }

    /// The same witness reading the time from `clock` (POSIX seconds).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }
}
