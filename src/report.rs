//! `caseledger report --data DIR --case NUMBER`: one case's balance, its
//! receipts and disbursements, and its history entry by entry, as a person
//! reads it: amounts in yuan with two decimals, accounts and phones masked,
//! who signed each step by member id and role, times in China time.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::yuan;
use caseledger_verify::entry::Entry;
use caseledger_verify::funds::model::*;
use caseledger_verify::funds::views::{CaseView, DeadlineStatus};
use caseledger_verify::registry::Registry;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Ledger folder (opened read-only).
    #[arg(long)]
    data: PathBuf,
    /// Case number, e.g. (2023)苏02执123号.
    #[arg(long)]
    case: String,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::open_read_only(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let Some(view) = ledger.case_view(&args.case, now_ms)? else {
        eprintln!("error: no case {} in this ledger", args.case);
        return Ok(ExitCode::from(1));
    };
    print!("{}", render(&ledger, &view)?);
    Ok(ExitCode::SUCCESS)
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM` in China time (UTC+8).
fn china_time(ms: u64) -> String {
    let minutes = ms / 60_000 + 8 * 60;
    let (days, minute_of_day) = (minutes / 1440, minutes % 1440);
    let (y, m, d) = caseledger::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn china_date(ms: u64) -> String {
    china_time(ms)[..10].to_owned()
}

fn state<T: serde::de::DeserializeOwned>(ledger: &Ledger, key: &str) -> anyhow::Result<Option<T>> {
    Ok(match ledger.state_object(key)? {
        Some(bytes) => Some(serde_json::from_slice(&bytes)?),
        None => None,
    })
}

fn status_word(status: DisbursementStatus) -> &'static str {
    match status {
        DisbursementStatus::Pending => "awaiting approval",
        DisbursementStatus::Approved => "approved, not yet paid",
        DisbursementStatus::Rejected => "rejected",
        DisbursementStatus::Paid => "paid",
        DisbursementStatus::Returned => "paid, then returned by the bank",
        DisbursementStatus::Cancelled => "cancelled",
    }
}

/// The whole report as text.
pub fn render(ledger: &Ledger, view: &CaseView) -> anyhow::Result<String> {
    let case = &view.case;
    let mut out = String::new();
    writeln!(out, "Case {}  ({})", case.case_number, ledger.origin())?;
    writeln!(out, "Officer: {}", case.officer_member_id)?;
    for applicant in &case.applicants {
        writeln!(
            out,
            "Applicant: {} ({}), phone {}",
            applicant.name, applicant.applicant_id, applicant.phone_masked
        )?;
    }
    writeln!(out, "Respondents: {}", case.respondents.join(", "))?;
    writeln!(
        out,
        "Balance: {} available, {} reserved for approvals in progress",
        yuan(case.available_fen),
        yuan(case.reserved_fen)
    )?;
    writeln!(
        out,
        "         {} received, {} paid out, {} returned by the bank",
        yuan(case.received_fen),
        yuan(case.paid_fen),
        yuan(case.returned_fen)
    )?;
    writeln!(out, "\nReceipts ({}):", view.receipts.len())?;
    for receipt in &view.receipts {
        let r = &receipt.receipt;
        let deadline = match (r.delayed, receipt.deadline) {
            (_, DeadlineStatus::Overdue) => "OVERDUE",
            (true, _) => "delayed (approved)",
            (false, DeadlineStatus::NearDue) => "near due",
            (false, DeadlineStatus::OnTime) => "on time",
        };
        writeln!(
            out,
            "  {} {} from {}, recorded {} ({} days ago), pay out by {}: {deadline}",
            r.bank_reference,
            yuan(r.amount_fen),
            r.payer,
            china_date(r.recorded_ms),
            receipt.age_days,
            china_date(r.due_ms)
        )?;
    }
    writeln!(out, "\nDisbursements ({}):", view.disbursements.len())?;
    for d in &view.disbursements {
        let account: Option<AccountState> = state(ledger, &caseledger_verify::funds::account_key(&d.account_id))?;
        let payee = account.map_or_else(
            || d.account_id.clone(),
            |a| format!("{} {} {}", a.account_name, a.bank, a.account_number_masked),
        );
        writeln!(
            out,
            "  {} {} to {payee}: {}",
            d.disbursement_id,
            yuan(d.amount_fen),
            status_word(d.status)
        )?;
        for (i, role) in d.chain.iter().enumerate() {
            let step = match d.steps.get(i) {
                Some(s) => format!(
                    "{} by {} (#{})",
                    match s.decision {
                        Decision::Approve => "approved",
                        Decision::Reject => "rejected",
                    },
                    s.member_id,
                    s.seq
                ),
                None => "-".into(),
            };
            writeln!(out, "      step {} {}: {step}", i + 1, role.as_str())?;
        }
    }
    let history = history(ledger, view)?;
    writeln!(out, "\nHistory ({} entries):", history.len())?;
    for line in history {
        writeln!(out, "  {line}")?;
    }
    Ok(out)
}

/// Every entry about the case, in chain order, in words.
fn history(ledger: &Ledger, view: &CaseView) -> anyhow::Result<Vec<String>> {
    let registry = ledger.registry()?;
    let case = &view.case;
    let receipts: BTreeSet<&str> = case.receipts.iter().map(String::as_str).collect();
    let start = view
        .receipts
        .iter()
        .map(|r| r.receipt.recorded_seq)
        .chain([case.opened_seq])
        .min()
        .unwrap_or(case.opened_seq);
    let mut accounts = BTreeSet::new();
    let mut disbursements = BTreeSet::new();
    let mut codes = BTreeSet::new();
    let mut lines = Vec::new();
    ledger.scan_entries(start, &mut |entry| {
        let Ok(payload) = serde_json::from_slice::<Value>(&entry.record.payload) else {
            return Ok(());
        };
        let text = |field: &str| payload[field].as_str().unwrap_or_default().to_owned();
        let ours = match entry.record.kind {
            KIND_CASE_OPENED | KIND_RECEIPT_CLAIMED | KIND_RECEIPT_CLAIM_DECIDED => {
                text("case_number") == case.case_number
            }
            KIND_ACCOUNT_REGISTERED if text("case_number") == case.case_number => {
                accounts.insert(text("account_id"));
                true
            }
            KIND_ACCOUNT_CONFIRMED | KIND_ACCOUNT_CHANGE_APPROVED | KIND_ACCOUNT_CHALLENGE => {
                accounts.contains(&text("account_id"))
            }
            KIND_RECEIPT_RECORDED | KIND_DELAY_APPROVED | KIND_DELAY_ENDED => {
                receipts.contains(text("bank_reference").as_str())
            }
            KIND_DISBURSEMENT_REQUESTED if text("case_number") == case.case_number => {
                disbursements.insert(text("disbursement_id"));
                true
            }
            KIND_APPROVAL_SIGNED
            | KIND_SMS_CHALLENGE
            | KIND_SMS_CODE_REVEALED
            | KIND_DISBURSEMENT_PAID
            | KIND_PAYMENT_RETURNED
            | KIND_DISBURSEMENT_CANCELLED => disbursements.contains(&text("disbursement_id")),
            KIND_APPLICANT_CODE_ISSUED if text("case_number") == case.case_number => {
                codes.insert(text("code_hash"));
                true
            }
            KIND_APPLICANT_CODE_REVOKED => codes.contains(&text("code_hash")),
            _ => false,
        };
        if ours {
            lines.push(format!(
                "{}  #{}  {}",
                china_time(entry.timestamp_ms),
                entry.seq,
                describe(ledger, &registry, &entry, &payload)
            ));
        }
        Ok(())
    })?;
    Ok(lines)
}

fn signer(registry: &Registry, entry: &Entry) -> String {
    if entry.record.signer == registry.node_key().key_id() {
        return "the node".into();
    }
    match registry.info(&entry.record.signer) {
        Some(info) => match &info.member {
            Some(member) => format!("{} ({})", member.member_id, member.role.as_str()),
            None => info.name.clone(),
        },
        None => format!("unknown key {}", entry.record.signer.short()),
    }
}

fn describe(ledger: &Ledger, registry: &Registry, entry: &Entry, p: &Value) -> String {
    let by = signer(registry, entry);
    let s = |field: &str| p[field].as_str().unwrap_or("?").to_owned();
    let fen = |field: &str| yuan(p[field].as_u64().unwrap_or(0));
    let masked_account = |id: &str| {
        state::<AccountState>(ledger, &caseledger_verify::funds::account_key(id))
            .ok()
            .flatten()
            .map_or_else(|| id.to_owned(), |a| format!("{id} ({})", a.account_number_masked))
    };
    match entry.record.kind {
        KIND_CASE_OPENED => {
            let applicants: Vec<String> = p["applicants"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            format!(
                                "{} {}",
                                x["name"].as_str().unwrap_or("?"),
                                x["phone_masked"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("case opened by {by}; applicants: {}", applicants.join(", "))
        }
        KIND_ACCOUNT_REGISTERED => format!(
            "account {} registered by {by}: {} {}, in the name of {}; waits for the applicant's confirmation",
            s("account_id"),
            s("bank"),
            s("account_number_masked"),
            s("account_name")
        ),
        KIND_ACCOUNT_CHALLENGE => format!(
            "confirmation code for account {} sent to the applicant's phone (node commitment)",
            s("account_id")
        ),
        KIND_ACCOUNT_CONFIRMED if p.get("sms").is_some_and(|v| !v.is_null()) => format!(
            "account {} confirmed by the applicant with the code sent to their phone",
            s("account_id")
        ),
        KIND_ACCOUNT_CONFIRMED => format!(
            "account {} confirmed in person, recorded by {by} (reference {})",
            s("account_id"),
            s("confirmation")
        ),
        KIND_ACCOUNT_CHANGE_APPROVED => format!("account change to {} approved by {by}", s("account_id")),
        KIND_RECEIPT_RECORDED => format!(
            "{} received from {} ({}, value date {}, bank reference {}), recorded by {by}{}",
            fen("amount_fen"),
            s("payer"),
            s("channel").replace('_', " "),
            s("value_date"),
            s("bank_reference"),
            if p["case_number"].is_null() {
                " as unidentified"
            } else {
                ""
            }
        ),
        KIND_RECEIPT_CLAIMED => format!(
            "receipt {} claimed for this case by {by}, for a second person to decide",
            s("bank_reference")
        ),
        KIND_RECEIPT_CLAIM_DECIDED => format!(
            "the claim of receipt {} {} by {by}",
            s("bank_reference"),
            if s("decision") == "approve" {
                "approved: the money belongs to the case"
            } else {
                "rejected"
            }
        ),
        KIND_DISBURSEMENT_REQUESTED => format!(
            "disbursement {} of {} to account {} requested by {by}: {}",
            s("disbursement_id"),
            fen("amount_fen"),
            masked_account(&s("account_id")),
            s("reason")
        ),
        KIND_SMS_CHALLENGE => format!(
            "approval code for step {} of {} sent to {}'s phone (node commitment)",
            p["step"].as_u64().unwrap_or(0),
            s("disbursement_id"),
            s("member_id")
        ),
        KIND_SMS_CODE_REVEALED => format!(
            "{}'s code for step {} of {} checked; the node opens its commitment",
            s("member_id"),
            p["step"].as_u64().unwrap_or(0),
            s("disbursement_id")
        ),
        KIND_APPROVAL_SIGNED => format!(
            "step {} of {} {} by {by}{}",
            p["step"].as_u64().unwrap_or(0),
            s("disbursement_id"),
            if s("decision") == "reject" {
                "REJECTED"
            } else {
                "approved"
            },
            if p.get("sms_code").is_some_and(|v| !v.is_null()) {
                ", confirmed with the code sent to their phone"
            } else {
                ""
            }
        ),
        KIND_DISBURSEMENT_PAID => format!(
            "{} paid {} to account {} (bank reference {}), by {by}",
            s("disbursement_id"),
            fen("amount_fen"),
            masked_account(&s("account_id")),
            s("bank_reference")
        ),
        KIND_PAYMENT_RETURNED => format!(
            "payment of {} returned by the bank ({}), recorded by {by}",
            s("disbursement_id"),
            s("reason")
        ),
        KIND_DISBURSEMENT_CANCELLED => format!("{} cancelled by {by}: {}", s("disbursement_id"), s("reason")),
        KIND_DELAY_APPROVED => format!(
            "pay-out deadline of receipt {} moved to {} by {by}: {}{}",
            s("bank_reference"),
            s("new_due_date"),
            s("reason").replace('_', " "),
            p["text"].as_str().map(|t| format!(" ({t})")).unwrap_or_default()
        ),
        KIND_DELAY_ENDED => format!(
            "the reason for delaying receipt {} ended ({}), recorded by {by}: due within {DELAY_ENDED_DAYS} days",
            s("bank_reference"),
            s("text")
        ),
        KIND_APPLICANT_CODE_ISSUED => format!("verification code issued to {} by {by}", s("applicant_id")),
        KIND_APPLICANT_CODE_REVOKED => format!("a verification code revoked by {by}"),
        other => format!("record {other:#06x} by {by}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_is_utc_plus_eight() {
        // 2026-11-25T16:00:00Z is midnight of the 26th in China.
        assert_eq!(china_time(1_795_622_400_000), "2026-11-26 00:00");
        assert_eq!(china_time(0), "1970-01-01 08:00");
        assert_eq!(china_date(951_782_400_000), "2000-02-29");
    }
}
