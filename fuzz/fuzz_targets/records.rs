#![no_main]

#[path = "../../src/service/httpsig.rs"]
#[allow(dead_code)]
mod httpsig;
#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

static FIXTURE: std::sync::OnceLock<targets::Fixture> = std::sync::OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::records(FIXTURE.get_or_init(targets::Fixture::new), data));
