//! Least disclosure (docs/FORMAT.md §3j, §7a): what an applicant is shown
//! is their own data. Co-applicants and respondents are concealed in the
//! case's filing, members' ids and phones in their registrations; the
//! applicant's bundle carries the disclosure of the applicant alone, and
//! still verifies, people told apart by their member references. Values
//! given in clear, missing or forged disclosures and a member's second
//! reference are refused when written and named by `verify` when forced
//! into storage; so are disclosures lost, changed or added in the store.

mod common;

use axum::http::StatusCode;
use caseledger::commitments::{commitment, mask, COMMITMENT_PHONE};
use caseledger::court::{revealed, sign, CaseRecords, Person, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::ApplicantBundle;
use caseledger_verify::disclosure::{conceal, disclosure_text};
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use caseledger_verify::record::{KeyRegistered, KIND_KEY_REGISTERED};
use common::*;

const CASE: &str = "(2026)苏02执66号";
/// A case opened before the bad filings, whose salts one of them reuses.
const OTHER_CASE: &str = "(2026)苏02执65号";
const SALT: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SALT: &str = "fedcba9876543210fedcba9876543210";

/// A case of two applicants, each paid once (approved by the bureau head
/// and finance), and applicant 1's verification code.
fn case_of_two(dir: &std::path::Path) -> (Ledger, Staff, String) {
    let (ledger, staff) = court_with_case(dir, 66, CASE, 2, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let chain = [Role::BureauHead, Role::Finance];
    let mut records = [
        case.account("acct-2", 2, "6222000022220002"),
        vec![case.confirm("acct-2"), case.request("d-1", "acct-1", 1_000_000)],
        case.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &chain),
        vec![
            case.payment("d-1", "PAY-1", "acct-1", 1_000_000),
            co_applicants_request(&case),
        ],
        case.approvals(ORIGIN, "d-2", "acct-2", 700_000, &chain),
        vec![case.payment("d-2", "PAY-2", "acct-2", 700_000)],
    ]
    .concat();
    let (code, issue) = case.applicant_code(1);
    records.push(issue);
    ledger.append(records).expect("the case's money");
    (ledger, staff, code)
}

/// What the officer wrote of the co-applicant's payment: staff's free
/// text may name them, and every applicant of the case sees the request.
const THEIR_REASON: &str = "支付申请人2第一期执行款";

fn co_applicants_request(case: &CaseRecords) -> Record {
    let mut request: DisbursementRequested = revealed(&case.request("d-2", "acct-2", 700_000));
    request.reason = THEIR_REASON.into();
    caseledger::court::sign_revealed(ORIGIN, KIND_DISBURSEMENT_REQUESTED, &request, &case.officer.identity)
}

/// Every personal value of the ledger that is not applicant 1's: the
/// co-applicant's id, name, phone, masked phone and phone commitment, the
/// respondent, and every member's id, phone, masked phone and commitment
/// (a value applicant 1 shares, such as a mask with the same last four
/// digits, is left out: it is also theirs).
fn values_not_theirs(staff: &Staff, case: &CaseRecords) -> Vec<String> {
    let own = case.applicant(1);
    let phone_of = |phone: &str| {
        vec![
            phone.to_owned(),
            mask(phone),
            commitment(&staff.commitment_key, COMMITMENT_PHONE, phone),
        ]
    };
    let co_applicant = case.applicant(2);
    // (The respondent is not in the list: as the payer of the money that
    // arrived, it is shown with each arrival; the filing's list of
    // respondents stays concealed.)
    let mut values = vec![co_applicant.applicant_id, co_applicant.name, THEIR_REASON.to_owned()];
    values.extend(phone_of(&CaseRecords::applicant_phone(2)));
    let people: Vec<&Person> = staff
        .members()
        .into_iter()
        .chain([&staff.administrator, &staff.co_administrator])
        .collect();
    for person in people {
        values.push(person.member_id.clone());
        values.extend(phone_of(&person.phone));
    }
    values.retain(|v| *v != own.phone_masked && *v != own.applicant_id);
    values
}

#[test]
fn an_applicant_is_shown_their_own_data_and_staff_by_name_and_role_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, code) = case_of_two(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let state = service_state(ledger, &staff);
    let runtime = runtime();
    let (status, answer) = wait(
        &runtime,
        send(&state, "GET", &format!("/v1/verify/{code}"), &[], Vec::new()),
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Everything the applicant receives: the bundle, the server's report
    // and statements, and the entries the bundle proves, decoded.
    let bundle: ApplicantBundle = serde_json::from_value(answer["bundle"].clone()).expect("bundle");
    let mut shown = answer.to_string();
    for proven in &bundle.entries {
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &proven.entry).expect("b64");
        shown.push_str(&String::from_utf8_lossy(&bytes));
    }
    for value in values_not_theirs(&staff, &case) {
        assert!(!shown.contains(&value), "the applicant is shown {value:?}");
    }
    // What is theirs, and the staff by name and role, is there and proven.
    let report = bundle.verify(&state.ledger.node_key()).expect("the bundle verifies");
    assert_eq!(
        report,
        serde_json::from_value(answer["report"].clone()).expect("report")
    );
    assert!(shown.contains("申请人1"), "the applicant's own name");
    let own = report
        .disbursements
        .iter()
        .find(|d| d.disbursement_id == "d-1")
        .expect("own payment");
    assert_eq!(own.account_name, "申请人1");
    assert_eq!(
        own.reason, "执行款发放",
        "their own payment's reason, disclosed to them"
    );
    assert_eq!(own.requested_by.name, staff.officers[0].name);
    let approvers: Vec<(&str, Role)> = own.steps.iter().map(|s| (s.name.as_str(), s.role)).collect();
    assert_eq!(
        approvers,
        vec![
            (staff.bureau_head.name.as_str(), Role::BureauHead),
            (staff.finance.name.as_str(), Role::Finance)
        ]
    );
    assert!(
        report.disbursements.iter().all(|d| d.disbursement_id != "d-2"),
        "only their own"
    );
    // The co-applicant's payment still counts in the case's money.
    assert_eq!(report.paid_out_fen, 1_700_000);
    // The full ledger still holds every party, for the court and auditors.
    let opened = (0..state.ledger.size())
        .map(|seq| state.ledger.entry(seq).expect("entry"))
        .find(|e| e.record.kind == KIND_CASE_OPENED)
        .expect("the filing");
    let filed: CaseOpened = revealed(&opened.record);
    assert_eq!(filed.applicants, vec![case.applicant(1), case.applicant(2)]);
    assert_eq!(filed.respondents, vec!["被执行人公司".to_owned()]);
    let theirs = (0..state.ledger.size())
        .map(|seq| state.ledger.entry(seq).expect("entry"))
        .find(|e| {
            e.record.kind == KIND_DISBURSEMENT_REQUESTED
                && revealed::<DisbursementRequested>(&e.record).disbursement_id == "d-2"
        })
        .expect("the co-applicant's request");
    assert_eq!(revealed::<DisbursementRequested>(&theirs.record).reason, THEIR_REASON);
}

