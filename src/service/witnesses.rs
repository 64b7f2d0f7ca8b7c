//! The node's side of witnessing (docs/FORMAT.md §6b): each configured
//! witness gets the newest checkpoint, with the consistency proof from the
//! size it last cosigned, from its own thread, so a witness that is down
//! or slow delays nothing but itself. Each cosignature is checked with the
//! witness's key and kept beside the checkpoint (`cosignatures` column
//! family); `GET /v1/checkpoint` serves the checkpoint with them and says
//! whether the quorum is reached; `/readyz` and `/metrics` show each
//! witness's lag.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::cosignature::{cosignatures, Witness as WitnessKey};
use caseledger_ledger::store::Ledger;
use serde::{Deserialize, Serialize};

/// One witness in the configuration (`[[witnesses]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSetting {
    /// Its verifier key, `<name>+<hex id>+<base64(0x04 || key)>`, as
    /// `caseledger witness-init` prints it.
    pub key: String,
    /// Its submission prefix, e.g. `https://witness.procuratorate.example`.
    pub url: String,
    /// Who it is, as the applicant's page names it (e.g. 无锡市人民检察院);
    /// its key's name when absent.
    #[serde(default)]
    pub label: Option<String>,
}

/// What the node knows of one witness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessStatus {
    /// The size of the newest checkpoint it cosigned (0: none yet).
    pub cosigned_size: u64,
    /// Why the last submission failed, if it did.
    pub last_error: Option<String>,
}

/// The configured witnesses, the quorum, and each one's status.
pub struct Witnessing {
    pub witnesses: Vec<(WitnessKey, String)>,
    /// Who each witness is, in words (the applicant's page shows it).
    pub labels: Vec<String>,
    pub quorum: usize,
    pub status: Mutex<BTreeMap<String, WitnessStatus>>,
}

impl Witnessing {
    /// No witnesses: checkpoints are the node's word alone.
    pub fn none() -> Self {
        Self {
            witnesses: Vec::new(),
            labels: Vec::new(),
            quorum: 0,
            status: Mutex::new(BTreeMap::new()),
        }
    }

    /// Parses the configured witnesses; the quorum is at most their number.
    pub fn configured(settings: &[WitnessSetting], quorum: usize) -> anyhow::Result<Self> {
        let mut witnesses = Vec::new();
        let mut labels = Vec::new();
        for setting in settings {
            let key =
                WitnessKey::parse(&setting.key).map_err(|e| anyhow::anyhow!("witness key {:?}: {e}", setting.key))?;
            anyhow::ensure!(
                setting.url.starts_with("http://") || setting.url.starts_with("https://"),
                "witness {}: its url is http:// or https://",
                key.name()
            );
            anyhow::ensure!(
                !witnesses
                    .iter()
                    .any(|(w, _): &(WitnessKey, String)| w.name() == key.name() || w.public_key() == key.public_key()),
                "witness {} is configured twice (its name or its key)",
                key.name()
            );
            labels.push(setting.label.clone().unwrap_or_else(|| key.name().to_owned()));
            witnesses.push((key, setting.url.trim_end_matches('/').to_owned()));
        }
        anyhow::ensure!(
            quorum <= witnesses.len(),
            "witness_quorum {quorum} is more than the {} witnesses configured",
            witnesses.len()
        );
        let status = witnesses
            .iter()
            .map(|(key, _)| (key.name().to_owned(), WitnessStatus::default()))
            .collect();
        Ok(Self {
            witnesses,
            labels,
            quorum,
            status: Mutex::new(status),
        })
    }

