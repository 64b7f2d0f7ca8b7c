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
        .append(staff.co_signed(&leader, &staff.court_leader.identity))
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

/// The number a dishonest registrar enrols for `person`: their own, with
/// the same last four digits as the one on the court's staff list.
fn registrars_own_phone(person: &Person) -> String {
    format!("1386666{}", &person.phone[7..])
}

/// A member key's co-signature stands only right after the node's
/// commitment to the member's phone as the co-signer gave it, and that
/// commitment must be the enrolment's: a registrar who enrolled the member
/// with their own phone ending in the same digits (the mask the co-signer
/// is shown) is caught by the second person's staff list.
#[test]
fn a_co_signature_needs_the_full_phone_the_member_was_enrolled_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 83);
    let listed = own_leader();
    let enrolled = Person {
        phone: registrars_own_phone(&listed),
        ..listed.clone()
    };
    assert_eq!(
        caseledger::commitments::mask(&enrolled.phone),
        caseledger::commitments::mask(&listed.phone)
    );
    ledger
        .append(registered_alone(&staff, &enrolled))
        .expect("the registration itself is written");
    let before = state(&ledger);
    let co_signature = listed.co_signature(ORIGIN, &staff.court_leader.identity);
    // No commitment of the node right before it.
    assert_eq!(refused_rule(&ledger, co_signature.clone()), "co_signature_phone");
    // The node's commitment to the listed number: not the enrolment's.
    let [committed, co_signature] =
        <[Record; 2]>::try_from(staff.committed(co_signature, COMMITMENT_PHONE, std::slice::from_ref(&listed.phone)))
            .expect("two records");
    ledger.append_one(committed).expect("the node's commitment");
    let after_commitment = state(&ledger);
    assert_eq!(refused_rule(&ledger, co_signature), "co_signature_phone");
    assert!(state(&ledger) == after_commitment, "the refusal changes nothing");
    assert_eq!(before.0 + 1, after_commitment.0);
    // Still awaiting: the key signs nothing.
    let key = enrolled.identity.public_key().key_id();
    assert!(ledger.keys().info(&key).expect("registered").awaits_co_signature());
    // With the number it was enrolled with, the co-signature stands.
    ledger
        .append(staff.co_signed(&enrolled, &staff.court_leader.identity))
        .expect("co-signed with the enrolled number");
    assert!(ledger.keys().info(&key).expect("registered").is_active());
    audit_ok(&ledger);
}

#[test]
fn co_signatures_without_the_enrolled_phone_forced_into_storage_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 84);
    ledger.close().expect("close");
    let listed = own_leader();
    let enrolled = Person {
        phone: registrars_own_phone(&listed),
        ..listed.clone()
    };
    let other = Person::new([85; 32], "leader-85", "另一位院长", Role::CourtLeader, "13700000085");
    for record in registered_alone(&staff, &enrolled)
        .into_iter()
        .chain(registered_alone(&staff, &other))
    {
        force_append(dir.path(), record);
    }
    // One with the node's commitment to the listed (other) number, one
    // with no commitment at all.
    let mut last = 0;
    for record in staff.committed(
        listed.co_signature(ORIGIN, &staff.court_leader.identity),
        COMMITMENT_PHONE,
        std::slice::from_ref(&listed.phone),
    ) {
        last = force_append(dir.path(), record);
    }
    let wrong_phone = last;
    let uncommitted = force_append(dir.path(), other.co_signature(ORIGIN, &staff.court_leader.identity));
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let found: Vec<(u64, &str)> = report
        .violations
        .iter()
        .filter(|v| !v.rule.starts_with("derived_"))
        .map(|v| (v.seq, v.rule.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![(wrong_phone, "co_signature_phone"), (uncommitted, "co_signature_phone")]
    );
}

