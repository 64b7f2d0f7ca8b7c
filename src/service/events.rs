//! Business events in the log, for the court's operators and inspectors:
//! each record written (`record_written`: kind, case, seq, signer's key
//! id) or repeated by a retry (`record_repeated`), and each refusal by a
//! rule (`record_refused`: rule). Names and numbers never appear: a case
//! number and a key id are all an event says of who and what.

use caseledger_verify::entry::Record;

/// What the log says of one record: its kind, the case it names in clear
/// (if any) and its signer's short key id. Taken before the append, so no
/// payload is kept or copied for the log.
pub struct Logged {
    kind: u16,
    case: String,
    signer: String,
}

impl Logged {
    pub fn of(record: &Record) -> Self {
        // Only the case number is read, not the whole payload as a tree.
        #[derive(serde::Deserialize)]
        struct CaseNumber {
            case_number: Option<String>,
        }
        let case = serde_json::from_slice::<CaseNumber>(&record.payload)
            .ok()
            .and_then(|p| p.case_number)
            .unwrap_or_default();
        Self {
            kind: record.kind,
            case,
            signer: record.signer.short(),
        }
    }

    pub fn kind(&self) -> u16 {
        self.kind
    }
}

/// Logs each of `records` at the seq the ledger gave it, from the append's
/// `appended` (a seq below its first new one is a retry's repeat).
pub fn written(records: &[Logged], appended: &caseledger_ledger::store::Appended) {
    let first_new = if appended.count > 0 {
        appended.first_seq
    } else {
        u64::MAX
    };
    for (record, seq) in records.iter().zip(&appended.seqs) {
        let kind = caseledger_verify::record::kind_name(record.kind);
        let (case, signer) = (record.case.as_str(), record.signer.as_str());
        if *seq >= first_new {
            tracing::info!(event = "record_written", kind, case, seq, signer, "record written");
        } else {
            tracing::info!(
                event = "record_repeated",
                kind,
                case,
                seq,
                signer,
                "record already written (a retry)"
            );
        }
    }
}

/// Logs a refusal by `rule`.
pub fn refused(rule: &str, detail_kind: Option<u16>) {
    let kind = detail_kind.map_or("", caseledger_verify::record::kind_name);
    tracing::info!(event = "record_refused", rule, kind, "record refused by a rule");
}
