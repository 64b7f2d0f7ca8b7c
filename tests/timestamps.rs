//! RFC 3161 time-stamps of checkpoints: `serve` asks a time-stamp
//! authority for each new checkpoint and serves its answer, which
//! `openssl ts -verify` accepts for the checkpoint's text and refuses for
//! any other. The TSA is `openssl ts -reply` behind a small HTTP server on
//! loopback, with a CA and a TSA certificate made for the test, as a real
//! one would be.

mod common;

use std::process::Command;

use common::tsa::{make_tsa, serve_tsa};
use common::*;

#[test]
fn each_checkpoint_is_time_stamped_and_openssl_verifies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tsa_dir = dir.path().join("tsa");
    make_tsa(&tsa_dir);
    let tsa_url = serve_tsa(&tsa_dir);
    let staff = caseledger::court::Staff::from_seed(97, ORIGIN);
    let data = dir.path().join("data");
    init_court(dir.path(), &data, &staff);
    let serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_TSA_URL", tsa_url.as_str()),
            ("CASELEDGER_WITNESS_POLL_MS", "50"),
            ("CASELEDGER_CHECKPOINT_EVERY_MS", "100"),
        ],
    );
    set_up_staff(&serve.address, &staff);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // The newest checkpoint, once its time-stamp is there (a minute at most).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (note, stamp) = loop {
        let note = agent
            .get(&format!("{}/v1/checkpoint", serve.address))
            .call()
            .expect("checkpoint")
            .body_mut()
            .read_to_string()
            .expect("note");
        let size: u64 = note.lines().nth(1).and_then(|l| l.parse().ok()).expect("size");
        let mut response = agent
            .get(&format!("{}/v1/checkpoints/{size}/timestamp", serve.address))
            .call()
            .expect("timestamp");
        if response.status().as_u16() == 200 && size > 1 {
            let content_type = response.headers().get("content-type").cloned();
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/timestamp-reply")
            );
            break (note, response.body_mut().read_to_vec().expect("body"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no time-stamp of checkpoint {size}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = note.split("\n\n").next().expect("body").to_owned() + "\n";
    std::fs::write(tsa_dir.join("stamp.tsr"), &stamp).expect("stamp");
    std::fs::write(tsa_dir.join("checkpoint.txt"), &text).expect("text");
    std::fs::write(tsa_dir.join("other.txt"), text.replacen('\n', "\n1", 1)).expect("other");
    let verify = |data: &str| {
        Command::new("openssl")
            .args(["ts", "-verify", "-in", "stamp.tsr", "-data", data, "-CAfile", "ca.crt"])
            .current_dir(&tsa_dir)
            .output()
            .expect("openssl ts -verify")
    };
    let out = verify("checkpoint.txt");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !verify("other.txt").status.success(),
        "another text is not this time-stamp's"
    );
    // No time-stamp of a size never checkpointed.
    let missing = agent
        .get(&format!("{}/v1/checkpoints/999999/timestamp", serve.address))
        .call()
        .expect("timestamp");
    assert_eq!(missing.status().as_u16(), 404);
}
