//! The caseledger service crate: court workflow helpers shared by the CLI,
//! the demo and the tests (the HTTP service and SMS come with later issues).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod court;
pub mod service;
