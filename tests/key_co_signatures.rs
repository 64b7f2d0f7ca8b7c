//! No key signs on one person's word (issue 14, co-signed enrolments): a key
//! an administrator registers or rotates to signs nothing until a second
//! person (another administrator, or a court leader) co-signs it. Without
//! this, one administrator could enrol a court leader of their own making
//! and co-sign their own policy, or a whole approval chain and pay whom
//! they like. Each attempt is refused when written and, forced into storage
//! behind the service's back, named by `verify` with its seq and rule.

mod common;

use caseledger::commitments::COMMITMENT_PHONE;
use caseledger::court::{example_policy, sign, Person, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use caseledger_verify::record::{
    KeyCoSigned, KeyRevoked, KeyRotated, KeyText, KIND_KEY_CO_SIGNED, KIND_KEY_REVOKED, KIND_KEY_ROTATED,
};
use common::*;
use sha2::Digest as _;

/// A court leader the administrator enrols alone: a phone of their own.
fn own_leader() -> Person {
    Person::new([81; 32], "leader-81", "假院长", Role::CourtLeader, "13700000081")
}

/// `person`'s registration by the administrator as the service writes it
/// (the node's commitment to the phone, then the registration), with no
/// co-signature.
fn registered_alone(staff: &Staff, person: &Person) -> Vec<Record> {
    let (record, phones) = person.enrolment_request(&staff.origin, &staff.administrator.identity);
    staff.committed(record, COMMITMENT_PHONE, &phones)
}

/// The administrator's proposal of policy version 2, and `approver`'s
/// co-signature of it.
fn policy_v2(staff: &Staff, approver: &Person) -> [Record; 2] {
    let policy = example_policy("policy-2", 2);
    let proposal = sign(ORIGIN, KIND_POLICY_SET, &policy, &staff.administrator.identity);
    let approved = PolicyApproved {
        request_id: "policy-2-approved".into(),
        version: 2,
        proposal_sha256: hex::encode(sha2::Sha256::digest(&proposal.payload)),
    };
    [
        proposal,
        sign(ORIGIN, KIND_POLICY_APPROVED, &approved, &approver.identity),
    ]
}

fn state(ledger: &Ledger) -> (u64, Vec<(String, Vec<u8>)>) {
    (ledger.size(), ledger.state_objects("").expect("state"))
}

#[test]
fn a_key_one_administrator_registers_signs_nothing_until_a_second_person_co_signs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 81);
    let leader = own_leader();
    ledger
        .append(registered_alone(&staff, &leader))
        .expect("the registration itself is written");
    let [proposal, approved] = policy_v2(&staff, &leader);
    ledger.append_one(proposal).expect("proposal");

    let before = state(&ledger);
    // The leader of the administrator's making cannot approve the policy.
    assert_eq!(refused_rule(&ledger, approved.clone()), "key_co_signature");
    // The administrator cannot co-sign their own registration.
    let own = leader.co_signature(ORIGIN, &staff.administrator.identity);
    assert_eq!(refused_rule(&ledger, own), "key_co_signature");
    // Nor through a second administrator key of their own: it awaits a
    // co-signature itself.
    let second_self = Person::new([82; 32], "admin-82", "管理员分身", Role::Administrator, "13700000082");
    ledger
        .append(registered_alone(&staff, &second_self))
        .expect("registration");
    let after_second_self = state(&ledger);
    let by_second_self = leader.co_signature(ORIGIN, &second_self.identity);
    assert_eq!(refused_rule(&ledger, by_second_self), "key_co_signature");
    // An officer is no second person for a key.
    let by_officer = leader.co_signature(ORIGIN, &staff.officers[0].identity);
    assert_eq!(refused_rule(&ledger, by_officer), "not_authorized");
    // A co-signature that says something else than the registration.
    let misstated = Person {
        role: Role::Finance,
        ..leader.clone()
    };
    let misstated = misstated.co_signature(ORIGIN, &staff.co_administrator.identity);
    assert_eq!(refused_rule(&ledger, misstated), "key_co_signature");
    // Nor another phone than the one the codes will go to.
    let other_phone = Person {
        phone: "13700009999".into(),
        ..leader.clone()
    };
    let other_phone = other_phone.co_signature(ORIGIN, &staff.co_administrator.identity);
    assert_eq!(refused_rule(&ledger, other_phone), "key_co_signature");
    assert!(state(&ledger) == after_second_self, "refusals change nothing");
    assert_eq!(before.0 + 2, after_second_self.0, "only the second registration");

    // The court leader (a second person) co-signs: now it signs, once.
    let by_leader = leader.co_signature(ORIGIN, &staff.court_leader.identity);
    ledger
        .append_one(by_leader.clone())
        .expect("co-signed by the court leader");
    assert_eq!(refused_rule(&ledger, by_leader), "key_co_signature", "co-signed twice");
    ledger.append_one(approved).expect("the co-signed leader approves");
    audit_ok(&ledger);
}

