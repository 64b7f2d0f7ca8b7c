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

#[derive(Debug, Subcommand)]
enum Command {
    /// Write synthetic signed entries into a ledger folder (created if needed).
    Demo(crate::demo::DemoArgs),
    /// Audit a ledger folder offline: hash chain, signatures, checkpoints, Merkle roots.
    Verify(crate::inspect::VerifyArgs),
    /// Print a proof bundle (entry, inclusion proof, signed checkpoint) as JSON.
    Proof(crate::inspect::ProofArgs),
    /// Check a proof bundle without any database.
    VerifyProof(crate::inspect::VerifyProofArgs),
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
            Command::Demo(args) => crate::demo::run(&args),
            Command::Verify(args) => crate::inspect::verify(&args),
            Command::Proof(args) => crate::inspect::proof(&args),
            Command::VerifyProof(args) => crate::inspect::verify_proof(&args),
            Command::Keygen { out } => keygen(&out),
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let identity = caseledger_keys::Identity::generate();
    caseledger_keys::files::write_private_key(out, &identity)?;
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    caseledger_keys::files::write_public_key(&public_path, &identity.public_key())?;
    println!("private key: {} (mode 0600)", out.display());
    println!("public key:  {}", public_path.display());
    println!("key id:      {}", identity.public_key().key_id());
    Ok(ExitCode::SUCCESS)
}
