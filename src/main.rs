//! The `caseledger` binary: command-line entry point.
//!
//! Exit codes: 0 success, 1 a verification found a problem, 2 usage or I/O
//! error, 3 the ledger's storage is damaged or failed its integrity check on
//! open (nothing was served or written; run `caseledger verify`).

use caseledger as _;

mod admin_cmd;
mod cli;
mod client_cmd;
mod config_reference;
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

/// A command whose output is cut short (`caseledger verify | head`) ends
/// as Unix tools do, by SIGPIPE, instead of panicking in `println!` (Rust
/// ignores SIGPIPE by default). Servers keep ignoring it.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: `signal` sets the disposition of one signal to its default;
    // no handler of ours runs and no memory is shared.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// mimalloc instead of glibc malloc: the HTTP path allocates per request,
/// and glibc's malloc/free took about 10 % of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    restrict_new_files();
    let cli = cli::Cli::parse();
    if !cli.serves() {
        die_quietly_on_a_closed_pipe();
    }
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
