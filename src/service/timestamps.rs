//! Trusted time-stamps (RFC 3161) of checkpoints: the node asks the
//! court's time-stamp authority (`tsa_url`; China's TSAs and any RFC 3161
//! service) to time-stamp each new checkpoint's text, keeps the answer
//! beside the checkpoint and serves it at
//! `GET /v1/checkpoints/{size}/timestamp`, so that anyone can check it
//! with `openssl ts -verify -in FILE -data CHECKPOINT_TEXT -CAfile TSA_CA`
//! (docs/FORMAT.md §6c).
//!
//! The request is the fixed DER of RFC 3161 §2.4.1 (version 1, a SHA-256
//! message imprint, a nonce, certReq true); of the answer the node checks
//! only that it grants a token that holds the imprint: the token's
//! signature is the TSA's, checked by whoever relies on it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use caseledger_ledger::store::Ledger;
use sha2::{Digest, Sha256};

/// A DER TLV with `tag` and `content`.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The DER `TimeStampReq` for a SHA-256 `digest` with `nonce`.
pub fn request_der(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    // AlgorithmIdentifier { id-sha256 (2.16.840.1.101.3.4.2.1), NULL }
    let sha256 = [
        tlv(0x06, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]),
        tlv(0x05, &[]),
    ]
    .concat();
    let imprint = tlv(0x30, &[tlv(0x30, &sha256), tlv(0x04, digest)].concat());
    let mut nonce_bytes: Vec<u8> = nonce.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    if nonce_bytes.first().is_none_or(|b| b & 0x80 != 0) {
        nonce_bytes.insert(0, 0);
    }
    tlv(
        0x30,
        &[
            tlv(0x02, &[1]),         // version v1
            imprint,                 // messageImprint
            tlv(0x02, &nonce_bytes), // nonce
            tlv(0x01, &[0xff]),      // certReq TRUE
        ]
        .concat(),
    )
}

/// Checks a DER `TimeStampResp` (RFC 3161 §2.4.2) as
/// [`caseledger_verify::timestamp::read_response`] reads it, and that its
/// message imprint is `digest`, its nonce `nonce` and its time not ahead
/// of this node's clock by more than the tolerance (FORMAT §6c). (The
/// TSA's signature over it is checked by whoever relies on it: `openssl ts
/// -verify`.)
pub fn check_response(response: &[u8], digest: &[u8; 32], nonce: u64) -> Result<(), String> {
    let info = caseledger_verify::timestamp::read_response(response)?;
    caseledger_verify::timestamp::check_not_future(info.gen_time_ms, super::challenges::now_ms())?;
    if &info.imprint != digest {
        return Err("the time-stamp is of another text".into());
    }
    if info.nonce != Some(u128::from(nonce)) {
        return Err("the time-stamp does not answer this request (its nonce)".into());
    }
    Ok(())
}

/// The time-stamp authority as an anchor.
struct TsaAnchor {
    url: String,
    agent: ureq::Agent,
}

impl super::anchors::Anchor for TsaAnchor {
    fn name(&self) -> String {
        "time-stamp authority".into()
    }

    fn anchor(&mut self, ledger: &Ledger, size: u64, note: &str) -> Result<super::anchors::Anchored, String> {
        stamp(ledger, &self.agent, &self.url, size, note).map(|()| super::anchors::Anchored::Yes)
    }
}

/// Asks the TSA at `url` for a time-stamp of each new checkpoint until
/// `stop`, keeping each granted answer beside its checkpoint.
pub fn spawn(
    ledger: Arc<Ledger>,
    url: String,
    poll: Duration,
    timeout: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    super::anchors::spawn(
        ledger,
        Box::new(TsaAnchor { url, agent }),
        poll,
        Duration::from_secs(60),
        stop,
        Box::new(|_| {}),
    )
}

fn stamp(ledger: &Ledger, agent: &ureq::Agent, url: &str, size: u64, note: &str) -> Result<(), String> {
    if ledger.timestamp_at(size).map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let digest: [u8; 32] = Sha256::digest(caseledger_verify::timestamp::stamped_text(note).as_bytes()).into();
    let nonce = rand::random::<u64>() >> 1;
    let request = request_der(&digest, nonce);
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/timestamp-query")
        .send(&request[..])
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024)
        .read_to_vec()
        .map_err(|e| format!("answer unreadable: {e}"))?;
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    check_response(&body, &digest, nonce)?;
    ledger.add_timestamp(size, &body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_rfc_3161_der() {
        let request = request_der(&[0xab; 32], 0x80);
        // SEQUENCE { INTEGER 1, SEQUENCE { SEQUENCE { OID sha256, NULL }, OCTET STRING }, INTEGER 0x0080, BOOLEAN TRUE }
        let expected = [
            &[0x30, 0x3d, 0x02, 0x01, 0x01, 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09][..],
            &[
                0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            &[0xab; 32],
            &[0x02, 0x02, 0x00, 0x80, 0x01, 0x01, 0xff],
        ]
        .concat();
        assert_eq!(request, expected);
        assert!(check_response(&[0x30, 0x03, 0x30, 0x01, 0x02], &[0; 32], 1).is_err());
        // A "token" that merely holds the digest (the request echoed back).
        let echoed = tlv(0x30, &[tlv(0x30, &tlv(0x02, &[0])), request.clone()].concat());
        assert!(check_response(&echoed, &[0xab; 32], 0x80).is_err());
    }
}
