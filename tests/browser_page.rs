//! The applicant's page in a real browser (issue 16): Debian's headless
//! Chromium, driven over WebDriver by `chromedriver`, against a real
//! `caseledger serve`. The page fetches the applicant's bundle, checks it
//! itself with the verifier compiled to WebAssembly and shows, in
//! Chinese first, what it proved: the money received and held, an overdue
//! receipt, a payment waiting for finance, a paid one. Typed codes, a slip,
//! an unknown and a revoked code are each told in words. Through a proxy
//! that plays a lying server, a bundle with a step left out fails the
//! browser's own check, and a server statement the bundle does not bear
//! out is called a disagreement; a history that does not extend the
//! checkpoint the browser saw before is refused. A case with 50 payments is checked and
//! the time it took is reported (not asserted). Screenshots at 390×844 and
//! 1280×900 go to `$CARGO_TARGET_TMPDIR/browser/`.
//!
//! `.ci/run` installs `chromium`, `chromium-driver` and `fonts-noto-cjk`;
//! without them the test fails (it does not skip).

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use caseledger::court::{today_cst, CaseRecords, Staff};
use caseledger::service::client::Client;
use caseledger_verify::funds::applicant_code;
use caseledger_verify::funds::model::{
    applicant_code_hash, ApplicantCodeRevoked, Decision, Role, KIND_APPLICANT_CODE_REVOKED,
};
use common::webdriver::Driver;
use common::Serve;

const CASE: &str = "(2026)苏02执61号";
const BIG_CASE: &str = "(2026)苏02执62号";

/// What the proxy in front of the real server changes in its answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    None,
    /// Leaves the last entry out of the first disbursement's thread.
    DropStep,
    /// Says the court holds ¥1,000.00 more than the bundle shows.
    MoreHeld,
    /// Answers a consistency proof that does not hold (a rewritten history).
    BadConsistency,
}

