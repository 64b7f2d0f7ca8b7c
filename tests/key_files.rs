//! Key files are the standard forms OpenSSL and Python `cryptography` load
//! (docs/FORMAT.md §2): a private key written by caseledger loads in both
//! and signs the same bytes; a key made by `openssl genpkey` loads in
//! caseledger and is written back byte for byte.

use std::path::Path;
use std::process::{Command, Stdio};

use caseledger_keys::files::{read_private_key, read_public_key, write_private_key, write_public_key};
use caseledger_keys::Identity;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (installed by .ci/run)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn a_private_key_file_loads_in_openssl_and_python_and_signs_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = Identity::from_seed([5; 32]);
    write_private_key(&dir.path().join("member.key"), &identity).expect("write key");
    write_public_key(&dir.path().join("member.pub"), &identity.public_key()).expect("write pub");

    // OpenSSL derives the same public key and signs the same bytes.
    let public = openssl(dir.path(), &["pkey", "-in", "member.key", "-pubout"]);
    let ours = std::fs::read(dir.path().join("member.pub")).expect("read pub");
    assert_eq!(String::from_utf8_lossy(&public), String::from_utf8_lossy(&ours));
    std::fs::write(dir.path().join("message"), b"caseledger key file test").expect("write");
    let signature = openssl(
        dir.path(),
        &["pkeyutl", "-sign", "-inkey", "member.key", "-rawin", "-in", "message"],
    );
    assert_eq!(signature, identity.sign_raw(b"caseledger key file test").to_bytes());

    // Python cryptography loads it and signs the same bytes.
    let script = r#"
import sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
sys.stdout.write(key.sign(b"caseledger key file test").hex())
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("member.key"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run python3 (cryptography installed by .ci/run)");
    assert!(output.status.success(), "python could not load the key file");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        hex::encode(identity.sign_raw(b"caseledger key file test").to_bytes())
    );
}

#[test]
fn a_key_made_by_openssl_loads_and_is_written_back_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    openssl(dir.path(), &["genpkey", "-algorithm", "ed25519", "-out", "made.key"]);
    openssl(dir.path(), &["pkey", "-in", "made.key", "-pubout", "-out", "made.pub"]);
    let path = dir.path().join("made.key");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let identity = read_private_key(&path).expect("read openssl's key");
    assert_eq!(
        read_public_key(&dir.path().join("made.pub")).expect("read pub"),
        identity.public_key()
    );
    let written = dir.path().join("written.key");
    write_private_key(&written, &identity).expect("write");
    assert_eq!(
        std::fs::read(&written).expect("read"),
        std::fs::read(&path).expect("read")
    );
}
