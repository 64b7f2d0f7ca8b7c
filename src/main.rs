//! The `caseledger` binary: command-line entry point.
//!
//! Exit codes: 0 success, 1 a verification found a problem, 2 usage or I/O error.

use caseledger as _;

mod cli;
mod client_cmd;
mod demo;
mod demo_cases;
mod inspect;
mod report;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc malloc: the HTTP path allocates per request,
/// and glibc's malloc/free took about 10 % of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
