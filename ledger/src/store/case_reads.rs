//! Reads of the case-fund tables: cases, steps awaiting an approver,
//! receipts due, unidentified money.

use super::*;

impl Ledger {
    /// A case with its receipts (deadlines as of `now_ms`) and disbursements.
    pub fn case_view(
        &self,
        case_number: &str,
        now_ms: u64,
    ) -> Result<Option<caseledger_verify::funds::views::CaseView>> {
        Ok(caseledger_verify::funds::views::case_view(
            &SharedState(&self.shared),
            case_number,
            now_ms,
        ))
    }

    /// A derived object by key (`case/…`, `receipt/…`, `disbursement/…`).
    pub fn state_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(SharedState(&self.shared).get(key)?)
    }

    /// Keys and values of derived objects whose key starts with `prefix`.
    pub fn state_objects(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let _gate = self.shared.state_read();
        let cf = self.shared.cf(CF_STATE);
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&key).into_owned(), value.into_vec()));
        }
        Ok(out)
    }

    /// Disbursements waiting for a step by `role`.
    pub fn pending_steps(&self, role: caseledger_verify::funds::model::Role) -> Result<Vec<String>> {
        let prefix = format!("pending/{}/", role.as_str());
        Ok(self
            .state_objects(&prefix)?
            .into_iter()
            .map(|(key, _)| key[prefix.len()..].to_owned())
            .collect())
    }

    /// Disbursements waiting for a step that `member_id`, holding `role`,
    /// may sign: not their own request, no earlier step of theirs.
    pub fn pending_steps_for(
        &self,
        role: caseledger_verify::funds::model::Role,
        member_id: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in self.pending_steps(role)? {
            let Some(bytes) = self.state_object(&caseledger_verify::funds::disbursement_key(&id))? else {
                continue;
            };
            let disbursement: caseledger_verify::funds::model::DisbursementState =
                serde_json::from_slice(&bytes).map_err(|e| Error::Storage(e.to_string()))?;
            let involved = disbursement.requester_member_id == member_id
                || disbursement.steps.iter().any(|s| s.member_id == member_id);
            if !involved {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Receipts that are near their pay-out (or claim) deadline or past it at
    /// `now_ms`, oldest deadline first. Receipts whose money was fully paid
    /// out of their case are not listed.
    pub fn receipts_due(&self, now_ms: u64) -> Result<Vec<caseledger_verify::funds::views::ReceiptView>> {
        use caseledger_verify::funds::model::{CaseState, ReceiptState};
        use caseledger_verify::funds::views::{self, DeadlineStatus};
        let near_due_days = views::policy(&SharedState(&self.shared)).map_or(5, |p| p.near_due_days);
        let mut out = Vec::new();
        for (_, bytes) in self.state_objects("receipt/")? {
            let receipt: ReceiptState = serde_json::from_slice(&bytes).map_err(|e| Error::Storage(e.to_string()))?;
            if let Some(number) = &receipt.case_number {
                let case: Option<CaseState> = self
                    .state_object(&caseledger_verify::funds::case_key(number))?
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if case.is_some_and(|c| c.available_fen == 0 && c.reserved_fen == 0) {
                    continue;
                }
            }
            let view = views::receipt_view(receipt, near_due_days, now_ms);
            if view.deadline != DeadlineStatus::OnTime {
                out.push(view);
            }
        }
        out.sort_by_key(|v| v.receipt.due_ms);
        Ok(out)
    }

    /// Receipts not yet claimed for a case.
    pub fn unidentified_receipts(&self) -> Result<Vec<caseledger_verify::funds::model::ReceiptState>> {
        let mut out = Vec::new();
        for (key, _) in self.state_objects("unidentified/")? {
            let reference = &key["unidentified/".len()..];
            if let Some(bytes) = self.state_object(&caseledger_verify::funds::receipt_key(reference))? {
                out.push(serde_json::from_slice(&bytes).map_err(|e| Error::Storage(e.to_string()))?);
            }
        }
        Ok(out)
    }
}
