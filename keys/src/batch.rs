//! Ed25519 batch verification that adds up the terms of a key that signs
//! several messages of a batch.
//!
//! The check is the one `ed25519_dalek::verify_batch` makes (cofactored,
//! with a fresh random 128-bit `z_i` per signature):
//!
//! ```text
//! [8]( [-Σ z_i·s_i] B + Σ [z_i] R_i + Σ [z_i·h_i] A_i ) = 0,   h_i = SHA-512(R_i ‖ A_i ‖ M_i) mod ℓ
//! ```
//!
//! with one change of arithmetic, not of meaning: the terms of equal keys
//! are summed first, `Σ_{i: A_i = A} [z_i·h_i] A = [Σ_{i: A_i = A} z_i·h_i] A`,
//! so that a key signing k messages of a batch costs one point in the
//! multiscalar multiplication instead of k. Each `A` term carries a full
//! 256-bit scalar where an `R` term carries a 128-bit one, so when one key
//! signs the whole batch this roughly halves the work (see BENCHMARKS.md).
//! With all keys distinct it is the same sum as ed25519-dalek's.
//!
//! The equation, the hash and the encodings (signature `R ‖ s` with `s`
//! canonical, `R` a valid point encoding) are those of RFC 8032 §5.1.7 and
//! ed25519-dalek 2; the tests below check that this and ed25519-dalek agree.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand::Rng;
use sha2::{Digest, Sha512};

use crate::{Error, PublicKey, Result, Signature};

