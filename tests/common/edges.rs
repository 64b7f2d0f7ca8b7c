//! Ed25519 keys and signatures at the edges of the one signature rule
//! (docs/FORMAT.md §2), built with curve25519-dalek as a dishonest key
//! holder or an outsider could build them. `tests/data/ed25519-edges.json`
//! is made from these; the tests also make them over the exact bytes of a
//! record or a request, to push them through the ledger and the service.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};

/// A point of order 8 (one of the eight torsion points).
pub const ORDER_8_POINT: [u8; 32] = hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a");
/// The identity point, y = 1.
pub const IDENTITY_POINT: [u8; 32] = hex32("0100000000000000000000000000000000000000000000000000000000000000");
/// The identity point encoded with y = p + 1: a non-canonical encoding.
pub const IDENTITY_NON_CANONICAL: [u8; 32] = hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
/// ℓ, the order of the prime-order subgroup, little-endian.
pub const ELL: [u8; 32] = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

const fn hex32(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a hex digit"),
    }
}

/// The ways a signature by an honest key can sit at the edge of the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureEdge {
    /// An RFC 8032 signature.
    Honest,
    /// The key holder adds a point of order 8 to R: `R = [r]B + T8`,
    /// `s = r + k·a`. A cofactored equation accepts it, the cofactorless
    /// one (ours, OpenSSL's) does not.
    RPlusTorsion,
    /// `R` is the identity and `s = k·a`: the cofactorless equation holds,
    /// but R is of small order (refused by the rule; OpenSSL accepts it).
    RIdentity,
    /// `R` is a point of order 8 and `s = k·a`: only a cofactored equation
    /// accepts it.
    ROrder8,
    /// `R` is the identity encoded non-canonically (y = p + 1), `s = k·a`.
    RNonCanonical,
    /// An honest signature with `s + ℓ` in place of `s`.
    SPlusEll,
}

pub const SIGNATURE_EDGES: [SignatureEdge; 6] = [
    SignatureEdge::Honest,
    SignatureEdge::RPlusTorsion,
    SignatureEdge::RIdentity,
    SignatureEdge::ROrder8,
    SignatureEdge::RNonCanonical,
    SignatureEdge::SPlusEll,
];

impl SignatureEdge {
    pub fn name(self) -> &'static str {
        match self {
            SignatureEdge::Honest => "honest",
            SignatureEdge::RPlusTorsion => "r_plus_order_8_point_by_key_holder",
            SignatureEdge::RIdentity => "r_identity_small_order",
            SignatureEdge::ROrder8 => "r_of_order_8",
            SignatureEdge::RNonCanonical => "r_non_canonical_encoding",
            SignatureEdge::SPlusEll => "s_not_reduced",
        }
    }
}

/// Keys that must never be registered, each with a signature that a
/// cofactorless equation accepts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEdge {
    /// A = identity: `R = [s]B` verifies for every message, made by anyone.
    Identity,
    /// A of order 8: anyone can sign any message whose `k` is a multiple of 8.
    Order8,
    /// A = [a]B + T8: the holder of `a` signs messages whose `k` is a
    /// multiple of 8, and their signatures verify under `verify_strict` too.
    TorsionComponent,
    /// The identity encoded with y = p + 1: a second key id for a point,
    /// and anyone can sign with it.
    NonCanonical,
}

pub const KEY_EDGES: [KeyEdge; 4] = [
    KeyEdge::Identity,
    KeyEdge::Order8,
    KeyEdge::TorsionComponent,
    KeyEdge::NonCanonical,
];

impl KeyEdge {
    pub fn name(self) -> &'static str {
        match self {
            KeyEdge::Identity => "a_identity",
            KeyEdge::Order8 => "a_of_order_8",
            KeyEdge::TorsionComponent => "a_with_order_8_component",
            KeyEdge::NonCanonical => "a_non_canonical_encoding",
        }
    }
}

fn expand(seed: &[u8; 32]) -> Scalar {
    let digest = Sha512::digest(seed);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest[..32]);
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    Scalar::from_bytes_mod_order(bytes)
}

fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(message)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// A deterministic nonce for the `counter`-th try.
fn nonce(seed: &[u8; 32], message: &[u8], counter: u32) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(b"caseledger test nonce")
        .chain_update(seed)
        .chain_update(counter.to_le_bytes())
        .chain_update(message)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

fn point(bytes: &[u8; 32]) -> EdwardsPoint {
    CompressedEdwardsY(*bytes).decompress().expect("a point")
}

fn signature(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(&s);
    out
}