/// The applicant's bundle with its one disclosure changed by `change`.
fn refused_with(bundle: &ApplicantBundle, ledger: &Ledger, change: &dyn Fn(&mut ApplicantBundle)) -> String {
    let mut forged = bundle.clone();
    change(&mut forged);
    forged
        .verify(&ledger.node_key())
        .expect_err("a changed disclosure is refused")
}

#[test]
fn a_bundle_with_a_missing_forged_moved_or_extra_disclosure_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, code) = case_of_two(dir.path());
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    bundle.verify(&ledger.node_key()).expect("the honest bundle verifies");
    let filing = bundle
        .entries
        .iter()
        .position(|e| !e.disclosures.is_empty())
        .expect("the filing");
    assert_eq!(bundle.entries[filing].disclosures.len(), 1, "the applicant's own, only");
    let opened = ledger.entry(bundle.entries[filing].seq).expect("entry");

    // Left out: the applicant is not in the case as the bundle shows it.
    let error = refused_with(&bundle, &ledger, &|b| b.entries[filing].disclosures.clear());
    assert!(error.contains("not an applicant of the case"), "{error}");
    // Another name under the applicant's salt: it opens nothing signed.
    let error = refused_with(&bundle, &ledger, &|b| {
        let (salt, mut applicant): (String, Applicant) =
            serde_json::from_str(&b.entries[filing].disclosures[0]).expect("disclosure");
        applicant.name = "冒名者".into();
        b.entries[filing].disclosures[0] = disclosure_text(&salt, &applicant);
    });
    assert!(error.contains("reveal no value"), "{error}");
    // The co-applicant's true disclosure shown as the applicant's.
    let theirs = opened.record.disclosures[1].clone();
    assert!(theirs.contains("applicant-2"));
    let error = refused_with(&bundle, &ledger, &|b| {
        b.entries[filing].disclosures = vec![theirs.clone()]
    });
    assert!(error.contains("nothing else"), "{error}");
    // Beside the applicant's own: true, but not theirs to see, so refused
    // whoever added it.
    let error = refused_with(&bundle, &ledger, &|b| {
        b.entries[filing].disclosures.push(theirs.clone())
    });
    assert!(error.contains("nothing else"), "{error}");
    // Moved to another entry.
    let error = refused_with(&bundle, &ledger, &|b| {
        let moved = std::mem::take(&mut b.entries[filing].disclosures);
        b.entries[filing + 1].disclosures = moved;
    });
    assert!(
        error.contains("nothing else") || error.contains("carries no disclosures"),
        "{error}"
    );
    // A member's id disclosed to the applicant.
    let registration = (0..ledger.size())
        .map(|seq| ledger.entry(seq).expect("entry"))
        .find(|e| e.record.kind == KIND_KEY_REGISTERED && !e.record.disclosures.is_empty())
        .expect("a member's registration");
    let at = bundle
        .entries
        .iter()
        .position(|e| e.seq == registration.seq)
        .expect("in the bundle");
    let error = refused_with(&bundle, &ledger, &|b| {
        b.entries[at].disclosures = registration.record.disclosures.clone()
    });
    assert!(error.contains("no court member's id or phone"), "{error}");
    // The reason of the co-applicant's request, whose entry the case's
    // thread shows: refused too.
    let theirs = (0..ledger.size())
        .map(|seq| ledger.entry(seq).expect("entry"))
        .find(|e| {
            e.record.kind == KIND_DISBURSEMENT_REQUESTED
                && revealed::<DisbursementRequested>(&e.record).disbursement_id == "d-2"
        })
        .expect("the co-applicant's request");
    let at = bundle
        .entries
        .iter()
        .position(|e| e.seq == theirs.seq)
        .expect("in the case's thread");
    assert!(bundle.entries[at].disclosures.is_empty(), "not disclosed to them");
    let error = refused_with(&bundle, &ledger, &|b| {
        b.entries[at].disclosures = theirs.record.disclosures.clone()
    });
    assert!(error.contains("nothing else"), "{error}");
    // Nothing of the staff's concealed values is in the honest bundle.
    for person in staff.members() {
        let text = serde_json::to_string(&bundle).expect("json");
        assert!(
            !text.contains(&format!("\"{}\"", person.member_id)),
            "{}",
            person.member_id
        );
    }
}

