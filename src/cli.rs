//! Command-line arguments and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tamper-evident ledger for court enforcement case funds.
#[derive(Debug, Parser)]
#[command(name = "caseledger", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether the command is a server (it writes to sockets, where a
    /// closed peer must be an error, never a signal that kills it).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve { .. } | Command::Witness { .. })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (creates the ledger with a node key on first start).
    Serve {
        /// TOML configuration file; `CASELEDGER_*` environment variables and flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ledger folder.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8470.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Create a ledger folder for a new court: node key, genesis, its two administrators.
    Init {
        /// The new ledger's folder (created; must not hold a ledger).
        #[arg(long)]
        data: PathBuf,
        /// The ledger's origin (checkpoint name), e.g. wxzy.court.example/case-funds.
        #[arg(long)]
        origin: String,
        /// The first administrator's key file (public; a private key file gives its
        /// public half); a new key is written to DATA/admin.key if absent.
        #[arg(long)]
        admin_key: Option<PathBuf>,
        /// The second administrator's key file, who co-signs the first one's key
        /// registrations; a new key is written to DATA/admin-2.key if absent.
        #[arg(long)]
        second_admin_key: Option<PathBuf>,
        /// Where new administrator keys are written instead of DATA (a
        /// folder made 0700), so that the data folder never holds them.
        #[arg(long, value_name = "DIR")]
        admin_keys: Option<PathBuf>,
    },
    /// Print every configuration key of `serve` with its default and
    /// meaning (Markdown; docs/CONFIG.md is this output).
    ConfigReference,
    /// Call the API as a court member: signed records and signed reads.
    Client(crate::client_cmd::ClientArgs),
    /// Make a court work: enrol members, co-sign enrolments, record
    /// phones, propose and approve the policy (administrators, the court
    /// leader), through the API.
    Admin(crate::admin_cmd::AdminArgs),
    /// Notifications that could not be delivered (administrators and auditors):
    /// list the dead letters, send one again.
    Sms(crate::client_cmd::SmsArgs),
    /// Write synthetic signed entries into a ledger folder (created if needed).
    Demo(crate::demo::DemoArgs),
    /// Audit a ledger folder offline: hash chain, signatures, checkpoints, Merkle roots.
    Verify(crate::inspect::VerifyArgs),
    /// Write a ledger folder as NDJSON (entries and checkpoints), the format of GET /v1/export.
    Export(crate::inspect::ExportArgs),
    /// Audit an NDJSON export offline with the same rules as `verify` (no database).
    VerifyExport(crate::inspect::VerifyExportArgs),
    /// Print a proof bundle (entry, inclusion proof, signed checkpoint) as JSON.
    Proof(crate::inspect::ProofArgs),
    /// Check a proof bundle without any database.
    VerifyProof(crate::inspect::VerifyProofArgs),
    /// Check an applicant's bundle offline and say in words what it proves.
    VerifyBundle(crate::inspect::VerifyBundleArgs),
    /// Print one case's balance, receipts, disbursements and history as a person reads it.
    Report(crate::report::ReportArgs),
    /// Open a ledger whose write-ahead log ends in a torn record (a write cut
    /// short by a crash or a full disk) without that record, check it as
    /// `serve` does, and close it whole. Only when you know the log was not
    /// cut: a cut log loses the acknowledged entries after the cut.
    Recover {
        /// TOML configuration file (for the node key file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ledger folder.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Drop the torn record at the end of the write-ahead log.
        #[arg(long, required = true)]
        drop_torn_log_tail: bool,
    },
    /// Make a witness's folder (another institution's: the procuratorate,
    /// the higher court, the bank): a new cosigning key and an empty state.
    /// Prints the witness's key, for the courts whose ledgers it witnesses.
    WitnessInit {
        /// The witness's folder (created).
        #[arg(long)]
        data: PathBuf,
        /// The witness's name, e.g. witness.procuratorate.example/w1.
        #[arg(long)]
        name: String,
    },
    /// Run a witness (C2SP tlog-witness): cosign each checkpoint of the
    /// given logs that extends the last one it cosigned.
    Witness {
        /// The witness's folder (made by `witness-init`).
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:8480.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// A log to witness: ORIGIN=VKEY, VKEY the log's note verifier key
        /// (`GET /v1/node-key`, `note_verifier_key`). Repeatable.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
    /// Generate an Ed25519 key pair: FILE (private, mode 0600) and FILE.pub.
    Keygen {
        /// Path of the private key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Serve { config, data, listen } => {
                let overrides = caseledger::service::config::Overrides { data, listen };
                let config = caseledger::service::config::Config::load(config.as_deref(), &overrides)?;
                caseledger::service::serve::run(config)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Recover { config, data, .. } => {
                let overrides = caseledger::service::config::Overrides { data, listen: None };
                let config = caseledger::service::config::Config::load(config.as_deref(), &overrides)?;
                caseledger::service::serve::recover_torn_log_tail(&config)
            }
            Command::Init {
                data,
                origin,
                admin_key,
                second_admin_key,
                admin_keys,
            } => {
                let administrators = caseledger::service::serve::GenesisAdministrators {
                    first: admin_key.as_deref(),
                    second: second_admin_key.as_deref(),
                    keys_dir: admin_keys.as_deref(),
                };
                let (ledger, keys) =
                    caseledger::service::serve::init(&data, &origin, administrators, None, Default::default())?;
                println!(
                    "created a ledger for {origin} in {} with {} entry",
                    data.display(),
                    ledger.size()
                );
                caseledger::service::serve::print_administrator_keys(&keys);
                if admin_keys.is_none() && keys.iter().any(|k| k.written) {
                    println!(
                        "the new administrator keys lie in {} beside the node key: move them out now \
                         (next time: init --admin-keys DIR writes them elsewhere)",
                        data.display()
                    );
                }
                ledger.close()?;
                Ok(ExitCode::SUCCESS)
            }
            Command::ConfigReference => {
                print!("{}", crate::config_reference::reference());
                Ok(ExitCode::SUCCESS)
            }
            Command::Client(args) => crate::client_cmd::run(&args),
            Command::Admin(args) => crate::admin_cmd::run(&args),
            Command::Sms(args) => crate::client_cmd::run_sms(&args),
            Command::Demo(args) => crate::demo::run(&args),
            Command::Verify(args) => crate::inspect::verify(&args),
            Command::Export(args) => crate::inspect::export(&args),
            Command::VerifyExport(args) => crate::inspect::verify_export(&args),
            Command::Proof(args) => crate::inspect::proof(&args),
            Command::VerifyProof(args) => crate::inspect::verify_proof(&args),
            Command::VerifyBundle(args) => crate::inspect::verify_bundle(&args),
            Command::Report(args) => crate::report::run(&args),
            Command::Keygen { out } => keygen(&out),
            Command::WitnessInit { data, name } => {
                let cosigner = caseledger::witness::init(&data, &name)?;
                println!("witness {name} made in {}", data.display());
                println!("its key (give it to the courts it witnesses): {}", cosigner.witness());
                Ok(ExitCode::SUCCESS)
            }
            Command::Witness { data, listen, logs } => {
                let logs = logs
                    .iter()
                    .map(|log| caseledger::witness::Log::parse(log))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let witness = caseledger::witness::Witness::open(&data, logs)?;
                caseledger::witness::http::serve(witness, listen)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    if let Some(folder) = out.parent().filter(|f| !f.as_os_str().is_empty()) {
        // Made 0700 (the process's umask), like every folder it makes.
        anyhow::Context::with_context(std::fs::create_dir_all(folder), || {
            format!("creating {}", folder.display())
        })?;
    }
    let identity = caseledger_keys::Identity::generate();
    caseledger_keys::files::write_private_key(out, &identity)?;
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    caseledger_keys::files::write_public_key(&public_path, &identity.public_key())?;
    println!("private key: {} (mode 0600)", out.display());
    println!("public key:  {}", public_path.display());
    println!("key id:      {}", identity.public_key().key_id());
    Ok(ExitCode::SUCCESS)
}
