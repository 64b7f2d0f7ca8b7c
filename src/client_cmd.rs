//! `caseledger client`: a court member's command line for the API. Every
//! request is signed (RFC 9421) with the member's key file, and every record
//! with the same key (docs/FORMAT.md §3, §7b).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use caseledger::service::client::Client;
use caseledger_keys::files;
use caseledger_verify::entry::Record;

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8470
    #[arg(long, env = "CASELEDGER_URL", default_value = "http://127.0.0.1:8470")]
    url: String,
    /// The member's private key file (mode 0600).
    #[arg(long)]
    key: PathBuf,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClientCommand {
    /// Sign and submit one record: its kind number and its JSON payload file.
    Record {
        /// Record kind: its name (case_opened), its number (272) or in hex
        /// (0x0110); see docs/FORMAT.md §3a.
        #[arg(long, value_parser = parse_kind)]
        kind: u16,
        /// JSON payload file, sent exactly as signed.
        #[arg(long)]
        payload: PathBuf,
        /// A file of the numbers the record masks, in clear, one per line
        /// (a case_opened's applicants' phones in order, an
        /// account_registered's account number, an enrolment's phone): the
        /// node commits to them. A file, so that no number is left in the
        /// shell's history or the process list.
        #[arg(long)]
        numbers_file: Option<PathBuf>,
        /// A file of the disclosures of the values the payload conceals,
        /// one JSON text `["<32 hex salt>", value]` per line
        /// (docs/FORMAT.md §3j): a case_opened's applicants and
        /// respondents, an enrolment's member id and masked phone.
        #[arg(long)]
        disclosures_file: Option<PathBuf>,
        /// The payload file is written as the rules read it (parties and
        /// member ids in clear): conceal what docs/FORMAT.md §3j conceals
        /// here, with random salts, name members by the references the
        /// service gives, and send the disclosures beside the record.
        #[arg(long, conflicts_with = "disclosures_file")]
        conceal: bool,
    },
    /// Issue an applicant's verification code: drawn here, its hash signed
    /// into the ledger, the code sent by SMS to the applicant only.
    IssueCode {
        /// Case number, e.g. (2023)苏02执123号.
        #[arg(long)]
        case: String,
        /// The applicant's id in the case, e.g. applicant-1.
        #[arg(long)]
        applicant: String,
    },
    /// Ask the service to send the applicant a code confirming a registered
    /// account (the case's officer); the applicant enters it themselves.
    ConfirmAccount {
        /// The account's id, as its registration names it.
        #[arg(long)]
        account: String,
    },
    /// A signed GET, e.g. /v1/steps/pending or /v1/entries/7.
    Get {
        /// The path and query, e.g. `/v1/cases/(2026)苏02执1号` (characters
        /// outside ASCII are percent-encoded for you).
        path: String,
    },
    /// Send a dead-lettered notification again (administrators): its
    /// delivery starts over.
    Resend {
        /// The notification id, as `GET /v1/notifications/{id}` and the logs name it.
        id: String,
    },
    /// Sign the next approval step of a disbursement: asks for an SMS code,
    /// shows what is being approved, reads the code, signs and submits.
    /// Sign the next approval step of a disbursement: shows what you sign
    /// (case, amount, payee), asks you to confirm, then asks the node for
    /// the code it sends to your phone and lets you retype a mistyped one.
    Approve {
        /// The disbursement's id.
        #[arg(long)]
        disbursement: String,
        /// Reject instead of approve.
        #[arg(long)]
        reject: bool,
        /// Do not ask for confirmation before the code is sent (scripts).
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let identity = files::read_private_key(&args.key)?;
    let client = Client::new(&args.url, identity.clone());
    let (status, body) = match &args.command {
        ClientCommand::Record {
            kind,
            payload,
            numbers_file,
            disclosures_file,
            conceal,
        } => {
            let bytes = std::fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
            serde_json::from_slice::<serde_json::Value>(&bytes).context("the payload file is not JSON")?;
            let numbers = match numbers_file {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            let disclosures = match disclosures_file {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            let (bytes, disclosures) = if *conceal {
                concealed(&client, &identity, *kind, &bytes)?
            } else {
                (bytes, disclosures)
            };
            let record = Record::sign(&client.origin()?, *kind, bytes, &identity).with_disclosures(disclosures);
            client.write_numbered(&[(record, numbers)])?
        }
        ClientCommand::Get { path } => client.get(&encode_non_ascii(path))?,
        ClientCommand::Resend { id } => client.post_empty(&format!("/v1/notifications/{id}/resend"))?,
        ClientCommand::IssueCode { case, applicant } => client.issue_applicant_code(case, applicant)?,
        ClientCommand::ConfirmAccount { account } => {
            client.post_empty(&format!("/v1/accounts/{}/challenge", percent_path(account)))?
        }
        ClientCommand::Approve {
            disbursement,
            reject,
            yes,
        } => approve(&client, &identity, disbursement, *reject, *yes)?,
    };
    answer(status, &body)
}

/// A payload written as the rules read it, concealed (docs/FORMAT.md §3j).
/// Each salt is derived from the member's own signature of what it is for
/// (context `caseledger/v1/conceal-salt`): nobody else can make it, and a
/// re-run of the same payload makes the same record, so a retry is a retry.
/// A member's id keeps the salt of their first registration (read back
/// from it: administrators read every entry); members are named by the
/// reference `GET /v1/members/{id}` gives.
/// `path` with every byte outside printable ASCII percent-encoded (a case
/// number typed as is: `/v1/cases/(2026)苏02执1号`); what is already
/// encoded stays as it is.
fn encode_non_ascii(path: &str) -> String {
    path.bytes()
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A record kind by name, decimal or `0x` hex.
fn parse_kind(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => text.parse::<u16>().ok(),
    };
    if let Some(kind) = number {
        return Ok(kind);
    }
    (0..=u16::MAX)
        .find(|kind| caseledger_verify::record::kind_name(*kind) == text && text != "other")
        .ok_or_else(|| format!("{text:?} is not a record kind (a name such as case_opened, a number, or 0x hex)"))
}

pub(crate) fn concealed(
    client: &Client,
    identity: &caseledger_keys::Identity,
    kind: u16,
    payload: &[u8],
) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    use caseledger::conceal::{conceal_payload, Concealing};
    use caseledger_verify::disclosure::Concealed;
    let member = |id: &str| -> anyhow::Result<Option<serde_json::Value>> {
        match client.get(&format!("/v1/members/{}", percent_path(id)))? {
            (200, member) => Ok(Some(member)),
            (404, _) => Ok(None),
            (status, body) => anyhow::bail!("looking up member {id}: {status} {body}"),
        }
    };
    let mut failure: Option<anyhow::Error> = None;
    let origin = client.origin()?;
    let mut salt = |which: Concealing| -> String {
        let purpose = match &which {
            Concealing::MemberId(id) => format!("member-id\n{id}"),
            Concealing::MemberPhone {
                member_id,
                masked,
                public_key,
            } => format!("member-phone\n{member_id}\n{masked}\n{public_key}"),
            Concealing::Applicant { case_number, index } => format!("applicant\n{case_number}\n{index}"),
            Concealing::Respondent { case_number, index } => format!("respondent\n{case_number}\n{index}"),
            Concealing::Reason { request_id } => format!("reason\n{request_id}"),
        };
        let signature = identity.sign(
            caseledger_keys::context::CONCEAL_SALT,
            format!("{origin}\n{purpose}").as_bytes(),
        );
        let derived = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(signature.to_bytes())[..16]);
        let Concealing::MemberId(id) = which else {
            return derived;
        };
        let earlier = member(id).and_then(|found| {
            let Some(found) = found else { return Ok(None) };
            let seq = found["registered_seq"].as_u64().unwrap_or_default();
            let (status, entry) = client.get(&format!("/v1/entries/{seq}"))?;
            anyhow::ensure!(
                status == 200,
                "reading member {id}'s first registration: {status} {entry}"
            );
            Ok(entry["disclosures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| serde_json::from_str::<(String, String)>(d.as_str()?).ok())
                .find(|(_, value)| value == id)
                .map(|(salt, _)| salt))
        });
        match earlier {
            Ok(Some(salt)) => salt,
            Ok(None) => derived,
            Err(e) => {
                failure.get_or_insert(e);
                derived
            }
        }
    };
    let reference = |id: &str| -> Option<Concealed> {
        let found = member(id).ok().flatten()?;
        Some(Concealed::new(found["reference"].as_str()?.to_owned()))
    };
    let mut value: serde_json::Value = serde_json::from_slice(payload).context("the payload file is not JSON")?;
    let disclosures = conceal_payload(kind, &mut value, &mut salt, &reference).map_err(anyhow::Error::msg)?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((serde_json::to_vec(&value)?, disclosures))
}

/// Prints the service's answer; exit 0 on a 2xx, 1 otherwise.
fn answer(status: u16, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(body)?);
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `caseledger sms`: the notifications that could not be delivered, for
/// the court's administrators and auditors.
#[derive(Debug, clap::Args)]
pub struct SmsArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8470
    #[arg(long, env = "CASELEDGER_URL", default_value = "http://127.0.0.1:8470")]
    url: String,
    /// The member's private key file (mode 0600).
    #[arg(long)]
    key: PathBuf,
    #[command(subcommand)]
    command: SmsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SmsCommand {
    /// The dead letters (administrators and auditors): each notification
    /// with its delivery state and the provider's last answer.
    DeadLetters,
    /// Send a dead letter again (administrators): its delivery starts over.
    Resend {
        /// The notification id, as `dead-letters` and the logs name it.
        id: String,
    },
}

pub fn run_sms(args: &SmsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.url, files::read_private_key(&args.key)?);
    let (status, body) = match &args.command {
        SmsCommand::DeadLetters => client.get("/v1/notifications/dead")?,
        SmsCommand::Resend { id } => client.post_empty(&format!("/v1/notifications/{}/resend", percent_path(id)))?,
    };
    answer(status, &body)
}

/// `segment` percent-encoded for a URL path (RFC 3986 unreserved kept).
fn percent_path(segment: &str) -> String {
    caseledger::service::providers::percent_encode(segment)
}

fn expect_ok((status, body): (u16, serde_json::Value), what: &str) -> anyhow::Result<serde_json::Value> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        anyhow::bail!("{what}: {status} {body}")
    }
}

