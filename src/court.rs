//! The demo court's staff and record builders: member enrolment, policy,
//! and one function per record kind. Used by `caseledger demo`, the tests
//! and benches (and `sign` by the command-line client), not by the service.

use crate::conceal::{conceal_payload, Concealing};
use caseledger_keys::Identity;
use caseledger_verify::disclosure::{
    conceal, derived_salt, member_reference, readable_payload, Concealed, Reader, UNDISCLOSED_PREFIX,
};
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use caseledger_verify::record::{self, KeyCoSigned, KeyRegistered, KeyText};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use sha2::Sha256;

use crate::commitments::{commitment, mask, COMMITMENT_ACCOUNT, COMMITMENT_PHONE};

/// Signs a case-fund payload.
pub fn sign<T: Serialize>(origin: &str, kind: u16, payload: &T, identity: &Identity) -> Record {
    Record::sign(
        origin,
        kind,
        serde_json::to_vec(payload).expect("payloads serialise"),
        identity,
    )
}

// ---- concealed values (docs/FORMAT.md §3j) ----
//
// The builders write records as the rules read them and conceal them here,
// with salts derived from what they conceal (`derived_salt`): the same
// member id always gets the same reference, and a fixture builds the same
// records twice. A court's client draws its salts at random.

/// The reference of the demo or test member `member_id` (its salt derived
/// from the member id); a reader's `sd:<digest>` is taken as it is.
pub fn reference_of(member_id: &str) -> Concealed {
    match member_id.strip_prefix(UNDISCLOSED_PREFIX) {
        Some(digest) => Concealed::new(digest.to_owned()),
        None => Concealed::new(member_reference(&derived_salt(&["member", member_id]), member_id)),
    }
}

fn phone_salt(member_id: &str, phone_masked: &str, public_key: &str) -> String {
    derived_salt(&["member-phone", member_id, phone_masked, public_key])
}

/// `payload` (as the rules read it) signed as a record of `kind`: the
/// values §3j conceals concealed, their disclosures beside the record.
/// Kinds without concealed values are signed as they are.
pub fn sign_revealed<T: Serialize>(origin: &str, kind: u16, payload: &T, identity: &Identity) -> Record {
    let mut value = serde_json::to_value(payload).expect("payloads serialise");
    let mut salt = |which: Concealing| match which {
        Concealing::MemberId(id) => derived_salt(&["member", id]),
        Concealing::MemberPhone {
            member_id,
            masked,
            public_key,
        } => phone_salt(member_id, masked, public_key),
        Concealing::Applicant { case_number, index } => {
            derived_salt(&[origin, case_number, "applicant", &index.to_string()])
        }
        Concealing::Respondent { case_number, index } => {
            derived_salt(&[origin, case_number, "respondent", &index.to_string()])
        }
        Concealing::Reason { request_id } => derived_salt(&[origin, "reason", request_id]),
    };
    let disclosures = conceal_payload(kind, &mut value, &mut salt, &|id| Some(reference_of(id)))
        .expect("the demo's members are named by their demo references");
    sign(origin, kind, &value, identity).with_disclosures(disclosures)
}

/// A record's payload as the rules read it: its concealed values revealed
/// by its disclosures, member references left as `sd:<digest>` (tests
/// change a record this way and sign it again with [`sign_revealed`]).
pub fn revealed<T: serde::de::DeserializeOwned>(record: &Record) -> T {
    let unresolved = |digest: &str| Some(format!("{UNDISCLOSED_PREFIX}{digest}"));
    let reader = Reader::Rules { members: &unresolved };
    let payload = readable_payload(record.kind, &record.payload, &record.disclosures, reader)
        .expect("the record's disclosures reveal it")
        .unwrap_or_else(|| record.payload.clone());
    serde_json::from_slice(&payload).expect("a payload as the rules read it")
}

/// A court member with a key.
#[derive(Clone, Debug)]
pub struct Person {
    pub identity: Identity,
    pub member_id: String,
    pub name: String,
    pub role: Role,
    pub phone: String,
}

impl Person {
    pub fn new(seed: [u8; 32], member_id: &str, name: &str, role: Role, phone: &str) -> Self {
        Self {
            identity: Identity::from_seed(seed),
            member_id: member_id.to_owned(),
            name: name.to_owned(),
            role,
            phone: phone.to_owned(),
        }
    }

    /// The member's reference: how records other than the registration
    /// name them (the digest of their member id's disclosure).
    pub fn reference(&self) -> Concealed {
        reference_of(&self.member_id)
    }