/// `caught` as the auditor reports it: `rule` at `seq`, integrity intact.
fn caught(dir: &std::path::Path, seq: u64, rule: &str) {
    let report = audit(dir);
    assert!(
        report.first_error.is_none(),
        "integrity is intact: {:?}",
        report.first_error
    );
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
        "expected {rule} at {seq}, got {:?}",
        report.violations
    );
}

/// A new case's filing changed by `change` (on its signed JSON and its
/// disclosures), after the node's commitment to its applicant's phone.
fn filing(staff: &Staff, change: &dyn Fn(&mut serde_json::Value, &mut Vec<String>)) -> Vec<Record> {
    let case = CaseRecords::new(staff, &staff.officers[1], "(2026)苏02执67号");
    let (record, phones) = case.open_request(1);
    let mut payload: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
    let mut disclosures = record.disclosures.clone();
    change(&mut payload, &mut disclosures);
    let record = sign(ORIGIN, KIND_CASE_OPENED, &payload, &staff.filing_clerk.identity).with_disclosures(disclosures);
    staff.committed(record, COMMITMENT_PHONE, &phones)
}

/// The filings an insider might try, each with what it does.
fn bad_filings(staff: &Staff) -> Vec<(&'static str, Vec<Record>)> {
    let case = CaseRecords::new(staff, &staff.officers[1], "(2026)苏02执67号");
    let in_clear = {
        let (record, phones) = case.open_request(1);
        let payload: CaseOpened = revealed(&record);
        let record = sign(ORIGIN, KIND_CASE_OPENED, &payload, &staff.filing_clerk.identity);
        staff.committed(record, COMMITMENT_PHONE, &phones)
    };
    vec![
        ("the parties in clear", in_clear),
        (
            "a respondent's disclosure left out",
            filing(staff, &|_, d| {
                d.pop();
            }),
        ),
        (
            "a disclosure of nothing in the record",
            filing(staff, &|_, d| {
                d.push(disclosure_text(SALT, &"某人"));
            }),
        ),
        (
            "an officer who is no member",
            filing(staff, &|p, _| {
                p["officer_member_id"] = serde_json::json!({"_sd": "ab".repeat(32)});
            }),
        ),
        (
            "one salt for the applicant and the respondent",
            // Whoever is shown one disclosure could try the other's values.
            filing(staff, &|p, d| {
                let (salt, _): (String, serde_json::Value) = serde_json::from_str(&d[0]).expect("disclosure");
                let (respondent, text) = conceal(&salt, &"被执行人公司");
                p["respondents"] = serde_json::json!([respondent]);
                d[1] = text;
            }),
        ),
        (
            "the salt of another case's party",
            filing(staff, &|p, d| {
                let (other, _) = CaseRecords::new(staff, &staff.officers[0], OTHER_CASE).open_request(1);
                let (salt, _): (String, serde_json::Value) =
                    serde_json::from_str(&other.disclosures[0]).expect("disclosure");
                let (respondent, text) = conceal(&salt, &"被执行人公司");
                p["respondents"] = serde_json::json!([respondent]);
                d[1] = text;
            }),
        ),
    ]
}

