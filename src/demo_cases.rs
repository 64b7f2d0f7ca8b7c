//! `caseledger demo --cases N`: realistic case histories through the same
//! rule-checked write path as real records.
//!
//! Each case is filed, gets an applicant account registered and confirmed,
//! one to three receipts, and (mostly) a disbursement that goes through its
//! approval chain and is paid. Some are left for the views: a disbursement
//! awaiting its steps, an approved one not yet paid, a rejected one, a case
//! with money still held.

use anyhow::Context as _;
use caseledger::court::Staff;
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;

/// The demo's policy (SMS confirmation required), put in force once.
const DEMO_POLICY_VERSION: u32 = 2;

/// Cases signed and appended together.
const CASES_PER_BATCH: u64 = 32;

/// Enrols the staff and sets the policy unless this ledger already has them.
fn ensure_staff(ledger: &Ledger, staff: &Staff) -> anyhow::Result<()> {
    let registry = ledger.registry()?;
    if registry.info(&staff.finance.identity.public_key().key_id()).is_some() {
        return Ok(());
    }
    let mut records = staff.setup_records();
    // Every approval step and account confirmation goes through the SMS path.
    let mut policy = caseledger::court::example_policy("policy-2", DEMO_POLICY_VERSION);
    policy.sms_confirmation_required = true;
    records.extend(staff.policy_records(&policy));
    ledger
        .append(records)
        .context("enrolling the demo staff (was this ledger made by demo with the same --seed?)")?;
    Ok(())
}

pub fn write_cases(
    ledger: &Ledger,
    staff: &Staff,
    node: &caseledger_keys::Identity,
    seed: u64,
    cases: u64,
) -> anyhow::Result<()> {
    let staff = &staff.clone().with_node(node.clone());
    ensure_staff(ledger, staff)?;
    let existing = caseledger_verify::funds::views::totals(&ledger_state(ledger)).map_or(0, |t| t.cases);
    let progress = indicatif::ProgressBar::new(cases);
    let origin = ledger.origin().to_owned();
    let mut done = 0;
    while done < cases {
        let count = (cases - done).min(CASES_PER_BATCH);
        let first = existing + done + 1;
        let records = sign_cases(staff, &origin, seed, first..first + count);
        ledger
            .append(records)
            .with_context(|| format!("appending cases {first} to {}", first + count - 1))?;
        done += count;
        progress.set_position(done);
    }
    progress.finish_and_clear();
    println!(
        "wrote {cases} demo cases (cases {} to {})",
        existing + 1,
        existing + cases
    );
    Ok(())
}

/// Builds and signs the histories of `numbers` on every core.
fn sign_cases(staff: &Staff, origin: &str, seed: u64, numbers: std::ops::Range<u64>) -> Vec<Record> {
    let numbers: Vec<u64> = numbers.collect();
    caseledger::parallel_flat_map(&numbers, |_, n| {
        caseledger::court::demo_case_history(staff, origin, *n, seed, DEMO_POLICY_VERSION)
    })
}

/// The ledger's derived state, for reading the running totals.
fn ledger_state(ledger: &Ledger) -> caseledger_verify::state::MemoryState {
    let mut state = caseledger_verify::state::MemoryState::default();
    if let Ok(Some(totals)) = ledger.state_object(caseledger_verify::funds::TOTALS_KEY) {
        state.0.insert(caseledger_verify::funds::TOTALS_KEY.to_owned(), totals);
    }
    state
}