    /// The member fields as the rules read them: the phone masked, its
    /// commitment left to the node, with the digests that conceal them.
    pub fn member(&self) -> Member {
        let phone_masked = mask(&self.phone);
        Member {
            member_id: self.member_id.clone(),
            role: self.role,
            phone_commitment: String::new(),
            member_ref: self.reference().digest,
            phone_ref: conceal(
                &phone_salt(&self.member_id, &phone_masked, &self.identity.public_key().to_base64()),
                &phone_masked,
            )
            .0
            .digest,
            phone_masked,
        }
    }

    /// The administrator's enrolment record (member id and masked phone
    /// concealed, their disclosures beside it), and the phone in clear as
    /// the administrator's request gives it.
    pub fn enrolment_request(&self, origin: &str, administrator: &Identity) -> (Record, Vec<String>) {
        (
            sign_revealed(origin, record::KIND_KEY_REGISTERED, &self.registration(), administrator),
            vec![self.phone.clone()],
        )
    }

    /// What the administrator's `key_registered` names.
    pub fn registration(&self) -> KeyRegistered {
        KeyRegistered {
            name: self.name.clone(),
            public_key: KeyText::from_key(&self.identity.public_key()),
            administrator: self.role == Role::Administrator,
            member: Some(self.member()),
        }
    }

    /// A second person's co-signature of this person's key registration,
    /// signed by `co_signer` (another administrator or a court leader).
    pub fn co_signature(&self, origin: &str, co_signer: &Identity) -> Record {
        let payload = KeyCoSigned::of(&self.registration()).expect("a valid key");
        sign(origin, record::KIND_KEY_CO_SIGNED, &payload, co_signer)
    }

    /// [`Person::co_signature`] as the co-signer's request gives it: with
    /// the phone number from the staff list in clear, which the node checks
    /// against the enrolment's commitment.
    pub fn co_signature_request(&self, origin: &str, co_signer: &Identity) -> (Record, Vec<String>) {
        (self.co_signature(origin, co_signer), vec![self.phone.clone()])
    }
}

/// What [`Staff::setup_requests`] gives each person to send, in order.
#[derive(Clone, Debug)]
pub struct SetupRequests {
    /// The administrator's: every member's enrolment (phone in clear),
    /// then the policy proposal.
    pub administrator: Vec<(Record, Vec<String>)>,
    /// The second administrator's co-signature of every enrolment, each
    /// with the member's phone in clear for the node to check.
    pub co_administrator: Vec<(Record, Vec<String>)>,
    /// The court leader's co-signature that puts the policy in force.
    pub court_leader: Record,
}

/// The example policy of the case-fund issue: below ¥100,000 bureau head →
/// finance; from ¥100,000 fund manager → bureau head → court leader → finance.
pub fn example_policy(request_id: &str, version: u32) -> PolicySet {
    PolicySet {
        request_id: request_id.to_owned(),
        version,
        tiers: vec![
            Tier {
                from_fen: 0,
                chain: vec![Role::BureauHead, Role::Finance],
            },
            Tier {
                from_fen: 10_000_000,
                chain: vec![Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance],
            },
        ],
        deadline_days: 30,
        near_due_days: 5,
        unidentified_claim_days: 3,
        amount_max_fen: 10_000_000_000,
        sms_confirmation_required: false,
        split_window_days: SPLIT_WINDOW_DAYS_DEFAULT,
        booking_days: BOOKING_DAYS_DEFAULT,
        delay_days_max: DELAY_DAYS_MAX_DEFAULT,
    }
}

/// A court's staff with deterministic keys: for the demo and the tests.
#[derive(Clone, Debug)]
pub struct Staff {
    /// The origin of the ledger the staff's records are signed for.
    pub origin: String,
    /// The court's commitment key (derived from the seed: demo only).
    pub commitment_key: [u8; 32],
    /// The node key that signs the node's records the fixtures build (its
    /// commitments to numbers given in clear): the tests' node key (seed
    /// 1) unless [`Staff::with_node`] says otherwise.
    pub node: Identity,
    pub administrator: Person,
    /// The second administrator named in the genesis entry: co-signs the
    /// administrator's key registrations (no key signs on one person's word).
    pub co_administrator: Person,
    /// 立案庭: opens cases.
    pub filing_clerk: Person,
    pub officers: Vec<Person>,
    pub fund_manager: Person,
    pub bureau_head: Person,
    pub court_leader: Person,
    pub finance: Person,
}

