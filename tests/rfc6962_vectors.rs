//! The RFC 6962 proof vectors of transparency-dev/merkle (tests/data/rfc6962):
//! every happy path must verify and every mutated case must be refused.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_verify::hash::Hash;
use caseledger_verify::merkle::{verify_consistency, verify_inclusion};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

/// A hash field; `None` when it is not 32 bytes (then verification must fail).
fn hash(text: &str) -> Option<Hash> {
    BASE64.decode(text).ok()?.try_into().ok()
}

/// A root field as raw bytes: roots of any length are compared as they are.
fn bytes(text: &str) -> Vec<u8> {
    BASE64.decode(text).expect("vector roots are valid base64")
}

fn proof(items: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    items.iter().flatten().map(|h| hash(h)).collect()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("vector folder") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn data(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc6962")
        .join(sub)
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&data("inclusion"));
    assert!(files.len() > 50, "expected the full vector set, found {}", files.len());
    let mut happy = 0;
    for file in files {
        let v: Inclusion = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("parse");
        let result = match (hash(&v.leaf_hash), proof(&v.proof)) {
            (Some(leaf), Some(proof)) => {
                verify_inclusion(&leaf, v.leaf_idx, v.tree_size, &proof, &bytes(&v.root)).is_ok()
            }
            _ => false,
        };
        assert_eq!(result, !v.want_err, "{}", file.display());
        happy += usize::from(result);
    }
    assert!(happy >= 5, "happy paths verified: {happy}");
}

#[test]
fn consistency_vectors() {
    let files = json_files(&data("consistency"));
    assert!(files.len() > 50, "expected the full vector set, found {}", files.len());
    let mut happy = 0;
    for file in files {
        let v: Consistency = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("parse");
        let (root1, root2) = (bytes(&v.root1), bytes(&v.root2));
        let result = match proof(&v.proof) {
            Some(proof) => verify_consistency(v.size1, v.size2, &proof, &root1, &root2).is_ok(),
            None => false,
        };
        assert_eq!(result, !v.want_err, "{}", file.display());
        happy += usize::from(result);
    }
    assert!(happy >= 5, "happy paths verified: {happy}");
}
