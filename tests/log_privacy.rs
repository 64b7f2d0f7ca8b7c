//! What the service writes to its log at the default level (`info`, the
//! subscriber `serve` installs) names no secret: no applicant verification
//! code (it opens the applicant's bundle), no phone number, even when an
//! insider's number is refused.

mod common;

use caseledger::court::CaseRecords;
use caseledger::service::sms;
use common::send;

static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log() -> String {
    String::from_utf8(LOG.lock().expect("log").clone()).expect("utf8")
}

#[tokio::test]
async fn codes_and_numbers_stay_out_of_the_log() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(|| Capture)
        .with_ansi(false)
        .init();
    const CASE: &str = "(2023)苏02执123号";
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court_with_case(dir.path(), 9, CASE, 1, 5_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (code, issued) = case.applicant_code(1);
    ledger.append_one(issued).expect("code issued");
    let state = common::service_state(ledger, &staff);
    let (status, _) = send(&state, "GET", &format!("/v1/verify/{code}"), &[], Vec::new()).await;
    assert_eq!(status.as_u16(), 200);
    // Near misses that match no route carry the code too: not logged as sent.
    for path in [format!("//v1/verify/{code}"), format!("/v1//verify/{code}")] {
        let (status, _) = send(&state, "GET", &path, &[], Vec::new()).await;
        assert_eq!(status.as_u16(), 404, "{path}");
    }
    // A delivery report to the SMS provider's secret URL (its token in
    // the path), and a query string with a value: logged by route only.
    let token = "report-token-7f3a9c2e5b1d";
    let (status, _) = send(
        &state,
        "POST",
        &format!("/v1/sms/reports/aliyun/{token}?secret=q-value-4417"),
        &[("content-type".to_owned(), "application/json".to_owned())],
        b"[]".to_vec(),
    )
    .await;
    assert!(status.as_u16() >= 400, "{status}");
    // An insider's number refused before a send.
    let recipient = caseledger_verify::funds::notify::applicant_contact(CASE, "applicant-1");
    sms::put_contact(&state.ledger, &recipient, "13812345678").expect("insider write");
    let refused =
        caseledger::service::contacts::checked_phone(&state.ledger, &staff.commitment_key, &recipient, "test");
    assert!(refused.is_err());
    // Numbers given in clear to open a case and register an account.
    let other = CaseRecords::new(&staff, &staff.officers[0], "(2023)苏02执124号");
    common::open_case(&state, &other, 1).await;
    let (status, body) = common::register_account(&state, &other, "acct-9", 1, "6222000077778888").await;
    assert_eq!(status.as_u16(), 201, "{body}");
    let log = log();
    assert!(
        log.contains("numbers given for the node to commit to"),
        "who gave numbers is logged:\n{log}"
    );
    for number in [CaseRecords::applicant_phone(1), "6222000077778888".to_owned()] {
        assert!(!log.contains(&number), "a number given in clear in the log:\n{log}");
    }
    assert!(
        log.contains("path=/v1/verify/{code}"),
        "the request is logged, its code redacted:\n{log}"
    );
    assert!(log.contains("does not match the ledger's commitment"), "{log}");
    assert!(!log.contains(&code), "an applicant's code in the log:\n{log}");
    assert!(log.contains("path=unmatched"), "{log}");
    assert!(!log.contains("13812345678"), "a phone number in the log:\n{log}");
    assert!(log.contains("path=/v1/sms/reports/aliyun/{token}"), "{log}");
    assert!(
        !log.contains(token) && !log.contains("q-value-4417"),
        "the report token or a query value in the log:\n{log}"
    );
    // Nor in a metric label.
    let metrics = state.metrics.render();
    for secret in [token, "q-value-4417", code.as_str()] {
        assert!(!metrics.contains(secret), "{secret} in the metrics:\n{metrics}");
    }
}