fn add_ell(s: Scalar) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for (i, byte) in out.iter_mut().enumerate() {
        let sum = u16::from(s.as_bytes()[i]) + u16::from(ELL[i]) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "s + ℓ fits in 256 bits");
    out
}

/// The honest public key of an Ed25519 seed.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    EdwardsPoint::mul_base(&expand(seed)).compress().to_bytes()
}

/// A signature of `message` by the key of `seed`, at `edge`.
pub fn sign(seed: &[u8; 32], message: &[u8], edge: SignatureEdge) -> [u8; 64] {
    let a = expand(seed);
    let key = EdwardsPoint::mul_base(&a).compress().to_bytes();
    let r = nonce(seed, message, 0);
    match edge {
        SignatureEdge::Honest | SignatureEdge::SPlusEll => {
            let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
            let s = r + challenge(&big_r, &key, message) * a;
            let s = if edge == SignatureEdge::SPlusEll {
                add_ell(s)
            } else {
                s.to_bytes()
            };
            signature(big_r, s)
        }
        SignatureEdge::RPlusTorsion => {
            let big_r = (EdwardsPoint::mul_base(&r) + point(&ORDER_8_POINT))
                .compress()
                .to_bytes();
            let s = r + challenge(&big_r, &key, message) * a;
            signature(big_r, s.to_bytes())
        }
        SignatureEdge::RIdentity | SignatureEdge::ROrder8 | SignatureEdge::RNonCanonical => {
            let big_r = match edge {
                SignatureEdge::RIdentity => IDENTITY_POINT,
                SignatureEdge::ROrder8 => ORDER_8_POINT,
                _ => IDENTITY_NON_CANONICAL,
            };
            let s = challenge(&big_r, &key, message) * a;
            signature(big_r, s.to_bytes())
        }
    }
}

/// A bad key and a signature of `message` that a cofactorless equation
/// accepts for it (`seed` is the holder's secret where there is one).
pub fn weak_key_signature(edge: KeyEdge, seed: &[u8; 32], message: &[u8]) -> ([u8; 32], [u8; 64]) {
    match edge {
        KeyEdge::Identity | KeyEdge::NonCanonical => {
            let key = if edge == KeyEdge::Identity {
                IDENTITY_POINT
            } else {
                IDENTITY_NON_CANONICAL
            };
            // [s]B - [k]·identity = [s]B = R, whatever the message.
            let s = nonce(seed, message, 0);
            (
                key,
                signature(EdwardsPoint::mul_base(&s).compress().to_bytes(), s.to_bytes()),
            )
        }
        KeyEdge::Order8 | KeyEdge::TorsionComponent => {
            let a = expand(seed);
            let (key_point, secret) = if edge == KeyEdge::Order8 {
                (point(&ORDER_8_POINT), Scalar::ZERO)
            } else {
                (EdwardsPoint::mul_base(&a) + point(&ORDER_8_POINT), a)
            };
            let key = key_point.compress().to_bytes();
            // Try nonces until k is a multiple of 8: then [k]T8 is the
            // identity and [s]B - [k]A = [r]B = R.
            for counter in 0.. {
                let r = nonce(seed, message, counter);
                let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
                let k = challenge(&big_r, &key, message);
                if k.as_bytes()[0].is_multiple_of(8) {
                    let s = r + k * secret;
                    let recomputed = EdwardsPoint::mul_base(&s) - k * key_point;
                    assert_eq!(recomputed.compress().to_bytes(), big_r);
                    return (key, signature(big_r, s.to_bytes()));
                }
            }
            unreachable!("one nonce in eight works")
        }
    }
}

/// The cofactorless equation alone, `[s]B = R + [k]A` compared as points,
/// with `s` reduced or not (what a lax verifier checks).
pub fn cofactorless_holds(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    equation(key, message, signature, false)
}

/// The cofactored equation `[8][s]B = [8]R + [8][k]A` (what a batch
/// verifier checks).
pub fn cofactored_holds(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    equation(key, message, signature, true)
}

fn equation(key: &[u8; 32], message: &[u8], signature: &[u8; 64], cofactored: bool) -> bool {
    let (Some(a), Some(r)) = (
        CompressedEdwardsY(*key).decompress(),
        CompressedEdwardsY(signature[..32].try_into().expect("32")).decompress(),
    ) else {
        return false;
    };
    let s: Option<Scalar> = Scalar::from_canonical_bytes(signature[32..].try_into().expect("32")).into();
    let Some(s) = s else { return false };
    let k = challenge(signature[..32].try_into().expect("32"), key, message);
    let difference = EdwardsPoint::mul_base(&s) - k * a - r;
    if cofactored {
        difference.mul_by_cofactor().is_identity()
    } else {
        difference.is_identity()
    }
}