#[test]
fn a_filing_that_shows_or_hides_what_it_must_not_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 67);
    ledger
        .append(CaseRecords::new(&staff, &staff.officers[0], OTHER_CASE).open(1))
        .expect("another case");
    for (what, records) in bad_filings(&staff) {
        let before = ledger.size();
        assert_eq!(refused_batch(&ledger, records), "disclosure", "{what}");
        assert_eq!(ledger.size(), before, "{what}: nothing written");
    }
    // Through the service, without its disclosures: refused, nothing written.
    let case = CaseRecords::new(&staff, &staff.officers[1], "(2026)苏02执67号");
    let (mut record, phones) = case.open_request(1);
    record.disclosures.clear();
    let size = ledger.size();
    let state = service_state(ledger, &staff);
    let (status, answer) = wait(
        &runtime(),
        write_numbered(&state, &staff.filing_clerk.identity, &[(record, phones)]),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("disclosures"), "{answer}");
    assert_eq!(state.ledger.size(), size);
}

#[test]
fn a_filing_that_shows_or_hides_what_it_must_not_forced_into_storage_is_named_by_verify() {
    for n in 0..6 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ledger, staff) = court(dir.path(), 67);
        ledger
            .append(CaseRecords::new(&staff, &staff.officers[0], OTHER_CASE).open(1))
            .expect("another case");
        ledger.close().expect("close");
        let (what, records) = bad_filings(&staff).swap_remove(n);
        let seqs: Vec<u64> = records.into_iter().map(|r| force_append(dir.path(), r)).collect();
        let filed = *seqs.last().expect("the filing");
        let report = audit(dir.path());
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.seq == filed && v.rule == "disclosure"),
            "{what}: {:?}",
            report.violations
        );
    }
}

