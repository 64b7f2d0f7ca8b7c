//! The bodies of caseledger's fuzz targets: every decoder an outsider's
//! input reaches. Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`,
//! coverage-guided, nightly) and the bounded run in the test suite
//! (`tests/fuzz_smoke.rs`, stable). Each target must never panic, hang or
//! allocate without bound, whatever the bytes; where a decoder accepts its
//! input, the target checks what must then hold (a decoded entry encodes
//! back to the same bytes, and so on).
//!
//! The includer provides `httpsig` (the RFC 9421 module) in the parent
//! module.

use caseledger_keys::{note, Identity, KeyId, PublicKey, Signature};
use caseledger_verify::audit::Auditor;
use caseledger_verify::bundle::{ApplicantBundle, ProofBundle};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::disclosure::{conceal, derived_salt};
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::export::{audit_export, ExportLine};
use caseledger_verify::funds::model;
use caseledger_verify::member::{Member, Role};
use caseledger_verify::record::{self, Genesis, GenesisKey, KeyRegistered, KeyText};

/// The origin of the fuzz ledger (the tests' origin: the seeds come from a test ledger).
pub const ORIGIN: &str = "test.caseledger.local/ledger";

/// The members of the fuzz court: their ids are the demo court's
/// (`src/court.rs`), so that seeds made from its records reach the rules.
pub const MEMBERS: [(&str, Option<Role>); 8] = [
    ("admin-1", None),
    ("officer-1", Some(Role::Officer)),
    ("officer-2", Some(Role::Officer)),
    ("fund-1", Some(Role::FundManager)),
    ("head-1", Some(Role::BureauHead)),
    ("leader-1", Some(Role::CourtLeader)),
    ("finance-1", Some(Role::Finance)),
    // Added later: after the others, so that the seeds keep their signers.
    ("clerk-1", Some(Role::FilingClerk)),
];

