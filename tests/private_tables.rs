//! The private tables beside the ledger (delivery state, contacts,
//! challenges) are not hashed into the ledger, but every value carries the
//! node's tag (docs/FORMAT.md §8e). A database insider who, with the
//! service stopped, marks a queued notification "sent" (so that the
//! applicant never hears of the money), or moves another notification's
//! genuine "sent" record onto it, is found the first time the value is
//! read: the read is refused (`private_tag`), every later write stops, and
//! nothing is sent on the forged state.

mod common;

use std::sync::Arc;

use caseledger::court::CaseRecords;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions};
use caseledger_ledger::store::Ledger;
use caseledger_ledger::Error;
use common::*;

const CASE: &str = "(2026)苏02执5号";

fn options_for_delivery() -> DeliveryOptions {
    DeliveryOptions {
        per_phone_per_minute: 100,
        concurrency: 1,
        ..DeliveryOptions::default()
    }
}

/// A case with two receipts (two notifications to its applicant), the
/// applicant's phone on file, the first notification delivered; closed
/// cleanly. The two notification ids.
fn court_with_notifications(dir: &std::path::Path) -> (caseledger::court::Staff, String, String) {
    let (ledger, staff, first) = case_with_a_notification(dir, 71, CASE);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let provider = Arc::new(SentIds::default());
    let mut worker = Deliverer::new(
        Arc::clone(&ledger),
        provider.clone(),
        staff.commitment_key,
        options_for_delivery(),
    );
    assert_eq!(worker.run_once(CLOCK_START_MS).expect("pass").sent, 1);
    drop(worker);
    ledger.append_one(case.receipt("BANK-2", 200)).expect("second receipt");
    let outbox = ledger.outbox_from("", 10).expect("outbox");
    assert_eq!(outbox.len(), 2);
    let second = outbox[1].1.id.clone();
    Arc::into_inner(ledger).expect("the only owner").close().expect("close");
    (staff, first.id, second)
}

/// Opens the ledger and runs one delivery pass; what the provider got and
/// how the pass ended.
fn deliver(
    dir: &std::path::Path,
    staff: &caseledger::court::Staff,
) -> (Vec<String>, anyhow::Result<sms::Pass>, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::open(dir, clock(), options()).expect("open"));
    let provider = Arc::new(SentIds::default());
    let mut worker = Deliverer::new(
        Arc::clone(&ledger),
        provider.clone(),
        staff.commitment_key,
        options_for_delivery(),
    );
    let pass = worker.run_once(CLOCK_START_MS + 60_000);
    let sent = provider.ids();
    (sent, pass, ledger)
}

fn private_key(id: &str) -> String {
    format!("private/delivery/{id}")
}

#[test]
fn the_nodes_own_private_values_read_back_and_the_second_notification_goes_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (staff, _, second) = court_with_notifications(dir.path());
    let (sent, pass, ledger) = deliver(dir.path(), &staff);
    assert_eq!(sent, vec![second], "{:?}", pass.map(|p| p.sent));
    assert!(ledger.poisoned().is_none());
    let read_only = Ledger::open_read_only(dir.path()).expect("read-only");
    drop(ledger);
    assert!(matches!(read_only.private_get("delivery/x"), Err(Error::ReadOnly)));
}

#[test]
fn a_notification_marked_sent_behind_the_service_is_refused_on_read_and_stops_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (staff, _, second) = court_with_notifications(dir.path());
    {
        // The insider, service stopped: the notification marked sent.
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").expect("meta");
        let forged = serde_json::json!({"status": "sent", "attempts": 1, "next_attempt_ms": 0,
            "last_error": null, "provider_id": "forged"});
        db.put_cf(meta, private_key(&second), serde_json::to_vec(&forged).expect("json"))
            .expect("put");
    }
    refused_on_read(dir.path(), &staff, &second);
}

/// The next delivery pass meets the forged delivery record of `id`: nothing
/// is sent, the read is refused (`private_tag`) and writes stop, naming it.
fn refused_on_read(dir: &std::path::Path, staff: &caseledger::court::Staff, id: &str) {
    let (sent, pass, ledger) = deliver(dir, staff);
    assert!(sent.is_empty(), "nothing sent on forged state: {sent:?}");
    let error = pass.expect_err("the pass stops at the forged value");
    assert!(format!("{error:#}").contains("private_tag"), "{error:#}");
    let stopped = ledger.poisoned().expect("writes stopped");
    assert!(stopped.contains("private_tag") && stopped.contains(id), "{stopped}");
}

#[test]
fn another_notifications_genuine_sent_record_moved_onto_a_queued_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (staff, first, second) = court_with_notifications(dir.path());
    {
        // The genuine, tagged "sent" record of the first notification,
        // copied under the second one's key.
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").expect("meta");
        let genuine = db
            .get_cf(meta, private_key(&first))
            .expect("get")
            .expect("first delivered");
        db.put_cf(meta, private_key(&second), genuine).expect("put");
    }
    refused_on_read(dir.path(), &staff, &second);
}
