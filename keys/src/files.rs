//! Key files: private keys as PKCS#8 PEM with mode 0600, public keys as SPKI PEM.
//!
//! A private key file that group or others can read is refused: a key that may
//! have been copied proves nothing about who signed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::{Error, Identity, PublicKey, Result};

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        error,
    }
}

/// Writes `identity` to `path` as PKCS#8 PEM with mode 0600. Refuses to
/// overwrite an existing file, so that a key is never silently replaced.
pub fn write_private_key(path: &Path, identity: &Identity) -> Result<()> {
    let pem = identity.to_pkcs8_pem()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Reads a private key, refusing files readable by group or others.
pub fn read_private_key(path: &Path) -> Result<Identity> {
    let metadata = fs::metadata(path).map_err(|e| io_error(path, e))?;
    let mode = metadata.permissions().mode() & 0o777;
    // A public key where a private one is needed: say so, rather than
    // advise making it private.
    if let Ok(text) = fs::read_to_string(path) {
        if !text.contains("PRIVATE KEY") && PublicKey::parse_any(&text).is_ok() {
            return Err(Error::InvalidKey(format!(
                "{} holds a public key; a private key file is needed here (as `caseledger keygen --out FILE` writes it)",
                path.display()
            )));
        }
    }
    if mode & 0o077 != 0 {
        return Err(Error::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    let pem = fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    Identity::from_pkcs8_pem(&pem)
}

/// Writes a public key as SPKI PEM (mode 0644).
pub fn write_public_key(path: &Path, key: &PublicKey) -> Result<()> {
    let pem = key.to_spki_pem()?;
    fs::write(path, pem).map_err(|e| io_error(path, e))
}

/// Reads a public key file in any accepted form (SPKI PEM, raw base64, note
/// verifier key). A private key file is also accepted: its public half is used.
pub fn read_public_key(path: &Path) -> Result<PublicKey> {
    let text = fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    if text.trim_start().starts_with("-----BEGIN PRIVATE KEY-----") {
        return Ok(read_private_key(path)?.public_key());
    }
    PublicKey::parse_any(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_file_is_0600_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("member.key");
        let identity = Identity::generate();
        write_private_key(&path, &identity).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private_key(&path).expect("read").seed(), identity.seed());
        assert_eq!(read_public_key(&path).expect("public half"), identity.public_key());
        assert!(write_private_key(&path, &identity).is_err(), "must not overwrite");
    }

    #[test]
    fn readable_private_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("member.key");
        write_private_key(&path, &Identity::generate()).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let error = read_private_key(&path).expect_err("must refuse");
        assert!(matches!(error, Error::InsecurePermissions { mode: 0o640, .. }));
        assert!(error.to_string().contains("chmod 600"));
        // A public key given where a private one is needed: said so, no chmod advice.
        let public = dir.path().join("member.key.pub");
        write_public_key(&public, &Identity::generate().public_key()).expect("write");
        let error = read_private_key(&public).expect_err("a public key");
        assert!(error.to_string().contains("holds a public key"), "{error}");
        assert!(!error.to_string().contains("chmod"), "{error}");
    }

    #[test]
    fn public_key_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("member.pub");
        let key = Identity::generate().public_key();
        write_public_key(&path, &key).expect("write");
        assert_eq!(read_public_key(&path).expect("read"), key);
    }
}
