//! The court's commitments of phone and account numbers (an HMAC under the
//! court's private commitment key) and their masked form: what the ledger
//! holds instead of the numbers. Used by the service and the record builders.

use sha2::Sha256;

/// `****1234`: the last four characters, the rest hidden.
pub fn mask(value: &str) -> String {
    let tail: String = value
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

/// What a commitment commits to; part of the MAC input.
pub const COMMITMENT_PHONE: &str = "phone";
pub const COMMITMENT_ACCOUNT: &str = "account";

/// Hex HMAC-SHA256(court commitment key, purpose || 0x00 || value): lets the
/// court check a masked phone or account number against the ledger without
/// the number ever entering it. The key stays with the court: phone and
/// account numbers have so little entropy that a plain or publicly salted
/// hash could be reversed by trying them all.
pub fn commitment(key: &[u8; 32], purpose: &str, value: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitments_need_the_court_key_and_separate_purposes() {
        let key = [7u8; 32];
        let phone = "13912345678";
        let c = commitment(&key, COMMITMENT_PHONE, phone);
        assert_eq!(c, commitment(&key, COMMITMENT_PHONE, phone));
        assert_ne!(
            c,
            commitment(&[8u8; 32], COMMITMENT_PHONE, phone),
            "another court's key"
        );
        assert_ne!(c, commitment(&key, COMMITMENT_ACCOUNT, phone), "another purpose");
        assert_eq!(mask(phone), "****5678");
    }
}