impl Staff {
    /// The demo court's staff, their keys derived from `seed`, signing
    /// for the ledger named `origin`.
    pub fn from_seed(seed: u64, origin: &str) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let commitment_key = rng.gen();
        let mut person = |id: &str, name: &str, role: Role, phone: &str| Person::new(rng.gen(), id, name, role, phone);
        Self {
            origin: origin.to_owned(),
            commitment_key,
            node: Identity::from_seed([1; 32]),
            administrator: person("admin-1", "系统管理员", Role::Administrator, "13800000001"),
            filing_clerk: person("clerk-1", "郑立案", Role::FilingClerk, "13800000071"),
            officers: vec![
                person("officer-1", "王承办", Role::Officer, "13800000011"),
                person("officer-2", "李承办", Role::Officer, "13800000012"),
                person("officer-3", "赵承办", Role::Officer, "13800000013"),
            ],
            fund_manager: person("fund-1", "钱案款", Role::FundManager, "13800000021"),
            bureau_head: person("head-1", "孙局长", Role::BureauHead, "13800000031"),
            court_leader: person("leader-1", "周院长", Role::CourtLeader, "13800000041"),
            finance: person("finance-1", "吴财务", Role::Finance, "13800000051"),
            // Drawn last, so that the other keys of a seed stay as they were.
            co_administrator: person("admin-2", "陈管理员", Role::Administrator, "13800000002"),
        }
    }

    /// The same staff, with the node key `node` for the node's records.
    pub fn with_node(mut self, node: Identity) -> Self {
        self.node = node;
        self
    }

    /// The genesis entry's administrators: the administrator and the second
    /// administrator who co-signs their registrations.
    pub fn genesis_administrators(&self) -> Vec<(String, caseledger_keys::PublicKey)> {
        [&self.administrator, &self.co_administrator]
            .iter()
            .map(|p| (p.name.clone(), p.identity.public_key()))
            .collect()
    }

    /// Everyone but the two administrators named in the genesis entry.
    pub fn members(&self) -> Vec<&Person> {
        let mut all: Vec<&Person> = vec![&self.filing_clerk];
        all.extend(self.officers.iter());
        all.extend([&self.fund_manager, &self.bureau_head, &self.court_leader, &self.finance]);
        all
    }

    pub fn by_role(&self, role: Role) -> &Person {
        match role {
            Role::FilingClerk => &self.filing_clerk,
            Role::Officer => &self.officers[0],
            Role::FundManager => &self.fund_manager,
            Role::BureauHead => &self.bureau_head,
            Role::CourtLeader => &self.court_leader,
            Role::Finance => &self.finance,
            Role::Auditor | Role::Administrator => &self.administrator,
        }
    }

    /// The administrator's enrolment of every member, then the example policy.
    pub fn setup_records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.members().iter().flat_map(|p| self.enrol(p)).collect();
        records.extend(self.policy_records(&example_policy("policy-1", 1)));
        records
    }

    /// [`Staff::setup_records`] as requests to the service, by who sends them.
    pub fn setup_requests(&self) -> SetupRequests {
        let mut administrator: Vec<(Record, Vec<String>)> = self
            .members()
            .iter()
            .map(|p| p.enrolment_request(&self.origin, &self.administrator.identity))
            .collect();
        let co_administrator = self
            .members()
            .iter()
            .map(|p| p.co_signature_request(&self.origin, &self.co_administrator.identity))
            .collect();
        let mut policy = self.policy_records(&example_policy("policy-1", 1));
        let court_leader = policy.pop().expect("the court leader's co-signature");
        administrator.extend(policy.into_iter().map(|r| (r, Vec::new())));
        SetupRequests {
            administrator,
            co_administrator,
            court_leader,
        }
    }

    /// `person` enrolled by the administrator as the service writes it: the
    /// node's commitment to their phone, the registration, and the second
    /// administrator's co-signature.
    pub fn enrol(&self, person: &Person) -> Vec<Record> {
        let (record, phone) = person.enrolment_request(&self.origin, &self.administrator.identity);
        let mut records = self.committed(record, COMMITMENT_PHONE, &phone);
        records.extend(self.co_signed(person, &self.co_administrator.identity));
        records
    }

    /// `co_signer`'s co-signature of `person`'s registration as the service
    /// writes it: the node's commitment to the phone number the co-signer
    /// gave in clear, then the co-signature (rule `co_signature_phone`).
    pub fn co_signed(&self, person: &Person, co_signer: &Identity) -> Vec<Record> {
        self.committed(
            person.co_signature(&self.origin, co_signer),
            COMMITMENT_PHONE,
            std::slice::from_ref(&person.phone),
        )
    }

    /// `record` preceded by the node's commitments to `numbers` (each of
    /// `purpose`), as the service writes a record whose request gave them
    /// in clear (docs/FORMAT.md §3c).
    pub fn committed(&self, record: Record, purpose: &str, numbers: &[String]) -> Vec<Record> {
        let record_sha256 = hex::encode(<Sha256 as sha2::Digest>::digest(&record.payload));
        let commitments: Vec<String> = numbers
            .iter()
            .map(|n| commitment(&self.commitment_key, purpose, n))
            .collect();
        // One request id per record and numbers: the same record may be
        // tried with other numbers (a co-signature with another phone).
        let request = <Sha256 as sha2::Digest>::digest(format!("{record_sha256}/{}", commitments.join("/")));
        let payload = NumbersCommitted {
            request_id: format!("numbers-{}", &hex::encode(request)[..32]),
            record_sha256,
            commitments,
        };
        vec![sign(&self.origin, KIND_NUMBERS_COMMITTED, &payload, &self.node), record]
    }

    /// `policy` proposed by the administrator and put in force by the court
    /// leader's co-signature.
    pub fn policy_records(&self, policy: &PolicySet) -> Vec<Record> {
        let proposal = sign(&self.origin, KIND_POLICY_SET, policy, &self.administrator.identity);
        let approved = PolicyApproved {
            request_id: format!("{}-approved", policy.request_id),
            version: policy.version,
            proposal_sha256: hex::encode(<Sha256 as sha2::Digest>::digest(&proposal.payload)),
        };
        vec![
            proposal,
            sign(
                &self.origin,
                KIND_POLICY_APPROVED,
                &approved,
                &self.court_leader.identity,
            ),
        ]
    }
}