/// Verifies many signatures at once. Returns `Ok` only if every signature
/// is valid; on failure the caller must verify one by one to find which.
/// Messages are the full signed bytes. A batch with a malformed signature
/// (an `R` that is not a point, a non-canonical `s`) or slices of unequal
/// lengths fails.
pub fn verify_batch(messages: &[&[u8]], signatures: &[Signature], keys: &[PublicKey]) -> Result<()> {
    if messages.len() != signatures.len() || keys.len() != signatures.len() {
        return Err(Error::BadSignature);
    }
    let mut rng = rand::thread_rng();
    let mut basepoint = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(signatures.len() + 2);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(signatures.len() + 2);
    // Each distinct key's summed scalar, in order of first appearance.
    let mut key_terms: Vec<(EdwardsPoint, Scalar)> = Vec::new();
    let mut key_index: HashMap<[u8; 32], usize> = HashMap::new();
    for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
        let r = CompressedEdwardsY(*signature.r_bytes());
        let r_point = r.decompress().ok_or(Error::BadSignature)?;
        let s =
            Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes())).ok_or(Error::BadSignature)?;
        let a = key.verifying_key();
        let mut hash = [0u8; 64];
        hash.copy_from_slice(
            &Sha512::new()
                .chain_update(r.as_bytes())
                .chain_update(a.as_bytes())
                .chain_update(message)
                .finalize(),
        );
        let h = Scalar::from_bytes_mod_order_wide(&hash);
        let z = Scalar::from(rng.gen::<u128>());
        basepoint -= z * s;
        scalars.push(z);
        points.push(r_point);
        let at = *key_index.entry(a.to_bytes()).or_insert_with(|| {
            key_terms.push((a.to_edwards(), Scalar::ZERO));
            key_terms.len() - 1
        });
        key_terms[at].1 += z * h;
    }
    for (point, scalar) in key_terms {
        points.push(point);
        scalars.push(scalar);
    }
    scalars.push(basepoint);
    points.push(ED25519_BASEPOINT_POINT);
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use proptest::prelude::*;

    /// `count` messages signed round-robin by `signers` distinct keys.
    fn batch(count: usize, signers: u8) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<PublicKey>) {
        let ids: Vec<Identity> = (0..signers).map(|i| Identity::from_seed([i + 1; 32])).collect();
        let messages: Vec<Vec<u8>> = (0..count).map(|i| format!("message {i}").into_bytes()).collect();
        let signatures = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ids[i % ids.len()].sign_raw(m))
            .collect();
        let keys = (0..count).map(|i| ids[i % ids.len()].public_key()).collect();
        (messages, signatures, keys)
    }

    fn ours(messages: &[Vec<u8>], signatures: &[Signature], keys: &[PublicKey]) -> bool {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        verify_batch(&refs, signatures, keys).is_ok()
    }

    fn dalek(messages: &[Vec<u8>], signatures: &[Signature], keys: &[PublicKey]) -> bool {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let keys: Vec<ed25519_dalek::VerifyingKey> = keys.iter().map(|k| *k.verifying_key()).collect();
        ed25519_dalek::verify_batch(&refs, signatures, &keys).is_ok()
    }

    fn with_bytes(signature: &Signature, change: impl FnOnce(&mut [u8; 64])) -> Signature {
        let mut bytes = signature.to_bytes();
        change(&mut bytes);
        Signature::from_bytes(&bytes)
    }

    #[test]
    fn valid_batches_pass_whatever_the_mix_of_keys() {
        for (count, signers) in [(1, 1), (2, 1), (16, 1), (16, 3), (33, 33), (64, 7)] {
            let (messages, signatures, keys) = batch(count, signers);
            assert!(ours(&messages, &signatures, &keys), "{count} by {signers}");
            assert!(dalek(&messages, &signatures, &keys), "{count} by {signers}");
        }
        assert!(ours(&[], &[], &[]), "an empty batch holds");
    }

    #[test]
    fn a_signature_credited_to_another_key_fails_even_if_both_keys_are_in_the_batch() {
        // Summing the terms per key must not mix keys up: message 1 is
        // signed by key 1 but claimed for key 0, which also signs message 0.
        let (messages, signatures, mut keys) = batch(4, 2);
        keys[1] = keys[0];
        assert!(!ours(&messages, &signatures, &keys));
        assert!(!dalek(&messages, &signatures, &keys));
    }

    /// y = 2: no point of the curve has it (checked in the test below).
    const NOT_A_POINT: [u8; 32] = {
        let mut y = [0u8; 32];
        y[0] = 2;
        y
    };

    #[test]
    fn one_bad_signature_fails_the_batch() {
        assert!(CompressedEdwardsY(NOT_A_POINT).decompress().is_none());
        let (messages, signatures, keys) = batch(24, 2);
        let other = Identity::from_seed([9; 32]);
        let cases: Vec<(&str, Signature)> = vec![
            ("over another message", other.sign_raw(b"something else")),
            ("a flipped bit of R", with_bytes(&signatures[5], |b| b[3] ^= 0x10)),
            ("a flipped bit of s", with_bytes(&signatures[5], |b| b[40] ^= 0x01)),
            ("s replaced by s + l (not canonical)", {
                // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
                const L: [u8; 32] = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                with_bytes(&signatures[5], |b| {
                    let mut carry = 0u16;
                    for (byte, l) in b[32..].iter_mut().zip(L) {
                        let sum = u16::from(*byte) + u16::from(l) + carry;
                        *byte = sum as u8;
                        carry = sum >> 8;
                    }
                })
            }),
            (
                "an R that is not a point",
                with_bytes(&signatures[5], |b| {
                    b[..32].copy_from_slice(&NOT_A_POINT);
                }),
            ),
        ];
        for (what, bad) in cases {
            let mut changed = signatures.clone();
            changed[5] = bad;
            assert!(!ours(&messages, &changed, &keys), "{what}");
            assert!(!dalek(&messages, &changed, &keys), "{what}");
        }
        assert!(ours(&messages, &signatures, &keys), "the untouched batch holds");
    }

    #[test]
    fn slices_of_unequal_lengths_fail() {
        let (messages, signatures, keys) = batch(3, 1);
        assert!(!ours(&messages[..2], &signatures, &keys));
        assert!(!ours(&messages, &signatures[..2], &keys));
        assert!(!ours(&messages, &signatures, &keys[..2]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Ours and ed25519-dalek's agree on honest batches and on batches
        /// with one bit flipped in a message, a signature or a key choice.
        #[test]
        fn agrees_with_ed25519_dalek(
            count in 1usize..40,
            signers in 1u8..5,
            change in prop::option::of((any::<prop::sample::Index>(), 0usize..3, any::<prop::sample::Index>(), 0u8..8)),
        ) {
            let (mut messages, mut signatures, mut keys) = batch(count, signers);
            let mut changed = false;
            if let Some((at, what, byte, bit)) = change {
                let at = at.index(count);
                match what {
                    0 => {
                        let byte = byte.index(messages[at].len());
                        messages[at][byte] ^= 1 << bit;
                    }
                    1 => signatures[at] = with_bytes(&signatures[at], |b| b[byte.index(64)] ^= 1 << bit),
                    _ => keys[at] = Identity::from_seed([200; 32]).public_key(),
                }
                changed = true;
            }
            let expected = dalek(&messages, &signatures, &keys);
            prop_assert_eq!(ours(&messages, &signatures, &keys), expected);
            prop_assert_eq!(expected, !changed);
        }
    }
}
