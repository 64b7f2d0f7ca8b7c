//! Case-fund record payloads and the derived objects the rules keep.
//!
//! Money is integer fen (1 yuan = 100 fen) in `u64`. Phone and bank account
//! numbers never enter the ledger in clear: records carry a masked form for
//! people (`****1234`) and a salted SHA-256 commitment that the holder of
//! the number and the salt can check.

use serde::{Deserialize, Serialize};

/// Policy in force (versioned); each disbursement follows the one in force
/// when it was requested.
pub const KIND_POLICY_SET: u16 = 0x0100;
/// A court leader's co-signature of a proposed policy: only then is it in force.
pub const KIND_POLICY_APPROVED: u16 = 0x0101;
pub const KIND_CASE_OPENED: u16 = 0x0110;
pub const KIND_ACCOUNT_REGISTERED: u16 = 0x0120;
pub const KIND_ACCOUNT_CONFIRMED: u16 = 0x0121;
pub const KIND_ACCOUNT_CHANGE_APPROVED: u16 = 0x0122;
/// The node's commitment to the code it sends an applicant to confirm an account.
pub const KIND_ACCOUNT_CHALLENGE: u16 = 0x0123;
/// The node's commitment to the code it sends an applicant's phone to
/// confirm that the number the filing clerk gave reaches them.
pub const KIND_PHONE_CHALLENGE: u16 = 0x0124;
/// The node's record of the code the applicant entered: it opens the
/// commitment; the applicant's phone is confirmed.
pub const KIND_PHONE_CONFIRMED: u16 = 0x0125;
pub const KIND_RECEIPT_RECORDED: u16 = 0x0130;
/// A claim of an unidentified receipt for a case: the money moves only
/// when a second person decides it ([`KIND_RECEIPT_CLAIM_DECIDED`]).
pub const KIND_RECEIPT_CLAIMED: u16 = 0x0131;
/// The second person's decision on a claim: the fund manager's when an
/// officer claimed, the bureau head's when the fund manager claimed.
pub const KIND_RECEIPT_CLAIM_DECIDED: u16 = 0x0132;
pub const KIND_DISBURSEMENT_REQUESTED: u16 = 0x0140;
pub const KIND_APPROVAL_SIGNED: u16 = 0x0141;
pub const KIND_DISBURSEMENT_PAID: u16 = 0x0142;
pub const KIND_PAYMENT_RETURNED: u16 = 0x0143;
pub const KIND_DISBURSEMENT_CANCELLED: u16 = 0x0144;
/// The node's commitment to the SMS code it sends an approver (issue 5).
pub const KIND_SMS_CHALLENGE: u16 = 0x0145;
/// The provider's message id of a code the node sent (after the challenge).
pub const KIND_SMS_SENT: u16 = 0x0146;
/// The node opens its commitment to an approver's code (the salt it kept)
/// in the entry right before the approver's step that carries the code.
pub const KIND_SMS_CODE_REVEALED: u16 = 0x0147;
pub const KIND_DELAY_APPROVED: u16 = 0x0150;
/// The reason for a delay has ended: payment is due within 10 days.
pub const KIND_DELAY_ENDED: u16 = 0x0151;
/// A verification code for an applicant: only its hash enters the ledger.
pub const KIND_APPLICANT_CODE_ISSUED: u16 = 0x0160;
pub const KIND_APPLICANT_CODE_REVOKED: u16 = 0x0161;
/// The node's commitments to the phone or account numbers given in clear in
/// the signed request whose record is the next entry (a case's applicants'
/// phones, an account's number): no member computes a commitment.
pub const KIND_NUMBERS_COMMITTED: u16 = 0x0170;

