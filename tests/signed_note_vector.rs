//! The C2SP signed-note known-answer vector (tests/data/signed-note.json):
//! our signer reproduces it byte for byte and our verifier accepts it,
//! ignoring the cosignature of a key it does not know.

use caseledger_keys::note::{self, Signer, Verifier};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    verifier_key: String,
    signer_key: String,
    text: String,
    signed_note: String,
    second_verifier_key: String,
    second_signature_line: String,
}

fn vector() -> Vector {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/signed-note.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read vector")).expect("parse vector")
}

#[test]
fn signer_reproduces_the_vector() {
    let v = vector();
    let signer = Signer::parse(&v.signer_key).expect("signer key");
    assert_eq!(signer.verifier().to_string(), v.verifier_key);
    assert_eq!(signer.sign(&v.text).expect("sign"), v.signed_note);
}

#[test]
fn verifier_accepts_the_vector_and_ignores_unknown_cosigners() {
    let v = vector();
    let verifier = Verifier::parse(&v.verifier_key).expect("verifier key");
    let opened = note::open(&v.signed_note, std::slice::from_ref(&verifier)).expect("valid note");
    assert_eq!(opened.text, v.text);
    let cosigned = format!("{}{}", v.signed_note, v.second_signature_line);
    let opened = note::open(&cosigned, std::slice::from_ref(&verifier)).expect("cosigned note");
    assert_eq!(opened.unknown_signatures, 1);
    let both = [verifier, Verifier::parse(&v.second_verifier_key).expect("second key")];
    assert_eq!(note::open(&cosigned, &both).expect("both").verified_by.len(), 2);
}

#[test]
fn verifier_rejects_a_changed_text_or_signature() {
    let v = vector();
    let verifier = Verifier::parse(&v.verifier_key).expect("verifier key");
    let changed = v.signed_note.replacen("cryptography", "Cryptography", 1);
    assert!(note::open(&changed, std::slice::from_ref(&verifier)).is_err());
    let line_start = v.signed_note.rfind('\u{2014}').expect("signature line");
    let mut bytes = v.signed_note.clone().into_bytes();
    let flip = line_start + 30;
    bytes[flip] = if bytes[flip] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).expect("utf8");
    assert!(note::open(&flipped, std::slice::from_ref(&verifier)).is_err());
}