/// Keys of the fuzz ledger: node, administrator, then one member per role.
pub struct Fixture {
    pub node: Identity,
    pub members: Vec<(Identity, &'static str, Option<Role>)>,
    /// The second administrator of the genesis entry, who co-signs every
    /// registration (not a member of [`MEMBERS`], so the seeds keep their signers).
    pub co_admin: Identity,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            node: Identity::from_seed([1; 32]),
            members: MEMBERS
                .iter()
                .enumerate()
                .map(|(i, (id, role))| (Identity::from_seed([10 + i as u8; 32]), *id, *role))
                .collect(),
            co_admin: Identity::from_seed([9; 32]),
        }
    }

    /// The index of the member with `member_id` (the administrator's is 0).
    pub fn index_of(member_id: &str) -> Option<usize> {
        MEMBERS.iter().position(|(id, _)| *id == member_id)
    }

    /// Genesis (the first member is the administrator), the members'
    /// enrolments and the example policy: a court ready for case records.
    pub fn setup(&self) -> Vec<Record> {
        let admin = &self.members[0].0;
        let genesis = Genesis {
            origin: ORIGIN.into(),
            node_key: KeyText::from_key(&self.node.public_key()),
            administrators: vec![
                GenesisKey {
                    name: "admin".into(),
                    public_key: KeyText::from_key(&admin.public_key()),
                },
                GenesisKey {
                    name: "co-admin".into(),
                    public_key: KeyText::from_key(&self.co_admin.public_key()),
                },
            ],
            demo: false,
        };
        let mut records = vec![sign(&self.node, record::KIND_GENESIS, &genesis)];
        for (i, (identity, member_id, role)) in self.members.iter().enumerate().skip(1) {
            // Member ids and phones concealed as the demo court conceals
            // them (the same references, so seeds' member references resolve).
            let concealed = role.map(|role| {
                let (id, id_text) = conceal(&derived_salt(&["member", member_id]), member_id);
                let (phone, phone_text) = conceal(
                    &derived_salt(&["member-phone", member_id, &identity.public_key().to_base64()]),
                    &"****0000",
                );
                (role, id, id_text, phone, phone_text)
            });
            let registration = KeyRegistered {
                name: format!("member {i}"),
                public_key: KeyText::from_key(&identity.public_key()),
                administrator: false,
                member: concealed.as_ref().map(|(role, id, _, phone, _)| Member {
                    member_id: (*member_id).to_owned(),
                    role: *role,
                    phone_masked: "****0000".into(),
                    phone_commitment: String::new(),
                    member_ref: id.digest.clone(),
                    phone_ref: phone.digest.clone(),
                }),
            };
            let co_signature = record::KeyCoSigned::of(&registration).expect("a valid key");
            let registration = match &concealed {
                None => sign(admin, record::KIND_KEY_REGISTERED, &registration),
                Some((role, id, id_text, phone, phone_text)) => sign(
                    admin,
                    record::KIND_KEY_REGISTERED,
                    &serde_json::json!({
                        "name": registration.name, "public_key": registration.public_key,
                        "administrator": false,
                        "member": {"member_id": id, "role": role, "phone_masked": phone},
                    }),
                )
                .with_disclosures(vec![id_text.clone(), phone_text.clone()]),
            };
            if role.is_some() {
                // The node's commitment to the member's phone, one phone
                // per member (the registry refuses a shared one).
                let committed = model::NumbersCommitted {
                    request_id: format!("numbers-{i}"),
                    record_sha256: <sha2::Sha256 as sha2::Digest>::digest(&registration.payload)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                    commitments: vec![format!("{i:064x}")],
                };
                records.push(sign(&self.node, model::KIND_NUMBERS_COMMITTED, &committed));
            }
            records.push(registration);
            let co_signature = sign(&self.co_admin, record::KIND_KEY_CO_SIGNED, &co_signature);
            if role.is_some() {
                // The co-signer gives the same phone: the node's
                // commitment to it comes right before the co-signature.
                let committed = model::NumbersCommitted {
                    request_id: format!("numbers-{i}-co-signed"),
                    record_sha256: <sha2::Sha256 as sha2::Digest>::digest(&co_signature.payload)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                    commitments: vec![format!("{i:064x}")],
                };
                records.push(sign(&self.node, model::KIND_NUMBERS_COMMITTED, &committed));
            }
            records.push(co_signature);
        }
        let policy = serde_json::json!({
            "request_id": "policy-1", "version": 1,
            "tiers": [{"from_fen": 0, "chain": ["bureau_head", "finance"]},
                      {"from_fen": 10000000, "chain": ["fund_manager", "bureau_head", "court_leader", "finance"]}],
            "deadline_days": 30, "near_due_days": 5, "unidentified_claim_days": 3,
            "amount_max_fen": 10000000000u64
        });
        let proposal = sign(admin, model::KIND_POLICY_SET, &policy);
        let proposal_sha256: String = <sha2::Sha256 as sha2::Digest>::digest(&proposal.payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        records.push(proposal);
        // In force once the court leader co-signs it.
        let leader = &self.members[Self::index_of("leader-1").expect("a court leader")].0;
        let approved =
            serde_json::json!({"request_id": "policy-1-approved", "version": 1, "proposal_sha256": proposal_sha256});
        records.push(sign(leader, model::KIND_POLICY_APPROVED, &approved));
        records
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

fn sign<T: serde::Serialize>(identity: &Identity, kind: u16, payload: &T) -> Record {
    Record::sign(
        ORIGIN,
        kind,
        serde_json::to_vec(payload).expect("payloads serialise"),
        identity,
    )
}

/// The kinds the records target picks from (every kind caseledger knows,
/// and a few it does not).
pub const KINDS: [u16; 33] = [
    record::KIND_GENESIS,
    record::KIND_KEY_REGISTERED,
    record::KIND_KEY_REVOKED,
    record::KIND_KEY_ROTATED,
    record::KIND_DEMO_NOTE,
    model::KIND_POLICY_SET,
    model::KIND_CASE_OPENED,
    model::KIND_ACCOUNT_REGISTERED,
    model::KIND_ACCOUNT_CONFIRMED,
    model::KIND_ACCOUNT_CHANGE_APPROVED,
    model::KIND_ACCOUNT_CHALLENGE,
    model::KIND_RECEIPT_RECORDED,
    model::KIND_RECEIPT_CLAIMED,
    model::KIND_DISBURSEMENT_REQUESTED,
    model::KIND_APPROVAL_SIGNED,
    model::KIND_DISBURSEMENT_PAID,
    model::KIND_PAYMENT_RETURNED,
    model::KIND_DISBURSEMENT_CANCELLED,
    model::KIND_SMS_CHALLENGE,
    model::KIND_SMS_SENT,
    model::KIND_DELAY_APPROVED,
    model::KIND_DELAY_ENDED,
    model::KIND_APPLICANT_CODE_ISSUED,
    model::KIND_APPLICANT_CODE_REVOKED,
    0x0000,
    0xffff,
    // Added later: after the others, so that the seeds keep their kinds.
    model::KIND_SMS_CODE_REVEALED,
    model::KIND_POLICY_APPROVED,
    model::KIND_RECEIPT_CLAIM_DECIDED,
    model::KIND_NUMBERS_COMMITTED,
    model::KIND_PHONE_CHALLENGE,
    model::KIND_PHONE_CONFIRMED,
    record::KIND_KEY_CO_SIGNED,
];

/// Entry bytes: if they decode, they encode back to themselves, and the
/// signed message and a signature check can be computed.
pub fn entry(data: &[u8]) {
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data, "an entry re-encodes to its bytes");
        assert_eq!(
            Entry::signed_message_of(ORIGIN, data),
            entry.record.signed_message(ORIGIN)
        );
        let key = Identity::from_seed([2; 32]).public_key();
        let _ = entry.record.verify(ORIGIN, &key);
        assert_eq!(Entry::hash_of(data), caseledger_verify::hash::leaf_hash(data));
    }
}

