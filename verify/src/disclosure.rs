//! Concealed values and their disclosures (docs/FORMAT.md §3j).
//!
//! A record that names people who are not the reader's business (the
//! co-applicants and respondents of a case, a court member's id and
//! masked phone) signs a salted digest in their place,
//! `{"_sd": hex SHA-256(disclosure)}`, where the disclosure is the JSON
//! text `["<32 hex salt>", value]` its signer wrote. The disclosures travel
//! beside the record (stored by seq, exported, not hashed into the entry):
//! the rules need every one; an applicant's bundle carries only the
//! applicant's own. A member is named elsewhere by the digest of their
//! member id's disclosure (their **member reference**), which the
//! registration discloses once: a member keeps one reference for good.
//!
//! [`readable_payload`] turns a signed payload and its disclosures into
//! the payload the rules read (every value revealed, member references
//! resolved) or a bundle reads (what was disclosed revealed, the rest
//! left as `sd:<digest>`, concealed parties left out).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::funds::model::{self, Applicant, ApplicantCodeIssued, CaseOpened};
use crate::member::{Member, Role};
use crate::record::{self, KeyRegistered, KeyText};

/// The one field of a concealed value.
pub const SD_FIELD: &str = "_sd";
/// Hex digits of a disclosure's salt (16 bytes).
pub const SALT_HEX_LEN: usize = 32;
/// Words every refusal of a value given in clear carries (how a caller
/// tells rule `disclosure` from a malformed payload).
const MUST_BE_CONCEALED: &str = "must be concealed as {\"_sd\": hex SHA-256 of its disclosure}";
/// The prefix of a concealed value a bundle reader cannot open.
pub const UNDISCLOSED_PREFIX: &str = "sd:";

/// `{"_sd": "<hex64>"}`: a value's place in a signed payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Concealed {
    #[serde(rename = "_sd")]
    pub digest: String,
}

impl Concealed {
    pub fn new(digest: String) -> Self {
        Self { digest }
    }

    /// How a bundle reader writes a value it cannot open.
    pub fn undisclosed(&self) -> String {
        format!("{UNDISCLOSED_PREFIX}{}", self.digest)
    }
}

impl<'de> Deserialize<'de> for Concealed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConcealedVisitor;
        impl<'de> Visitor<'de> for ConcealedVisitor {
            type Value = Concealed;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a value that {MUST_BE_CONCEALED}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Concealed, A::Error> {
                let mut digest: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != SD_FIELD || digest.is_some() {
                        return Err(de::Error::custom(format!(
                            "a value that {MUST_BE_CONCEALED} has no field {key:?}"
                        )));
                    }
                    digest = Some(map.next_value()?);
                }
                match digest {
                    Some(d) if is_hex64(&d) => Ok(Concealed { digest: d }),
                    _ => Err(de::Error::custom(format!("a value that {MUST_BE_CONCEALED}"))),
                }
            }
        }
        deserializer.deserialize_any(ConcealedVisitor)
    }
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Hex SHA-256 of a disclosure's text: what its concealed value says.
pub fn digest_of(disclosure: &str) -> String {
    hex::encode(Sha256::digest(disclosure.as_bytes()))
}

/// The disclosure text of `value` with `salt` (32 lower-case hex digits),
/// as the record builders write it: `["<salt>",<value as compact JSON>]`.
pub fn disclosure_text<T: Serialize>(salt: &str, value: &T) -> String {
    serde_json::to_string(&(salt, value)).expect("disclosed values serialise")
}

/// `value` concealed with `salt`: its concealed form and its disclosure.
pub fn conceal<T: Serialize>(salt: &str, value: &T) -> (Concealed, String) {
    let text = disclosure_text(salt, value);
    (Concealed::new(digest_of(&text)), text)
}

/// A member's reference: the digest of the disclosure of their member id.
pub fn member_reference(salt: &str, member_id: &str) -> String {
    digest_of(&disclosure_text(salt, &member_id))
}

/// A salt (32 hex digits) derived from `parts`, for reproducible fixtures
/// (the demo court, tests, fuzz seeds): the same member id always gets the
/// same reference there. A court's client draws its salts at random (and
/// keeps a member id's for the member's later registrations).
pub fn derived_salt(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in std::iter::once(&"caseledger/derived-salt/v1").chain(parts) {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..SALT_HEX_LEN / 2])
}

/// Why a payload's concealed values could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A value given in clear where it must be concealed, a disclosure that
    /// is malformed, missing, unused or given twice, or a member reference
    /// no member holds: rule `disclosure`.
    Disclosure(String),
    /// The payload is malformed otherwise (rule `payload` or
    /// `record_payload`, as for any payload of its kind).
    Payload(String),
}