/// Largest amount of one record before any policy is in force: ¥100 million.
pub const AMOUNT_FEN_MAX_DEFAULT: u64 = 10_000_000_000;
/// Longest client request id, bank reference or object id.
pub const ID_BYTES_MAX: usize = 128;
/// Longest free text (reasons, names).
pub const TEXT_BYTES_MAX: usize = 500;
/// Most applicants, and most respondents, of one case.
pub const PARTIES_MAX: usize = 50;
pub const DAY_MS: u64 = 86_400_000;

pub fn kind_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        KIND_POLICY_SET => "policy_set",
        KIND_POLICY_APPROVED => "policy_approved",
        KIND_CASE_OPENED => "case_opened",
        KIND_ACCOUNT_REGISTERED => "account_registered",
        KIND_ACCOUNT_CONFIRMED => "account_confirmed",
        KIND_ACCOUNT_CHANGE_APPROVED => "account_change_approved",
        KIND_ACCOUNT_CHALLENGE => "account_challenge",
        KIND_PHONE_CHALLENGE => "phone_challenge",
        KIND_PHONE_CONFIRMED => "phone_confirmed",
        KIND_RECEIPT_RECORDED => "receipt_recorded",
        KIND_RECEIPT_CLAIMED => "receipt_claimed",
        KIND_RECEIPT_CLAIM_DECIDED => "receipt_claim_decided",
        KIND_DISBURSEMENT_REQUESTED => "disbursement_requested",
        KIND_APPROVAL_SIGNED => "approval_signed",
        KIND_DISBURSEMENT_PAID => "disbursement_paid",
        KIND_PAYMENT_RETURNED => "payment_returned",
        KIND_DISBURSEMENT_CANCELLED => "disbursement_cancelled",
        KIND_SMS_CHALLENGE => "sms_challenge",
        KIND_SMS_SENT => "sms_sent",
        KIND_SMS_CODE_REVEALED => "sms_code_revealed",
        KIND_DELAY_APPROVED => "delay_approved",
        KIND_DELAY_ENDED => "delay_ended",
        KIND_APPLICANT_CODE_ISSUED => "applicant_code_issued",
        KIND_APPLICANT_CODE_REVOKED => "applicant_code_revoked",
        KIND_NUMBERS_COMMITTED => "numbers_committed",
        _ => return None,
    })
}

pub use crate::member::{Member, Role};

/// One approval chain, for amounts from `from_fen` up to the next tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub from_fen: u64,
    /// The approval steps after the officer's request, in order.
    pub chain: Vec<Role>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    pub request_id: String,
    pub version: u32,
    pub tiers: Vec<Tier>,
    pub deadline_days: u32,
    pub near_due_days: u32,
    pub unidentified_claim_days: u32,
    pub amount_max_fen: u64,
    /// Every approval step must reveal the SMS code committed for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sms_confirmation_required: bool,
    /// A disbursement's tier is chosen from its amount plus every open or
    /// paid disbursement of the same case to the same applicant requested
    /// within this many days before it, so that splitting a payment does
    /// not skip approvers. Absent: [`SPLIT_WINDOW_DAYS_DEFAULT`].
    #[serde(default = "split_window_days_default")]
    pub split_window_days: u32,
    /// Money booked more than this many days after its value date is a
    /// late-booking finding of the audit. Absent: [`BOOKING_DAYS_DEFAULT`].
    #[serde(default = "booking_days_default")]
    pub booking_days: u32,
    /// A delay may set the due date at most this many days after the
    /// delay's own entry. Absent: [`DELAY_DAYS_MAX_DEFAULT`].
    #[serde(default = "delay_days_max_default")]
    pub delay_days_max: u32,
}

/// The default of [`PolicySet::booking_days`]: cash is handed to finance
/// within a day.
pub const BOOKING_DAYS_DEFAULT: u32 = 1;
/// The default of [`PolicySet::delay_days_max`].
pub const DELAY_DAYS_MAX_DEFAULT: u32 = 90;

fn booking_days_default() -> u32 {
    BOOKING_DAYS_DEFAULT
}

