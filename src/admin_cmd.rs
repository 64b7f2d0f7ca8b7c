//! `caseledger admin`: what a court's administrators and its leader do to
//! make a new court work, as signed requests through the API (the same
//! ones the HTTP clients send): enrol members from the court's staff list
//! (keys, roles, phones), co-sign each enrolment as the second
//! administrator after checking it with the person, record a member's new
//! phone, propose the approval policy and put it in force.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use caseledger::service::client::Client;
use caseledger_keys::files;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::{Member, PolicyApproved, PolicySet, Role, KIND_POLICY_APPROVED, KIND_POLICY_SET};
use caseledger_verify::record::{KeyCoSigned, KeyRegistered, KeyText, KIND_KEY_CO_SIGNED, KIND_KEY_REGISTERED};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the service.
    #[arg(long, env = "CASELEDGER_URL", default_value = "http://127.0.0.1:8470")]
    url: String,
    /// Your private key file (mode 0600): an administrator's, or for
    /// `policy approve` the court leader's.
    #[arg(long)]
    key: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Enrol the members of a staff list (the first administrator): each
    /// member's key, name, member id, role and phone. A CSV file with the
    /// header `name,member_id,role,phone,public_key`: the phone in full
    /// (the node commits to it; the ledger keeps only its last 4 digits),
    /// the public key file the member made with `caseledger keygen`
    /// (relative to the CSV file). Roles: officer, bureau_head, finance,
    /// fund_manager, court_leader, filing_clerk, auditor, administrator.
    /// Running it again enrols nobody twice.
    Enrol {
        /// The staff list (CSV, header `name,member_id,role,phone,public_key`).
        #[arg(long)]
        members: PathBuf,
    },
    /// Co-sign the enrolments of a staff list (the second administrator,
    /// or a court leader): each is shown as the ledger holds it, to be
    /// checked with the person (their key id and phone) before it is
    /// signed; a key signs nothing until it is co-signed.
    CoSign {
        /// The same staff list the first administrator enrolled.
        #[arg(long)]
        members: PathBuf,
        /// Sign without asking for each (after checking the list).
        #[arg(long)]
        yes: bool,
    },
    /// Record a member's phone (an administrator), e.g. after a change of
    /// number; the number is read from a file, kept out of the shell's
    /// history. It must match the ledger's commitment to be used.
    Phone {
        /// The member whose phone it is.
        #[arg(long)]
        member_id: String,
        /// A file holding the phone number.
        #[arg(long)]
        phone_file: PathBuf,
    },
    /// The approval policy: tiers, deadlines, limits (docs/FORMAT.md §3a).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Propose the policy in a JSON file (an administrator).
    Propose {
        /// The policy as JSON (docs/FORMAT.md §3a; README's walkthrough has one).
        #[arg(long)]
        file: PathBuf,
    },
    /// Put in force the proposal of the same JSON file (a court leader
    /// other than the proposer): what you read in the file is what you
    /// approve; a different file is refused.
    Approve {
        /// The same JSON file the administrator proposed, read by you.
        #[arg(long)]
        file: PathBuf,
    },
}

/// One member of the staff list.
struct StaffRow {
    line: usize,
    name: String,
    member_id: String,
    role: Role,
    phone: String,
    public_key: caseledger_keys::PublicKey,
}

fn staff_list(path: &Path) -> anyhow::Result<Vec<StaffRow>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (rows.is_empty() && line.starts_with("name,")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, member_id, role, phone, key] = fields.as_slice() else {
            anyhow::bail!(
                "{} line {line_no}: expected name,member_id,role,phone,public_key",
                path.display()
            );
        };
        let role: Role = serde_json::from_value(serde_json::Value::String((*role).to_owned()))
            .map_err(|_| anyhow::anyhow!("{} line {line_no}: unknown role {role:?}", path.display()))?;
        let key_path = folder.join(key);
        let public_key = files::read_public_key(&key_path)
            .with_context(|| format!("{} line {line_no}: the member's public key", path.display()))?;
        rows.push(StaffRow {
            line: line_no,
            name: (*name).to_owned(),
            member_id: (*member_id).to_owned(),
            role,
            phone: (*phone).to_owned(),
            public_key,
        });
    }
    anyhow::ensure!(!rows.is_empty(), "{} lists nobody", path.display());
    Ok(rows)
}

