//! Builds the applicant page's verifier, `caseledger-verify-wasm`, for
//! `wasm32-unknown-unknown` and leaves it in `OUT_DIR/verify.wasm` for the
//! service to embed (`src/service/verifier.rs`): the page is served whole
//! by the binary, with no outside asset.
//!
//! A nested `cargo build` with its own target directory (beside the outer
//! one, so the two never wait on each other's lock), release settings for
//! size, and none of the outer build's wrappers or flags (clippy's driver
//! or coverage flags have no business in the browser's module).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in [
        "verify/src",
        "verify/Cargo.toml",
        "keys/src",
        "keys/Cargo.toml",
        "verify-wasm",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let target_dir = outer_target_dir(&out).join("verify-wasm");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&manifest)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "caseledger-verify-wasm",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for variable in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(variable);
    }
    let status = command.status().expect("running cargo for the page's verifier");
    assert!(
        status.success(),
        "building caseledger-verify-wasm for {TARGET} failed; the target is installed with `rustup target add {TARGET}`"
    );
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join("caseledger_verify_wasm.wasm");
    std::fs::copy(&built, out.join("verify.wasm")).expect("copying the page's verifier");
}

/// The outer build's target directory: `OUT_DIR` is
/// `<target>/[<triple>/]<profile>/build/<package>-<hash>/out`.
fn outer_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map_or_else(|| out.to_path_buf(), Path::to_path_buf)
}
