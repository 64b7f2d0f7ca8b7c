//! The applicant's page in a real browser (issue 16, first steps): Debian's
//! headless Chromium loads `GET /v1/verify#c=CODE` from a real `caseledger
//! serve`, runs the page's script (which fetches `/v1/verify/{code}` from
//! the same server) and the test reads the DOM it rendered: the code from
//! the SMS link opens the record at once, also typed in lower case with
//! spaces; a slip of one symbol, an unknown code and a revoked code each
//! say so in Chinese. Screenshots at phone (390×844) and desktop
//! (1280×900) sizes are saved under `$CARGO_TARGET_TMPDIR/browser/`.
//!
//! `.ci/run` installs `chromium` and `fonts-noto-cjk`; without them the
//! test fails (it does not skip).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use caseledger_verify::funds::applicant_code;
use caseledger_verify::funds::model::{applicant_code_hash, ApplicantCodeRevoked, KIND_APPLICANT_CODE_REVOKED};
use common::Serve;

const CASE: &str = "(2026)苏02执61号";

/// Headless Chromium with a fresh profile, no network but loopback, and
/// virtual time: it returns once the page is idle (its fetch answered).
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (.ci/run installs Debian's chromium)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The page's result area as the browser rendered it.
fn rendered(profile: &Path, url: &str) -> String {
    let out = chromium(profile, &["--dump-dom", url]);
    let dom = String::from_utf8(out.stdout).expect("utf8");
    let start = dom.find(r#"<div id="result""#).expect("the result area");
    let end = dom[start..].find("</div>").map_or(dom.len(), |e| start + e);
    dom[start..end].to_owned()
}

fn screenshot(profile: &Path, url: &str, size: &str, file: &Path) {
    chromium(
        profile,
        &[
            &format!("--window-size={size}"),
            &format!("--screenshot={}", file.display()),
            url,
        ],
    );
    let png = std::fs::read(file).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}

#[test]
fn the_applicant_opens_the_record_from_the_sms_link_and_mistakes_are_told_in_chinese() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("chromium-profile");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(61, "court.example/page");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    let serve = Serve::start(&data, &[]);
    common::set_up_staff(&serve.address, &staff);
    let officer = &staff.officers[0];
    let case = CaseRecords::new(&staff, officer, CASE);
    let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
    assert_eq!(clerk.write_numbered(&[case.open_request(1)]).expect("open").0, 201);
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    assert_eq!(
        finance.write(&[case.receipt("BANK-61", 612_345)]).expect("receipt").0,
        201
    );
    let officer_client = Client::new(&serve.address, officer.identity.clone());
    let (status, body) = officer_client.issue_applicant_code(CASE, "applicant-1").expect("issue");
    assert_eq!(status, 201, "{body}");
    let sms = loop {
        let line = serve
            .lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the SMS");
        if line.starts_with("[SMS applicant-code-") {
            break line;
        }
    };
    let (_, after) = sms.split_once("#c=").expect("the link carries the code");
    let code: String = after.chars().take_while(char::is_ascii_alphanumeric).collect();
    let page = |code: &str| format!("{}/v1/verify#c={code}", serve.address);
    // The fingerprint in the SMS is the published key's, and the page shows it.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let published: serde_json::Value = serde_json::from_str(
        &agent
            .get(&format!("{}/v1/node-key", serve.address))
            .call()
            .expect("node key")
            .body_mut()
            .read_to_string()
            .expect("body"),
    )
    .expect("json");
    let fingerprint = published["fingerprint"].as_str().expect("fingerprint").to_owned();
    assert!(sms.contains(&fingerprint), "{sms}");
    let dom = String::from_utf8(chromium(&profile, &["--dump-dom", &page(&code)]).stdout).expect("utf8");
    assert!(
        dom.contains(&format!(r#"<strong id="fingerprint">{fingerprint}</strong>"#)),
        "{dom}"
    );

    // From the link: checked at once, the record shown.
    let shown = rendered(&profile, &page(&code));
    assert!(shown.contains("<ol>") && shown.contains("<li>"), "{shown}");
    assert!(!shown.contains("error"), "{shown}");
    assert!(shown.contains(CASE), "{shown}");
    // As typed from the SMS: lower case, spaces between the groups.
    let typed = applicant_code::grouped(&code).to_lowercase().replace('-', "%20");
    let shown = rendered(&profile, &page(&typed));
    assert!(shown.contains("<ol>") && shown.contains(CASE), "{shown}");

    // Typed with a Chinese input method: full-width letters and dashes.
    let full_width: String = applicant_code::grouped(&code)
        .chars()
        .map(|c| char::from_u32(c as u32 - 0x20 + 0xFF00).expect("full width"))
        .collect();
    let encoded: String = full_width.bytes().map(|b| format!("%{b:02X}")).collect();
    let shown = rendered(&profile, &page(&encoded));
    assert!(shown.contains("<ol>") && shown.contains(CASE), "{shown}");
    // The query form of the link works too.
    let shown = rendered(&profile, &format!("{}/v1/verify?c={code}", serve.address));
    assert!(shown.contains("<ol>") && shown.contains(CASE), "{shown}");

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).expect("artifacts folder");
    screenshot(
        &profile,
        &page(&code),
        "390,844",
        &artifacts.join("verify-phone-390x844.png"),
    );
    screenshot(
        &profile,
        &page(&code),
        "1280,900",
        &artifacts.join("verify-desktop-1280x900.png"),
    );

    // One symbol slipped: told apart from an unknown code.
    let mut slipped = code.clone().into_bytes();
    slipped[3] = if slipped[3] == b'A' { b'B' } else { b'A' };
    let shown = rendered(&profile, &page(&String::from_utf8(slipped).expect("ASCII")));
    assert!(shown.contains("查询码有误"), "{shown}");
    let unknown = applicant_code::from_random([9; applicant_code::RANDOM_BYTES]);
    let shown = rendered(&profile, &page(&unknown));
    assert!(shown.contains("查询码不存在"), "{shown}");
    let shown = rendered(&profile, &page("12345"));
    assert!(shown.contains("查询码由17位数字和字母组成"), "{shown}");

    // Revoked by the officer: the page says so.
    let revoked = caseledger::court::sign(
        &staff.origin,
        KIND_APPLICANT_CODE_REVOKED,
        &ApplicantCodeRevoked {
            request_id: "revoke-61".into(),
            code_hash: applicant_code_hash(&code),
        },
        &officer.identity,
    );
    assert_eq!(officer_client.write(&[revoked]).expect("revoke").0, 201);
    let shown = rendered(&profile, &page(&code));
    assert!(shown.contains("此查询码已被撤销"), "{shown}");
}