/// `person` registered again (after their key's revocation) with their
/// member id concealed under another salt: a second reference.
fn second_reference(staff: &Staff, person: &Person) -> Vec<Record> {
    let again = Person::new([99; 32], &person.member_id, &person.name, person.role, &person.phone);
    let registration: KeyRegistered = again.registration();
    let (member_id, id_text) = conceal(SALT, &person.member_id);
    let (phone, phone_text) = conceal(OTHER_SALT, &mask(&person.phone));
    let payload = serde_json::json!({
        "name": registration.name, "public_key": registration.public_key, "administrator": false,
        "member": {"member_id": member_id, "role": person.role, "phone_masked": phone},
    });
    let record = sign(ORIGIN, KIND_KEY_REGISTERED, &payload, &staff.administrator.identity)
        .with_disclosures(vec![id_text, phone_text]);
    staff.committed(record, COMMITMENT_PHONE, std::slice::from_ref(&person.phone))
}

fn revoked(staff: &Staff, person: &Person) -> Record {
    sign(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_REVOKED,
        &caseledger_verify::record::KeyRevoked {
            key_id: person.identity.public_key().key_id().to_hex(),
            reason: "调岗".into(),
        },
        &staff.administrator.identity,
    )
}

#[test]
fn a_member_registered_again_under_another_reference_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 68);
    let officer = &staff.officers[2];
    // The member's fields in array form (§1a's deviation) are refused on
    // the way to a concealed value: a verifier written from the spec agrees.
    let newcomer = Person::new([98; 32], "officer-98", "新承办", Role::Officer, "13912349898");
    let (record, phone) = newcomer.enrolment_request(ORIGIN, &staff.administrator.identity);
    let mut payload: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
    let member = payload["member"].clone();
    payload["member"] = serde_json::json!([member["member_id"], member["role"], member["phone_masked"]]);
    let as_array = sign(ORIGIN, KIND_KEY_REGISTERED, &payload, &staff.administrator.identity)
        .with_disclosures(record.disclosures.clone());
    assert_eq!(
        refused_batch(&ledger, staff.committed(as_array, COMMITMENT_PHONE, &phone)),
        "disclosure"
    );
    ledger.append_one(revoked(&staff, officer)).expect("revoked");
    assert_eq!(refused_batch(&ledger, second_reference(&staff, officer)), "disclosure");
    // Under their one reference they are registered again.
    let again = Person::new(
        [99; 32],
        &officer.member_id,
        &officer.name,
        officer.role,
        &officer.phone,
    );
    ledger.append(staff.enrol(&again)).expect("the same member, a new key");
    audit_ok(&ledger);
}

#[test]
fn a_member_registered_again_under_another_reference_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 68);
    let officer = staff.officers[2].clone();
    ledger.append_one(revoked(&staff, &officer)).expect("revoked");
    ledger.close().expect("close");
    let seqs: Vec<u64> = second_reference(&staff, &officer)
        .into_iter()
        .map(|r| force_append(dir.path(), r))
        .collect();
    caught(dir.path(), seqs[1], "disclosure");
}

/// The seq of the case's filing in a closed court ledger with a case.
fn closed_case(dir: &std::path::Path) -> u64 {
    let (ledger, _) = court_with_case(dir, 69, CASE, 2, 1_000_000);
    let seq = (0..ledger.size())
        .find(|seq| ledger.entry(*seq).expect("entry").record.kind == KIND_CASE_OPENED)
        .expect("the filing");
    ledger.close().expect("close");
    seq
}

/// `rule` at `seq` among the auditor's violations (the checkpoints the
/// node signed then no longer match the replay either: an integrity
/// failure after it).
fn named(dir: &std::path::Path, seq: u64, rule: &str) {
    let report = audit(dir);
    assert!(!report.ok);
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
        "expected {rule} at {seq}, got {:?} {:?}",
        report.violations,
        report.first_error
    );
}