/// One line typed on stdin, trimmed; an error at its end.
fn typed_line() -> anyhow::Result<String> {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        anyhow::bail!("no answer typed: nothing signed");
    }
    Ok(line.trim().to_owned())
}

fn approve(
    client: &Client,
    identity: &caseledger_keys::Identity,
    id: &str,
    reject: bool,
    assume_yes: bool,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use caseledger_verify::funds::model::{ApprovalSigned, Decision, DisbursementState, KIND_APPROVAL_SIGNED};
    let view = expect_ok(
        client.get(&format!("/v1/disbursements/{id}"))?,
        "reading the disbursement",
    )?;
    let disbursement: DisbursementState = serde_json::from_value(view["disbursement"].clone())?;
    let step = disbursement.steps.len() as u32 + 1;
    let role = disbursement
        .next_role()
        .context("no step of this disbursement is awaited")?;
    // The statement names the ledger: its origin is the checkpoint's first line.
    let origin = client.origin()?;
    // What is signed, before any code is sent.
    eprintln!(
        "You are about to {} step {step} of {} ({}) of disbursement {id}:",
        if reject { "REJECT" } else { "approve" },
        disbursement.chain.len(),
        role.as_str()
    );
    eprintln!("  case:    {}", disbursement.case_number);
    eprintln!(
        "  amount:  {}",
        caseledger_verify::bundle::yuan(disbursement.amount_fen)
    );
    eprintln!(
        "  payee:   {} {} at {}",
        view["account_name"].as_str().unwrap_or(""),
        view["account_number_masked"].as_str().unwrap_or(""),
        view["bank"].as_str().unwrap_or("")
    );
    if !assume_yes {
        eprint!("Is this what you mean to sign? Type yes to have the code sent to your phone: ");
        let answer = typed_line()?;
        if !matches!(answer.to_lowercase().as_str(), "yes" | "y" | "是") {
            anyhow::bail!("not confirmed: no code asked for, nothing signed");
        }
    }
    let (status, challenge) = client.post_empty(&format!("/v1/disbursements/{id}/steps/{step}/challenge"))?;
    if status == 429 {
        anyhow::bail!(
            "too many codes asked for: {} (one a minute, a second at once for a lost SMS, five an hour)",
            challenge["detail"].as_str().unwrap_or("try again later")
        );
    }
    let challenge = expect_ok((status, challenge), "asking for a code")?;
    if let Some(words) = challenge["statement"].as_str() {
        eprintln!("  the node says the code approves: {words}");
    }
    loop {
        eprint!("Enter the 6-digit code sent to your phone: ");
        let code = typed_line()?;
        let statement = ApprovalSigned {
            request_id: format!("approve-{id}-{step}-{}", hex::encode(rand::random::<[u8; 6]>())),
            origin: origin.clone(),
            disbursement_id: id.to_owned(),
            case_number: disbursement.case_number.clone(),
            amount_fen: disbursement.amount_fen,
            account_id: disbursement.account_id.clone(),
            step,
            role,
            decision: if reject { Decision::Reject } else { Decision::Approve },
            sms_code: Some(code),
        };
        let (status, body) = client.write(&[caseledger::court::sign(
            &statement.origin,
            KIND_APPROVAL_SIGNED,
            &statement,
            identity,
        )])?;
        // A mistyped code: typed again, within the code's tries.
        let detail = body["detail"].as_str().unwrap_or_default();
        if status == 422 && body["rule"] == "sms_code" && !detail.contains("no tries left") {
            eprintln!("{detail}");
            continue;
        }
        return Ok((status, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_read_by_name_number_or_hex() {
        let opened = caseledger_verify::funds::model::KIND_CASE_OPENED;
        for text in ["case_opened", "272", "0x0110", "0X110"] {
            assert_eq!(parse_kind(text), Ok(opened), "{text}");
        }
        for bad in ["case-opened", "0xZZ", "other", "70000"] {
            assert!(parse_kind(bad).is_err(), "{bad}");
        }
        assert_eq!(
            encode_non_ascii("/v1/cases/(2026)苏1号"),
            "/v1/cases/(2026)%E8%8B%8F1%E5%8F%B7"
        );
        assert_eq!(encode_non_ascii("/v1/cases/%28x"), "/v1/cases/%28x");
    }
}