/// Builders for one case's records, all by the case's officer unless noted.
pub struct CaseRecords<'a> {
    pub staff: &'a Staff,
    pub officer: &'a Person,
    pub case_number: String,
    /// The policy version requests name (1, the example policy, unless
    /// [`CaseRecords::under_policy`] says otherwise).
    pub policy_version: u32,
}

impl<'a> CaseRecords<'a> {
    pub fn new(staff: &'a Staff, officer: &'a Person, case_number: &str) -> Self {
        Self {
            staff,
            officer,
            case_number: case_number.to_owned(),
            policy_version: 1,
        }
    }

    /// Requests name policy `version` (the one in force when they are made).
    pub fn under_policy(mut self, version: u32) -> Self {
        self.policy_version = version;
        self
    }

    fn id(&self, what: &str) -> String {
        format!("{}-{what}", self.case_number.replace(['(', ')', '（', '）'], ""))
    }

    /// Applicant `n`'s phone number.
    pub fn applicant_phone(n: u32) -> String {
        format!("139{n:08}")
    }

    /// Applicant `n` as the filing clerk names them (the phone masked; its
    /// commitment is the node's).
    pub fn applicant(&self, n: u32) -> Applicant {
        Applicant {
            applicant_id: format!("applicant-{n}"),
            name: format!("申请人{n}"),
            phone_masked: mask(&Self::applicant_phone(n)),
            phone_commitment: String::new(),
        }
    }

    /// The filing clerk's `case_opened` naming `applicants` applicants and
    /// the case's officer, and the applicants' phones in clear as the
    /// clerk's request gives them.
    pub fn open_request(&self, applicants: u32) -> (Record, Vec<String>) {
        let payload = CaseOpened {
            request_id: self.id("open"),
            case_number: self.case_number.clone(),
            applicants: (1..=applicants).map(|n| self.applicant(n)).collect(),
            respondents: vec!["被执行人公司".into()],
            officer_member_id: self.officer.member_id.clone(),
        };
        let record = sign_revealed(
            &self.staff.origin,
            KIND_CASE_OPENED,
            &payload,
            &self.staff.filing_clerk.identity,
        );
        (record, (1..=applicants).map(Self::applicant_phone).collect())
    }

    /// The case opened as the service writes it: the node's commitments to
    /// the applicants' phones, then the filing clerk's `case_opened`.
    pub fn open(&self, applicants: u32) -> Vec<Record> {
        let (record, phones) = self.open_request(applicants);
        self.staff.committed(record, COMMITMENT_PHONE, &phones)
    }

