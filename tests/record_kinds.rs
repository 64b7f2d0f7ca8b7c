//! Only the record kinds caseledger knows are admitted: any other kind
//! number is refused when written (`unknown_kind`), and reported by the
//! auditor when forced into storage. Demo notes exist only in ledgers whose
//! genesis says they are demo ledgers (`demo_only`).

mod common;

use caseledger::service::client::{sign_request, write_body};
use caseledger_verify::entry::Record;
use caseledger_verify::record;
use common::*;

/// A record of kind `kind` with a payload a member could send (personal
/// data included): the ledger must not keep it.
fn of_kind(signer: &caseledger_keys::Identity, kind: u16) -> Record {
    Record::sign(ORIGIN, kind, br#"{"id_number":"320102199001011234"}"#.to_vec(), signer)
}

const UNKNOWN_KINDS: [u16; 5] = [0x0000, 0x0006, 0x0011, 0x00ff, 0xbeef];

#[test]
fn unknown_kinds_are_refused_when_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let size = ledger.size();
    for kind in UNKNOWN_KINDS {
        assert_eq!(
            refused_rule(&ledger, of_kind(&keys.writer, kind)),
            "unknown_kind",
            "{kind:#x}"
        );
        assert_eq!(
            refused_rule(&ledger, of_kind(&keys.admin, kind)),
            "unknown_kind",
            "{kind:#x}"
        );
    }
    assert_eq!(ledger.size(), size, "nothing written");
    audit_ok(&ledger);
}

#[test]
fn unknown_kinds_forced_into_storage_are_reported_with_seq_and_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let mut expected = Vec::new();
    for kind in UNKNOWN_KINDS {
        let seq = force_append(dir.path(), of_kind(&keys.writer, kind));
        expected.push((
            seq,
            "unknown_kind".to_owned(),
            Some(keys.writer.public_key().key_id().to_hex()),
        ));
    }
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let found: Vec<_> = report
        .violations
        .into_iter()
        .map(|v| (v.seq, v.rule, v.signer))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn demo_notes_only_in_a_demo_ledger() {
    // A court ledger is not a demo ledger.
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 51);
    let officer = &staff.officers[0].identity;
    let size = ledger.size();
    assert_eq!(refused_rule(&ledger, note(officer, 1)), "demo_only");
    assert_eq!(ledger.size(), size);
    ledger.close().expect("close");
    let seq = force_append(dir.path(), note(officer, 2));
    let report = audit(dir.path());
    let found: Vec<_> = report.violations.iter().map(|v| (v.seq, v.rule.as_str())).collect();
    assert_eq!(found, [(seq, "demo_only")]);
    // A demo ledger admits them, and says so in its genesis entry.
    let demo = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(demo.path(), &keys);
    ledger
        .append_one(note(&keys.writer, 1))
        .expect("a demo note in a demo ledger");
    let genesis: record::Genesis =
        serde_json::from_slice(&ledger.entry(0).expect("genesis").record.payload).expect("json");
    assert!(genesis.demo);
    let genesis: record::Genesis = {
        let dir = tempfile::tempdir().expect("tempdir");
        let (court, _) = common::court(dir.path(), 52);
        serde_json::from_slice(&court.entry(0).expect("genesis").record.payload).expect("json")
    };
    assert!(!genesis.demo);
}

#[tokio::test]
async fn post_records_refuses_unknown_kinds_and_demo_notes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 53);
    let state = service_state(ledger, &staff);
    let officer = &staff.officers[0].identity;
    let size = state.ledger.size();
    for (record, rule) in [
        (of_kind(officer, 0xbeef), "unknown_kind"),
        (of_kind(officer, 0x0011), "unknown_kind"),
        (note(officer, 1), "demo_only"),
    ] {
        let body = write_body(&[record]);
        let headers = sign_request(
            officer,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &body,
        );
        let (status, answer) = send(&state, "POST", "/v1/records", &headers, body).await;
        assert_eq!(status.as_u16(), 422, "{answer}");
        assert_eq!(answer["rule"], rule, "{answer}");
    }
    assert_eq!(state.ledger.size(), size, "nothing written");
}