/// A sequence of records, each `[kind index][signer index][length u16 BE]
/// [payload]`, by the chosen member, replayed by the auditor after the
/// court's setup (`setup`, signed once): every payload decoder, the key
/// registry and every case-fund rule, with the state the earlier records
/// left. The signatures are handed to the auditor as checked
/// (`CheckedSignature`): the target is about the rules, and skipping the
/// curve arithmetic makes it about a hundred times faster.
pub fn records(fixture: &Fixture, setup: &[Record], data: &[u8]) {
    let keys: Vec<PublicKey> = fixture
        .members
        .iter()
        .map(|(identity, _, _)| identity.public_key())
        .chain([fixture.node.public_key(), fixture.co_admin.public_key()])
        .collect();
    let mut records: Vec<(Record, PublicKey)> = setup
        .iter()
        .map(|record| {
            let key = keys
                .iter()
                .find(|key| key.key_id() == record.signer)
                .expect("a fixture key");
            (record.clone(), *key)
        })
        .collect();
    let mut rest = data;
    while rest.len() >= 4 && records.len() < 64 {
        let kind = KINDS[usize::from(rest[0]) % KINDS.len()];
        let key = keys[usize::from(rest[1]) % keys.len()];
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        // The payload, then its disclosures, each after a NUL byte (JSON
        // text never holds a raw NUL).
        let mut parts = rest[4..4 + length].split(|b| *b == 0);
        let payload = parts.next().unwrap_or_default().to_vec();
        let disclosures = parts.map(|d| String::from_utf8_lossy(d).into_owned()).collect();
        rest = &rest[4 + length..];
        let record = Record {
            kind,
            signer: key.key_id(),
            payload,
            signature: Signature::from_bytes(&[0; 64]),
            disclosures,
        };
        records.push((record, key));
    }
    let mut auditor = Auditor::new(fixture.node.public_key());
    let mut prev_hash = [0u8; 32];
    for (seq, (record, key)) in records.into_iter().enumerate() {
        let disclosures = record.disclosures.clone();
        let entry = Entry {
            seq: seq as u64,
            timestamp_ms: 1_795_190_400_000 + seq as u64 * 60_000,
            prev_hash,
            record,
        };
        let bytes = entry.encode();
        prev_hash = Entry::hash_of(&bytes);
        // Only a refused genesis stops a sound chain's replay.
        let checked = caseledger_verify::audit::CheckedSignature { key, valid: true };
        if auditor
            .push_checked_entry(seq as u64, &bytes, disclosures, Some(checked))
            .is_none()
            || auditor.failed()
        {
            break;
        }
    }
    let report = auditor.finish();
    assert!(report.violations.len() as u64 <= report.violations_total);
    if let Some(error) = &report.first_error {
        assert_eq!(error.check, "genesis", "{error:?}");
    }
}