    /// Applicant `n`'s phone confirmed by the code sent to it, as the
    /// service records it: the node's commitment to `code`, the provider's
    /// acceptance, and the node's record of the code the applicant entered
    /// (docs/FORMAT.md §3c); `ids` make the request ids.
    pub fn phone_confirmation(
        &self,
        n: u32,
        code: &str,
        salt: &str,
        ids: &[String; 2],
        expires_ms: u64,
    ) -> Vec<Record> {
        let mut applicant = self.applicant(n);
        applicant.phone_commitment =
            commitment(&self.staff.commitment_key, COMMITMENT_PHONE, &Self::applicant_phone(n));
        let challenge = PhoneChallenge {
            request_id: format!("phone-challenge-{}", ids[0]),
            case_number: self.case_number.clone(),
            applicant_id: applicant.applicant_id.clone(),
            commitment: phone_code_commitment(
                salt,
                code,
                &phone_binding(&self.staff.origin, &self.case_number, &applicant),
            ),
            expires_ms,
        };
        let confirmed = PhoneConfirmed {
            request_id: format!("phone-confirmed-{}", ids[1]),
            case_number: self.case_number.clone(),
            applicant_id: applicant.applicant_id,
            sms: SmsReveal {
                code: code.to_owned(),
                salt: salt.to_owned(),
            },
        };
        let node = &self.staff.node;
        vec![
            sign(&self.staff.origin, KIND_PHONE_CHALLENGE, &challenge, node),
            sign(
                &self.staff.origin,
                KIND_SMS_SENT,
                &sms_sent(&challenge.request_id),
                node,
            ),
            sign(&self.staff.origin, KIND_PHONE_CONFIRMED, &confirmed, node),
        ]
    }

    /// [`CaseRecords::phone_confirmation`] of applicants 1 to `n` with
    /// fixed codes, for ledgers whose policy requires SMS.
    pub fn phones_confirmed(&self, n: u32, expires_ms: u64) -> Vec<Record> {
        (1..=n)
            .flat_map(|k| {
                let ids = [
                    format!("{}-{k}-c", self.id("phone")),
                    format!("{}-{k}-r", self.id("phone")),
                ];
                self.phone_confirmation(
                    k,
                    &format!("{:06}", 100_000 + k),
                    &format!("{:032x}", k),
                    &ids,
                    expires_ms,
                )
            })
            .collect()
    }

    /// The officer's `account_registered` for applicant `applicant` (the
    /// number masked), and the number in clear as the request gives it.
    pub fn account_request(&self, account_id: &str, applicant: u32, number: &str) -> (Record, Vec<String>) {
        let payload = AccountRegistered {
            request_id: self.id(&format!("account-{account_id}")),
            account_id: account_id.to_owned(),
            case_number: self.case_number.clone(),
            applicant_id: format!("applicant-{applicant}"),
            bank: "中国工商银行无锡分行".into(),
            account_name: format!("申请人{applicant}"),
            account_number_masked: mask(number),
            account_number_commitment: String::new(),
        };
        let record = sign(
            &self.staff.origin,
            KIND_ACCOUNT_REGISTERED,
            &payload,
            &self.officer.identity,
        );
        (record, vec![number.to_owned()])
    }

    /// The account registered as the service writes it: the node's
    /// commitment to the number, then the officer's record.
    pub fn account(&self, account_id: &str, applicant: u32, number: &str) -> Vec<Record> {
        let (record, number) = self.account_request(account_id, applicant, number);
        self.staff.committed(record, COMMITMENT_ACCOUNT, &number)
    }

    pub fn confirm(&self, account_id: &str) -> Record {
        let payload = AccountConfirmed {
            request_id: self.id(&format!("confirm-{account_id}")),
            account_id: account_id.to_owned(),
            sms: None,
            confirmation: Some(format!("in-person-confirmation-{account_id}")),
        };
        sign(
            &self.staff.origin,
            KIND_ACCOUNT_CONFIRMED,
            &payload,
            &self.officer.identity,
        )
    }

    /// A transfer for the case with value date 2026-11-20 (the tests'
    /// clock starts the day after).
    pub fn receipt(&self, reference: &str, amount_fen: u64) -> Record {
        self.receipt_on(reference, amount_fen, "2026-11-20")
    }

    /// A transfer for the case that arrived on `value_date` (`YYYY-MM-DD`).
    pub fn receipt_on(&self, reference: &str, amount_fen: u64, value_date: &str) -> Record {
        let payload = ReceiptRecorded {
            request_id: format!("receipt-{reference}"),
            bank_reference: reference.to_owned(),
            amount_fen,
            payer: "被执行人公司".into(),
            value_date: value_date.to_owned(),
            channel: Channel::Transfer,
            case_number: Some(self.case_number.clone()),
        };
        sign(
            &self.staff.origin,
            KIND_RECEIPT_RECORDED,
            &payload,
            &self.staff.finance.identity,
        )
    }

