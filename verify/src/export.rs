//! The export format (docs/FORMAT.md, "Export"): a ledger as NDJSON, one
//! entry or checkpoint a line, and its audit with the auditor alone, no
//! store. `GET /v1/export` and `caseledger export` write it;
//! `caseledger verify-export` reads it.
//!
//! ```text
//! {"seq":0,"entry":"<base64 entry bytes>"}
//! {"size":1,"checkpoint":"<signed note>"}      after the entry seq = size - 1
//! {"seq":1,"entry":"…"}
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::PublicKey;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditReport, Auditor};

/// Longest line accepted: an entry of the largest payload in base64, with room.
pub const LINE_BYTES_MAX: usize = (crate::entry::PAYLOAD_BYTES_MAX + 4096) * 4 / 3 + 64;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    seq: u64,
    entry: String,
    /// The disclosures of the values the entry's record conceals (§3j).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    disclosures: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    size: u64,
    checkpoint: String,
}

/// One line of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportLine {
    /// An entry's bytes, as stored and hashed, and the disclosures stored
    /// beside it (docs/FORMAT.md §3j).
    Entry {
        seq: u64,
        bytes: Vec<u8>,
        disclosures: Vec<String>,
    },
    /// A signed checkpoint of the tree of `size` entries.
    Checkpoint { size: u64, note: String },
}

impl ExportLine {
    /// The line's JSON text, without the newline.
    pub fn to_json(&self) -> String {
        let text = match self {
            ExportLine::Entry {
                seq,
                bytes,
                disclosures,
            } => serde_json::to_string(&EntryLine {
                seq: *seq,
                entry: BASE64.encode(bytes),
                disclosures: disclosures.clone(),
            }),
            ExportLine::Checkpoint { size, note } => serde_json::to_string(&CheckpointLine {
                size: *size,
                checkpoint: note.clone(),
            }),
        };
        text.unwrap_or_default()
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Self, String> {
        if line.len() > LINE_BYTES_MAX {
            return Err(format!("line of {} bytes is longer than {LINE_BYTES_MAX}", line.len()));
        }
        // Parsed straight into the line's struct: unknown and repeated
        // fields are refused.
        match (
            serde_json::from_str::<EntryLine>(line),
            serde_json::from_str::<CheckpointLine>(line),
        ) {
            (Ok(line), _) => {
                let bytes = BASE64
                    .decode(&line.entry)
                    .map_err(|e| format!("entry {}: not base64: {e}", line.seq))?;
                Ok(ExportLine::Entry {
                    seq: line.seq,
                    bytes,
                    disclosures: line.disclosures,
                })
            }
            (_, Ok(line)) => Ok(ExportLine::Checkpoint {
                size: line.size,
                note: line.checkpoint,
            }),
            (Err(entry), Err(checkpoint)) => Err(format!(
                "neither an entry line ({entry}) nor a checkpoint line ({checkpoint})"
            )),
        }
    }
}

/// Audits a whole export (its first entry is seq 0) with the auditor:
/// every rule of `caseledger verify` but the comparisons with the store's
/// own tables, which an export does not carry. `lines` are the export's
/// lines without their newlines; `node_key` is the key the auditor trusts.
pub fn audit_export<S: AsRef<str>>(lines: impl IntoIterator<Item = S>, node_key: PublicKey) -> AuditReport {
    audit_export_witnessed(lines, node_key, &[], 0)
}

/// [`audit_export`] that also requires `quorum` cosignatures by
/// `witnesses` on every checkpoint line (violation `checkpoint_quorum`).
pub fn audit_export_witnessed<S: AsRef<str>>(
    lines: impl IntoIterator<Item = S>,
    node_key: PublicKey,
    witnesses: &[caseledger_keys::cosignature::Witness],
    quorum: usize,
) -> AuditReport {
    let mut auditor = Auditor::new(node_key);
    for (number, line) in lines.into_iter().enumerate() {
        if auditor.failed() {
            break;
        }
        match ExportLine::parse(line.as_ref()) {
            Err(detail) => auditor.fail(auditor.size(), "export_line", format!("line {}: {detail}", number + 1)),
            Ok(ExportLine::Entry {
                seq,
                bytes,
                disclosures,
            }) => {
                auditor.push_disclosed_entry(seq, &bytes, disclosures);
            }
            Ok(ExportLine::Checkpoint { size, note }) if size == auditor.size() => {
                auditor.check_checkpoint(&note, None);
                auditor.require_quorum(size, &note, witnesses, quorum);
            }
            Ok(ExportLine::Checkpoint { size, .. }) => auditor.fail(
                size.saturating_sub(1),
                "checkpoint_size",
                format!(
                    "line {}: a checkpoint of size {size} after {} entries",
                    number + 1,
                    auditor.size()
                ),
            ),
        }
    }
    if !auditor.failed() && auditor.size() == 0 {
        auditor.fail(0, "entry_missing", "the export has no genesis entry");
    }
    auditor.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_unknown_fields_are_refused() {
        for line in [
            ExportLine::Entry {
                seq: 7,
                bytes: vec![1, 2, 3],
                disclosures: Vec::new(),
            },
            ExportLine::Entry {
                seq: 9,
                bytes: vec![4],
                disclosures: vec!["[\"00112233445566778899aabbccddeeff\",\"x\"]".into()],
            },
            ExportLine::Checkpoint {
                size: 8,
                note: "court.example/ledger\n8\nAAAA\n\n— x y\n".into(),
            },
        ] {
            assert_eq!(ExportLine::parse(&line.to_json()), Ok(line));
        }
        for bad in [
            r#"{"seq":1,"entry":"AQID","extra":1}"#,
            r#"{"seq":1,"entry":"not base64!"}"#,
            r#"{"size":1}"#,
            r#"{"seq":-1,"entry":"AQID"}"#,
            r#"{"seq":1,"seq":2,"entry":"AQID"}"#,
            "[]",
            "",
        ] {
            assert!(ExportLine::parse(bad).is_err(), "{bad}");
        }
    }
}
