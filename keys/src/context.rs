//! Domain-separation contexts: one named constant per kind of signed message.
//!
//! A signature made for one purpose must never be accepted for another. Every
//! message that a caseledger key signs is therefore `CONTEXT || 0x00 || body`,
//! where `CONTEXT` is one of the constants below. The 0x00 byte cannot occur in
//! a C2SP signed note (notes are UTF-8 text without control characters other
//! than newline), so a record signature can never be mistaken for a checkpoint
//! signature and vice versa. docs/FORMAT.md lists every context.

/// A record carried by a ledger entry: the ledger's origin (length-prefixed),
/// then kind, signer key id, payload. v2: the origin binds a record to its
/// ledger (v1 signed the record body alone).
pub const LEDGER_RECORD: &str = "caseledger/v2/ledger-record";

/// Prefix hashed with a public key to derive its [`crate::KeyId`].
pub const KEY_ID: &str = "caseledger/v1/key-id";

/// A member's client derives the salts of the values it conceals (docs/FORMAT.md
/// §3j) from its own signature of what each salt is for: secret (only the
/// key's holder can make it), and the same on a re-run, so a retried
/// request is the same record.
pub const CONCEAL_SALT: &str = "caseledger/v1/conceal-salt";

/// All contexts, for documentation and for the test that keeps them distinct.
pub const ALL: &[&str] = &[LEDGER_RECORD, KEY_ID, CONCEAL_SALT];

/// Builds the exact bytes that are signed: `context || 0x00 || body`.
pub fn message(context: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + 1 + body.len());
    message.extend_from_slice(context.as_bytes());
    message.push(0);
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_distinct_and_prefix_free() {
        for (i, a) in ALL.iter().enumerate() {
            for (j, b) in ALL.iter().enumerate() {
                if i != j {
                    assert!(!a.starts_with(b), "{a} starts with {b}");
                }
            }
            assert!(!a.as_bytes().contains(&0), "{a} contains NUL");
        }
    }

    #[test]
    fn message_layout() {
        assert_eq!(message("ab", b"cd"), b"ab\0cd".to_vec());
    }
}
