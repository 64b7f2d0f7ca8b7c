//! The case-fund rules: what each record may do, checked when it is written
//! and again when the auditor replays the chain. Pure: state comes in
//! through an [`Overlay`], time as the entry's timestamp.
//!
//! Every record names a client `request_id`; a retry with the same payload
//! is a duplicate (the writer answers with the first entry's seq and writes
//! nothing), the same id with another payload is refused.

pub mod applicant_code;
pub mod deadlines;
pub mod model;
pub mod notify;
pub mod views;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::entry::Record;
use crate::registry::{KeyInfo, RuleError};
use crate::state::Overlay;
use model::*;

/// Where a record stands: its seq, its timestamp and the ledger's origin.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub origin: &'a str,
    /// The record is signed by the node key (not a member's).
    pub by_node: bool,
    /// Hex SHA-256 of the payload as signed (the rules read concealed
    /// values revealed, §3j; numbers and retries are bound to this).
    pub payload_sha256: &'a str,
}

/// The result of admitting a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new entry, with effects applied to the overlay.
    New,
    /// A retry of the record already at this seq: write nothing.
    Duplicate(u64),
}

pub fn is_funds_kind(kind: u16) -> bool {
    model::kind_name(kind).is_some()
}

fn rule(name: &'static str, detail: impl Into<String>) -> RuleError {
    RuleError::Rule {
        rule: name,
        detail: detail.into(),
    }
}

fn storage(e: crate::Error) -> RuleError {
    rule("storage", e.to_string())
}

/// Typed access to derived objects.
struct Objects<'v, 'a> {
    view: &'v mut Overlay<'a>,
}

impl Objects<'_, '_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RuleError> {
        match self.view.get(key).map_err(storage)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| rule("storage", format!("derived object {key} unreadable: {e}"))),
        }
    }

    fn need<T: DeserializeOwned>(&self, key: &str, missing_rule: &'static str, what: &str) -> Result<T, RuleError> {
        self.get(key)?
            .ok_or_else(|| rule(missing_rule, format!("{what} does not exist")))
    }

    fn put<T: Serialize>(&mut self, key: String, value: &T) {
        self.view
            .put(key, serde_json::to_vec(value).expect("derived objects serialise"));
    }

    fn mark(&mut self, key: String) {
        self.view.put(key, Vec::new());
    }

    fn delete(&mut self, key: String) {
        self.view.delete(key);
    }
}

pub fn case_key(case_number: &str) -> String {
    format!("case/{case_number}")
}
pub fn account_key(id: &str) -> String {
    format!("account/{id}")
}
pub fn receipt_key(reference: &str) -> String {
    format!("receipt/{reference}")
}
pub fn disbursement_key(id: &str) -> String {
    format!("disbursement/{id}")
}
pub fn pending_key(role: Role, id: &str) -> String {
    format!("pending/{}/{id}", role.as_str())
}
/// Marks a phone commitment as a case applicant's (`case/applicant`): no
/// member may be enrolled with it.
pub fn applicant_phone_key(commitment: &str) -> String {
    format!("applicant_phone/{commitment}")
}
pub const TOTALS_KEY: &str = "totals";
pub const POLICY_KEY: &str = "policy";

/// The key under which the node's commitments wait for the next entry.
const COMMITTED_NUMBERS_KEY: &str = "numbers_committed";

/// The node's commitments to the `count` numbers of the record with the
/// payload hash `record_sha256` at `seq`: they must be in the entry right
/// before it (rule `commitment`), and are spent. A member never gives a
/// commitment.
fn take_committed_numbers(
    objects: &mut Objects,
    seq: u64,
    record_sha256: &str,
    count: usize,
) -> Result<Vec<String>, RuleError> {
    let pending: Option<CommittedNumbers> = objects.get(COMMITTED_NUMBERS_KEY)?;
    match pending {
        Some(p) if p.seq.checked_add(1) == Some(seq) && p.record_sha256 == record_sha256 && p.commitments.len() == count => {
            objects.delete(COMMITTED_NUMBERS_KEY.to_owned());
            Ok(p.commitments)
        }
        _ => Err(rule(
            "commitment",
            "the node must commit to the numbers given in clear in the request, for exactly this record, in the entry right before it",
        )),
    }
}