fn delay_days_max_default() -> u32 {
    DELAY_DAYS_MAX_DEFAULT
}

/// The default window of [`PolicySet::split_window_days`].
pub const SPLIT_WINDOW_DAYS_DEFAULT: u32 = 30;

fn split_window_days_default() -> u32 {
    SPLIT_WINDOW_DAYS_DEFAULT
}

/// Payload of [`KIND_POLICY_APPROVED`]: a member with role `court_leader`,
/// not the proposer, puts the proposed policy `version` in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyApproved {
    pub request_id: String,
    pub version: u32,
    /// Hex SHA-256 of the proposal's payload bytes: the co-signer approves
    /// exactly the policy they read, not a later proposal of the version.
    pub proposal_sha256: String,
}

/// A proposed policy waiting for its co-signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProposal {
    pub policy: PolicySet,
    /// The proposer's public key (as registered): the co-signer must hold
    /// another key.
    pub proposed_by: String,
    pub proposed_seq: u64,
    /// Hex SHA-256 of the proposal's payload bytes.
    pub proposal_sha256: String,
}

/// Largest `amount_max_fen` a policy may set: ¥100 million a record.
pub const AMOUNT_FEN_MAX_CEILING: u64 = AMOUNT_FEN_MAX_DEFAULT;
/// Longest `deadline_days` a policy may set (法发〔2017〕6号, Art. 10).
pub const DEADLINE_DAYS_MAX: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applicant {
    pub applicant_id: String,
    pub name: String,
    pub phone_masked: String,
    /// Absent from the filing clerk's `case_opened`: filled in from the
    /// node's [`NumbersCommitted`] right before it (in the derived case).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone_commitment: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseOpened {
    pub request_id: String,
    /// e.g. `(2023)苏02执123号`
    pub case_number: String,
    pub applicants: Vec<Applicant>,
    pub respondents: Vec<String>,
    pub officer_member_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRegistered {
    pub request_id: String,
    pub account_id: String,
    pub case_number: String,
    pub applicant_id: String,
    pub bank: String,
    pub account_name: String,
    pub account_number_masked: String,
    /// Absent from the officer's record: filled in from the node's
    /// [`NumbersCommitted`] right before it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account_number_commitment: String,
}

/// Payload of [`KIND_NUMBERS_COMMITTED`], signed by the node key: the
/// court's commitments (HMAC with the commitment key) to the numbers the
/// member's signed request gave in clear, in the order of the masked
/// numbers of the record that is the next entry, whose payload has the
/// SHA-256 `record_sha256`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersCommitted {
    pub request_id: String,
    pub record_sha256: String,
    pub commitments: Vec<String>,
}

/// The node's commitments waiting for the next entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedNumbers {
    pub seq: u64,
    pub record_sha256: String,
    pub commitments: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfirmed {
    pub request_id: String,
    pub account_id: String,
    /// Signed by the node: the code the applicant entered, revealed with the
    /// salt of the node's [`AccountChallenge`] commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsReveal>,
    /// Signed by the case's officer, only when the policy does not require
    /// SMS confirmation: the reference of the applicant's confirmation in
    /// person (e.g. the signed form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
}

/// Payload of [`KIND_ACCOUNT_CHALLENGE`], signed by the node key: a
/// commitment to the code sent to the applicant's phone on file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChallenge {
    pub request_id: String,
    pub account_id: String,
    /// [`account_code_commitment`], hex.
    pub commitment: String,
    /// The code is dead after this time (ms since the epoch).
    pub expires_ms: u64,
}

/// Domain-separation prefix of account confirmation code commitments.
pub const ACCOUNT_CODE_CONTEXT: &str = "caseledger/v1/account-code";

