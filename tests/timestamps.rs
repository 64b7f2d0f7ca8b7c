//! RFC 3161 time-stamps of checkpoints: `serve` asks a time-stamp
//! authority for each new checkpoint and serves its answer, which
//! `openssl ts -verify` accepts for the checkpoint's text and refuses for
//! any other. The TSA is `openssl ts -reply` behind a small HTTP server on
//! loopback, with a CA and a TSA certificate made for the test, as a real
//! one would be.

mod common;

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::Command;

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is required (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a TSA certificate (extended key usage timeStamping, critical) and
/// the `openssl ts` configuration of the TSA, in `dir`.
fn make_tsa(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=Test TSA CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "tsa.key",
            "-out",
            "tsa.csr",
            "-subj",
            "/CN=Test TSA",
        ],
    );
    std::fs::write(
        dir.join("tsa.ext"),
        "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tsa.crt",
            "-days",
            "30",
            "-extfile",
            "tsa.ext",
        ],
    );
    std::fs::write(dir.join("serial"), "01\n").expect("serial");
    std::fs::write(
        dir.join("tsa.cnf"),
        "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = .\nserial = ./serial\ncrypto_device = builtin\n\
         signer_cert = ./tsa.crt\ncerts = ./ca.crt\nsigner_key = ./tsa.key\nsigner_digest = sha256\n\
         default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n\
         ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
    )
    .expect("config");
}

/// The TSA over HTTP: POST with `Content-Type: application/timestamp-query`,
/// answered by `openssl ts -reply` (which refuses a malformed query).
fn serve_tsa(dir: &Path) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let (mut length, mut content_type) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if let Some(value) = lower.strip_prefix("content-type:") {
                    content_type = value.trim().to_owned();
                }
            }
            let mut query = vec![0; length.min(64 * 1024)];
            if reader.read_exact(&mut query).is_err() {
                continue;
            }
            let answer = if content_type != "application/timestamp-query" {
                None
            } else {
                std::fs::write(dir.join(format!("q{n}.tsq")), &query).expect("query");
                let out = Command::new("openssl")
                    .args(["ts", "-reply", "-config", "tsa.cnf", "-queryfile"])
                    .arg(format!("q{n}.tsq"))
                    .args(["-out", &format!("r{n}.tsr")])
                    .current_dir(&dir)
                    .output()
                    .expect("openssl ts -reply");
                out.status
                    .success()
                    .then(|| std::fs::read(dir.join(format!("r{n}.tsr"))).expect("reply"))
            };
            let head = match &answer {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                None => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(answer.as_deref().unwrap_or_default());
        }
    });
    format!("http://{address}/tsa")
}

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