fn ok_or_bail((status, body): (u16, serde_json::Value), what: &str) -> anyhow::Result<serde_json::Value> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        anyhow::bail!(
            "{what}: {status} {}",
            body["detail"].as_str().map_or_else(|| body.to_string(), str::to_owned)
        )
    }
}

pub fn run(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let identity = files::read_private_key(&args.key)?;
    let client = Client::new(&args.url, identity.clone());
    match &args.command {
        AdminCommand::Enrol { members } => enrol(&client, &identity, &staff_list(members)?),
        AdminCommand::CoSign { members, yes } => co_sign(&client, &identity, &staff_list(members)?, *yes),
        AdminCommand::Phone { member_id, phone_file } => {
            let phone = std::fs::read_to_string(phone_file)
                .with_context(|| format!("reading {}", phone_file.display()))?
                .trim()
                .to_owned();
            let body = serde_json::to_vec(&serde_json::json!({"member_id": member_id, "phone": phone}))?;
            ok_or_bail(client.post_json("/v1/contacts/members", &body)?, "recording the phone")?;
            println!(
                "phone {} recorded for member {member_id}",
                caseledger::commitments::mask(&phone)
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Policy {
            command: PolicyCommand::Propose { file },
        } => {
            let policy = policy_file(file)?;
            let record = caseledger::court::sign(&client.origin()?, KIND_POLICY_SET, &policy, &identity);
            let written = ok_or_bail(client.write(&[record])?, "proposing the policy")?;
            println!(
                "policy version {} proposed (entry {}); a court leader puts it in force with `caseledger admin policy approve --file {}`",
                policy.version,
                written["seqs"][0],
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Policy {
            command: PolicyCommand::Approve { file },
        } => {
            let policy = policy_file(file)?;
            let proposal = serde_json::to_vec(&policy)?;
            let approved = PolicyApproved {
                request_id: format!("{}-approved", policy.request_id),
                version: policy.version,
                proposal_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&proposal)),
            };
            let record = caseledger::court::sign(&client.origin()?, KIND_POLICY_APPROVED, &approved, &identity);
            let written = ok_or_bail(client.write(&[record])?, "approving the policy")?;
            println!(
                "policy version {} in force (entry {})",
                policy.version, written["seqs"][0]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn policy_file(file: &Path) -> anyhow::Result<PolicySet> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not a policy (docs/FORMAT.md §3a)", file.display()))
}

fn enrol(client: &Client, identity: &caseledger_keys::Identity, rows: &[StaffRow]) -> anyhow::Result<ExitCode> {
    let origin = client.origin()?;
    for row in rows {
        let registration = KeyRegistered {
            name: row.name.clone(),
            public_key: KeyText::from_key(&row.public_key),
            administrator: row.role == Role::Administrator,
            member: Some(Member {
                member_id: row.member_id.clone(),
                role: row.role,
                phone_masked: caseledger::commitments::mask(&row.phone),
                phone_commitment: String::new(),
                member_ref: String::new(),
                phone_ref: String::new(),
            }),
        };
        let (payload, disclosures) = crate::client_cmd::concealed(
            client,
            identity,
            KIND_KEY_REGISTERED,
            &serde_json::to_vec(&registration)?,
        )?;
        let record = Record::sign(&origin, KIND_KEY_REGISTERED, payload, identity).with_disclosures(disclosures);
        let written = ok_or_bail(
            client.write_numbered(&[(record, vec![row.phone.clone()])])?,
            &format!("line {}: enrolling {}", row.line, row.member_id),
        )?;
        let seq = written["seqs"][0].as_u64().unwrap_or_default();
        let again = written["written"] == 0;
        println!(
            "{} {} ({}, member {}, phone {}, key {}): entry {seq}, awaiting the second administrator's co-signature",
            if again { "already enrolled:" } else { "enrolled" },
            row.name,
            row.role.as_str(),
            row.member_id,
            caseledger::commitments::mask(&row.phone),
            row.public_key.key_id().short()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn co_sign(
    client: &Client,
    identity: &caseledger_keys::Identity,
    rows: &[StaffRow],
    assume_yes: bool,
) -> anyhow::Result<ExitCode> {
    let origin = client.origin()?;
    let mut declined = 0;
    for row in rows {
        let key_id = row.public_key.key_id().to_hex();
        let member = ok_or_bail(
            client.get(&format!(
                "/v1/members/{}",
                caseledger::service::providers::percent_encode(&row.member_id)
            ))?,
            &format!("line {}: looking up member {}", row.line, row.member_id),
        )?;
        let Some(key) = member["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["key_id"] == key_id.as_str())
        else {
            anyhow::bail!(
                "line {}: member {} has no key {} registered: enrol them first",
                row.line,
                row.member_id,
                row.public_key.key_id().short()
            );
        };
        if !key["awaiting_co_signature"].as_bool().unwrap_or(false) {
            println!("{} ({}): already co-signed", row.name, row.member_id);
            continue;
        }
        let seq = key["registered_seq"].as_u64().unwrap_or_default();
        let entry = ok_or_bail(
            client.get(&format!("/v1/entries/{seq}"))?,
            &format!("reading entry {seq}"),
        )?;
        let payload: serde_json::Value =
            serde_json::from_str(entry["payload"].as_str().unwrap_or_default()).context("the registration")?;
        // What the ledger says, revealed by its disclosures, to check
        // against the staff list and with the person.
        // Each concealed field is read from the disclosure whose digest it
        // names, so a value disclosed for one field cannot pass for another.
        let revealed = |field: &serde_json::Value| -> Option<String> {
            let digest = field[caseledger_verify::disclosure::SD_FIELD].as_str()?;
            entry["disclosures"]
                .as_array()?
                .iter()
                .filter_map(serde_json::Value::as_str)
                .find(|d| caseledger_verify::disclosure::digest_of(d) == digest)
                .and_then(|d| serde_json::from_str::<(String, String)>(d).ok())
                .map(|(_, value)| value)
        };
        let masked = caseledger::commitments::mask(&row.phone);
        let matches = payload["name"] == row.name.as_str()
            && payload["member"]["role"] == row.role.as_str()
            && revealed(&payload["member"]["member_id"]).as_deref() == Some(row.member_id.as_str())
            && revealed(&payload["member"]["phone_masked"]).as_deref() == Some(masked.as_str());
        anyhow::ensure!(
            matches,
            "line {}: entry {seq} does not enrol {} as the list says (name, role, member id or phone differ): not co-signed",
            row.line,
            row.member_id
        );
        eprintln!(
            "Entry {seq}: {} ({}, member {}, phone {}) holds key {}.",
            row.name,
            row.role.as_str(),
            row.member_id,
            masked,
            row.public_key.key_id().fingerprint()
        );
        if !assume_yes {
            eprint!("Checked with the person (key fingerprint and phone)? Type yes to co-sign: ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim().to_lowercase().as_str(), "yes" | "y" | "是") {
                eprintln!("not co-signed");
                declined += 1;
                continue;
            }
        }
        let digest = |value: &serde_json::Value| value["_sd"].as_str().map(str::to_owned).unwrap_or_default();
        let co_signed = KeyCoSigned {
            key_id: key_id.clone(),
            name: row.name.clone(),
            administrator: row.role == Role::Administrator,
            member_id: Some(caseledger_verify::disclosure::Concealed::new(digest(
                &payload["member"]["member_id"],
            ))),
            role: Some(row.role),
            phone_masked: Some(caseledger_verify::disclosure::Concealed::new(digest(
                &payload["member"]["phone_masked"],
            ))),
        };
        let record = caseledger::court::sign(&origin, KIND_KEY_CO_SIGNED, &co_signed, identity);
        // The full number goes with it: the node refuses the co-signature
        // unless it is the number the enrolment committed to, not only one
        // with the same last digits.
        let written = ok_or_bail(
            client.write_numbered(&[(record, vec![row.phone.clone()])])?,
            &format!("line {}: co-signing {}", row.line, row.member_id),
        )?;
        println!(
            "co-signed {} ({}): entry {}; the key may sign",
            row.name, row.member_id, written["seqs"][0]
        );
    }
    Ok(if declined == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
