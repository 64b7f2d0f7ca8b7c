//! `verify`, `proof` and `verify-proof`: the auditor's and applicant's commands.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use caseledger_keys::files;
use caseledger_ledger::store::{Ledger, Options, SystemClock, NODE_PUB_FILE};
use caseledger_verify::bundle::ProofBundle;
use caseledger_verify::record::kind_name;

/// Witnesses a verifier trusts, and how many must have cosigned
/// (docs/FORMAT.md §6b).
#[derive(Debug, Default, clap::Args)]
pub struct WitnessArgs {
    /// A witness's key, as `caseledger witness-init` prints it
    /// (`NAME+HEXID+BASE64`), optionally as `NAME=KEY`. Repeatable.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// Cosignatures by those witnesses each checkpoint needs.
    #[arg(long, default_value_t = 0)]
    quorum: usize,
}

impl WitnessArgs {
    fn keys(&self) -> anyhow::Result<Vec<caseledger_keys::cosignature::Witness>> {
        let keys = self
            .witnesses
            .iter()
            .map(|text| {
                let (named, key) = match text.split_once('=') {
                    Some((name, key)) if !name.contains('+') => (Some(name), key),
                    _ => (None, text.as_str()),
                };
                let witness = caseledger_keys::cosignature::Witness::parse(key)
                    .map_err(|e| anyhow::anyhow!("witness key {text:?}: {e}"))?;
                if let Some(name) = named.filter(|name| *name != witness.name()) {
                    anyhow::bail!("witness {name}: the key is named {}", witness.name());
                }
                Ok(witness)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (n, key) in keys.iter().enumerate() {
            anyhow::ensure!(
                !keys[..n].iter().any(|k| k.public_key() == key.public_key()),
                "witness {} is given twice (one key under two names would count twice)",
                key.name()
            );
        }
        anyhow::ensure!(
            self.quorum <= keys.len(),
            "--quorum {} is more than the {} witnesses given",
            self.quorum,
            keys.len()
        );
        Ok(keys)
    }

    /// Who of the witnesses vouched for the checkpoint `note`, and when; an
    /// error if fewer than the quorum did.
    fn vouched(&self, note: &str) -> anyhow::Result<Vec<String>> {
        let keys = self.keys()?;
        let found = caseledger_keys::cosignature::cosignatures(note, &keys).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            found.len() >= self.quorum,
            "the checkpoint has {} of the {} cosignatures required by the witnesses given",
            found.len(),
            self.quorum
        );
        Ok(found
            .iter()
            .map(|c| {
                let days = i64::try_from(c.timestamp / 86_400).unwrap_or(0);
                let (y, m, d) = caseledger::civil_from_days(days);
                let seconds = c.timestamp % 86_400;
                format!(
                    "{} at {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
                    c.witness,
                    seconds / 3600,
                    seconds / 60 % 60,
                    seconds % 60
                )
            })
            .collect())
    }
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Ledger folder (opened read-only).
    #[arg(long)]
    data: PathBuf,
    /// Node public key to trust (PEM, base64, note verifier key, or node.key).
    /// Defaults to <data>/node.pub.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Print exactly one JSON object instead of text (also when the ledger
    /// cannot be opened or read: `ok` false and the error).
    #[arg(long)]
    json: bool,
    /// A checkpoint note saved earlier (from `GET /v1/checkpoint` or a proof
    /// bundle): the ledger must hold its entries with its root. Repeatable.
    #[arg(long)]
    against: Vec<PathBuf>,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Ledger folder (opened read-only).
    #[arg(long)]
    data: PathBuf,
    /// Output file; standard output if absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyExportArgs {
    /// NDJSON export, as written by `caseledger export` or `GET /v1/export`
    /// (a whole one: from seq 0).
    file: PathBuf,
    /// The ledger's node public key (PEM, base64, note verifier key, or node.key).
    #[arg(long)]
    key: PathBuf,
    /// Print exactly one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    /// Ledger folder.
    #[arg(long)]
    data: PathBuf,
    /// Sequence number of the entry to prove.
    #[arg(long)]
    seq: u64,
}

#[derive(Debug, clap::Args)]
pub struct VerifyProofArgs {
    /// Proof bundle JSON file, as printed by `caseledger proof`.
    file: PathBuf,
    /// The ledger's node public key (PEM, base64, note verifier key, or node.key).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = match audit_folder(args) {
        Ok(report) => report,
        Err(error) if args.json => {
            // One JSON object whatever happened: a script reads why.
            let damaged = error.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<caseledger_ledger::Error>(),
                    Some(caseledger_ledger::Error::Damaged(_))
                )
            });
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": format!("{error:#}"), "damaged": damaged})
            );
            return Ok(ExitCode::from(if damaged { 3 } else { 2 }));
        }
        Err(error) => return Err(error),
    };
    finish_report(&report, args.json)
}