/// The attack as a court would meet it, through the real service and the
/// `admin` commands: the first administrator enrols the bureau head with
/// their own phone ending in the same four digits; the second
/// administrator's `co-sign`, run on the court's staff list, is refused
/// by the node and the key stays unable to sign; run on a list with the
/// number the member was enrolled with, it co-signs.
#[test]
fn admin_co_sign_refuses_an_enrolment_with_another_phone_of_the_same_last_digits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("court-data");
    let admin_keys = dir.path().join("admin-keys");
    let caseledger = |args: &[&std::ffi::OsStr], url: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"));
        command
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null());
        if let Some(url) = url {
            command.env("CASELEDGER_URL", url);
        }
        command.output().expect("run caseledger")
    };
    fn os<'a>(args: &'a [&'a str]) -> Vec<&'a std::ffi::OsStr> {
        args.iter().map(std::ffi::OsStr::new).collect()
    }
    let made = caseledger(
        &[
            "init".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--origin".as_ref(),
            "court.example/case-funds".as_ref(),
            "--admin-keys".as_ref(),
            admin_keys.as_os_str(),
        ],
        None,
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made = caseledger(&os(&["keygen", "--out", "keys/head.key"]), None);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let header = "name,member_id,role,phone,public_key\n";
    std::fs::write(
        dir.path().join("enrolled.csv"),
        format!("{header}赵局长,M-0301,bureau_head,13866660301,keys/head.key.pub\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("staff.csv"),
        format!("{header}赵局长,M-0301,bureau_head,13900000301,keys/head.key.pub\n"),
    )
    .expect("write");
    let mut serve = Serve::start(&data, &[]);
    let url = Some(serve.address.as_str());
    let enrolled = caseledger(
        &os(&[
            "admin",
            "--key",
            "admin-keys/admin.key",
            "enrol",
            "--members",
            "enrolled.csv",
        ]),
        url,
    );
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let administrator = caseledger_keys::files::read_private_key(&admin_keys.join("admin.key")).expect("key");
    let reader = caseledger::service::client::Client::new(&serve.address, administrator);
    let awaiting = |_: &Serve| {
        let (status, member) = reader.get("/v1/members/M-0301").expect("GET");
        assert_eq!(status, 200, "{member}");
        member["keys"][0]["awaiting_co_signature"].as_bool().expect("a key")
    };
    assert!(awaiting(&serve));

    let co_sign = |list: &str| {
        caseledger(
            &os(&[
                "admin",
                "--key",
                "admin-keys/admin-2.key",
                "co-sign",
                "--members",
                list,
                "--yes",
            ]),
            url,
        )
    };
    let refused = co_sign("staff.csv");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "co-signed: {said}");
    assert!(
        said.contains("co-signing M-0301") && said.contains("not the one member M-0301 was enrolled with"),
        "{said}"
    );
    assert!(!said.contains("13900000301") && !said.contains("13866660301"), "{said}");
    assert!(awaiting(&serve), "the key still awaits its co-signature");

    let co_signed = co_sign("enrolled.csv");
    assert!(
        co_signed.status.success(),
        "{}",
        String::from_utf8_lossy(&co_signed.stderr)
    );
    assert!(!awaiting(&serve), "co-signed with the number it was enrolled with");
    serve.terminate();
}

/// The node compares a co-signer's number with the enrolment only for
/// someone who may co-sign the key: anyone else (an officer, the
/// registrar) gets the same refusal whatever number they give, so the
/// check is no phone oracle for every member.
#[tokio::test]
async fn only_a_possible_co_signer_learns_whether_a_number_is_the_enrolled_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 86);
    let pending = own_leader();
    ledger
        .append(registered_alone(&staff, &pending))
        .expect("the registration itself is written");
    let state = service_state(ledger, &staff);
    let wrong = registrars_own_phone(&Person {
        phone: "13700000099".into(),
        ..pending.clone()
    });
    let try_with = |signer: &caseledger_keys::Identity, phone: &str| {
        let request = (pending.co_signature(ORIGIN, signer), vec![phone.to_owned()]);
        let (state, signer) = (state.clone(), signer.clone());
        async move {
            let (status, value) = write_numbered(&state, &signer, &[request]).await;
            (status.as_u16(), value["rule"].as_str().unwrap_or_default().to_owned())
        }
    };
    for (signer, status, rule) in [
        (&staff.officers[0].identity, 403, "not_authorized"),
        (&staff.administrator.identity, 422, "key_co_signature"),
    ] {
        let right = try_with(signer, &pending.phone).await;
        let other = try_with(signer, &wrong).await;
        assert_eq!(right, (status, rule.to_owned()));
        assert_eq!(other, right, "the same answer whatever the number");
    }
    // The court leader may co-sign: told when the number is not the one.
    let leader = &staff.court_leader.identity;
    assert_eq!(try_with(leader, &wrong).await, (422, "co_signature_phone".to_owned()));
    assert_eq!(try_with(leader, &pending.phone).await.0, 201);
}
