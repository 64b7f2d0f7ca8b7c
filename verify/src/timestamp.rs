//! RFC 3161 time-stamp answers of checkpoints (FORMAT §6c), read without
//! checking the TSA's signature: that is CMS with the TSA's certificate,
//! checked by `openssl ts -verify` (`verify-bundle --tsa-ca` runs it).
//! What this module checks is what binds the answer to the checkpoint:
//! the token is granted, and its TSTInfo's message imprint is SHA-256 of
//! the checkpoint's text; it also reads the time the TSA put in it.

use sha2::{Digest, Sha256};

/// What a granted time-stamp answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TstInfo {
    /// The SHA-256 message imprint: the hash of the stamped text.
    pub imprint: [u8; 32],
    /// The TSA's time (`genTime`), ms since the epoch (UTC).
    pub gen_time_ms: u64,
    /// The nonce of the request it answers, if it has one.
    pub nonce: Option<u128>,
}

/// The text a checkpoint's time-stamp covers: the note's body (§6), what
/// the node signs, with its final newline.
pub fn stamped_text(note: &str) -> &str {
    // Split where a signed note is split: at its last blank line.
    note.rfind("\n\n").map_or(note, |at| &note[..at + 1])
}

/// One DER TLV at the start of `bytes`: (tag, content, rest).
fn read_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The DER TLV at the start of `bytes` with `tag`: (content, rest).
fn expect<'a>(bytes: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    match read_tlv(bytes) {
        Some((found, content, rest)) if found == tag => Ok((content, rest)),
        _ => Err(format!("the time-stamp answer has no {what}")),
    }
}

/// The DER content of the OIDs read here.
const ID_SIGNED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const ID_CT_TST_INFO: [u8; 11] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04];
const ID_SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Reads a DER `TimeStampResp` (RFC 3161 §2.4.2): its status grants a
/// token (0 granted, 1 granted with modifications), the token is CMS
/// SignedData whose encapsulated content is a `TSTInfo` with a SHA-256
/// message imprint; returns that TSTInfo.
pub fn read_response(response: &[u8]) -> Result<TstInfo, String> {
    let (content, rest) = expect(response, 0x30, "TimeStampResp")?;
    if !rest.is_empty() {
        return Err("the answer is not one TimeStampResp".into());
    }
    let (status_info, token) = expect(content, 0x30, "PKIStatusInfo")?;
    let (status, _) = expect(status_info, 0x02, "status")?;
    if !matches!(status, [0] | [1]) {
        return Err(format!("the TSA did not grant a time-stamp (status {status:?})"));
    }
    // ContentInfo { id-signedData, [0] SignedData }
    let (content_info, _) = expect(token, 0x30, "time-stamp token")?;
    let (oid, rest) = expect(content_info, 0x06, "content type")?;
    if oid != ID_SIGNED_DATA {
        return Err("the time-stamp token is not CMS SignedData".into());
    }
    let (explicit, _) = expect(rest, 0xa0, "SignedData")?;
    let (signed_data, _) = expect(explicit, 0x30, "SignedData")?;
    // SignedData { version, digestAlgorithms, encapContentInfo, ... }
    let (_, rest) = expect(signed_data, 0x02, "SignedData version")?;
    let (_, rest) = expect(rest, 0x31, "digest algorithms")?;
    let (encapsulated, _) = expect(rest, 0x30, "encapsulated content")?;
    let (oid, rest) = expect(encapsulated, 0x06, "encapsulated content type")?;
    if oid != ID_CT_TST_INFO {
        return Err("the time-stamp token holds no TSTInfo".into());
    }
    let (explicit, _) = expect(rest, 0xa0, "TSTInfo")?;
    let (octets, _) = expect(explicit, 0x04, "TSTInfo")?;
    let (tst_info, _) = expect(octets, 0x30, "TSTInfo")?;
    // TSTInfo { version, policy, messageImprint, serialNumber, genTime,
    //           accuracy?, ordering?, nonce?, ... }
    let (_, rest) = expect(tst_info, 0x02, "TSTInfo version")?;
    let (_, rest) = expect(rest, 0x06, "policy")?;
    let (imprint, rest) = expect(rest, 0x30, "message imprint")?;
    let (algorithm, hashed) = expect(imprint, 0x30, "imprint algorithm")?;
    let (oid, _) = expect(algorithm, 0x06, "imprint algorithm")?;
    let (hashed, _) = expect(hashed, 0x04, "imprint")?;
    if oid != ID_SHA256 {
        return Err("the time-stamp's imprint is not SHA-256".into());
    }
    let imprint: [u8; 32] = hashed
        .try_into()
        .map_err(|_| "the time-stamp's imprint is not 32 bytes")?;
    let (_, rest) = expect(rest, 0x02, "serial number")?;
    let (gen_time, mut rest) = expect(rest, 0x18, "genTime")?;
    let gen_time_ms = generalized_time_ms(gen_time).ok_or("the time-stamp's genTime is not a UTC time")?;
    // accuracy (SEQUENCE) and ordering (BOOLEAN) may come before the nonce.
    let mut nonce = None;
    while let Some((tag, content, more)) = read_tlv(rest) {
        match tag {
            0x30 | 0x01 => rest = more,
            0x02 => {
                // Ours are 63 bits: at most 9 bytes with a sign byte.
                nonce = (content.len() <= 9).then(|| content.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b)));
                break;
            }
            _ => break,
        }
    }
    Ok(TstInfo {
        imprint,
        gen_time_ms,
        nonce,
    })
}

/// Checks that `response` is a granted time-stamp of the checkpoint note
/// `note` (of its [`stamped_text`]); returns the TSA's time.
pub fn check_of_checkpoint(response: &[u8], note: &str) -> Result<TstInfo, String> {
    let info = read_response(response)?;
    let digest: [u8; 32] = Sha256::digest(stamped_text(note).as_bytes()).into();
    if info.imprint != digest {
        return Err("the time-stamp is of another text than this checkpoint".into());
    }
    Ok(info)
}

/// ms since the epoch of a DER GeneralizedTime `YYYYMMDDHHMMSS[.f+]Z`.
fn generalized_time_ms(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole[range].parse::<u32>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = crate::text::days_from_civil(i64::from(year), month, day)?;
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let seconds = u64::try_from(days).ok()? * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    seconds.checked_mul(1000)?.checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_are_read() {
        assert_eq!(generalized_time_ms(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time_ms(b"20161231235960Z"), Some(1_483_228_800_000));
        assert_eq!(generalized_time_ms(b"20261128031502.25Z"), Some(1_795_835_702_250));
        for bad in [
            &b"20261128031502"[..],
            b"2026112803150Z",
            b"20261328031502Z",
            b"20260230031502Z",
            b"2026112803150xZ",
        ] {
            assert_eq!(generalized_time_ms(bad), None, "{bad:?}");
        }
        assert_eq!(stamped_text("a\nb\n\n— x y\n"), "a\nb\n");
    }

    #[test]
    fn answers_that_grant_nothing_are_refused() {
        assert!(read_response(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_err());
        // status 2 (rejection)
        let refused = read_response(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]);
        assert!(matches!(&refused, Err(e) if e.contains("did not grant")), "{refused:?}");
    }
}