    /// Finance's record of money that arrived on `value_date` without a
    /// case it could be matched to (an unidentified receipt).
    pub fn unidentified_receipt(&self, reference: &str, amount_fen: u64, value_date: &str) -> Record {
        let mut payload: ReceiptRecorded =
            serde_json::from_slice(&self.receipt_on(reference, amount_fen, value_date).payload).expect("json");
        payload.case_number = None;
        sign(
            &self.staff.origin,
            KIND_RECEIPT_RECORDED,
            &payload,
            &self.staff.finance.identity,
        )
    }

    /// `by`'s claim of the unidentified receipt `reference` for the case
    /// (the case's officer or the fund manager).
    pub fn claim(&self, reference: &str, by: &Person) -> Record {
        let payload = ReceiptClaimed {
            request_id: format!("claim-{reference}"),
            bank_reference: reference.to_owned(),
            case_number: self.case_number.clone(),
        };
        sign(&self.staff.origin, KIND_RECEIPT_CLAIMED, &payload, &by.identity)
    }

    /// `by`'s decision on the claim of `reference` for the case.
    pub fn claim_decided(&self, reference: &str, decision: Decision, by: &Person) -> Record {
        let payload = ReceiptClaimDecided {
            request_id: format!("claim-decided-{reference}"),
            bank_reference: reference.to_owned(),
            case_number: self.case_number.clone(),
            decision,
        };
        sign(&self.staff.origin, KIND_RECEIPT_CLAIM_DECIDED, &payload, &by.identity)
    }

    pub fn request(&self, disbursement_id: &str, account_id: &str, amount_fen: u64) -> Record {
        let payload = DisbursementRequested {
            request_id: format!("request-{disbursement_id}"),
            disbursement_id: disbursement_id.to_owned(),
            case_number: self.case_number.clone(),
            account_id: account_id.to_owned(),
            amount_fen,
            reason: "执行款发放".into(),
            policy_version: self.policy_version,
        };
        sign_revealed(
            &self.staff.origin,
            KIND_DISBURSEMENT_REQUESTED,
            &payload,
            &self.officer.identity,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn approval(
        &self,
        origin: &str,
        disbursement_id: &str,
        account_id: &str,
        amount_fen: u64,
        step: u32,
        role: Role,
        decision: Decision,
        signer: &Person,
    ) -> Record {
        let payload = ApprovalSigned {
            // Told apart by signer without naming them (§3j).
            request_id: format!("approve-{disbursement_id}-{step}-{}", &signer.reference().digest[..12]),
            origin: origin.to_owned(),
            disbursement_id: disbursement_id.to_owned(),
            case_number: self.case_number.clone(),
            amount_fen,
            account_id: account_id.to_owned(),
            step,
            role,
            decision,
            sms_code: None,
        };
        sign(&self.staff.origin, KIND_APPROVAL_SIGNED, &payload, &signer.identity)
    }

    /// Every approval of `chain`, each by the staff member holding the role.
    pub fn approvals(
        &self,
        origin: &str,
        disbursement_id: &str,
        account_id: &str,
        amount_fen: u64,
        chain: &[Role],
    ) -> Vec<Record> {
        chain
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let signer = self.staff.by_role(*role);
                self.approval(
                    origin,
                    disbursement_id,
                    account_id,
                    amount_fen,
                    i as u32 + 1,
                    *role,
                    Decision::Approve,
                    signer,
                )
            })
            .collect()
    }

    /// A verification code for applicant `n` drawn by the node at the
    /// officer's request, and the node's record issuing it.
    pub fn applicant_code(&self, applicant: u32) -> (String, Record) {
        let code = caseledger_verify::funds::applicant_code::from_random(rand::random());
        let payload = ApplicantCodeIssued {
            request_id: format!("code-{}", hex::encode(rand::random::<[u8; 8]>())),
            case_number: self.case_number.clone(),
            applicant_id: format!("applicant-{applicant}"),
            code_hash: applicant_code_hash(&code),
            requested_by: self.officer.member_id.clone(),
            expires_ms: None,
        };
        (
            code,
            sign_revealed(
                &self.staff.origin,
                KIND_APPLICANT_CODE_ISSUED,
                &payload,
                &self.staff.node,
            ),
        )
    }

    pub fn payment(&self, disbursement_id: &str, reference: &str, account_id: &str, amount_fen: u64) -> Record {
        let payload = DisbursementPaid {
            request_id: format!("pay-{disbursement_id}-{reference}"),
            disbursement_id: disbursement_id.to_owned(),
            bank_reference: reference.to_owned(),
            amount_fen,
            account_id: account_id.to_owned(),
        };
        sign(
            &self.staff.origin,
            KIND_DISBURSEMENT_PAID,
            &payload,
            &self.staff.finance.identity,
        )
    }
}

