//! The applicant's and approvers' SMS texts are made from the data (issue
//! 18 item 8): each approval step says which of how many, the last says
//! the approvals are complete; a notice never assumes the applicant holds
//! a verification code; a code's text states its configured lifetime; no
//! placeholder is left unfilled.

mod common;

use caseledger::court::CaseRecords;
use caseledger::service::sms::Templates;
use caseledger_verify::funds::model::Role;
use caseledger_verify::funds::notify::Notification;

const CASE: &str = "(2026)苏02执1951号";

#[test]
fn notices_say_which_step_of_how_many_and_codes_their_lifetime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court_with_case(dir.path(), 195, CASE, 1, 5_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let chain = [Role::BureauHead, Role::Finance];
    ledger
        .append(
            [
                vec![case.request("d-1", "acct-1", 1_000_000)],
                case.approvals(&staff.origin, "d-1", "acct-1", 1_000_000, &chain),
            ]
            .concat(),
        )
        .expect("a request approved to its end");
    let templates = Templates::default().with_approval_code_ttl_ms(120_000);
    let texts: Vec<(String, String)> = ledger
        .state_objects("outbox/")
        .expect("outbox")
        .into_iter()
        .map(|(_, bytes)| {
            let notification: Notification = serde_json::from_slice(&bytes).expect("notification");
            let message = templates.notification(&notification, "13800000001");
            (message.template, message.text)
        })
        .collect();
    let of = |template: &str| -> Vec<&String> {
        texts
            .iter()
            .filter(|(t, _)| t == template)
            .map(|(_, text)| text)
            .collect()
    };
    let steps = of("step_approved");
    assert_eq!(steps.len(), 2, "{texts:?}");
    assert!(steps[0].contains("已通过第1级审批（共2级）"), "{}", steps[0]);
    assert!(steps[1].contains("已通过全部2级审批，等待财务汇出"), "{}", steps[1]);
    let arrived = of("receipt_arrived");
    assert_eq!(arrived.len(), 1, "{texts:?}");
    assert!(arrived[0].contains("尚无查询码的，可向承办法官申请"), "{}", arrived[0]);
    for (template, text) in &texts {
        assert!(!text.contains('{') && !text.contains('}'), "{template}: {text}");
    }
    // Codes: the approval code's configured lifetime, the others' own.
    let code = templates.message("c-1", "13800000001", "approval_code", &[("code", "123456".into())]);
    assert!(code.text.contains("2分钟内有效"), "{}", code.text);
    assert!(!code.params.contains_key("minutes"), "the provider gets the code alone");
    let account = templates.message(
        "c-2",
        "13800000001",
        "account_code",
        &[
            ("case", CASE.into()),
            ("account", "****0001".into()),
            ("code", "654321".into()),
        ],
    );
    assert!(account.text.contains("30分钟内有效"), "{}", account.text);
}