#[test]
fn keys_used_or_co_signed_by_one_person_forced_into_storage_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 82);
    ledger.close().expect("close");
    let leader = own_leader();
    for record in registered_alone(&staff, &leader) {
        force_append(dir.path(), record);
    }
    let [proposal, approved] = policy_v2(&staff, &leader);
    force_append(dir.path(), proposal);
    let used = force_append(dir.path(), approved);
    let own = force_append(dir.path(), leader.co_signature(ORIGIN, &staff.administrator.identity));
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    // (The forced entries did not update the stored derived state, which
    // the audit also reports; the rules are what this test is about.)
    let found: Vec<(u64, &str)> = report
        .violations
        .iter()
        .filter(|v| !v.rule.starts_with("derived_"))
        .map(|v| (v.seq, v.rule.as_str()))
        .collect();
    assert_eq!(found, vec![(used, "key_co_signature"), (own, "key_co_signature")]);
    // The node does not vouch for records written behind its back: opened
    // for writing, the ledger refuses writes and names the first of them.
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
    let (seq, detail) = ledger.corruption().expect("refuses writes");
    assert_eq!(seq, used);
    assert!(detail.starts_with("key_co_signature"), "{detail}");
    // The policy in force is still version 1: the replay applied neither.
    let policy = ledger.state_objects("policy").expect("state");
    assert!(policy.iter().any(|(k, _)| k == "policy/0000000001"));
    assert!(!policy.iter().any(|(k, _)| k == "policy/0000000002"));
}

/// A key awaiting its co-signature is not an active administrator: it does
/// not count when the last active administrator would be revoked, and it
/// may itself be revoked (a registration withdrawn).
#[test]
fn keys_awaiting_a_co_signature_are_not_active_administrators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 83);
    let pending = Person::new([83; 32], "admin-83", "新管理员", Role::Administrator, "13700000083");
    ledger.append(registered_alone(&staff, &pending)).expect("registration");
    let revoke = |who: &caseledger_keys::Identity| {
        let payload = KeyRevoked {
            key_id: who.public_key().key_id().to_hex(),
            reason: "left the court".into(),
        };
        sign(ORIGIN, KIND_KEY_REVOKED, &payload, &staff.administrator.identity)
    };
    ledger
        .append_one(revoke(&staff.co_administrator.identity))
        .expect("one of two active administrators");
    assert_eq!(
        refused_rule(&ledger, revoke(&staff.administrator.identity)),
        "record_payload"
    );
    ledger
        .append_one(revoke(&pending.identity))
        .expect("a pending registration withdrawn");
    // Withdrawn, it can no longer be co-signed.
    let late = pending.co_signature(ORIGIN, &staff.court_leader.identity);
    assert_eq!(refused_rule(&ledger, late), "key_co_signature");
    audit_ok(&ledger);
}

/// `rotated`'s key rotated by the administrator to `to` (signed by `by`).
fn rotation(staff: &Staff, rotated: &caseledger_keys::Identity, to: &caseledger_keys::Identity) -> Record {
    let payload = KeyRotated {
        key_id: rotated.public_key().key_id().to_hex(),
        public_key: KeyText::from_key(&to.public_key()),
    };
    sign(ORIGIN, KIND_KEY_ROTATED, &payload, &staff.administrator.identity)
}

/// The co-signature of a rotated-to key of the genesis administrator.
fn administrator_co_signature(
    staff: &Staff,
    key: &caseledger_keys::Identity,
    by: &caseledger_keys::Identity,
) -> Record {
    let payload = KeyCoSigned {
        key_id: key.public_key().key_id().to_hex(),
        name: staff.administrator.name.clone(),
        administrator: true,
        member_id: None,
        role: None,
        phone_masked: None,
    };
    sign(ORIGIN, KIND_KEY_CO_SIGNED, &payload, by)
}

/// Fourth attack round, finding 1: the administrator registers a court
/// leader of their own making, rotates their own key (the second
/// administrator honestly co-signs the new key: it is theirs), and
/// co-signs the leader with the new key. A rotated key is still held by
/// whoever held the key it replaced: refused, and named by `verify`.
#[test]
fn a_rotated_key_is_still_held_by_the_registrar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 85);
    let leader = own_leader();
    let new_key = caseledger_keys::Identity::from_seed([85; 32]);
    ledger
        .append(
            [
                registered_alone(&staff, &leader),
                vec![
                    rotation(&staff, &staff.administrator.identity, &new_key),
                    administrator_co_signature(&staff, &new_key, &staff.co_administrator.identity),
                ],
            ]
            .concat(),
        )
        .expect("registration, rotation, honest co-signature");
    let by_new_key = leader.co_signature(ORIGIN, &new_key);
    assert_eq!(refused_rule(&ledger, by_new_key.clone()), "key_co_signature");
    ledger.close().expect("close");
    let seq = force_append(dir.path(), by_new_key);
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == seq && v.rule == "key_co_signature"),
        "{:?}",
        report.violations
    );
}

/// Fourth attack round, finding 2 and note: a key awaiting its
/// co-signature is not rotated (the co-signer would vouch for a key the
/// registrar made up, and applicant bundles could not follow it), and the
/// only active administrator's key is not rotated (the new key would await
/// a co-signature nobody may give).
#[test]
fn pending_keys_and_the_last_administrator_are_not_rotated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 86);
    let leader = own_leader();
    ledger.append(registered_alone(&staff, &leader)).expect("registration");
    let elsewhere = caseledger_keys::Identity::from_seed([86; 32]);
    assert_eq!(
        refused_rule(&ledger, rotation(&staff, &leader.identity, &elsewhere)),
        "record_payload"
    );
    let revoke = KeyRevoked {
        key_id: staff.co_administrator.identity.public_key().key_id().to_hex(),
        reason: "left the court".into(),
    };
    ledger
        .append_one(sign(ORIGIN, KIND_KEY_REVOKED, &revoke, &staff.administrator.identity))
        .expect("the second administrator leaves");
    let size = ledger.size();
    assert_eq!(
        refused_rule(&ledger, rotation(&staff, &staff.administrator.identity, &elsewhere)),
        "record_payload"
    );
    assert_eq!(ledger.size(), size);
    audit_ok(&ledger);
}
