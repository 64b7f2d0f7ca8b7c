//! What a report proves, in plain English sentences (the command line's
//! output; the page renders the report itself).

use super::CaseReport;
use crate::funds::model::*;

impl CaseReport {
    /// What the report proves, in plain English sentences (the command
    /// line's output).
    pub fn statements(&self) -> Vec<String> {
        use crate::bundle::yuan;
        let mut out = vec![
            format!(
                "Ledger {:?}: all {} entries in {} threads below are whole and in its checkpoint of {} entries, signed by its node key.",
                self.origin, self.entries, self.threads, self.tree_size
            ),
            format!(
                "Case {} was filed by {} (filing clerk) with {} as an applicant{}.",
                self.case_number,
                self.filed_by.name,
                self.applicant_name,
                self.officer
                    .as_ref()
                    .map(|o| format!("; its officer is {}", o.name))
                    .unwrap_or_default()
            ),
            format!(
                "The case received {} in {} arrivals; {} was paid out; the court holds {}.",
                yuan(self.received_fen),
                self.receipts.len(),
                yuan(self.paid_out_fen),
                yuan(self.held_fen)
            ),
        ];
        for r in &self.receipts {
            let mut line = format!(
                "{} from {} arrived on {} (entry {}), due for payment by {}",
                yuan(r.amount_fen),
                r.payer,
                r.value_date,
                r.recorded_seq,
                crate::text::date_cst(r.due_ms.saturating_sub(1))
            );
            match r.settled_ms {
                Some(ms) => line.push_str(&format!(", paid out on {}", crate::text::date_cst(ms))),
                None => line.push_str(&format!(", {} of it not yet paid out", yuan(r.owed_fen))),
            }
            for delay in &r.delays {
                match &delay.new_due_date {
                    Some(date) => line.push_str(&format!(
                        "; delayed to {date} by {} ({})",
                        delay.by.name,
                        delay.by.role.as_str()
                    )),
                    None => line.push_str(&format!("; delay ended by {}", delay.by.name)),
                }
            }
            line.push('.');
            out.push(line);
        }
        for d in &self.disbursements {
            let mut text = format!(
                "Disbursement {}: {} to {} account {} ({}), requested by {} (officer) at entry {} under policy {}",
                d.disbursement_id,
                yuan(d.amount_fen),
                d.bank,
                d.account_number_masked,
                d.account_name,
                d.requested_by.name,
                d.requested_seq,
                d.policy_version
            );
            for step in &d.steps {
                let verb = if step.decision == Decision::Approve {
                    "approved"
                } else {
                    "REJECTED"
                };
                text.push_str(&format!(
                    ", {verb} by {} ({}) as step {} at entry {}",
                    step.name,
                    step.role.as_str(),
                    step.step,
                    step.seq
                ));
            }
            if let Some(paid) = &d.paid {
                text.push_str(&format!(
                    ", paid by finance ({}) at entry {} with bank reference {}",
                    paid.by.name, paid.seq, paid.detail
                ));
            }
            if let Some(returned) = &d.returned {
                text.push_str(&format!(", RETURNED at entry {}: {}", returned.seq, returned.detail));
            }
            if let Some(cancelled) = &d.cancelled {
                text.push_str(&format!(", CANCELLED at entry {}: {}", cancelled.seq, cancelled.detail));
            }
            if let Some(role) = d.waiting_for {
                text.push_str(&format!(", waiting for the {}", role.as_str()));
            }
            text.push('.');
            out.push(text);
        }
        out
    }
}