impl Refusal {
    pub fn detail(&self) -> &str {
        match self {
            Refusal::Disclosure(d) | Refusal::Payload(d) => d,
        }
    }
}

/// Who reads a payload.
#[derive(Clone, Copy)]
pub enum Reader<'a> {
    /// The rules (writer and auditor): every disclosable value must be
    /// disclosed; a member reference resolves, through `members`, to the
    /// member id it is the reference of.
    Rules {
        members: &'a dyn Fn(&str) -> Option<String>,
    },
    /// An applicant's bundle: disclosed values are revealed; a concealed
    /// party is left out; any other concealed value reads `sd:<digest>`.
    Bundle,
}

/// Whether records of this kind carry concealed values that their
/// disclosures reveal (`key_co_signed` restates a registration's
/// concealed values and carries no disclosure).
pub fn has_disclosures(kind: u16) -> bool {
    matches!(
        kind,
        record::KIND_KEY_REGISTERED
            | model::KIND_CASE_OPENED
            | model::KIND_APPLICANT_CODE_ISSUED
            | model::KIND_DISBURSEMENT_REQUESTED
            | model::KIND_PAYMENT_RETURNED
            | model::KIND_DISBURSEMENT_CANCELLED
    )
}

/// Kinds whose free-text `reason` is concealed: a disbursement's request,
/// return and cancellation, which the case's thread shows to every
/// applicant of the case (the reason, written by staff, may name whom
/// the money is for).
pub fn conceals_reason(kind: u16) -> bool {
    matches!(
        kind,
        model::KIND_DISBURSEMENT_REQUESTED | model::KIND_PAYMENT_RETURNED | model::KIND_DISBURSEMENT_CANCELLED
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedMember {
    member_id: Concealed,
    role: Role,
    phone_masked: Concealed,
    /// Never given (the node's `numbers_committed` gives it): read so that
    /// the rules refuse one with their reason (`commitment`).
    #[serde(default)]
    phone_commitment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedKeyRegistered {
    name: String,
    public_key: KeyText,
    administrator: bool,
    #[serde(default)]
    member: Option<MapOnly<SignedMember>>,
}

/// A structure given as a JSON object only: the array form of §1a's
/// deviation is refused on the way to a concealed value (§3j).
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a JSON object (the way to a value that {MUST_BE_CONCEALED})")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapOnly<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        deserializer.deserialize_any(MapVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedCaseOpened {
    request_id: String,
    case_number: String,
    applicants: Vec<Concealed>,
    respondents: Vec<Concealed>,
    officer_member_id: Concealed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedCodeIssued {
    request_id: String,
    case_number: String,
    applicant_id: String,
    code_hash: String,
    requested_by: Concealed,
    #[serde(default)]
    expires_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRequest {
    request_id: String,
    disbursement_id: String,
    case_number: String,
    account_id: String,
    amount_fen: u64,
    reason: Concealed,
    policy_version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedReturn {
    request_id: String,
    disbursement_id: String,
    bank_reference: String,
    credit_reference: String,
    amount_fen: u64,
    account_id: String,
    reason: Concealed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedCancellation {
    request_id: String,
    disbursement_id: String,
    reason: Concealed,
}

/// The disclosures of one record, by digest, each used at most once.
struct Disclosures<'d> {
    by_digest: HashMap<String, &'d str>,
    reader_is_rules: bool,
}

impl<'d> Disclosures<'d> {
    fn new(texts: &'d [String], reader_is_rules: bool) -> Result<Self, Refusal> {
        let mut by_digest = HashMap::new();
        for text in texts {
            if by_digest.insert(digest_of(text), text.as_str()).is_some() {
                return Err(Refusal::Disclosure("a disclosure is given twice".into()));
            }
        }
        Ok(Self {
            by_digest,
            reader_is_rules,
        })
    }

    /// The value `concealed` hides, if its disclosure is here (checked:
    /// `["<32 hex salt>", value]`, the value of type `T`).
    fn open<T: DeserializeOwned>(&mut self, concealed: &Concealed, what: &str) -> Result<Option<T>, Refusal> {
        let Some(text) = self.by_digest.remove(&concealed.digest) else {
            return if self.reader_is_rules {
                Err(Refusal::Disclosure(format!(
                    "{what} is concealed and its disclosure is missing"
                )))
            } else {
                Ok(None)
            };
        };
        let (salt, value): (String, T) = serde_json::from_str(text).map_err(|e| {
            Refusal::Disclosure(format!(
                "the disclosure of {what} is not [\"<salt>\", value] of the right type: {e}"
            ))
        })?;
        if salt.len() != SALT_HEX_LEN || !salt.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Refusal::Disclosure(format!(
                "the salt of {what}'s disclosure must be {SALT_HEX_LEN} lower-case hex digits"
            )));
        }
        Ok(Some(value))
    }

    fn all_used(&self) -> Result<(), Refusal> {
        match self.by_digest.is_empty() {
            true => Ok(()),
            false => Err(Refusal::Disclosure(format!(
                "{} disclosure(s) reveal no value of the record",
                self.by_digest.len()
            ))),
        }
    }
}

fn signed<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Refusal> {
    if !record::is_json_object(payload) {
        return Err(Refusal::Payload("a payload is a JSON object".into()));
    }
    serde_json::from_slice(payload).map_err(|e| {
        let text = e.to_string();
        if text.contains(MUST_BE_CONCEALED) {
            Refusal::Disclosure(text)
        } else {
            Refusal::Payload(text)
        }
    })
}

/// The payload of a record of `kind` as `reader` reads it, or `None` for a
/// kind without disclosures (read as signed; it must carry none).
pub fn readable_payload(
    kind: u16,
    payload: &[u8],
    disclosures: &[String],
    reader: Reader,
) -> Result<Option<Vec<u8>>, Refusal> {
    if !has_disclosures(kind) {
        return match disclosures.is_empty() {
            true => Ok(None),
            false => Err(Refusal::Disclosure(format!(
                "a {} record carries no disclosures",
                record::kind_name(kind)
            ))),
        };
    }
    let rules = matches!(reader, Reader::Rules { .. });
    let mut open = Disclosures::new(disclosures, rules)?;
    let member = |concealed: &Concealed, what: &str| -> Result<String, Refusal> {
        match reader {
            Reader::Rules { members } => members(&concealed.digest).ok_or_else(|| {
                Refusal::Disclosure(format!(
                    "{what} is no member's reference (a registered member id's digest)"
                ))
            }),
            Reader::Bundle => Ok(concealed.undisclosed()),
        }
    };
    let readable = match kind {
        record::KIND_KEY_REGISTERED => {
            if !rules && !disclosures.is_empty() {
                return Err(Refusal::Disclosure(
                    "a bundle discloses no court member's id or phone".into(),
                ));
            }
            let signed: SignedKeyRegistered = signed(payload)?;
            let member = match signed.member {
                None => None,
                Some(MapOnly(m)) => {
                    let member_id: Option<String> = open.open(&m.member_id, "the member id")?;
                    let phone_masked: Option<String> = open.open(&m.phone_masked, "the member's phone")?;
                    Some(Member {
                        member_id: member_id.unwrap_or_else(|| m.member_id.undisclosed()),
                        role: m.role,
                        phone_masked: phone_masked.unwrap_or_else(|| m.phone_masked.undisclosed()),
                        phone_commitment: m.phone_commitment,
                        member_ref: m.member_id.digest,
                        phone_ref: m.phone_masked.digest,
                    })
                }
            };
            serde_json::to_vec(&KeyRegistered {
                name: signed.name,
                public_key: signed.public_key,
                administrator: signed.administrator,
                member,
            })
        }
        model::KIND_CASE_OPENED => {
            let signed: SignedCaseOpened = signed(payload)?;
            let mut applicants = Vec::new();
            for concealed in &signed.applicants {
                if let Some(applicant) = open.open::<Applicant>(concealed, "an applicant")? {
                    applicants.push(applicant);
                }
            }
            let mut respondents = Vec::new();
            for concealed in &signed.respondents {
                if let Some(respondent) = open.open::<String>(concealed, "a respondent")? {
                    respondents.push(respondent);
                }
            }
            if rules && (signed.applicants.is_empty() || signed.respondents.is_empty()) {
                return Err(Refusal::Payload(
                    "a case needs at least one applicant and one respondent".into(),
                ));
            }
            serde_json::to_vec(&CaseOpened {
                request_id: signed.request_id,
                case_number: signed.case_number,
                applicants,
                respondents,
                officer_member_id: member(&signed.officer_member_id, "the officer")?,
            })
        }
        model::KIND_APPLICANT_CODE_ISSUED => {
            let signed: SignedCodeIssued = signed(payload)?;
            serde_json::to_vec(&ApplicantCodeIssued {
                request_id: signed.request_id,
                case_number: signed.case_number,
                applicant_id: signed.applicant_id,
                code_hash: signed.code_hash,
                requested_by: member(&signed.requested_by, "requested_by")?,
                expires_ms: signed.expires_ms,
            })
        }
        model::KIND_DISBURSEMENT_REQUESTED => {
            let signed: SignedRequest = signed(payload)?;
            let reason = open.open(&signed.reason, "the reason")?;
            serde_json::to_vec(&model::DisbursementRequested {
                request_id: signed.request_id,
                disbursement_id: signed.disbursement_id,
                case_number: signed.case_number,
                account_id: signed.account_id,
                amount_fen: signed.amount_fen,
                reason: reason.unwrap_or_else(|| signed.reason.undisclosed()),
                policy_version: signed.policy_version,
            })
        }
        model::KIND_PAYMENT_RETURNED => {
            let signed: SignedReturn = signed(payload)?;
            let reason = open.open(&signed.reason, "the reason")?;
            serde_json::to_vec(&model::PaymentReturned {
                request_id: signed.request_id,
                disbursement_id: signed.disbursement_id,
                bank_reference: signed.bank_reference,
                credit_reference: signed.credit_reference,
                amount_fen: signed.amount_fen,
                account_id: signed.account_id,
                reason: reason.unwrap_or_else(|| signed.reason.undisclosed()),
            })
        }
        model::KIND_DISBURSEMENT_CANCELLED => {
            let signed: SignedCancellation = signed(payload)?;
            let reason = open.open(&signed.reason, "the reason")?;
            serde_json::to_vec(&model::DisbursementCancelled {
                request_id: signed.request_id,
                disbursement_id: signed.disbursement_id,
                reason: reason.unwrap_or_else(|| signed.reason.undisclosed()),
            })
        }
        _ => unreachable!("has_disclosures lists the kinds"),
    }
    .expect("readable payloads serialise");
    open.all_used()?;
    Ok(Some(readable))
}

/// The disclosures of `record` an applicant's bundle carries for
/// `applicant_id`: in a case's filing, the applicant's own party; in a
/// disbursement to the applicant (`own_disbursement`), its reasons;
/// nothing else of anyone.
pub fn applicants_own(record: &crate::entry::Record, applicant_id: &str, own_disbursement: bool) -> Vec<String> {
    if conceals_reason(record.kind) && own_disbursement {
        return record.disclosures.clone();
    }
    if record.kind != model::KIND_CASE_OPENED {
        return Vec::new();
    }
    record
        .disclosures
        .iter()
        .filter(|text| {
            serde_json::from_str::<(String, Applicant)>(text).is_ok_and(|(_, a)| a.applicant_id == applicant_id)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "00112233445566778899aabbccddeeff";

    fn members(digest: &str) -> Option<String> {
        (digest == member_reference(SALT, "officer-1")).then(|| "officer-1".to_owned())
    }

    fn applicant(id: &str, name: &str) -> Applicant {
        Applicant {
            applicant_id: id.into(),
            name: name.into(),
            phone_masked: "****0001".into(),
            phone_commitment: String::new(),
        }
    }

    /// A `case_opened` with two applicants and one respondent: the signed
    /// payload and its disclosures (applicant 1, applicant 2, respondent).
    fn case_payload() -> (Vec<u8>, Vec<String>) {
        let (a1, d1) = conceal(SALT, &applicant("a1", "张三"));
        let (a2, d2) = conceal("ffeeddccbbaa99887766554433221100", &applicant("a2", "李四"));
        let (r1, d3) = conceal(SALT, &"某公司");
        let payload = serde_json::json!({
            "request_id": "open-1",
            "case_number": "(2023)苏02执1号",
            "applicants": [a1, a2],
            "respondents": [r1],
            "officer_member_id": {"_sd": member_reference(SALT, "officer-1")},
        });
        (serde_json::to_vec(&payload).expect("test value"), vec![d1, d2, d3])
    }

    fn rules_read(payload: &[u8], disclosures: &[String]) -> Result<CaseOpened, Refusal> {
        let readable = readable_payload(
            model::KIND_CASE_OPENED,
            payload,
            disclosures,
            Reader::Rules { members: &members },
        )?
        .expect("test value");
        Ok(serde_json::from_slice(&readable).expect("test value"))
    }

    #[test]
    fn a_disclosure_opens_exactly_its_digest() {
        let (concealed, text) = conceal(SALT, &"officer-1");
        assert_eq!(text, format!("[\"{SALT}\",\"officer-1\"]"));
        assert_eq!(concealed.digest, digest_of(&text));
        assert_eq!(concealed.digest, member_reference(SALT, "officer-1"));
        // docs/FORMAT.md §3j's vector.
        assert_eq!(
            concealed.digest,
            "717b0f9293502ae6c4fbb19c52ff8ae9dda2e11ab003dd12e2ef60be4aac45bf"
        );
        let parsed: Concealed =
            serde_json::from_str(&format!("{{\"_sd\":\"{}\"}}", concealed.digest)).expect("test value");
        assert_eq!(parsed, concealed);
        for bad in [
            "\"officer-1\"".to_owned(),
            "{\"_sd\":\"abc\"}".to_owned(),
            format!("{{\"_sd\":\"{}\",\"x\":1}}", concealed.digest),
            format!("{{\"_sd\":\"{0}\",\"_sd\":\"{0}\"}}", concealed.digest),
        ] {
            let err = serde_json::from_str::<Concealed>(&bad)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(MUST_BE_CONCEALED), "{bad}: {err}");
        }
    }

    #[test]
    fn the_rules_read_every_party_and_the_officer() {
        let (payload, disclosures) = case_payload();
        let case = rules_read(&payload, &disclosures).expect("test value");
        assert_eq!(case.applicants, vec![applicant("a1", "张三"), applicant("a2", "李四")]);
        assert_eq!(case.respondents, vec!["某公司".to_owned()]);
        assert_eq!(case.officer_member_id, "officer-1");
    }

    #[test]
    fn the_rules_refuse_a_missing_unused_repeated_or_forged_disclosure() {
        let (payload, disclosures) = case_payload();
        let refused = |d: &[String]| matches!(rules_read(&payload, d), Err(Refusal::Disclosure(_)));
        assert!(refused(&disclosures[..2]), "a respondent left undisclosed");
        let mut extra = disclosures.clone();
        extra.push(disclosure_text(SALT, &"someone else"));
        assert!(refused(&extra), "a disclosure of nothing in the record");
        let mut twice = disclosures.clone();
        twice.push(disclosures[0].clone());
        assert!(refused(&twice), "a disclosure given twice");
        let mut forged = disclosures.clone();
        forged[1] = disclosure_text("ffeeddccbbaa99887766554433221100", &applicant("a2", "王五"));
        assert!(refused(&forged), "another value under the salt");
        let mut short_salt = disclosures.clone();
        short_salt[2] = disclosure_text("0011", &"某公司");
        let (r, d) = conceal("0011", &"某公司");
        let payload_short = String::from_utf8(payload.clone())
            .expect("test value")
            .replace(&digest_of(&disclosures[2]), &r.digest);
        assert!(matches!(
            rules_read(payload_short.as_bytes(), &[disclosures[0].clone(), disclosures[1].clone(), d]),
            Err(Refusal::Disclosure(e)) if e.contains("salt")
        ));
        // An officer who is no member, and a party given in clear.
        let stranger = String::from_utf8(payload.clone()).expect("test value").replace(
            &member_reference(SALT, "officer-1"),
            &member_reference(SALT, "officer-9"),
        );
        assert!(matches!(
            rules_read(stranger.as_bytes(), &disclosures),
            Err(Refusal::Disclosure(_))
        ));
        let clear = serde_json::json!({
            "request_id": "open-1", "case_number": "(2023)苏02执1号",
            "applicants": [applicant("a1", "张三")], "respondents": ["某公司"],
            "officer_member_id": "officer-1",
        });
        assert!(matches!(
            rules_read(&serde_json::to_vec(&clear).expect("test value"), &[]),
            Err(Refusal::Disclosure(e)) if e.contains(MUST_BE_CONCEALED)
        ));
    }

    #[test]
    fn a_bundle_reads_only_what_it_was_given() {
        let (payload, disclosures) = case_payload();
        let readable = readable_payload(model::KIND_CASE_OPENED, &payload, &disclosures[1..2], Reader::Bundle)
            .expect("test value")
            .expect("test value");
        let case: CaseOpened = serde_json::from_slice(&readable).expect("test value");
        assert_eq!(case.applicants, vec![applicant("a2", "李四")]);
        assert!(case.respondents.is_empty());
        assert_eq!(
            case.officer_member_id,
            format!("{UNDISCLOSED_PREFIX}{}", member_reference(SALT, "officer-1"))
        );
        let text = String::from_utf8(readable).expect("test value");
        assert!(!text.contains("张三") && !text.contains("某公司"), "{text}");
        // A disclosure for another record is refused in a bundle too.
        let stray = vec![disclosure_text(SALT, &"x")];
        assert!(readable_payload(model::KIND_CASE_OPENED, &payload, &stray, Reader::Bundle).is_err());
        assert!(readable_payload(model::KIND_RECEIPT_RECORDED, b"{}", &stray, Reader::Bundle).is_err());
    }
}
