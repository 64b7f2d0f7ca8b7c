//! The applicant bundle's verifier for the browser: `caseledger-verify`
//! compiled to `wasm32-unknown-unknown`, a module that imports nothing
//! (no clock, no randomness, no network, no DOM) and exports its memory
//! and three functions (docs/FORMAT.md §7a, "In the browser"):
//!
//! * `input_buffer(len) -> ptr`: room for `len` bytes of input in the
//!   module's memory; the page writes the input there.
//! * `check_bundle(key_len) -> len`: the input is the node's public key
//!   (`key_len` bytes of standard base64) followed by the bundle's JSON
//!   (a bundle, or the whole `GET /v1/verify/{code}` answer holding one);
//!   checks it and returns the length of the answer.
//! * `output_ptr() -> ptr`: where the answer is: the JSON
//!   `{"ok": true, "report": <CaseReport>}` or `{"ok": false, "error": "…"}`.
//!
//! No `unsafe`: the buffers are vectors the module owns; the page reads and
//! writes them through the exported memory.

use std::cell::RefCell;

use caseledger_keys::PublicKey;
use caseledger_verify::bundle::ApplicantBundle;

thread_local! {
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Makes room for `len` bytes of input and returns where they go.
#[no_mangle]
pub extern "C" fn input_buffer(len: usize) -> *mut u8 {
    INPUT.with(|input| {
        let mut input = input.borrow_mut();
        input.clear();
        input.resize(len, 0);
        input.as_mut_ptr()
    })
}

/// Where the last answer is.
#[no_mangle]
pub extern "C" fn output_ptr() -> *const u8 {
    OUTPUT.with(|output| output.borrow().as_ptr())
}

/// Checks the input (see the crate's documentation); returns the length
/// of the answer at [`output_ptr`].
#[no_mangle]
pub extern "C" fn check_bundle(key_len: usize) -> usize {
    let answer = INPUT.with(|input| answer(&input.borrow(), key_len));
    OUTPUT.with(|output| {
        let mut output = output.borrow_mut();
        *output = answer.into_bytes();
        output.len()
    })
}

/// The answer for `input` (the key's `key_len` bytes, then the JSON).
pub fn answer(input: &[u8], key_len: usize) -> String {
    let result = check(input, key_len);
    let value = match result {
        Ok(report) => serde_json::json!({"ok": true, "report": report}),
        Err(error) => serde_json::json!({"ok": false, "error": error}),
    };
    value.to_string()
}

fn check(input: &[u8], key_len: usize) -> Result<caseledger_verify::bundle::CaseReport, String> {
    if key_len > input.len() {
        return Err("the input is shorter than its key".into());
    }
    let (key, json) = input.split_at(key_len);
    let key = std::str::from_utf8(key).map_err(|_| "the node key is not text".to_owned())?;
    let key = PublicKey::from_base64(key.trim()).map_err(|e| format!("the node key: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("the bundle is not JSON: {e}"))?;
    let seen = value.get("seen").cloned();
    let consistency = value.get("consistency").cloned();
    // The witnesses the page pins (their verifier keys) and the quorum.
    let witnesses = value
        .get("witnesses")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
        .map(|w| {
            caseledger_keys::cosignature::Witness::parse(w.as_str().unwrap_or_default())
                .map_err(|e| format!("a witness key: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = value.get("quorum").and_then(|q| q.as_u64()).unwrap_or(0) as usize;
    let bundle = value.get("bundle").cloned().unwrap_or(value);
    let bundle: ApplicantBundle =
        serde_json::from_value(bundle).map_err(|e| format!("not an applicant bundle: {e}"))?;
    let report = bundle.verify_witnessed(&key, &witnesses, quorum)?;
    if let Some(seen) = seen.filter(|s| !s.is_null()) {
        consistent_with(&seen, consistency.as_ref(), &report)?;
    }
    Ok(report)
}

/// The bundle's checkpoint extends the one this verifier saw before
/// (`seen`: `{"size", "root"}`), by the RFC 6962 consistency proof
/// `consistency` (base64 hashes, `GET /v1/proofs/consistency`).
fn consistent_with(
    seen: &serde_json::Value,
    consistency: Option<&serde_json::Value>,
    report: &caseledger_verify::bundle::CaseReport,
) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hash = |text: &str| -> Result<[u8; 32], String> {
        b64.decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "a hash is not 32 bytes of base64".to_owned())
    };
    let size = seen["size"].as_u64().ok_or("the checkpoint seen before has no size")?;
    let root = hash(seen["root"].as_str().ok_or("the checkpoint seen before has no root")?)?;
    if size > report.tree_size {
        return Err(format!(
            "the ledger had {size} entries when you checked it before and has {} now: it was rolled back or rewritten",
            report.tree_size
        ));
    }
    let proof = consistency
        .and_then(|c| c.as_array())
        .map(|hashes| {
            hashes
                .iter()
                .map(|h| hash(h.as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    caseledger_verify::merkle::verify_consistency(size, report.tree_size, &proof, &root, &hash(&report.root)?)
        .map_err(|e| {
            format!(
                "the ledger is not the one you checked before ({size} entries then, {} now): its history was rewritten ({e})",
                report.tree_size
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(key: &str, json: &str) -> serde_json::Value {
        let input = [key.as_bytes(), json.as_bytes()].concat();
        let ptr = input_buffer(input.len());
        assert!(!ptr.is_null());
        INPUT.with(|buffer| buffer.borrow_mut().copy_from_slice(&input));
        let len = check_bundle(key.len());
        let text = OUTPUT.with(|output| {
            let output = output.borrow();
            assert_eq!(output.as_ptr(), output_ptr());
            String::from_utf8(output[..len].to_vec()).expect("utf8")
        });
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn bad_input_is_an_answer_not_a_trap() {
        let key = caseledger_keys::Identity::from_seed([1; 32]).public_key().to_base64();
        let answer = call(&key, "{}");
        assert_eq!(answer["ok"], false);
        assert!(answer["error"]
            .as_str()
            .expect("text")
            .contains("not an applicant bundle"));
        let answer = call("not a key", "{}");
        assert!(answer["error"].as_str().expect("text").contains("node key"));
        let answer = call(&key, "[");
        assert!(answer["error"].as_str().expect("text").contains("not JSON"));
    }
}