/// A member enrolment (`key_registered` with a member) as the registry
/// must see it: the member's phone commitment is the node's, from its
/// `numbers_committed` right before (spent from `view`); a registration
/// that gives one itself is refused (`commitment`). Other records are
/// returned as they are.
pub fn completed_enrolment(
    view: &mut Overlay,
    seq: u64,
    record: &Record,
    payload_sha256: &str,
) -> Result<Option<Record>, RuleError> {
    if record.kind != crate::record::KIND_KEY_REGISTERED {
        return Ok(None);
    }
    let Ok(mut registration) = serde_json::from_slice::<crate::record::KeyRegistered>(&record.payload) else {
        return Ok(None); // the registry refuses it with its reason
    };
    let Some(member) = registration.member.as_mut() else {
        return Ok(None);
    };
    if !member.phone_commitment.is_empty() {
        return Err(rule(
            "commitment",
            "a member's phone commitment is made by the node from the number in the request, never given",
        ));
    }
    let mut objects = Objects { view };
    let [commitment] = <[String; 1]>::try_from(take_committed_numbers(&mut objects, seq, payload_sha256, 1)?)
        .map_err(|_| rule("commitment", "one commitment for a member's phone"))?;
    member.phone_commitment = commitment;
    Ok(Some(Record {
        payload: serde_json::to_vec(&registration).expect("serialisable"),
        ..record.clone()
    }))
}

/// A member key's co-signature (`key_co_signed`) as the rules must see
/// it: the co-signer gave the member's phone number in clear in the
/// request, and the node's `numbers_committed` right before it commits to
/// that number with the same commitment as the member's enrolment (rule
/// `co_signature_phone`). So the second person has checked the full
/// number, not only its last digits, against the one the codes go to: an
/// administrator who enrols a member with their own phone ending in the
/// same four digits is caught by the co-signer's staff list. Keys that are
/// not a member's have no phone, and nothing is taken.
pub fn checked_co_signature(
    view: &mut Overlay,
    seq: u64,
    record: &Record,
    payload_sha256: &str,
    registry: &crate::registry::Registry,
) -> Result<(), RuleError> {
    if record.kind != crate::record::KIND_KEY_CO_SIGNED {
        return Ok(());
    }
    let Some(member) = serde_json::from_slice::<crate::record::KeyCoSigned>(&record.payload)
        .ok()
        .and_then(|co_signed| caseledger_keys::KeyId::from_hex(&co_signed.key_id).ok())
        .and_then(|id| registry.info(&id))
        .and_then(|info| info.member.as_ref())
    else {
        return Ok(()); // not a member's key (the registry judged the rest)
    };
    let mut objects = Objects { view };
    let given = take_committed_numbers(&mut objects, seq, payload_sha256, 1).map_err(|_| {
        rule(
            "co_signature_phone",
            "a member key's co-signature must come right after the node's commitment to the member's phone number as the co-signer gave it",
        )
    })?;
    if given.first() != Some(&member.phone_commitment) {
        return Err(rule(
            "co_signature_phone",
            format!(
                "the phone number the co-signer gave is not the one member {} was enrolled with (same last digits or not): the enrolment sends codes to another phone",
                member.member_id
            ),
        ));
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(record: &Record) -> Result<T, RuleError> {
    if !crate::record::is_json_object(&record.payload) {
        return Err(rule("payload", "a payload is a JSON object"));
    }
    serde_json::from_slice(&record.payload).map_err(|e| rule("payload", e.to_string()))
}

fn check_id(what: &str, id: &str) -> Result<(), RuleError> {
    match crate::text::id_problem(id, ID_BYTES_MAX) {
        Some(problem) => Err(rule("payload", format!("{what} must be {problem}"))),
        None => Ok(()),
    }
}

/// A court-made id (see [`crate::text::ascii_id_problem`]); `digits_allowed`
/// for bank references, which are the bank's numbers.
fn check_ascii_id(what: &str, id: &str, digits_allowed: bool) -> Result<(), RuleError> {
    match crate::text::ascii_id_problem(id, ID_BYTES_MAX, digits_allowed) {
        Some(problem) if problem.starts_with("fewer") => Err(rule("personal_data", format!("{what}: {problem}"))),
        Some(problem) => Err(rule("payload", format!("{what} must be {problem}"))),
        None => Ok(()),
    }
}

/// Free text: bounded, visible, and no personal number in it (rule
/// `personal_data` for a run of 11 or more digits).
fn check_text(what: &str, text: &str) -> Result<(), RuleError> {
    match crate::text::free_text_problem(text, TEXT_BYTES_MAX) {
        Some(problem) if crate::text::longest_digit_run(text) >= crate::text::PERSONAL_DIGITS_MIN => {
            Err(rule("personal_data", format!("{what}: {problem}")))
        }
        Some(problem) => Err(rule("payload", format!("{what} must have {problem}"))),
        None => Ok(()),
    }
}

/// Province abbreviations that begin a court code (`苏02`), and 兵 for the
/// Production and Construction Corps courts.
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼兵";
/// Characters of an enforcement case-type word after its first 执
/// (执恢, 执保, 执异, 执复, 执监, 执协, 执他, 执配).
const CASE_TYPE_TAIL: &str = "恢保异复监协他配";

/// `(2023)苏02执123号`, in one spelling only, so that one case cannot be
/// opened twice under look-alike numbers: a 4-digit year in ASCII
/// parentheses; a court code, either a province abbreviation in simplified
/// characters and 1 to 6 ASCII digits, or 最高法; an enforcement case-type
/// word, 执 and at most 3 of 恢保异复监协他配; a serial of 1 to 7 ASCII
/// digits without a leading zero; and 号.
pub fn check_case_number(number: &str) -> Result<(), RuleError> {
    let bad = || {
        let normal = normal_case_number(number);
        let hint = if normal != number && check_case_number(&normal).is_ok() {
            format!(": write it as {normal}")
        } else {
            String::new()
        };
        rule(
            "case_number",
            format!("{number:?} is not a case number like (2023)苏02执123号{hint}"),
        )
    };
    let rest = number.strip_prefix('(').ok_or_else(bad)?;
    let (year, rest) = rest.split_once(')').ok_or_else(bad)?;
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let body = rest.strip_suffix('号').ok_or_else(bad)?;
    let rest = match body.strip_prefix("最高法") {
        Some(rest) => rest,
        None => {
            let mut chars = body.chars();
            let province = chars.next().ok_or_else(bad)?;
            if !PROVINCES.contains(province) {
                return Err(bad());
            }
            let rest = chars.as_str();
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=6).contains(&digits) {
                return Err(bad());
            }
            &rest[digits..]
        }
    };
    let rest = rest.strip_prefix('执').ok_or_else(bad)?;
    let tail: String = rest.chars().take_while(|c| CASE_TYPE_TAIL.contains(*c)).collect();
    let serial = &rest[tail.len()..];
    let serial_ok =
        (1..=7).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_digit()) && !serial.starts_with('0');
    if tail.chars().count() > 3 || !serial_ok {
        return Err(bad());
    }
    Ok(())
}