/// The records of case number `n` (1-based), in order; the node's records
/// are signed with `staff.node`.
/// Every approval step goes through the SMS path: a node-signed commitment
/// to a code, then the step revealing it (the demo plays the phone).
/// Requests name `policy_version`, the policy in force.
pub fn demo_case_history(staff: &Staff, origin: &str, n: u64, seed: u64, policy_version: u32) -> Vec<Record> {
    let node = &staff.node;
    let expires_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        + 3_600_000;
    let mut rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let officer = &staff.officers[(n % staff.officers.len() as u64) as usize];
    let case_number = format!("(2025)苏02执{n}号");
    let case = CaseRecords::new(staff, officer, &case_number).under_policy(policy_version);
    let account = format!("A{n}");
    let registered = case.account(
        &account,
        1,
        &format!("62220{:014}", rng.gen_range(0..100_000_000_000_000u64)),
    );
    // The applicant confirms the account with the code sent to their phone.
    let code = format!("{:06}", rng.gen_range(0..1_000_000u32));
    let salt = hex::encode(rng.gen::<[u8; 16]>());
    let ids: [String; 2] = [0, 1].map(|_| hex::encode(rng.gen::<[u8; 16]>()));
    let confirmation = account_confirmation(node, origin, &registered, &code, &salt, &ids, expires_ms);
    let applicants = 1 + (n % 2) as u32;
    let mut records = case.open(applicants);
    // Each applicant confirms their phone with the code sent to it.
    for k in 1..=applicants {
        let code = format!("{:06}", rng.gen_range(0..1_000_000u32));
        let salt = hex::encode(rng.gen::<[u8; 16]>());
        let ids: [String; 2] = [0, 1].map(|_| hex::encode(rng.gen::<[u8; 16]>()));
        records.extend(case.phone_confirmation(k, &code, &salt, &ids, expires_ms));
    }
    records.extend(registered);
    records.extend(confirmation);
    let mut total = 0;
    for k in 1..=rng.gen_range(1..=3) {
        let amount = rng.gen_range(1_000_000..30_000_000u64);
        total += amount;
        let reference = format!("B{n}-{k}");
        if n % 10 == 5 && k == 1 {
            // Money that came without a case: the officer claims it, the
            // fund manager (a second person) approves the claim.
            records.push(case.unidentified_receipt(&reference, amount, &today_cst()));
            records.push(case.claim(&reference, officer));
            records.push(case.claim_decided(&reference, Decision::Approve, &staff.fund_manager));
            continue;
        }
        // Booked the day the money arrives, as finance does.
        records.push(case.receipt_on(&reference, amount, &today_cst()));
    }
    if n % 10 == 9 {
        return records; // money still held: shows in the deadline views
    }
    let amount = total * rng.gen_range(50..=100) / 100;
    let disbursement = format!("D{n}");
    records.push(case.request(&disbursement, &account, amount));
    let chain = if amount >= 10_000_000 {
        vec![Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance]
    } else {
        vec![Role::BureauHead, Role::Finance]
    };
    let mut confirmed = |step: u32, decision: Decision| {
        let role = chain[step as usize - 1];
        let signer = staff.by_role(role);
        let statement = StepStatement {
            origin,
            disbursement_id: &disbursement,
            case_number: &case.case_number,
            amount_fen: amount,
            account_id: &account,
            step,
            role,
            member_id: &signer.member_id,
        };
        let code = format!("{:06}", rng.gen_range(0..1_000_000u32));
        let salt = hex::encode(rng.gen::<[u8; 16]>());
        let ids: [String; 2] = [0, 1].map(|_| hex::encode(rng.gen::<[u8; 16]>()));
        let mut records = sms_challenge(node, &statement, &code, &salt, &ids[0], expires_ms);
        let approval = case.approval(origin, &disbursement, &account, amount, step, role, decision, signer);
        let mut payload: ApprovalSigned = serde_json::from_slice(&approval.payload).expect("json");
        payload.sms_code = Some(code.clone());
        let approval = sign(origin, KIND_APPROVAL_SIGNED, &payload, &signer.identity);
        records.push(sms_code_revealed(node, &statement, &code, &salt, &ids[1], &approval));
        records.push(approval);
        records
    };
    match n % 10 {
        7 => return records, // awaiting its first step
        8 => {
            records.extend(confirmed(1, Decision::Reject));
            return records;
        }
        _ => {}
    }
    for step in 1..=chain.len() as u32 {
        records.extend(confirmed(step, Decision::Approve));
    }
    if n % 10 != 6 {
        records.push(case.payment(&disbursement, &format!("P{n}"), &account, amount));
    }
    records
}

