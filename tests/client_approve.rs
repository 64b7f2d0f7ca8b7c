//! An approver signs a step from the command line: `caseledger client
//! approve` asks for a code, the running `serve` sends it by SMS (the
//! console provider prints it), the approver types it in, and the signed
//! step is written; `verify` then counts the SMS confirmation.

mod common;

use common::Serve;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use caseledger_verify::funds::model::{CaseOpened, KIND_CASE_OPENED};

#[test]
fn an_approver_signs_a_step_with_the_code_from_their_phone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(91, "court.example/approve");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");

    // Logged at info, as JSON lines (stderr is not a terminal).
    let mut serve = Serve::start(&data, &[("CASELEDGER_LOG", "info")]);
    // Every secret the flow uses, to look for in the log at the end.
    let mut secrets: Vec<String> = Vec::new();
    let address = serve.address.clone();
    // The administrator enrols the staff and proposes the policy; the second
    // administrator co-signs each enrolment; the court leader's co-signature
    // puts the policy in force.
    common::set_up_staff(&address, &staff);
    let head = &staff.bureau_head;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body =
        serde_json::to_vec(&serde_json::json!({"member_id": head.member_id, "phone": head.phone})).expect("json");
    let mut request = agent.post(&format!("{address}/v1/contacts/members"));
    for (name, value) in caseledger::service::client::sign_request(
        &staff.administrator.identity,
        &caseledger::service::client::authority_of(&address),
        "POST",
        "/v1/contacts/members",
        &body,
    ) {
        request = request.header(&name, &value);
    }
    assert_eq!(request.send(&body[..]).expect("contact").status().as_u16(), 204);

    let officer = &staff.officers[0];
    let case = CaseRecords::new(&staff, officer, "(2026)苏02执11号");
    let officer_client = Client::new(&address, officer.identity.clone());
    // The filing clerk opens the case with the command-line client, the
    // applicant's phone given in clear in a file.
    let (opened, phones) = case.open_request(1);
    let clerk_key = dir.path().join("clerk.key");
    caseledger_keys::files::write_private_key(&clerk_key, &staff.filing_clerk.identity).expect("key");
    std::fs::write(dir.path().join("case.json"), &opened.payload).expect("payload");
    std::fs::write(dir.path().join("phones.txt"), phones.join("\n")).expect("numbers");
    // The applicants and respondents the payload conceals (§3j), one per line.
    std::fs::write(dir.path().join("disclosures.txt"), opened.disclosures.join("\n")).expect("disclosures");
    let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["client", "--url", &address, "--key"])
        .arg(&clerk_key)
        .args(["record", "--kind", &KIND_CASE_OPENED.to_string(), "--payload"])
        .arg(dir.path().join("case.json"))
        .arg("--numbers-file")
        .arg(dir.path().join("phones.txt"))
        .arg("--disclosures-file")
        .arg(dir.path().join("disclosures.txt"))
        .output()
        .expect("client record");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(written["written"], 2, "the node's commitment and the case: {written}");
    // Another case, its payload written as the rules read it (parties and
    // the officer's member id in clear): `--conceal` draws the salts and
    // names the officer by the reference the service gives.
    let second = CaseRecords::new(&staff, &staff.officers[1], "(2026)苏02执12号");
    let (plain, phones) = second.open_request(1);
    let plain: CaseOpened = caseledger::court::revealed(&plain);
    let plain = serde_json::json!({
        "request_id": plain.request_id, "case_number": plain.case_number,
        "applicants": plain.applicants, "respondents": plain.respondents,
        "officer_member_id": staff.officers[1].member_id,
    });
    std::fs::write(dir.path().join("case-2.json"), plain.to_string()).expect("payload");
    std::fs::write(dir.path().join("phones-2.txt"), phones.join("\n")).expect("numbers");
    let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["client", "--url", &address, "--key"])
        .arg(&clerk_key)
        .args([
            "record",
            "--conceal",
            "--kind",
            &KIND_CASE_OPENED.to_string(),
            "--payload",
        ])
        .arg(dir.path().join("case-2.json"))
        .arg("--numbers-file")
        .arg(dir.path().join("phones-2.txt"))
        .output()
        .expect("client record --conceal");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // Run again (an answer lost): the same salts, the same record, a retry.
    let again = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["client", "--url", &address, "--key"])
        .arg(&clerk_key)
        .args([
            "record",
            "--conceal",
            "--kind",
            &KIND_CASE_OPENED.to_string(),
            "--payload",
        ])
        .arg(dir.path().join("case-2.json"))
        .arg("--numbers-file")
        .arg(dir.path().join("phones-2.txt"))
        .output()
        .expect("client record --conceal again");
    let retried: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert!(again.status.success(), "{retried}");
    assert_eq!(
        (&retried["written"], &retried["seqs"]),
        (&serde_json::json!(0), &written["seqs"])
    );
    let seq = written["seqs"][0].as_u64().expect("seq");
    let (_, entry) = Client::new(&address, staff.administrator.identity.clone())
        .get(&format!("/v1/entries/{seq}"))
        .expect("entry");
    let payload = entry["payload"].as_str().expect("payload");
    assert!(
        !payload.contains("申请人1") && !payload.contains(&staff.officers[1].member_id),
        "{payload}"
    );
    assert!(payload.contains(&staff.officers[1].reference().digest), "{payload}");
    // Salts drawn at random: not the demo's derived ones.
    assert_ne!(entry["disclosures"][0], serde_json::json!(plain_disclosure(&second)));
    assert_eq!(
        officer_client
            .write_numbered(&[
                case.account_request("acct-1", 1, "6222000011115555"),
                (case.confirm("acct-1"), Vec::new())
            ])
            .expect("account")
            .0,
        201
    );
    assert_eq!(
        Client::new(&address, staff.finance.identity.clone())
            .write(&[case.receipt("BANK-1", 900_000)])
            .expect("receipt")
            .0,
        201
    );
    assert_eq!(
        officer_client
            .write(&[case.request("d-1", "acct-1", 800_000)])
            .expect("request")
            .0,
        201
    );

    let head_key = dir.path().join("head.key");
    caseledger_keys::files::write_private_key(&head_key, &head.identity).expect("key");
    let mut client = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args([
            "client",
            "--url",
            &address,
            "--key",
            head_key.to_str().expect("utf8"),
            "approve",
            "--disbursement",
            "d-1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client approve");
    // The approver confirms what they read, and only then is a code sent.
    let mut stdin = client.stdin.take().expect("stdin");
    writeln!(stdin, "yes").expect("confirm");
    // The code arrives on the approver's phone (here: serve's console).
    let code = loop {
        let line = serve.lines.recv_timeout(Duration::from_secs(30)).expect("an SMS");
        if line.starts_with("[SMS challenge-") {
            assert!(
                line.contains("****0031"),
                "sent to the bureau head's phone, masked in the log: {line}"
            );
            break line
                .chars()
                .skip_while(|c| *c != '】')
                .filter(char::is_ascii_digit)
                .take(6)
                .collect::<String>();
        }
    };
    assert_eq!(code.len(), 6);
    secrets.push(code.clone());
    // Mistyped first, then typed right: one code, one SMS.
    let wrong = format!("{:06}", (code.parse::<u32>().expect("digits") + 1) % 1_000_000);
    writeln!(stdin, "{wrong}").expect("a mistyped code");
    writeln!(stdin, "{code}").expect("type the code");
    drop(stdin);
    let out = client.wait_with_output().expect("client");
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{shown}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        shown.contains("¥8,000.00") && shown.contains("****5555") && shown.contains("bureau_head"),
        "{shown}"
    );
    // The statement came before the question, the question before the code.
    let (before, after) = shown.split_once("Type yes").expect("asked to confirm");
    assert!(
        before.contains("¥8,000.00") && after.contains("Enter the 6-digit code"),
        "{shown}"
    );
    assert!(shown.contains("wrong code; 4 more tries with this code"), "{shown}");
    assert!(
        !serve.lines.try_iter().any(|line| line.starts_with("[SMS challenge-")),
        "no second code was sent"
    );
    // Declined at the question: no code is asked for, nothing is signed.
    let mut declined = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["client", "--url", &address, "--key"])
        .arg(&head_key)
        .args(["approve", "--disbursement", "d-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client approve");
    writeln!(declined.stdin.take().expect("stdin"), "no").expect("decline");
    let out = declined.wait_with_output().expect("client");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("not confirmed: no code asked for"), "{said}");
    assert!(
        !serve.lines.try_iter().any(|line| line.starts_with("[SMS challenge-")),
        "no code sent when declined"
    );

    // The officer's other commands: the applicant's verification code and
    // the confirmation of a changed account, each sent to the applicant only.
    let officer_key = dir.path().join("officer.key");
    caseledger_keys::files::write_private_key(&officer_key, &officer.identity).expect("key");
    let officer_command = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args([
                "client",
                "--url",
                &address,
                "--key",
                officer_key.to_str().expect("utf8"),
            ])
            .args(args)
            .output()
            .expect("client");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let printed = officer_command(&["issue-code", "--case", "(2026)苏02执11号", "--applicant", "applicant-1"]);
    assert!(printed.contains("****0001"), "{printed}");
    let sms_after = |prefix: &str, marker: &str, digits: usize| loop {
        let line = serve.lines.recv_timeout(Duration::from_secs(30)).expect("an SMS");
        if line.starts_with(prefix) {
            assert!(line.contains("****0001"), "to the applicant: {line}");
            let (_, after) = line.split_once(marker).expect("the code");
            break after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(digits)
                .collect::<String>();
        }
    };
    // As printed: four groups of four and the check symbol.
    let code = sms_after("[SMS applicant-code-", "查询码为", 21);
    secrets.push(code.clone());
    secrets.push(code.replace('-', ""));
    assert!(!printed.contains(&code), "the officer is not shown the code");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let verified = agent
        .get(&format!("{address}/v1/verify/{code}"))
        .call()
        .expect("verify");
    assert_eq!(verified.status().as_u16(), 200);

    assert_eq!(
        officer_client
            .write_numbered(&[case.account_request("acct-2", 1, "6222000011116666")])
            .expect("a changed account")
            .0,
        201
    );
    officer_command(&["confirm-account", "--account", "acct-2"]);
    let code = sms_after("[SMS account-challenge-", "验证码", 6);
    secrets.push(code.clone());
    let mut answer = agent
        .post(&format!("{address}/v1/accounts/acct-2/confirm"))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "code": code }).to_string().as_bytes())
        .expect("confirm");
    let answer: serde_json::Value =
        serde_json::from_str(&answer.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(
        answer["status"], "pending",
        "a change still waits for the bureau head: {answer}"
    );

    // A refusal by a rule: a second request with the id of the first.
    let (status, refusal) = officer_client
        .write(&[case.request("d-1", "acct-1", 1_000)])
        .expect("refused write");
    assert_eq!(status, 422, "{refusal}");
    let rule = refusal["rule"].as_str().expect("rule").to_owned();

    assert!(serve.terminate().success());
    // The log: JSON lines, with the business events, and no secret.
    let log = serve.logged();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    assert!(!log.contains('\u{1b}'), "no colour codes in a file");
    let written: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "record_written").collect();
    assert!(
        written
            .iter()
            .any(|e| e["kind"] == "approval_signed" && e["case"] == "(2026)苏02执11号" && e["seq"].is_u64()),
        "{log}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "record_refused"
            && e["rule"] == rule.as_str()
            && e["kind"] == "disbursement_requested"),
        "{log}"
    );
    assert!(
        events.iter().any(|e| e["span"]["path"] == "/v1/verify/{code}"),
        "requests are logged by route template: {log}"
    );
    secrets.extend(["6222000011115555".to_owned(), "6222000011116666".to_owned()]);
    secrets.push(CaseRecords::applicant_phone(1));
    for member in staff.members() {
        secrets.push(member.phone.clone());
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret:?} is in the log:\n{log}");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .arg("verify")
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .output()
        .expect("verify");
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["sms_confirmations_verified"], 1);
    assert_eq!(report["account_confirmations_verified"], 1);
}

/// The demo builders' disclosure of the first applicant of `case`.
fn plain_disclosure(case: &CaseRecords) -> String {
    case.open_request(1).0.disclosures[0].clone()
}