/// The one spelling of a case number as people type or paste it: the
/// official full-width brackets （2025） or 〔2025〕 and full-width digits
/// become ASCII, surrounding and inner spaces go. What the ledger stores
/// is this form ([`check_case_number`]); look-ups normalise what they are
/// given with it.
pub fn normal_case_number(input: &str) -> String {
    input
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '（' | '〔' | '［' | '[' => '(',
            '）' | '〕' | '］' | ']' => ')',
            '０'..='９' => char::from_u32(u32::from(c) - u32::from('０') + u32::from('0')).unwrap_or(c),
            other => other,
        })
        .collect()
}

/// Parses `YYYY-MM-DD` into days since the Unix epoch.
pub fn parse_date(text: &str) -> Result<i64, RuleError> {
    let bad = || rule("payload", format!("{text:?} is not a date YYYY-MM-DD"));
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month[m as usize - 1] || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

fn member_of(signer: &KeyInfo) -> Result<&Member, RuleError> {
    signer
        .member
        .as_ref()
        .ok_or_else(|| rule("role", format!("key {:?} is not a court member's key", signer.name)))
}

fn require_role(signer: &KeyInfo, roles: &[Role], what: &str) -> Result<(), RuleError> {
    let member = member_of(signer)?;
    if roles.contains(&member.role) {
        return Ok(());
    }
    let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(rule(
        "role",
        format!(
            "{what} needs the role {}; {} is {}",
            wanted.join(" or "),
            member.member_id,
            member.role.as_str()
        ),
    ))
}

fn check_amount(objects: &Objects, amount: u64) -> Result<(), RuleError> {
    let max = objects
        .get::<PolicySet>(POLICY_KEY)?
        .map_or(AMOUNT_FEN_MAX_DEFAULT, |p| p.amount_max_fen);
    if amount == 0 || amount > max {
        return Err(rule(
            "amount",
            format!("amount {amount} fen must be positive and at most {max} fen"),
        ));
    }
    Ok(())
}

/// Checks `record` at `context` against the rules and applies its effects
/// to `view`. On `Err` the caller must roll the overlay back.
pub fn admit(view: &mut Overlay, context: &Context, record: &Record, signer: &KeyInfo) -> Result<Outcome, RuleError> {
    let mut objects = Objects { view };
    let request_id = request_id_of(record)?;
    check_id("request_id", &request_id)?;
    let request_key = format!("request/{request_id}");
    let hash = context.payload_sha256.to_owned();
    if let Some(earlier) = objects.get::<RequestState>(&request_key)? {
        return if earlier.payload_hash == hash {
            Ok(Outcome::Duplicate(earlier.seq))
        } else {
            Err(rule(
                "request_conflict",
                format!(
                    "request id {request_id} was used for a different record at seq {}",
                    earlier.seq
                ),
            ))
        };
    }
    let outcome = rules::apply(&mut objects, context, record, signer)?;
    if outcome == Outcome::New {
        objects.put(
            request_key,
            &RequestState {
                seq: context.seq,
                payload_hash: hash,
            },
        );
    }
    Ok(outcome)
}

fn request_id_of(record: &Record) -> Result<String, RuleError> {
    #[derive(serde::Deserialize)]
    struct WithRequestId {
        request_id: String,
    }
    serde_json::from_slice::<WithRequestId>(&record.payload)
        .map(|r| r.request_id)
        .map_err(|e| rule("payload", format!("every case-fund record needs a request_id: {e}")))
}

mod rules;
pub(crate) use rules::start_of_day_cst;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryState;
    use caseledger_keys::Identity;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_case_number_typed_with_official_brackets_has_one_normal_form() {
        for typed in ["（2025）苏02执１２３号", " (2025) 苏02执123号 ", "〔2025〕苏02执123号"] {
            assert_eq!(normal_case_number(typed), "(2025)苏02执123号", "{typed}");
        }
        let refused = check_case_number("（2025）苏02执123号").expect_err("full-width");
        assert!(
            refused.to_string().contains("write it as (2025)苏02执123号"),
            "{refused}"
        );
        let refused = check_case_number("(2025)XX执123号").expect_err("no province");
        assert!(!refused.to_string().contains("write it as"), "{refused}");
    }

    /// A money sum that would not fit in 64 bits is the refusal
    /// `overflow`, never a wrapped balance or a panic. (The policy's
    /// ceiling keeps real ledgers far from it; the check stays.)
    #[test]
    fn an_overflowing_sum_is_refused_by_rule() {
        let finance = Identity::from_seed([3; 32]);
        let case = CaseState {
            case_number: "(2026)苏02执1号".into(),
            available_fen: u64::MAX - 5,
            received_fen: u64::MAX - 5,
            ..CaseState::default()
        };
        let mut state = MemoryState::default();
        state
            .0
            .insert(case_key(&case.case_number), serde_json::to_vec(&case).expect("json"));
        let receipt = ReceiptRecorded {
            request_id: "r-1".into(),
            bank_reference: "B-1".into(),
            amount_fen: 10,
            payer: "被执行人".into(),
            value_date: "2026-11-20".into(),
            channel: Channel::Transfer,
            case_number: Some(case.case_number.clone()),
        };
        let record = Record::sign(
            "o",
            KIND_RECEIPT_RECORDED,
            serde_json::to_vec(&receipt).expect("json"),
            &finance,
        );
        let signer = KeyInfo {
            name: "finance".into(),
            public_key: crate::record::KeyText::from_key(&finance.public_key()),
            administrator: false,
            registered_seq: 1,
            revoked_seq: None,
            member: Some(Member {
                member_id: "finance-1".into(),
                role: Role::Finance,
                phone_masked: "****0001".into(),
                phone_commitment: "00".repeat(32),
                member_ref: "11".repeat(32),
                phone_ref: "22".repeat(32),
            }),
            registered_by: None,
            co_signed_seq: None,
            holder: None,
        };
        let context = Context {
            seq: 9,
            timestamp_ms: 1_795_190_400_000,
            origin: "o",
            by_node: false,
            payload_sha256: &hex::encode(Sha256::digest(&record.payload)),
        };
        let mut overlay = Overlay::new(&state);
        match admit(&mut overlay, &context, &record, &signer) {
            Err(RuleError::Rule { rule, .. }) => assert_eq!(rule, "overflow"),
            other => panic!("expected the overflow rule, got {other:?}"),
        }
    }
}