#[test]
fn disclosures_lost_changed_or_added_in_the_store_are_named_by_verify() {
    // Lost: the parties can no longer be read.
    let dir = tempfile::tempdir().expect("tempdir");
    let filed = closed_case(dir.path());
    let db = raw_db(dir.path());
    db.delete_cf(db.cf_handle("disclosures").expect("cf"), seq_key(filed))
        .expect("delete");
    drop(db);
    named(dir.path(), filed, "disclosure");

    // Changed: a party renamed in the store.
    let dir = tempfile::tempdir().expect("tempdir");
    let filed = closed_case(dir.path());
    let db = raw_db(dir.path());
    let cf = db.cf_handle("disclosures").expect("cf");
    let stored = db.get_cf(cf, seq_key(filed)).expect("get").expect("stored");
    let mut texts: Vec<String> = serde_json::from_slice(&stored).expect("json");
    texts[0] = texts[0].replace("申请人1", "冒名者");
    db.put_cf(cf, seq_key(filed), serde_json::to_vec(&texts).expect("json"))
        .expect("put");
    drop(db);
    named(dir.path(), filed, "disclosure");

    // Added: disclosures beside an entry that conceals nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let filed = closed_case(dir.path());
    let db = raw_db(dir.path());
    let extra = serde_json::to_vec(&[disclosure_text(SALT, &"某人")]).expect("json");
    db.put_cf(db.cf_handle("disclosures").expect("cf"), seq_key(filed + 1), &extra)
        .expect("put");
    drop(db);
    named(dir.path(), filed + 1, "disclosure");

    // Added beyond the ledger's end: the audit fails there.
    let dir = tempfile::tempdir().expect("tempdir");
    closed_case(dir.path());
    let size = Ledger::open_read_only(dir.path()).expect("open").size();
    let db = raw_db(dir.path());
    db.put_cf(db.cf_handle("disclosures").expect("cf"), seq_key(size + 5), &extra)
        .expect("put");
    drop(db);
    let report = audit(dir.path());
    let error = report.first_error.expect("a failure");
    assert_eq!(error.check, "disclosure", "{error:?}");
}

/// A disbursement request with its reason in clear: every applicant of the
/// case would read it in the case's thread.
fn reason_in_clear(staff: &Staff) -> Record {
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    let request: DisbursementRequested = revealed(&case.request("d-9", "acct-1", 100_000));
    sign(
        ORIGIN,
        KIND_DISBURSEMENT_REQUESTED,
        &request,
        &staff.officers[0].identity,
    )
}

#[test]
fn a_reason_in_clear_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 70, CASE, 2, 1_000_000);
    let before = ledger.size();
    assert_eq!(refused_batch(&ledger, vec![reason_in_clear(&staff)]), "disclosure");
    assert_eq!(ledger.size(), before);
}

#[test]
fn a_reason_in_clear_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 70, CASE, 2, 1_000_000);
    ledger.close().expect("close");
    let seq = force_append(dir.path(), reason_in_clear(&staff));
    caught(dir.path(), seq, "disclosure");
}

/// A member's id disclosure (finance's, from their registration) repeated
/// word for word as a request's reason: the applicant would learn whose
/// reference it is. Only a member's id in a registration is disclosed again.
fn member_id_as_reason(ledger: &Ledger, staff: &Staff) -> Record {
    let registration = (0..ledger.size())
        .map(|seq| ledger.entry(seq).expect("entry"))
        .find(|e| {
            e.record.kind == KIND_KEY_REGISTERED
                && e.record
                    .disclosures
                    .iter()
                    .any(|d| d.contains(&format!("\"{}\"", staff.finance.member_id)))
        })
        .expect("finance's registration");
    let id_disclosure = registration.record.disclosures[0].clone();
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    let mut payload: serde_json::Value =
        serde_json::from_slice(&case.request("d-8", "acct-1", 100_000).payload).expect("json");
    payload["reason"] = serde_json::json!({"_sd": caseledger_verify::disclosure::digest_of(&id_disclosure)});
    sign(
        ORIGIN,
        KIND_DISBURSEMENT_REQUESTED,
        &payload,
        &staff.officers[0].identity,
    )
    .with_disclosures(vec![id_disclosure])
}