/// Today's date in China Standard Time, `YYYY-MM-DD`.
pub fn today_cst() -> String {
    crate::date_cst(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// The node's commitment to `code` for `statement`, as the service records
/// it before sending the code (docs/FORMAT.md §3c); `id` makes its request
/// id (random in the service).
pub fn sms_challenge(
    node: &Identity,
    statement: &StepStatement,
    code: &str,
    salt: &str,
    id: &str,
    expires_ms: u64,
) -> Vec<Record> {
    let payload = SmsChallenge {
        request_id: format!("challenge-{id}"),
        disbursement_id: statement.disbursement_id.to_owned(),
        step: statement.step,
        member_id: statement.member_id.to_owned(),
        commitment: sms_commitment(salt, code, &statement.binding()),
        expires_ms,
    };
    let sent = sms_sent(&payload.request_id);
    vec![
        sign(statement.origin, KIND_SMS_CHALLENGE, &payload, node),
        sign(statement.origin, KIND_SMS_SENT, &sent, node),
    ]
}

/// The node's opening of its commitment to `code` for `statement`, as the
/// service writes it right before the approver's step `approval`.
pub fn sms_code_revealed(
    node: &Identity,
    statement: &StepStatement,
    code: &str,
    salt: &str,
    id: &str,
    approval: &Record,
) -> Record {
    let reveal = SmsCodeRevealed {
        request_id: format!("code-revealed-{id}"),
        disbursement_id: statement.disbursement_id.to_owned(),
        step: statement.step,
        member_id: statement.member_id.to_owned(),
        code: code.to_owned(),
        salt: salt.to_owned(),
        step_sha256: hex::encode(<Sha256 as sha2::Digest>::digest(&approval.payload)),
    };
    sign(statement.origin, KIND_SMS_CODE_REVEALED, &reveal, node)
}

/// The node's record that the console provider took the code of the
/// challenge `challenge_request_id`.
fn sms_sent(challenge_request_id: &str) -> SmsSent {
    SmsSent {
        request_id: format!("sent-{challenge_request_id}"),
        challenge_request_id: challenge_request_id.to_owned(),
        provider: "console".into(),
        message_id: format!("console-{challenge_request_id}"),
    }
}

/// The applicant's confirmation of the account `registered` (the node's
/// numbers_committed and the account_registered record) by SMS, as the service records it: the node's
/// commitment to `code`, then the node's record of the code the applicant
/// entered (docs/FORMAT.md §3c); `ids` make the two request ids.
pub fn account_confirmation(
    node: &Identity,
    origin: &str,
    registered: &[Record],
    code: &str,
    salt: &str,
    ids: &[String; 2],
    expires_ms: u64,
) -> Vec<Record> {
    let [committed, registered] = registered else {
        panic!("the node's numbers_committed and the account_registered record");
    };
    let mut account: AccountRegistered =
        serde_json::from_slice(&registered.payload).expect("an account_registered record");
    let numbers: NumbersCommitted = serde_json::from_slice(&committed.payload).expect("a numbers_committed record");
    account.account_number_commitment = numbers.commitments[0].clone();
    let state = AccountState::registered(account.clone(), None, 0);
    let challenge = AccountChallenge {
        request_id: format!("account-challenge-{}", ids[0]),
        account_id: account.account_id.clone(),
        commitment: account_code_commitment(salt, code, &account_binding(origin, &state)),
        expires_ms,
    };
    let confirmed = AccountConfirmed {
        request_id: format!("account-confirm-{}", ids[1]),
        account_id: account.account_id,
        sms: Some(SmsReveal {
            code: code.to_owned(),
            salt: salt.to_owned(),
        }),
        confirmation: None,
    };
    vec![
        sign(origin, KIND_ACCOUNT_CHALLENGE, &challenge, node),
        sign(origin, KIND_SMS_SENT, &sms_sent(&challenge.request_id), node),
        sign(origin, KIND_ACCOUNT_CONFIRMED, &confirmed, node),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_in_china_is_a_date_the_rules_parse_back_to_today() {
        let today = today_cst();
        let day = caseledger_verify::funds::parse_date(&today).expect("a date");
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        assert_eq!(day as u64, (ms + 8 * 3_600_000) / DAY_MS, "{today}");
    }
}