/// What an account confirmation code is bound to (docs/FORMAT.md §3c):
/// origin, account id, case, applicant, bank, account name and the
/// commitment to the account number, newline-joined.
pub fn account_binding(origin: &str, account: &AccountState) -> String {
    format!(
        "{origin}\n{}\n{}\n{}\n{}\n{}\n{}",
        account.account_id,
        account.case_number,
        account.applicant_id,
        account.bank,
        account.account_name,
        account.account_number_commitment
    )
}

/// Hex SHA-256(ACCOUNT_CODE_CONTEXT ‖ 0x00 ‖ salt ‖ 0x00 ‖ code ‖ 0x00 ‖ binding).
pub fn account_code_commitment(salt_hex: &str, code: &str, binding: &str) -> String {
    code_commitment(ACCOUNT_CODE_CONTEXT, salt_hex, code, binding)
}

/// Payload of [`KIND_PHONE_CHALLENGE`], signed by the node key: a
/// commitment to the code sent to an applicant's phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneChallenge {
    pub request_id: String,
    pub case_number: String,
    pub applicant_id: String,
    /// [`phone_code_commitment`], hex.
    pub commitment: String,
    pub expires_ms: u64,
}

/// Payload of [`KIND_PHONE_CONFIRMED`], signed by the node key: the code
/// the applicant entered and the salt of the node's commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfirmed {
    pub request_id: String,
    pub case_number: String,
    pub applicant_id: String,
    pub sms: SmsReveal,
}

/// Domain-separation prefix of applicant phone code commitments.
pub const PHONE_CODE_CONTEXT: &str = "caseledger/v1/phone-code";

/// What a phone confirmation code is bound to (docs/FORMAT.md §3c):
/// origin, case, applicant and the commitment to their phone,
/// newline-joined.
pub fn phone_binding(origin: &str, case_number: &str, applicant: &Applicant) -> String {
    format!(
        "{origin}\n{case_number}\n{}\n{}",
        applicant.applicant_id, applicant.phone_commitment
    )
}

