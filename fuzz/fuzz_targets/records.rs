#![no_main]

#[path = "../../src/service/httpsig.rs"]
#[allow(dead_code)]
mod httpsig;
#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

static FIXTURE: std::sync::OnceLock<(targets::Fixture, Vec<caseledger_verify::entry::Record>)> =
    std::sync::OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (fixture, setup) = FIXTURE.get_or_init(|| {
        let fixture = targets::Fixture::new();
        let setup = fixture.setup();
        (fixture, setup)
    });
    targets::records(fixture, setup, data)
});
