//! What may enter the permanent ledger (issue 14, item 12): free text is
//! bounded and holds no phone, bank-card or ID-card number; identifiers
//! have no look-alikes (other scripts, invisible characters, full-width
//! brackets in case numbers). Refused when written; named by `verify`
//! when forced into storage.

mod common;

use caseledger::commitments::COMMITMENT_PHONE;
use caseledger::court::CaseRecords;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2026)苏02执88号";

/// `case_opened` of `case` (one applicant) changed by `change`, signed by
/// the filing clerk, after the node's commitment to the applicant's phone.
fn opened_with(case: &CaseRecords, change: &dyn Fn(&mut CaseOpened)) -> Vec<Record> {
    let (record, phones) = case.open_request(1);
    let mut payload: CaseOpened = caseledger::court::revealed(&record);
    change(&mut payload);
    let record =
        caseledger::court::sign_revealed(ORIGIN, KIND_CASE_OPENED, &payload, &case.staff.filing_clerk.identity);
    case.staff.committed(record, COMMITMENT_PHONE, &phones)
}

#[test]
fn personal_numbers_and_look_alikes_stay_out_of_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 81);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let open_with = |change: &dyn Fn(&mut CaseOpened)| opened_with(&case, change);
    let size = ledger.size();
    for (record, rule) in [
        (
            open_with(&|p| p.respondents = vec!["被执行人 电话 138 1234 5678".into()]),
            "personal_data",
        ),
        (
            open_with(&|p| p.respondents = vec!["身份证32010219900101123X".into()]),
            "personal_data",
        ),
        (open_with(&|p| p.applicants[0].name = "张\u{200B}三".into()), "payload"),
        (
            open_with(&|p| p.applicants[0].phone_masked = "13900000001".into()),
            "payload",
        ),
        (
            open_with(&|p| p.applicants[0].applicant_id = "applicant\u{2060}-1".into()),
            "payload",
        ),
        (open_with(&|p| p.respondents = vec!["x".repeat(501)]), "payload"),
        (
            open_with(&|p| p.respondents = (0..51).map(|n| format!("公司{n}")).collect()),
            "payload",
        ),
        (
            open_with(&|p| p.case_number = "（2026）苏02执88号".into()),
            "case_number",
        ),
    ] {
        assert_eq!(common::refused_batch(&ledger, record), rule);
    }
    assert_eq!(ledger.size(), size, "nothing written");
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011110001"),
                vec![case.confirm("acct-1"), case.receipt("BANK-1", 100_000)],
            ]
            .concat(),
        )
        .expect("a clean case");
    let mut request: DisbursementRequested = caseledger::court::revealed(&case.request("d-1", "acct-1", 50_000));
    request.reason = "付至 6222 0000 1111 0001".into();
    let numbered = caseledger::court::sign_revealed(
        ORIGIN,
        KIND_DISBURSEMENT_REQUESTED,
        &request,
        &staff.officers[0].identity,
    );
    assert_eq!(refused_rule(&ledger, numbered.clone()), "personal_data");
    ledger.close().expect("close");
    let seq = force_append(dir.path(), numbered);
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == seq && v.rule == "personal_data"),
        "{:?}",
        report.violations
    );
}

/// The second attack round's numbers and look-alikes (issue 14 item 12).
#[test]
fn numbers_in_other_scripts_separators_and_ids_are_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 82);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let open_with = |change: &dyn Fn(&mut CaseOpened)| opened_with(&case, change);
    for respondent in [
        "一三八一二三四五六七八",
        "138\u{a0}1234\u{a0}5678",
        "138,1234,5678",
        "(138)1234-5678",
        "138  1234  5678",
        "١٣٨١٢٣٤٥٦٧٨",
    ] {
        let record = open_with(&|p| p.respondents = vec![respondent.to_owned()]);
        assert_eq!(common::refused_batch(&ledger, record), "personal_data", "{respondent}");
    }
    let id_card = open_with(&|p| p.applicants[0].applicant_id = "320102199001011234".into());
    assert_eq!(common::refused_batch(&ledger, id_card), "personal_data");
    for look_alike in [
        "(2026)苏02执088号",
        "(2026)蘇02执88号",
        "(2026)苏02執执88号",
        "(2026)苏02执13812345678号",
    ] {
        let record = open_with(&|p| p.case_number = look_alike.into());
        assert_eq!(common::refused_batch(&ledger, record), "case_number", "{look_alike}");
    }
}