#[test]
fn a_disclosure_repeated_for_another_purpose_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 71, CASE, 2, 1_000_000);
    assert_eq!(
        refused_batch(&ledger, vec![member_id_as_reason(&ledger, &staff)]),
        "disclosure"
    );
    // A party of one filing repeated in another: the cases would be linked.
    let first = (0..ledger.size())
        .map(|seq| ledger.entry(seq).expect("entry"))
        .find(|e| e.record.kind == KIND_CASE_OPENED)
        .expect("the filing");
    let repeated = filing(&staff, &|p, d| {
        p["applicants"] =
            serde_json::json!([{"_sd": caseledger_verify::disclosure::digest_of(&first.record.disclosures[0])}]);
        d[0] = first.record.disclosures[0].clone();
    });
    assert_eq!(refused_batch(&ledger, repeated), "disclosure");
}

#[test]
fn a_disclosure_repeated_for_another_purpose_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 71, CASE, 2, 1_000_000);
    let record = member_id_as_reason(&ledger, &staff);
    ledger.close().expect("close");
    let seq = force_append(dir.path(), record);
    named(dir.path(), seq, "disclosure");
}

/// A key registration refused for its salt leaves no key behind in the
/// auditor's replay: what the refused key signs next is refused too.
#[test]
fn a_registration_refused_for_its_salt_registers_nothing_in_the_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 72);
    ledger.close().expect("close");
    let newcomer = Person::new([97; 32], "officer-97", "新承办", Role::Officer, "13912349797");
    // Its member id concealed with finance's member-id salt.
    let finance_salt = caseledger_verify::disclosure::derived_salt(&["member", &staff.finance.member_id]);
    let registration = newcomer.registration();
    let (member_id, id_text) = conceal(&finance_salt, &newcomer.member_id);
    let (phone, phone_text) = conceal(OTHER_SALT, &mask(&newcomer.phone));
    let payload = serde_json::json!({
        "name": registration.name, "public_key": registration.public_key, "administrator": false,
        "member": {"member_id": member_id, "role": "officer", "phone_masked": phone},
    });
    let record = sign(ORIGIN, KIND_KEY_REGISTERED, &payload, &staff.administrator.identity)
        .with_disclosures(vec![id_text, phone_text]);
    let seqs: Vec<u64> = staff
        .committed(record, COMMITMENT_PHONE, std::slice::from_ref(&newcomer.phone))
        .into_iter()
        .chain([newcomer.co_signature(ORIGIN, &staff.co_administrator.identity)])
        .chain([revoked_by(&newcomer, &staff.finance)])
        .map(|r| force_append(dir.path(), r))
        .collect();
    named(dir.path(), seqs[1], "disclosure");
    named(dir.path(), seqs[2], "key_co_signature");
    named(dir.path(), seqs[3], "unknown_key");
}

/// A revocation of `whose` key signed by `by` (not an administrator's).
fn revoked_by(by: &Person, whose: &Person) -> Record {
    sign(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_REVOKED,
        &caseledger_verify::record::KeyRevoked {
            key_id: whose.identity.public_key().key_id().to_hex(),
            reason: "调岗".into(),
        },
        &by.identity,
    )
}

#[test]
fn a_disclosure_stored_under_a_key_that_is_no_seq_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_case(dir.path());
    let db = raw_db(dir.path());
    db.put_cf(db.cf_handle("disclosures").expect("cf"), [0u8; 9], b"[]")
        .expect("put");
    drop(db);
    let report = audit(dir.path());
    let error = report.first_error.expect("a failure");
    assert_eq!(error.check, "disclosure", "{error:?}");
    assert!(error.detail.contains("no entry's seq"), "{error:?}");
}
