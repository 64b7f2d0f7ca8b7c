#![no_main]

#[path = "../../src/service/httpsig.rs"]
#[allow(dead_code)]
mod httpsig;
#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::bundle(data));