/// A lying server: forwards every GET to the real one, and changes the
/// applicant's JSON as `lie` says.
fn lying_proxy(upstream: String, lie: Arc<Mutex<Lie>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let upstream = upstream.clone();
            let lie = Arc::clone(&lie);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                // As of the request (the browser opens connections ahead).
                let lie = *lie.lock().expect("lie");
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let Ok(mut response) = agent.get(&format!("{upstream}{path}")).call() else {
                    return;
                };
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let mut body = response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .expect("body");
                if lie == Lie::BadConsistency && path.starts_with("/v1/proofs/consistency") && status == 200 {
                    let mut value: serde_json::Value = serde_json::from_slice(&body).expect("json");
                    value["proof"] = serde_json::json!(["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]);
                    body = serde_json::to_vec(&value).expect("json");
                }
                let is_bundle = path.starts_with("/v1/verify/") && status == 200;
                if is_bundle && lie != Lie::None {
                    let mut value: serde_json::Value = serde_json::from_slice(&body).expect("json");
                    match lie {
                        Lie::DropStep => {
                            let threads = value["bundle"]["threads"].as_array_mut().expect("threads");
                            let disbursement = threads
                                .iter_mut()
                                .find(|t| t["name"][0] == "disbursement")
                                .expect("a disbursement thread");
                            disbursement["seqs"].as_array_mut().expect("seqs").pop();
                        }
                        Lie::MoreHeld => {
                            let held = value["report"]["held_fen"].as_u64().expect("held");
                            value["report"]["held_fen"] = (held + 100_000).into();
                        }
                        Lie::None | Lie::BadConsistency => {}
                    }
                    body = serde_json::to_vec(&value).expect("json");
                }
                let mut stream = stream;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    address
}

/// The code in the next applicant-code SMS the console provider prints.
fn code_from_sms(serve: &Serve) -> (String, String) {
    let sms = loop {
        let line = serve
            .lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the SMS");
        if line.starts_with("[SMS applicant-code-") {
            break line;
        }
    };
    let (_, after) = sms.split_once("#c=").expect("the link carries the code");
    let code: String = after.chars().take_while(char::is_ascii_alphanumeric).collect();
    (code, sms)
}

fn write(client: &Client, records: &[caseledger_verify::entry::Record]) {
    let (status, body) = client.write(records).expect("write");
    assert_eq!(status, 201, "{body}");
}

/// A case whose applicant has a confirmed account and money on it.
fn open_case(serve: &Serve, staff: &Staff, case: &CaseRecords, account: &str) {
    let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
    // Two applicants: the page shows the first nothing of the second.
    assert_eq!(clerk.write_numbered(&[case.open_request(2)]).expect("open").0, 201);
    let officer = Client::new(&serve.address, staff.officers[0].identity.clone());
    let (status, body) = officer
        .write_numbered(&[case.account_request(account, 1, "6222000011116161")])
        .expect("account");
    assert_eq!(status, 201, "{body}");
    write(&officer, &[case.confirm(account)]);
}

/// Requests, approves (both steps) and pays each of `ids` in four writes.
fn pay_all(serve: &Serve, staff: &Staff, case: &CaseRecords, account: &str, ids: &[String], amount: u64) {
    let origin = &staff.origin;
    let by = |person: &caseledger::court::Person| Client::new(&serve.address, person.identity.clone());
    let requests: Vec<_> = ids.iter().map(|id| case.request(id, account, amount)).collect();
    write(&by(&staff.officers[0]), &requests);
    let step = |n: u32, role: Role, person: &caseledger::court::Person| -> Vec<_> {
        ids.iter()
            .map(|id| case.approval(origin, id, account, amount, n, role, Decision::Approve, person))
            .collect()
    };
    write(&by(&staff.bureau_head), &step(1, Role::BureauHead, &staff.bureau_head));
    let mut finance = step(2, Role::Finance, &staff.finance);
    finance.extend(
        ids.iter()
            .map(|id| case.payment(id, &format!("PAY-{id}"), account, amount)),
    );
    write(&by(&staff.finance), &finance);
}

#[test]
fn the_applicant_checks_their_money_in_their_own_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(61, "court.example/page");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    // With the court's time-stamp authority (openssl ts on loopback).
    let tsa_dir = dir.path().join("tsa");
    common::tsa::make_tsa(&tsa_dir);
    let tsa_url = common::tsa::serve_tsa(&tsa_dir);
    let serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_APPLICANT_HOTLINE", "0510-12368"),
            ("CASELEDGER_TSA_URL", tsa_url.as_str()),
            ("CASELEDGER_WITNESS_POLL_MS", "50"),
            ("CASELEDGER_CHECKPOINT_EVERY_MS", "100"),
        ],
    );
    common::set_up_staff(&serve.address, &staff);
    let officer = &staff.officers[0];
    let officer_client = Client::new(&serve.address, officer.identity.clone());
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let head = Client::new(&serve.address, staff.bureau_head.identity.clone());

    // Money that arrived in September (long overdue) and today; one
    // payment made, one waiting for finance.
    let case = CaseRecords::new(&staff, officer, CASE);
    open_case(&serve, &staff, &case, "acct-61");
    write(
        &finance,
        &[
            case.receipt_on("BANK-61", 1_000_000, "2026-09-01"),
            case.receipt_on("BANK-62", 500_000, &today_cst()),
        ],
    );
    pay_all(&serve, &staff, &case, "acct-61", &["d-0".to_owned()], 200_000);
    write(&officer_client, &[case.request("d-1", "acct-61", 300_000)]);
    write(
        &head,
        &[case.approval(
            &staff.origin,
            "d-1",
            "acct-61",
            300_000,
            1,
            Role::BureauHead,
            Decision::Approve,
            &staff.bureau_head,
        )],
    );
    let (status, body) = officer_client.issue_applicant_code(CASE, "applicant-1").expect("issue");
    assert_eq!(status, 201, "{body}");
    let (code, sms) = code_from_sms(&serve);
    // Every record is in a checkpoint the TSA has stamped.
    let issued = body["seq"].as_u64().expect("seq");
    common::tsa::newest_stamped(&serve.address, issued + 1);

    let profile = dir.path().join("chromium-profile");
    let browser = Driver::start(&profile, 390, 844);
    let page = |base: &str, code: &str| format!("{base}/v1/verify#c={code}");
    let status_of = |browser: &Driver| {
        browser.wait_text("#status, #message", |t| !t.is_empty() && !t.contains("正在核验"));
        browser.attribute("#status", "data-status").unwrap_or_default()
    };

    // From the SMS link: checked at once by the browser itself.
    browser.goto(&page(&serve.address, &code));
    assert_eq!(status_of(&browser), "pass", "{}", browser.text("body"));
    let fingerprint = browser.text("#fingerprint");
    assert!(sms.contains(&fingerprint), "the SMS names the page's key: {sms}");
    // The page pins the key and the genesis that `GET /v1/node-key` publishes.
    let published = browser.execute(
        "return fetch('/v1/node-key').then(r => r.json());",
        serde_json::json!([]),
    );
    assert_eq!(published["fingerprint"], fingerprint.as_str());
    assert_eq!(
        browser.attribute("#node-key", "data-genesis").as_deref(),
        published["genesis_hash"].as_str()
    );
    assert_eq!(
        browser.attribute("#node-key", "data-public-key").as_deref(),
        published["public_key"].as_str()
    );
    let shown = browser.text("#result");
    for expected in [
        "✔ 核验通过",
        CASE,
        "申请执行人：申请人1",
        "已到账\n¥15,000.00",
        "已发放\n¥2,000.00",
        "法院仍保管\n¥13,000.00",
        "付款人：被执行人公司",
        "法定发放期限：2026-09-30",
        "已超过期限",
        "已汇出，银行流水号 PAY-d-0",
        "执行局长 孙局长 同意",
        "等待财务人员审批",
        "0510-12368",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
    // The time-stamp the bundle carries: today, by the TSA.
    let stamped = browser.text("#time-stamped");
    assert!(
        stamped.contains("时间戳") && stamped.contains(&today_cst()),
        "{stamped}"
    );
    assert!(
        !shown.contains("checkpoint") && !shown.contains("entry"),
        "no jargon on the first screen:\n{shown}"
    );
    // Least disclosure: not the co-applicant, nor a member's id or phone.
    let page_source = browser.execute("return document.documentElement.outerHTML;", serde_json::json!([]));
    let page_source = page_source.as_str().unwrap_or_default();
    let mut not_theirs = vec![
        "申请人2".to_owned(),
        "applicant-2".to_owned(),
        CaseRecords::applicant_phone(2),
    ];
    for person in staff.members() {
        not_theirs.extend([person.member_id.clone(), person.phone.clone()]);
    }
    for value in &not_theirs {
        assert!(!page_source.contains(value.as_str()), "the page shows {value:?}");
    }
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).expect("artifacts folder");
    browser.screenshot(&artifacts.join("verify-phone-390x844.png"));
    browser.execute(
        "document.getElementById('disbursements').scrollIntoView();",
        serde_json::json!([]),
    );
    browser.screenshot(&artifacts.join("verify-phone-390x844-payments.png"));
    browser.set_window(1280, 900);
    browser.execute("window.scrollTo(0, 0);", serde_json::json!([]));
    browser.screenshot(&artifacts.join("verify-desktop-1280x900.png"));
    // The technical details: the download is the bundle it checked.
    browser.click("#technical summary");
    let technical = browser.text("#technical");
    assert!(
        technical.contains("完整性链") && technical.contains("核验程序 SHA-256"),
        "{technical}"
    );
    assert!(browser
        .attribute("#download", "href")
        .is_some_and(|h| h.starts_with("blob:")));
    // English is a switch, not a second text alongside.
    browser.click("#lang");
    let english = browser.wait_text("#status", |t| t.contains("Verified"));
    assert!(!english.contains("核验"), "{english}");
    let shown = browser.text("#result");
    assert!(
        shown.contains("waiting for the finance") && shown.contains("days overdue"),
        "{shown}"
    );
    browser.click("#lang");
    browser.wait_text("#status", |t| t.contains("核验通过"));

    // Typed by hand, in lower case with spaces, into the form.
    browser.goto(&format!("{}/v1/verify", serve.address));
    browser.type_into(
        "#code",
        &applicant_code::grouped(&code).to_lowercase().replace('-', " "),
    );
    browser.click("#submit");
    assert_eq!(status_of(&browser), "pass");
    // With a Chinese input method's full-width letters and dashes.
    let full_width: String = applicant_code::grouped(&code)
        .chars()
        .map(|c| char::from_u32(c as u32 - 0x20 + 0xFF00).expect("full width"))
        .collect();
    browser.type_into("#code", &full_width);
    browser.click("#submit");
    assert_eq!(status_of(&browser), "pass");

    // Mistakes, told apart in words.
    let mut slipped = code.clone().into_bytes();
    slipped[3] = if slipped[3] == b'A' { b'B' } else { b'A' };
    browser.type_into("#code", &String::from_utf8(slipped).expect("ASCII"));
    browser.click("#submit");
    assert!(browser
        .wait_text("#message", |t| !t.is_empty() && !t.contains("正在"))
        .contains("查询码有误"));
    browser.type_into("#code", &applicant_code::from_random([9; applicant_code::RANDOM_BYTES]));
    browser.click("#submit");
    assert!(browser
        .wait_text("#message", |t| t.contains("查询码") && !t.contains("正在"))
        .contains("查询码不存在"));
    browser.type_into("#code", "12345");
    browser.click("#submit");
    assert!(browser
        .wait_text("#message", |t| t.contains("17") || t.contains("不存在"))
        .contains("查询码由17位数字和字母组成"));

    // A lying server (a proxy in front of the real one): a bundle with a
    // step left out fails the browser's own check...
    let lie = Arc::new(Mutex::new(Lie::DropStep));
    let proxy = lying_proxy(serve.address.clone(), Arc::clone(&lie));
    browser.goto(&page(&proxy, &code));
    assert_eq!(status_of(&browser), "fail", "{}", browser.text("body"));
    let shown = browser.text("#result");
    assert!(shown.contains("✘ 核验失败") && shown.contains("0510-12368"), "{shown}");
    browser.click("#technical summary");
    assert!(
        browser.text("#technical").contains("not whole"),
        "{}",
        browser.text("#technical")
    );
    browser.screenshot(&artifacts.join("verify-tampered-1280x900.png"));
    // ...and a statement the bundle does not bear out is called out.
    *lie.lock().expect("lie") = Lie::MoreHeld;
    // (The query form of the link: a new page, not the same one's fragment.)
    browser.goto(&format!("{proxy}/v1/verify?c={code}"));
    assert_eq!(status_of(&browser), "warn", "{}", browser.text("body"));
    let shown = browser.text("#result");
    assert!(shown.contains("服务器的说法与核验结果不一致"), "{shown}");
    assert!(
        shown.contains("法院仍保管\n¥13,000.00"),
        "the browser's figure, not the server's:\n{shown}"
    );

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
    write(&officer_client, &[revoked]);
    browser.goto(&page(&serve.address, &code));
    assert!(browser
        .wait_text("#message", |t| !t.is_empty() && !t.contains("正在"))
        .contains("此查询码已被撤销"));

    // A case with 50 payments: checked in the browser, the time reported.
    let big = CaseRecords::new(&staff, officer, BIG_CASE);
    open_case(&serve, &staff, &big, "acct-62");
    write(&finance, &[big.receipt_on("BANK-BIG", 10_000_000, &today_cst())]);
    let ids: Vec<String> = (0..50).map(|n| format!("b-{n:02}")).collect();
    pay_all(&serve, &staff, &big, "acct-62", &ids, 100_000);
    let (status, body) = officer_client
        .issue_applicant_code(BIG_CASE, "applicant-1")
        .expect("issue");
    assert_eq!(status, 201, "{body}");
    let (big_code, _) = code_from_sms(&serve);
    browser.goto(&page(&serve.address, &big_code));
    assert_eq!(status_of(&browser), "pass", "{}", browser.text("body"));
    assert_eq!(
        browser.execute(
            "return document.querySelectorAll('.disbursement').length;",
            serde_json::json!([])
        ),
        50
    );
    let millis = browser.execute(
        "return document.getElementById('check-ms').textContent;",
        serde_json::json!([]),
    );
    let bundle_bytes = browser.execute(
        "return fetch(location.pathname + '/' + arguments[0]).then(r => r.text()).then(t => t.length);",
        serde_json::json!([big_code]),
    );
    let page_bytes = browser.execute(
        "return fetch(location.pathname).then(r => r.text()).then(t => new TextEncoder().encode(t).length);",
        serde_json::json!([]),
    );
    let entries = browser.execute(
        "return fetch(location.pathname + '/' + arguments[0]).then(r => r.json()).then(j => j.report.entries);",
        serde_json::json!([big_code]),
    );
    let module = std::fs::metadata(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("verify-wasm/wasm32-unknown-unknown/release/caseledger_verify_wasm.wasm"),
    )
    .map(|m| m.len())
    .unwrap_or_default();
    // This browser remembers the checkpoint it saw through the proxy (the
    // visit above); a proof that the new one extends it, rewritten by the
    // proxy, fails the check: a history rewritten since is refused.
    *lie.lock().expect("lie") = Lie::BadConsistency;
    browser.goto(&format!("{proxy}/v1/verify?c={big_code}&again=1"));
    assert_eq!(status_of(&browser), "fail", "{}", browser.text("body"));
    browser.click("#technical summary");
    let technical = browser.text("#technical");
    assert!(technical.contains("history was rewritten"), "{technical}");

    let report = format!(
        "50-payment case ({entries} entries) checked in headless Chromium in {} ms; its answer is {bundle_bytes} bytes; the page is {page_bytes} bytes and its verifier module {module} bytes\n",
        millis.as_str().unwrap_or("?")
    );
    println!("{report}");
    std::fs::write(artifacts.join("report.txt"), report).expect("report");
}
