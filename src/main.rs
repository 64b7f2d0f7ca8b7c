//! The `caseledger` binary: command-line entry point.
//!
//! Exit codes: 0 success, 1 a verification found a problem, 2 usage or I/O
//! error, 3 the ledger's storage is damaged or failed its integrity check on
//! open (nothing was served or written; run `caseledger verify`).

use caseledger as _;

mod cli;
mod client_cmd;
mod demo;
mod demo_cases;
mod inspect;
mod report;

use std::process::ExitCode;

use clap::Parser as _;

/// Everything this process creates (the data folder, RocksDB's files, keys,
/// exports) is readable by its owner only: mode 0700 for folders, 0600 for
/// files. The ledger holds case parties' names and masked numbers, and the
/// folder holds the node and commitment keys.
fn restrict_new_files() {
    // SAFETY: `umask` only sets the process's file mode creation mask; it
    // takes an integer and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o077);
    }
}

/// mimalloc instead of glibc malloc: the HTTP path allocates per request,
/// and glibc's malloc/free took about 10 % of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    restrict_new_files();
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            let damaged = error.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<caseledger_ledger::Error>(),
                    Some(
                        caseledger_ledger::Error::Damaged(_)
                            | caseledger_ledger::Error::Corrupt { .. }
                            | caseledger_ledger::Error::Integrity { .. }
                    )
                )
            });
            ExitCode::from(if damaged { 3 } else { 2 })
        }
    }
}