/// A checkpoint note from outside, opened with the node's verifier.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let node = Identity::from_seed([1; 32]);
    let verifier = note::Verifier::new(ORIGIN, node.public_key()).expect("verifier");
    let _ = Checkpoint::origin_of(text);
    if let Ok(checkpoint) = Checkpoint::open(text, &verifier) {
        assert_eq!(checkpoint.origin, ORIGIN);
    }
    let _ = note::open(text, &[verifier]);
    let _ = note::Verifier::parse(text);
    let _ = PublicKey::parse_any(text);
}

/// A proof bundle or an applicant bundle from outside, checked with the
/// node key.
pub fn bundle(data: &[u8]) {
    let node = Identity::from_seed([1; 32]).public_key();
    if let Ok(bundle) = serde_json::from_slice::<ProofBundle>(data) {
        let _ = bundle.verify(&node);
    }
    if let Ok(bundle) = serde_json::from_slice::<ApplicantBundle>(data) {
        let _ = bundle.verify(&node);
    }
}

/// Export lines, and a whole export audited.
pub fn export(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(parsed) = ExportLine::parse(line) {
            assert_eq!(ExportLine::parse(&parsed.to_json()).ok(), Some(parsed));
        }
    }
    let node = Identity::from_seed([1; 32]).public_key();
    let report = audit_export(text.lines(), node);
    assert!(report.violations.len() as u64 <= report.violations_total);
}

/// Signed-request headers from outside: `Signature-Input`, `Signature`,
/// `Content-Digest`, path, query and body, separated by 0x00 bytes.
pub fn request_signature(data: &[u8]) {
    use super::httpsig::{check, NonceCache, RequestParts};
    let mut fields = data.split(|b| *b == 0);
    let mut next = || fields.next().map(|f| String::from_utf8_lossy(f).into_owned());
    let (input, signature, digest, path, query, body) = (next(), next(), next(), next(), next(), next());
    let body = body.unwrap_or_default();
    let path = path.unwrap_or_else(|| "/v1/records".into());
    let key = Identity::from_seed([3; 32]).public_key();
    let parts = RequestParts {
        method: "POST",
        authority: "court.example",
        path: &path,
        query: query.as_deref().filter(|q| !q.is_empty()),
        content_digest: digest.as_deref(),
    };
    let lookup = |id: &KeyId| (*id == key.key_id()).then_some(key);
    if let Ok(unverified) = check(
        &parts,
        body.as_bytes(),
        input.as_deref(),
        signature.as_deref(),
        1_764_115_200,
        lookup,
    ) {
        let holds = unverified.holds();
        let verified = unverified.verify(&NonceCache::default(), 1_764_115_200);
        assert_eq!(holds, verified.is_ok());
    }
    let _ = Signature::from_slice(data.get(..64).unwrap_or_default());
}
