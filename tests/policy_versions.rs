//! Requests name their policy version (rule `policy`): honest ledgers
//! whose policies change around requests, approvals and payments still
//! give bundles that verify, each disbursement under the version it was
//! requested under (issue 16, third attack round).

mod common;

use caseledger::court::{example_policy, CaseRecords};
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2026)苏02执1701号";

/// Honest: d-1 requested under v1, v2 (other tiers, shorter deadline) put in
/// force before d-1's approvals and payment; d-2 requested under v2 and paid;
/// a v3 proposal pending (not in force) when d-3 is requested under v2.
#[test]
fn honest_policy_changes_around_requests_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 171, CASE, 1, 6_000_000);
    let case1 = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append_one(case1.request("d-1", "acct-1", 1_000_000))
        .expect("d-1");
    let mut v2 = example_policy("policy-2", 2);
    v2.deadline_days = 10;
    v2.tiers[1].from_fen = 500_000; // d-2 of 1,000,000 now takes the long chain
    ledger.append(staff.policy_records(&v2)).expect("v2");
    for a in case1.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &[Role::BureauHead, Role::Finance]) {
        ledger.append_one(a).expect("d-1 approval under v1's chain");
    }
    ledger
        .append_one(case1.payment("d-1", "PAY-1", "acct-1", 1_000_000))
        .expect("pay d-1");
    let case2 = CaseRecords::new(&staff, &staff.officers[0], CASE).under_policy(2);
    ledger
        .append_one(case2.request("d-2", "acct-1", 1_000_000))
        .expect("d-2");
    let v3 = example_policy("policy-3", 3);
    let v3_records = staff.policy_records(&v3);
    ledger.append_one(v3_records[0].clone()).expect("v3 proposed");
    assert_eq!(
        refused_rule(&ledger, case2.clone_under(3).request("d-3", "acct-1", 100_000)),
        "policy"
    );
    ledger
        .append_one(case2.request("d-3", "acct-1", 100_000))
        .expect("d-3 under v2, v3 pending");
    ledger.append_one(v3_records[1].clone()).expect("v3 approved");
    let case3 = CaseRecords::new(&staff, &staff.officers[0], CASE).under_policy(3);
    ledger
        .append_one(case3.request("d-4", "acct-1", 100_000))
        .expect("d-4 under v3");
    // Same batch: a policy put in force and a request under it.
    let mut v4 = example_policy("policy-4", 4);
    v4.deadline_days = 20;
    let case4 = CaseRecords::new(&staff, &staff.officers[0], CASE).under_policy(4);
    ledger
        .append([staff.policy_records(&v4), vec![case4.request("d-5", "acct-1", 100_000)]].concat())
        .expect("v4 and d-5 in one batch");
    let (code, issue) = case1.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("code");
    let report = bundle.verify(&ledger.node_key()).expect("honest bundle verifies");
    let versions: Vec<(String, u32)> = report
        .disbursements
        .iter()
        .map(|d| (d.disbursement_id.clone(), d.policy_version))
        .collect();
    assert_eq!(
        versions,
        vec![
            ("d-1".into(), 1),
            ("d-2".into(), 2),
            ("d-3".into(), 2),
            ("d-4".into(), 3),
            ("d-5".into(), 4)
        ]
    );
    assert_eq!(report.deadline_days, 20);
    audit_ok(&ledger);
}

trait CloneUnder<'a> {
    fn clone_under(&self, v: u32) -> CaseRecords<'a>;
}
impl<'a> CloneUnder<'a> for CaseRecords<'a> {
    fn clone_under(&self, v: u32) -> CaseRecords<'a> {
        CaseRecords::new(self.staff, self.officer, &self.case_number).under_policy(v)
    }
}