/// Hex SHA-256(PHONE_CODE_CONTEXT ‖ 0x00 ‖ salt ‖ 0x00 ‖ code ‖ 0x00 ‖ binding).
pub fn phone_code_commitment(salt_hex: &str, code: &str, binding: &str) -> String {
    code_commitment(PHONE_CODE_CONTEXT, salt_hex, code, binding)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChangeApproved {
    pub request_id: String,
    pub account_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Transfer,
    OnlineSeizure,
    Cash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRecorded {
    pub request_id: String,
    pub bank_reference: String,
    pub amount_fen: u64,
    pub payer: String,
    /// `YYYY-MM-DD`
    pub value_date: String,
    pub channel: Channel,
    /// `None`: an unidentified receipt, to be claimed.
    pub case_number: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaimed {
    pub request_id: String,
    pub bank_reference: String,
    pub case_number: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaimDecided {
    pub request_id: String,
    pub bank_reference: String,
    pub case_number: String,
    pub decision: Decision,
}

/// A claim waiting for the second person's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimState {
    pub bank_reference: String,
    pub case_number: String,
    pub claimed_by: String,
    pub claimant_role: Role,
    pub claimed_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisbursementRequested {
    pub request_id: String,
    pub disbursement_id: String,
    pub case_number: String,
    pub account_id: String,
    pub amount_fen: u64,
    pub reason: String,
    /// The version of the policy in force that the officer requests under
    /// (rule `policy`): the request is signed to it, so an applicant's
    /// bundle that leaves a later policy out of its policy thread is refused.
    pub policy_version: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// The statement an approver signs: exactly what is approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSigned {
    pub request_id: String,
    pub origin: String,
    pub disbursement_id: String,
    pub case_number: String,
    pub amount_fen: u64,
    pub account_id: String,
    /// 1-based position in the policy's chain.
    pub step: u32,
    pub role: Role,
    pub decision: Decision,
    /// The 6-digit SMS code sent to the approver's phone, as they typed it;
    /// covered by the approver's record signature. The node, which alone
    /// holds the salt of its commitment, opens it in the
    /// [`SmsCodeRevealed`] entry right before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_code: Option<String>,
}

/// Payload of [`KIND_SMS_CODE_REVEALED`], signed by the node key: the
/// opening of its [`SmsChallenge`] for this step and member, written in
/// the same request as (and right before) the approver's step. Until then
/// the salt never leaves the node: the commitment in the ledger cannot be
/// searched for the code, so the key alone cannot sign a confirmed step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsCodeRevealed {
    pub request_id: String,
    pub disbursement_id: String,
    pub step: u32,
    pub member_id: String,
    /// The code the approver entered.
    pub code: String,
    /// Hex of the 16-byte salt of the commitment.
    pub salt: String,
    /// Hex SHA-256 of the payload of the approver's `approval_signed` that
    /// carries the code: the only step this opening lets through.
    pub step_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsReveal {
    pub code: String,
    /// Hex of the 16-byte salt.
    pub salt: String,
}

/// Payload of [`KIND_SMS_CHALLENGE`], signed by the node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsChallenge {
    pub request_id: String,
    pub disbursement_id: String,
    pub step: u32,
    pub member_id: String,
    /// [`sms_commitment`], hex.
    pub commitment: String,
    /// The code is dead after this time (ms since the epoch).
    pub expires_ms: u64,
}

/// Payload of [`KIND_SMS_SENT`], signed by the node key: which provider
/// took the code of a challenge (`sms_challenge` or `account_challenge`,
/// named by its request id) and under which message id, so that the
/// provider's own records can be matched to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSent {
    pub request_id: String,
    pub challenge_request_id: String,
    /// `console`, `aliyun`, `twilio` or `webhook`.
    pub provider: String,
    pub message_id: String,
}

/// Domain-separation prefix of SMS code commitments.
pub const SMS_CODE_CONTEXT: &str = "caseledger/v1/sms-code";

/// What an approval code is bound to: change any of it and the code no
/// longer matches.
pub fn sms_binding(origin: &str, disbursement: &DisbursementState, step: u32, role: Role, member_id: &str) -> String {
    let statement = StepStatement {
        origin,
        disbursement_id: &disbursement.disbursement_id,
        case_number: &disbursement.case_number,
        amount_fen: disbursement.amount_fen,
        account_id: &disbursement.account_id,
        step,
        role,
        member_id,
    };
    statement.binding()
}

/// Everything an approval code is bound to.
pub struct StepStatement<'a> {
    pub origin: &'a str,
    pub disbursement_id: &'a str,
    pub case_number: &'a str,
    pub amount_fen: u64,
    pub account_id: &'a str,
    pub step: u32,
    pub role: Role,
    pub member_id: &'a str,
}

impl StepStatement<'_> {
    /// The newline-joined binding of docs/FORMAT.md §3c.
    pub fn binding(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.origin,
            self.disbursement_id,
            self.case_number,
            self.amount_fen,
            self.account_id,
            self.step,
            self.role.as_str(),
            self.member_id
        )
    }
}

/// Hex SHA-256(SMS_CODE_CONTEXT ‖ 0x00 ‖ salt ‖ 0x00 ‖ code ‖ 0x00 ‖ binding).
pub fn sms_commitment(salt_hex: &str, code: &str, binding: &str) -> String {
    code_commitment(SMS_CODE_CONTEXT, salt_hex, code, binding)
}