    fn set(&self, name: &str, change: impl FnOnce(&mut WitnessStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        change(status.entry(name.to_owned()).or_default());
    }

    /// Each witness's status, by name.
    pub fn snapshot(&self) -> BTreeMap<String, WitnessStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The checkpoint of `size` (`note`) with the cosignatures kept for it
    /// by configured witnesses (each checked), and how many verified.
    pub fn cosigned(&self, ledger: &Ledger, size: u64, note: &str) -> (String, usize) {
        let keys: Vec<WitnessKey> = self.witnesses.iter().map(|(key, _)| key.clone()).collect();
        let mut cosigned = note.to_owned();
        let mut count = 0;
        for (_, line) in ledger.cosignatures_at(size).unwrap_or_default() {
            let candidate = format!("{cosigned}{line}");
            if cosignatures(&candidate, &keys).is_ok_and(|found| found.len() > count) {
                cosigned = candidate;
                count += 1;
            }
        }
        (cosigned, count)
    }
}

/// The body of an `add-checkpoint` request.
fn request(old: u64, proof: &[[u8; 32]], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&BASE64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// A witness as an anchor: offered the newest checkpoint from the size it
/// last cosigned (asked with old size 0 first: its 409 says it), with the
/// consistency proof from there.
struct WitnessAnchor {
    key: WitnessKey,
    url: String,
    agent: ureq::Agent,
    old: u64,
}

impl super::anchors::Anchor for WitnessAnchor {
    fn name(&self) -> String {
        self.key.name().to_owned()
    }

    fn anchor(&mut self, ledger: &Ledger, size: u64, note: &str) -> Result<super::anchors::Anchored, String> {
        let cosigned = submit_once(ledger, &self.agent, &self.key, &self.url, &mut self.old, size, note)?;
        Ok(if cosigned {
            super::anchors::Anchored::Yes
        } else {
            super::anchors::Anchored::Again
        })
    }
}

/// One submission of the checkpoint `note` of `size`; `old` is the size
/// the witness last cosigned, as far as the node knows. `Ok(true)` when it
/// cosigned (then `old` is `size`), `Ok(false)` when it answered with the
/// size it knows (the next round sends the proof from there).
fn submit_once(
    ledger: &Ledger,
    agent: &ureq::Agent,
    key: &WitnessKey,
    url: &str,
    old: &mut u64,
    size: u64,
    note: &str,
) -> Result<bool, String> {
    if *old > size {
        return Err(format!(
            "the witness cosigned a tree of {old} entries and the ledger has {size}: a ledger rolled back"
        ));
    }
    let proof = if *old == 0 || *old == size {
        Vec::new()
    } else {
        ledger.consistency_proof(*old, size).map_err(|e| e.to_string())?
    };
    let mut response = agent
        .post(&format!("{url}/add-checkpoint"))
        .send(request(*old, &proof, note).as_bytes())
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| format!("answer unreadable: {e}"))?;
    match status {
        200 => {
            // The line that verifies with its key (not merely one of its
            // name: a relay could put another first).
            let line = body
                .lines()
                .find(|line| {
                    cosignatures(&format!("{note}{line}\n"), std::slice::from_ref(key))
                        .is_ok_and(|found| !found.is_empty())
                })
                .ok_or("it answered with no cosignature of its key that verifies")?;
            ledger
                .add_cosignature(size, key.name(), &format!("{line}\n"))
                .map_err(|e| e.to_string())?;
            *old = size;
            Ok(true)
        }
        409 => {
            let known = body
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("409 without a size: {body:?}"))?;
            if known > size {
                return Err(format!(
                    "the witness cosigned a tree of {known} entries and the ledger has {size}: a ledger rolled back, or another history under this origin"
                ));
            }
            *old = known;
            Ok(false)
        }
        status => Err(format!("answered {status}: {}", body.trim())),
    }
}

/// Starts one anchor thread per witness; they end when `stop` is set.
pub fn spawn(
    ledger: Arc<Ledger>,
    witnessing: Arc<Witnessing>,
    poll: Duration,
    timeout: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    witnessing
        .witnesses
        .iter()
        .map(|(key, url)| {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .build()
                .into();
            let anchor = WitnessAnchor {
                key: key.clone(),
                url: url.clone(),
                agent,
                old: 0,
            };
            let (name, status) = (key.name().to_owned(), Arc::clone(&witnessing));
            let report = move |outcome: Result<u64, String>| {
                status.set(&name, |s| match outcome {
                    Ok(size) => {
                        s.cosigned_size = size;
                        s.last_error = None;
                    }
                    Err(error) => s.last_error = Some(error),
                });
            };
            super::anchors::spawn(
                Arc::clone(&ledger),
                Box::new(anchor),
                poll,
                Duration::from_secs(30),
                Arc::clone(&stop),
                Box::new(report),
            )
        })
        .collect()
}
