//! `caseledger client`: a court member's command line for the API. Every
//! request is signed (RFC 9421) with the member's key file, and every record
//! with the same key (docs/FORMAT.md §3, §7b).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use caseledger::service::client::Client;
use caseledger_keys::files;
use caseledger_ledger::entry::Record;

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8470
    #[arg(long, default_value = "http://127.0.0.1:8470")]
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
        /// Record kind, e.g. 272 (0x0110) for case_opened; see docs/FORMAT.md.
        #[arg(long)]
        kind: u16,
        /// JSON payload file, sent exactly as signed.
        #[arg(long)]
        payload: PathBuf,
    },
    /// A signed GET, e.g. /v1/steps/pending or /v1/entries/7.
    Get { path: String },
}

pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let identity = files::read_private_key(&args.key)?;
    let client = Client::new(&args.url, identity.clone());
    let (status, body) = match &args.command {
        ClientCommand::Record { kind, payload } => {
            let bytes = std::fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
            serde_json::from_slice::<serde_json::Value>(&bytes).context("the payload file is not JSON")?;
            client.write(&[Record::sign(*kind, bytes, &identity)])?
        }
        ClientCommand::Get { path } => client.get(path)?,
    };
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