fn code_commitment(context: &str, salt_hex: &str, code: &str, binding: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (i, part) in [context, salt_hex, code, binding].iter().enumerate() {
        if i > 0 {
            hasher.update([0]);
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The node's open challenge for one step and member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeState {
    pub seq: u64,
    pub commitment: String,
    pub expires_ms: u64,
    /// Set by an [`SmsCodeRevealed`]; only the very next entry may spend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revealed: Option<Revealed>,
}

/// A challenge opened by the node for one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealed {
    /// Seq of the [`SmsCodeRevealed`].
    pub seq: u64,
    pub code: String,
    /// SHA-256 of the one step payload it lets through.
    pub step_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisbursementPaid {
    pub request_id: String,
    pub disbursement_id: String,
    pub bank_reference: String,
    pub amount_fen: u64,
    pub account_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentReturned {
    pub request_id: String,
    pub disbursement_id: String,
    /// The payment's bank reference.
    pub bank_reference: String,
    /// The bank reference of the credit that brought the money back:
    /// unique among receipts and returns.
    pub credit_reference: String,
    /// The money that came back: the payment's amount.
    pub amount_fen: u64,
    /// The account it came back from: the payment's.
    pub account_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisbursementCancelled {
    pub request_id: String,
    pub disbursement_id: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayReason {
    FundsNeedDistribution,
    FrozenForAnotherCase,
    ApplicantDidNotCollect,
    CaseSuspended,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayApproved {
    pub request_id: String,
    pub bank_reference: String,
    pub reason: DelayReason,
    /// Required when `reason` is `other`.
    pub text: Option<String>,
    /// `YYYY-MM-DD`: the new due date (end of that day, UTC+8).
    pub new_due_date: String,
}

/// Days allowed to pay once the reason for a delay has ended (法发〔2017〕6号, Art. 10).
pub const DELAY_ENDED_DAYS: u64 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayEnded {
    pub request_id: String,
    /// The delayed receipt.
    pub bank_reference: String,
    /// What ended the reason (e.g. the freeze was lifted).
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantCodeIssued {
    pub request_id: String,
    pub case_number: String,
    pub applicant_id: String,
    /// [`applicant_code_hash`] of the code, hex.
    pub code_hash: String,
    /// The member id of the case's officer who asked; the node drew the
    /// code and signs this record (no member ever chooses or sees a code).
    pub requested_by: String,
    /// When the code stops opening the bundle (ms since the epoch); absent
    /// on codes of the first format, which do not expire. The officer asks
    /// for a new code to renew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantCodeRevoked {
    pub request_id: String,
    pub code_hash: String,
}

/// The longest an applicant's verification code may open the bundle: an
/// `expires_ms` later than this many days after its entry is refused
/// (`code_expiry`).
pub const APPLICANT_CODE_TTL_MAX_DAYS: u64 = 400;

/// Domain-separation prefix of applicant code hashes.
pub const APPLICANT_CODE_CONTEXT: &str = "caseledger/v1/applicant-code";
/// Random bytes in an applicant code of the first format (128 bits, 32 hex
/// digits); codes are now drawn as [`super::applicant_code`] describes.
pub const APPLICANT_CODE_BYTES: usize = 16;

/// Hex SHA-256 of `APPLICANT_CODE_CONTEXT || 0x00 || code`, `code` in its
/// canonical form ([`super::applicant_code::canonical`]).
pub fn applicant_code_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(APPLICANT_CODE_CONTEXT.as_bytes());
    hasher.update([0]);
    hasher.update(code.as_bytes());
    hex::encode(hasher.finalize())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicantCodeState {
    pub case_number: String,
    pub applicant_id: String,
    pub issued_seq: u64,
    pub revoked_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

// ---- derived objects ----

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub case_number: String,
    pub applicants: Vec<Applicant>,
    pub respondents: Vec<String>,
    pub officer_member_id: String,
    pub opened_seq: u64,
    /// Money received for the case not reserved or paid.
    pub available_fen: u64,
    pub reserved_fen: u64,
    pub received_fen: u64,
    pub paid_fen: u64,
    pub returned_fen: u64,
    pub receipts: Vec<String>,
    pub disbursements: Vec<String>,
    /// Applicants whose phone the node confirmed with a code.
    #[serde(default)]
    pub phones_confirmed: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Waiting for the applicant's confirmation (and, for a change, the bureau head).
    Pending,
    Active,
    /// Replaced by a later account.
    Superseded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub account_id: String,
    pub case_number: String,
    pub applicant_id: String,
    pub bank: String,
    pub account_name: String,
    pub account_number_masked: String,
    pub account_number_commitment: String,
    pub status: AccountStatus,
    pub confirmed: bool,
    /// `Some(old account)` when this account changes an earlier one.
    pub replaces: Option<String>,
    pub change_approved: bool,
    pub registered_seq: u64,
}

impl AccountState {
    /// A newly registered account, waiting for the applicant's confirmation
    /// (and, when it `replaces` another, for the bureau head).
    pub fn registered(account: AccountRegistered, replaces: Option<String>, registered_seq: u64) -> Self {
        Self {
            account_id: account.account_id,
            case_number: account.case_number,
            applicant_id: account.applicant_id,
            bank: account.bank,
            account_name: account.account_name,
            account_number_masked: account.account_number_masked,
            account_number_commitment: account.account_number_commitment,
            status: AccountStatus::Pending,
            confirmed: false,
            change_approved: replaces.is_none(),
            replaces,
            registered_seq,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptState {
    pub bank_reference: String,
    pub amount_fen: u64,
    pub payer: String,
    pub value_date: String,
    pub channel: Channel,
    pub case_number: Option<String>,
    pub recorded_seq: u64,
    pub recorded_ms: u64,
    /// When the money arrived: the start of `value_date` in China Standard
    /// Time. Every deadline counts from it.
    pub arrival_ms: u64,
    /// When the case got the money (recording, or the claim).
    pub assigned_ms: Option<u64>,
    /// Pay-out deadline (or claim deadline while unidentified).
    pub due_ms: u64,
    pub delayed: bool,
    /// Booked after the end of the policy's `booking_days`-th day after
    /// the value date (China Standard Time): a finding of the audit.
    pub booked_late: bool,
    /// Hex SHA-256 of the receipt's facts (all but the request id), to tell
    /// a retry from a conflicting use of the same bank reference.
    pub payload_hash: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisbursementStatus {
    Pending,
    Approved,
    Rejected,
    Paid,
    Returned,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    pub step: u32,
    pub role: Role,
    pub member_id: String,
    pub decision: Decision,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisbursementState {
    pub disbursement_id: String,
    pub case_number: String,
    pub account_id: String,
    pub amount_fen: u64,
    pub reason: String,
    pub requester_member_id: String,
    pub policy_version: u32,
    pub chain: Vec<Role>,
    pub steps: Vec<StepState>,
    pub status: DisbursementStatus,
    pub requested_seq: u64,
    /// The timestamp of the request entry.
    pub requested_ms: u64,
    /// What chose the tier: the amount plus the open or paid
    /// disbursements of the case to the same applicant within the policy's
    /// `split_window_days`.
    pub tier_basis_fen: u64,
    pub payment_reference: Option<String>,
    /// Seqs of the payment, return and cancellation entries, when any.
    pub paid_seq: Option<u64>,
    /// The timestamp of the payment entry.
    pub paid_ms: Option<u64>,
    /// The member who recorded the payment (a return needs another).
    pub paid_by: Option<String>,
    pub returned_seq: Option<u64>,
    pub cancelled_seq: Option<u64>,
}

impl DisbursementState {
    /// The role of the next step, if one is awaited.
    pub fn next_role(&self) -> Option<Role> {
        (self.status == DisbursementStatus::Pending)
            .then(|| self.chain.get(self.steps.len()).copied())
            .flatten()
    }
}

/// Court-wide sums, for the reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub receipts_fen: u64,
    pub returns_fen: u64,
    pub payments_fen: u64,
    pub unidentified_fen: u64,
    pub cases: u64,
}

/// What a client request id committed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestState {
    pub seq: u64,
    pub payload_hash: String,
}