/// Audits the ledger folder, then checks it against every checkpoint
/// saved earlier that `--against` names (the node's kept one is checked
/// by the audit itself).
fn audit_folder(args: &VerifyArgs) -> anyhow::Result<caseledger_verify::audit::AuditReport> {
    let key_path = args.key.clone().unwrap_or_else(|| args.data.join(NODE_PUB_FILE));
    let node_key =
        files::read_public_key(&key_path).with_context(|| format!("reading node key {}", key_path.display()))?;
    let notes = args
        .against
        .iter()
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let ledger = Ledger::open_read_only(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let progress = if args.json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(ledger.size())
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut report = ledger.audit(Some(node_key), threads, &|done| progress.set_position(done))?;
    progress.finish_and_clear();
    for note in &notes {
        ledger.check_against(&mut report, note, node_key);
    }
    // Each time-stamp kept must be the TSA's answer for its checkpoint.
    for (size, answer) in ledger.timestamps()? {
        let problem = match ledger.checkpoint_at(size)? {
            None => Some(format!(
                "a time-stamp is kept for size {size}, of which there is no checkpoint"
            )),
            Some(note) => {
                let newest = ledger.entry(size.saturating_sub(1))?.timestamp_ms;
                caseledger_verify::timestamp::check_of_checkpoint_after(&answer, &note, newest)
                    .err()
                    .map(|e| format!("the time-stamp of the checkpoint of size {size}: {e}"))
            }
        };
        if let Some(detail) = problem {
            report.add_violation(size.saturating_sub(1), "checkpoint_timestamp", detail);
        }
    }
    // Each stored checkpoint with the cosignatures kept for it.
    let witnesses = args.witnesses.keys()?;
    if args.witnesses.quorum > 0 {
        for (size, note) in ledger.checkpoints()? {
            let cosigned = ledger.cosigned_note(size, &note)?;
            if let Some(detail) =
                caseledger_verify::audit::quorum_problem(size, &cosigned, &witnesses, args.witnesses.quorum)
            {
                report.add_violation(size.saturating_sub(1), "checkpoint_quorum", detail);
            }
        }
    }
    Ok(report)
}

pub fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let ledger = Ledger::open_read_only(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let mut written: std::io::Result<()> = Ok(());
    ledger.export(0, ledger.size(), &mut |line| {
        written = writeln!(out, "{}", line.to_json());
        written
            .as_ref()
            .map_err(|e| caseledger_ledger::Error::Storage(format!("writing the export: {e}")))
            .map(|_| ())
    })?;
    written?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify_export(args: &VerifyExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::BufRead as _;
    let node_key =
        files::read_public_key(&args.key).with_context(|| format!("reading node key {}", args.key.display()))?;
    let file = std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    // Streamed: an export of a million entries is not held in memory. A read
    // error ends the lines; it is reported instead of the audit of a prefix.
    let mut read_error = None;
    let lines = std::io::BufReader::new(file).lines().map_while(|line| match line {
        Ok(line) => Some(line),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let witnesses = args.witnesses.keys()?;
    let report = caseledger_verify::export::audit_export_witnessed(lines, node_key, &witnesses, args.witnesses.quorum);
    if let Some(e) = read_error {
        return Err(e).with_context(|| format!("reading {}", args.file.display()));
    }
    finish_report(&report, args.json)
}

/// Prints `report` (one JSON object with `json`, else text); exit code 0
/// if it is ok, 1 if it found a problem.
fn finish_report(report: &caseledger_verify::audit::AuditReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print_report(report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &caseledger_verify::audit::AuditReport) {
    match &report.first_error {
        Some(error) => {
            println!("FAILED at seq {}: {}: {}", error.seq, error.check, error.detail);
            println!(
                "checked {} entries and {} checkpoints before the failure",
                report.entries, report.checkpoints
            );
        }
        None => {
            println!(
                "{}: {} entries, {} checkpoints; every hash link, signature, checkpoint and Merkle root verified",
                if report.ok { "OK" } else { "RULES BROKEN" },
                report.entries,
                report.checkpoints
            );
            println!("root: {}", report.root);
        }
    }
    println!(
        "cases: {}; case-fund rules replayed: {} violations",
        report.cases, report.violations_total
    );
    println!(
        "SMS codes checked against the node's prior commitments: {} approval steps, {} account confirmations",
        report.sms_confirmations_verified, report.account_confirmations_verified
    );
    print_listed(
        report
            .violations
            .iter()
            .map(|v| format!("seq {}: {}: {}", v.seq, v.rule, v.detail)),
        report.violations_total,
    );
    println!(
        "money held back (paid late, overdue, unclaimed or booked late) as of the newest entry: {} findings",
        report.deadline_findings_total
    );
    print_listed(
        report
            .deadline_findings
            .iter()
            .map(|f| format!("seq {}: {} {}: {}", f.seq, f.bank_reference, f.finding, f.detail)),
        report.deadline_findings_total,
    );
}

/// The first 20 of `total` lines, indented, and how many more `--json` lists.
fn print_listed(lines: impl Iterator<Item = String>, total: u64) {
    for line in lines.take(20) {
        println!("  {line}");
    }
    if total > 20 {
        println!("  ... {} more (use --json for up to 1000)", total - 20);
    }
}

pub fn proof(args: &ProofArgs) -> anyhow::Result<ExitCode> {
    let ledger = match Ledger::open(&args.data, Arc::new(SystemClock), Options::default()) {
        Ok(ledger) => ledger,
        Err(caseledger_ledger::Error::Locked { .. }) => Ledger::open_read_only(&args.data)?,
        Err(e) => return Err(e).with_context(|| format!("opening {}", args.data.display())),
    };
    let bundle = ledger.proof_bundle(args.seq)?;
    println!("{}", serde_json::to_string_pretty(&bundle)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct VerifyBundleArgs {
    /// Applicant bundle JSON (the `bundle` of GET /v1/verify/{code}, or the whole response).
    file: PathBuf,
    /// The ledger's node public key.
    #[arg(long)]
    key: PathBuf,
    /// The hex hash of the ledger's genesis entry, as the court publishes
    /// it (`GET /v1/node-key`): refuses a bundle of another ledger signed
    /// with the same node key.
    #[arg(long)]
    genesis: Option<String>,
    #[command(flatten)]
    witnesses: WitnessArgs,
    /// The certificate (PEM) of the CA of the court's time-stamp authority:
    /// the bundle must then carry a time-stamp of its checkpoint whose
    /// signature `openssl ts -verify` accepts with it (openssl must be
    /// installed).
    #[arg(long, value_name = "PEM")]
    tsa_ca: Option<PathBuf>,
}

/// Has `openssl ts -verify` check the TSA's signature on `answer` (a DER
/// TimeStampResp) over `text`, with the CA certificate `ca`.
fn openssl_ts_verify(answer: &[u8], text: &str, ca: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("making a temporary folder")?;
    let (answer_path, text_path) = (dir.path().join("checkpoint.tsr"), dir.path().join("checkpoint.txt"));
    std::fs::write(&answer_path, answer)?;
    std::fs::write(&text_path, text)?;
    let output = std::process::Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(&answer_path)
        .arg("-data")
        .arg(&text_path)
        .arg("-CAfile")
        .arg(ca)
        .output()
        .context("running openssl (is it installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl ts -verify refused the time-stamp with {}: {}",
        ca.display(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
            + " "
            + String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or("")
    );
    Ok(())
}

pub fn verify_bundle(args: &VerifyBundleArgs) -> anyhow::Result<ExitCode> {
    let node_key = files::read_public_key(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).context("the file is not JSON")?;
    let bundle_value = value.get("bundle").cloned().unwrap_or(value);
    let bundle: caseledger_verify::bundle::ApplicantBundle =
        serde_json::from_value(bundle_value).context("the file is not an applicant bundle")?;
    match bundle.verify(&node_key) {
        Ok(report)
            if args
                .genesis
                .as_deref()
                .is_some_and(|g| !g.trim().eq_ignore_ascii_case(&report.genesis_hash)) =>
        {
            println!(
                "FAILED: the bundle is of the ledger with genesis {}, not {}",
                report.genesis_hash,
                args.genesis.as_deref().unwrap_or_default().trim()
            );
            Ok(ExitCode::from(1))
        }
        Ok(report) => {
            let vouched = match args.witnesses.vouched(&bundle.checkpoint) {
                Ok(vouched) => vouched,
                Err(reason) => {
                    println!("FAILED: {reason:#}");
                    return Ok(ExitCode::from(1));
                }
            };
            // Every check runs before anything is said to hold: a refusal
            // is the only line printed.
            if let Some(at) = report.time_stamped_ms {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                if let Err(reason) = caseledger_verify::timestamp::check_not_future(at, now_ms) {
                    println!("FAILED: the checkpoint's time-stamp: {reason}");
                    return Ok(ExitCode::from(1));
                }
            }
            let time_stamp = match (report.time_stamped_ms, &args.tsa_ca, &bundle.timestamp) {
                (Some(at), Some(ca), Some(answer)) => {
                    let answer = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, answer)?;
                    if let Err(reason) = openssl_ts_verify(
                        &answer,
                        caseledger_verify::timestamp::stamped_text(&bundle.checkpoint),
                        ca,
                    ) {
                        println!("FAILED: {reason:#}");
                        return Ok(ExitCode::from(1));
                    }
                    Some(format!(
                        "- the checkpoint was time-stamped at {} by the time-stamp authority (its signature checked by openssl with {})",
                        caseledger::service::providers::utc_timestamp(at),
                        ca.display()
                    ))
                }
                (Some(at), None, _) => Some(format!(
                    "- the checkpoint carries a time-stamp of {} (its TSA signature not checked: give --tsa-ca)",
                    caseledger::service::providers::utc_timestamp(at)
                )),
                (None, Some(_), _) | (Some(_), Some(_), None) => {
                    println!("FAILED: the bundle carries no time-stamp of its checkpoint");
                    return Ok(ExitCode::from(1));
                }
                (None, None, _) => None,
            };
            println!(
                "OK: the bundle verifies (ledger genesis {}). It proves:",
                report.genesis_hash
            );
            for witness in vouched {
                println!("- the checkpoint was cosigned by witness {witness}");
            }
            if let Some(line) = time_stamp {
                println!("{line}");
            }
            for statement in report.statements() {
                println!("- {statement}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("FAILED: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn verify_proof(args: &VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let node_key = files::read_public_key(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let bundle: ProofBundle = serde_json::from_str(&text).context("the file is not a proof bundle")?;
    match bundle.verify(&node_key) {
        Ok(proven) => {
            let vouched = match args.witnesses.vouched(&bundle.checkpoint) {
                Ok(vouched) => vouched,
                Err(reason) => {
                    println!("FAILED: {reason:#}");
                    return Ok(ExitCode::from(1));
                }
            };
            let entry = &proven.entry;
            println!(
                "OK: entry {} ({}, naming key {} as its signer: a proof bundle does not prove the signature, the ledger's audit does) is entry {} of the {} entries of ledger {:?}, as signed by its node key",
                entry.seq,
                kind_name(entry.record.kind),
                entry.record.signer.short(),
                entry.seq,
                proven.tree_size,
                proven.origin
            );
            for witness in vouched {
                println!("cosigned by witness {witness}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("FAILED: {reason}");
            Ok(ExitCode::from(1))
        }
    }
}
