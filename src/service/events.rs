//! Business events in the log, for the court's operators and inspectors:
//! each record written (`record_written`: kind, case, seq, signer's key
//! id) or repeated by a retry (`record_repeated`), and each refusal by a
//! rule (`record_refused`: rule). Names and numbers never appear: a case
//! number and a key id are all an event says of who and what.

use caseledger_verify::entry::Record;

/// The case a record names, if it names one in clear.
fn case_of(record: &Record) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_slice(&record.payload).ok()?;
    payload.get("case_number")?.as_str().map(str::to_owned)
}

/// Logs each of `records` at the seq the ledger gave it, from the append's
/// `appended` (a seq below its first new one is a retry's repeat).
pub fn written(records: &[Record], appended: &caseledger_ledger::store::Appended) {
    let first_new = if appended.count > 0 {
        appended.first_seq
    } else {
        u64::MAX
    };
    for (record, seq) in records.iter().zip(&appended.seqs) {
        let kind = caseledger_verify::record::kind_name(record.kind);
        let case = case_of(record).unwrap_or_default();
        let signer = record.signer.short();
        if *seq >= first_new {
            tracing::info!(event = "record_written", kind, case, seq, signer = %signer, "record written");
        } else {
            tracing::info!(event = "record_repeated", kind, case, seq, signer = %signer, "record already written (a retry)");
        }
    }
}

/// Logs a refusal by `rule`.
pub fn refused(rule: &str, detail_kind: Option<u16>) {
    let kind = detail_kind.map_or("", caseledger_verify::record::kind_name);
    tracing::info!(event = "record_refused", rule, kind, "record refused by a rule");
}
