//! How a member's client conceals what docs/FORMAT.md §3j says a record
//! conceals: it writes the payload as the rules read it, and this module
//! replaces each value to conceal by `{"_sd": digest}`, with its disclosure
//! beside the record, and each member id a record names by the member's
//! reference. Where the salts come from is the caller's: drawn at random
//! by `caseledger client record --conceal` (and the member id's salt
//! reused from the member's first registration), derived by the demo's
//! and the tests' builders (`court::sign_revealed`).

use caseledger_verify::disclosure::{conceal, Concealed};
use caseledger_verify::funds::model::{KIND_APPLICANT_CODE_ISSUED, KIND_CASE_OPENED};
use caseledger_verify::record::KIND_KEY_REGISTERED;
use serde_json::Value;

/// Which value a salt is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concealing<'a> {
    /// A member's id, in their registration: a member keeps one salt (and
    /// so one reference) for good.
    MemberId(&'a str),
    /// A member's masked phone, in the registration of `public_key` (each
    /// registration's salt is its own: only a member id is disclosed again).
    MemberPhone {
        member_id: &'a str,
        masked: &'a str,
        public_key: &'a str,
    },
    /// Party `index` (from 0) of a case's filing.
    Applicant {
        case_number: &'a str,
        index: usize,
    },
    Respondent {
        case_number: &'a str,
        index: usize,
    },
    /// The reason of a disbursement's request, return or cancellation.
    Reason {
        request_id: &'a str,
    },
}

/// Conceals in `payload` (a record of `kind` as the rules read it) what
/// §3j conceals; returns the disclosures to send beside it. `salt` gives
/// the salt of each value; `reference` the reference of a member named by
/// id (`None`: refused, with the member id in the error).
pub fn conceal_payload(
    kind: u16,
    payload: &mut Value,
    salt: &mut dyn FnMut(Concealing) -> String,
    reference: &dyn Fn(&str) -> Option<Concealed>,
) -> Result<Vec<String>, String> {
    let mut disclosures = Vec::new();
    let mut hide = |value: &mut Value, salt: String| {
        let (concealed, disclosure) = conceal(&salt, &*value);
        disclosures.push(disclosure);
        *value = serde_json::to_value(concealed).expect("serialisable");
    };
    let by_reference = |value: &mut Value| -> Result<(), String> {
        let id = value
            .as_str()
            .ok_or("a member is named by their member id (a string)")?;
        let concealed = reference(id).ok_or_else(|| format!("no member {id:?} is registered"))?;
        *value = serde_json::to_value(concealed).expect("serialisable");
        Ok(())
    };
    match kind {
        KIND_KEY_REGISTERED => {
            let public_key = payload["public_key"].as_str().unwrap_or_default().to_owned();
            if let Some(member) = payload.get_mut("member").filter(|m| m.is_object()) {
                let id = member["member_id"]
                    .as_str()
                    .ok_or("member.member_id is a string")?
                    .to_owned();
                let masked = member["phone_masked"]
                    .as_str()
                    .ok_or("member.phone_masked is a string")?
                    .to_owned();
                if let Some(fields) = member.as_object_mut() {
                    // Filled in by the rules from the concealed values.
                    fields.remove("member_ref");
                    fields.remove("phone_ref");
                }
                hide(&mut member["member_id"], salt(Concealing::MemberId(&id)));
                let phone_salt = salt(Concealing::MemberPhone {
                    member_id: &id,
                    masked: &masked,
                    public_key: &public_key,
                });
                hide(&mut member["phone_masked"], phone_salt);
            }
        }
        KIND_CASE_OPENED => {
            let case_number = payload["case_number"].as_str().unwrap_or_default().to_owned();
            for list in ["applicants", "respondents"] {
                if let Some(items) = payload.get_mut(list).and_then(|l| l.as_array_mut()) {
                    for (index, item) in items.iter_mut().enumerate() {
                        let case_number = case_number.as_str();
                        let which = match list {
                            "applicants" => Concealing::Applicant { case_number, index },
                            _ => Concealing::Respondent { case_number, index },
                        };
                        hide(item, salt(which));
                    }
                }
            }
            if let Some(officer) = payload.get_mut("officer_member_id") {
                by_reference(officer)?;
            }
        }
        KIND_APPLICANT_CODE_ISSUED => {
            if let Some(requester) = payload.get_mut("requested_by") {
                by_reference(requester)?;
            }
        }
        kind if caseledger_verify::disclosure::conceals_reason(kind) => {
            let request_id = payload["request_id"].as_str().unwrap_or_default().to_owned();
            if let Some(reason) = payload.get_mut("reason") {
                hide(
                    reason,
                    salt(Concealing::Reason {
                        request_id: &request_id,
                    }),
                );
            }
        }
        _ => {}
    }
    Ok(disclosures)
}
