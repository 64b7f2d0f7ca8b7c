//! The background self-audit (自动存证校验): at start the service reads
//! every table block once (checksums), then re-verifies its
//! whole ledger at a configured interval (`self_audit_every_ms`), on a
//! snapshot and one thread, beside its writes. A failure stops every later
//! write (`/readyz` answers 503 with the seq and check), is logged at ERROR,
//! counted, and sent by SMS to the court's administrators and auditors
//! (their phones on file, checked against their enrolment).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caseledger_ledger::store::Ledger;

use super::sms::{SmsProvider, Templates};

/// The self-audit works one part in this many while it runs: every 4,096
/// entries it sleeps 19 times as long as it worked (a twentieth of a core).
const WORK_SHARE: u32 = 20;

/// The live ledger audited on one thread, paced to about a twentieth of a
/// core (issue 15: the self-audit costs the writers little). Used by the
/// service and by the benchmark that measures that cost.
pub fn paced_audit(ledger: &Ledger) -> caseledger_ledger::Result<caseledger_verify::audit::AuditReport> {
    let last = std::sync::Mutex::new(std::time::Instant::now());
    ledger.audit_live_paced(1, &|_| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let worked = last.elapsed();
        std::thread::sleep(worked * (WORK_SHARE - 1));
        *last = std::time::Instant::now();
    })
}

/// Reads every table of the ledger once, paced like the audit, each block's
/// checksum checked (a damaged table block that no open or request has read
/// yet); `Some(reason)` if one failed (writes are stopped then and the
/// alert sent). The service runs it once at start, before the first audit.
pub fn scan_tables(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
) -> anyhow::Result<Option<String>> {
    let last = std::sync::Mutex::new(std::time::Instant::now());
    let scanned = ledger.scan_tables(&|_| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        std::thread::sleep(last.elapsed() * (WORK_SHARE - 1));
        *last = std::time::Instant::now();
    });
    match scanned {
        Ok(values) => {
            tracing::info!(values, "table scan: every block's checksum holds");
            Ok(None)
        }
        Err(error) => damaged(ledger, provider, templates, commitment_key, error),
    }
}

/// A damaged table found while serving: stops writes, logs at ERROR,
/// counts and alerts like an audit failure (check `damaged`).
fn damaged(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
    error: caseledger_ledger::Error,
) -> anyhow::Result<Option<String>> {
    if !matches!(error, caseledger_ledger::Error::Damaged(_)) {
        return Err(error.into());
    }
    let reason = format!("the ledger's storage is damaged: {error}");
    tracing::error!(%error, "damaged storage found while serving; writes stopped");
    metrics::counter!("caseledger_integrity_failures_total", "check" => "damaged").increment(1);
    ledger.fail(&reason);
    alert(ledger, provider, templates, commitment_key, 0, "damaged")?;
    Ok(Some(reason))
}

/// One audit of the live ledger; `Some(reason)` if it failed (writes are
/// stopped then and the alert sent).
pub fn run_once(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
) -> anyhow::Result<Option<String>> {
    let started = std::time::Instant::now();
    let report = match paced_audit(ledger) {
        Ok(report) => report,
        // A damaged block read by the audit is a finding, not a failure to run.
        Err(error) => return damaged(ledger, provider, templates, commitment_key, error),
    };
    metrics::counter!("caseledger_self_audit_runs_total").increment(1);
    metrics::gauge!("caseledger_self_audit_entries").set(report.entries as f64);
    metrics::gauge!("caseledger_self_audit_seconds").set(started.elapsed().as_secs_f64());
    metrics::gauge!("caseledger_self_audit_ok").set(if report.ok { 1.0 } else { 0.0 });
    let Some((seq, check)) = report.first_finding() else {
        tracing::info!(entries = report.entries, "self-audit: every entry verified");
        return Ok(None);
    };
    let check = check.to_owned();
    let reason = format!("self-audit failed at seq {seq}: {check}");
    tracing::error!(seq, check = %check, "self-audit failed; writes stopped");
    metrics::counter!("caseledger_integrity_failures_total", "check" => check.clone()).increment(1);
    ledger.fail(&reason);
    alert(ledger, provider, templates, commitment_key, seq, &check)?;
    Ok(Some(reason))
}

/// The member ids of the court's active administrators and auditors: who
/// hears of integrity failures and undelivered notices.
pub fn watchers(ledger: &Ledger) -> Vec<String> {
    use caseledger_verify::funds::model::Role;
    let keys = ledger.keys();
    keys.keys()
        .filter(|(_, info)| info.is_active())
        .filter_map(|(_, info)| info.member.as_ref())
        .filter(|m| matches!(m.role, Role::Administrator | Role::Auditor))
        .map(|m| m.member_id.clone())
        .collect()
}

/// The alert to every active administrator and auditor with a phone on
/// file, once per finding.
fn alert(
    ledger: &Ledger,
    provider: &dyn SmsProvider,
    templates: &Templates,
    commitment_key: &[u8; 32],
    seq: u64,
    check: &str,
) -> anyhow::Result<()> {
    let marker = format!("alerted/{seq}/{check}");
    if ledger.private_get(&marker)?.is_some() {
        return Ok(());
    }
    let params = [("seq", seq.to_string()), ("check", check.to_owned())];
    for member in watchers(ledger) {
        // A failure is logged; the others are still told.
        let id = format!("alert-{seq}-{check}-{member}");
        let _ = super::sms::send_to_member(
            ledger,
            provider,
            templates,
            commitment_key,
            &member,
            &id,
            ("integrity_alert", "integrity alert"),
            &params,
        );
    }
    ledger.private_put(&marker, b"sent")?;
    Ok(())
}

/// Runs [`run_once`] every `every` until `stop`; stops auditing after the
/// first failure (writes stay stopped until an operator restarts).
pub fn spawn(
    ledger: Arc<Ledger>,
    provider: Arc<dyn SmsProvider>,
    templates: Templates,
    commitment_key: [u8; 32],
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        match scan_tables(&ledger, provider.as_ref(), &templates, &commitment_key) {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(error) => tracing::error!(%error, "table scan could not run"),
        }
        let step = Duration::from_millis(50).min(every);
        let mut waited = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            waited += step;
            if waited < every {
                continue;
            }
            waited = Duration::ZERO;
            match run_once(&ledger, provider.as_ref(), &templates, &commitment_key) {
                Ok(None) => {}
                Ok(Some(_)) => return,
                Err(error) => tracing::error!(%error, "self-audit could not run"),
            }
        }
    })
}
