//! A time-stamp authority for tests: `openssl ts -reply` behind a small
//! HTTP server on loopback, with a CA and a TSA certificate made for the
//! test, as a real one would be (RFC 3161 over HTTP).

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::Command;

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
pub fn make_tsa(dir: &Path) {
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
pub fn serve_tsa(dir: &Path) -> String {
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

/// Whether `openssl ts -verify` accepts the time-stamp `stamp` of `text`
/// with the CA made by [`make_tsa`] in `dir`.
pub fn openssl_verifies(dir: &Path, stamp: &[u8], text: &str) -> bool {
    std::fs::write(dir.join("stamp-to-check.tsr"), stamp).expect("stamp");
    std::fs::write(dir.join("text-to-check.txt"), text).expect("text");
    let out = Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-in",
            "stamp-to-check.tsr",
            "-data",
            "text-to-check.txt",
            "-CAfile",
            "ca.crt",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl ts -verify");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verification: OK")
}

/// Waits (a minute at most) until the node at `address` has a time-stamp of
/// its newest checkpoint, which must cover `size` entries or more; returns
/// that checkpoint and its time-stamp.
#[allow(dead_code)]
pub fn newest_stamped(address: &str, size: u64) -> (String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let note = agent
            .get(&format!("{address}/v1/checkpoint"))
            .call()
            .expect("checkpoint")
            .body_mut()
            .read_to_string()
            .expect("note");
        let newest: u64 = note.lines().nth(1).and_then(|l| l.parse().ok()).expect("size");
        let mut response = agent
            .get(&format!("{address}/v1/checkpoints/{newest}/timestamp"))
            .call()
            .expect("timestamp");
        if response.status().as_u16() == 200 && newest >= size {
            let content_type = response.headers().get("content-type").cloned();
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/timestamp-reply")
            );
            return (note, response.body_mut().read_to_vec().expect("body"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no time-stamp of checkpoint {newest}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
