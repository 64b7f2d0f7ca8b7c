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

/// How far a stamp's time may be ahead of the clock of whoever checks it
/// (clocks differ), and behind the newest entry of what it stamps.
pub const FUTURE_TOLERANCE_MS: u64 = 10 * 60 * 1000;
/// How far a stamp's time may be before the newest entry's ledger time (the
/// node's clock and the TSA's differ a little; a stamp cannot be much
/// older than what it stamps).
pub const ENTRY_TOLERANCE_MS: u64 = 10 * 60 * 1000;

/// A DER reader over the elements of one constructed value: every length
/// definite and minimal, and [`Der::end`] refuses what is left over.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element: (tag, content).
    fn next(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let bad = || format!("the time-stamp answer's {what} is not DER");
        let (&tag, rest) = self
            .0
            .split_first()
            .ok_or_else(|| format!("the time-stamp answer has no {what}"))?;
        let (&first, rest) = rest.split_first().ok_or_else(bad)?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Long form: 1 to 4 length bytes, no leading zero, and only
            // for lengths the short form cannot state (DER, X.690 §10.1).
            let count = usize::from(first & 0x7f);
            if !(1..=4).contains(&count) || rest.len() < count || rest[0] == 0 {
                return Err(bad());
            }
            let length = rest[..count].iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
            if length < 0x80 {
                return Err(bad());
            }
            (length, &rest[count..])
        };
        if rest.len() < length {
            return Err(bad());
        }
        self.0 = &rest[length..];
        Ok((tag, &rest[..length]))
    }

    /// The next element, which must have `tag`: its content.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        match self.next(what)? {
            (found, content) if found == tag => Ok(content),
            _ => Err(format!("the time-stamp answer has no {what}")),
        }
    }

    /// The next element if it has `tag` (an OPTIONAL field).
    fn optional(&mut self, tag: u8, what: &str) -> Result<Option<&'a [u8]>, String> {
        if self.0.first() == Some(&tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Nothing may follow the last element read.
    fn end(&self, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("the time-stamp answer's {what} has bytes after its last field"))
        }
    }
}

/// The content of the one element of `bytes` with `tag`, nothing after it.
fn only<'a>(bytes: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], String> {
    let mut der = Der(bytes);
    let content = der.expect(tag, what)?;
    der.end(what)?;
    Ok(content)
}

/// A DER INTEGER's content: minimal (no needless leading 0x00 or 0xff).
fn integer<'a>(der: &mut Der<'a>, what: &str) -> Result<&'a [u8], String> {
    let content = der.expect(0x02, what)?;
    let minimal = match content {
        [] => false,
        [0x00, next, ..] => *next >= 0x80,
        [0xff, next, ..] => *next < 0x80,
        _ => true,
    };
    if minimal {
        Ok(content)
    } else {
        Err(format!("the time-stamp answer's {what} is not a DER INTEGER"))
    }
}

/// The DER content of the OIDs read here.
const ID_SIGNED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const ID_CT_TST_INFO: [u8; 11] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04];
const ID_SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Reads a DER `TimeStampResp` (RFC 3161 §2.4.2), strictly: its status
/// grants a token (0 granted, 1 granted with modifications), the token is
/// CMS SignedData (RFC 5652 §5.1) whose encapsulated content is a
/// `TSTInfo` with a SHA-256 message imprint; every element in its place,
/// every length minimal, nothing left over at any level. Returns that
/// TSTInfo. (The signature over it is checked by `openssl ts -verify`.)
pub fn read_response(response: &[u8]) -> Result<TstInfo, String> {
    // TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken }
    let mut resp = Der(only(response, 0x30, "TimeStampResp")?);
    // PKIStatusInfo ::= SEQUENCE { status, statusString?, failInfo? }
    let mut status_info = Der(resp.expect(0x30, "PKIStatusInfo")?);
    let status = integer(&mut status_info, "status")?;
    status_info.optional(0x30, "status string")?;
    status_info.optional(0x03, "failure information")?;
    status_info.end("PKIStatusInfo")?;
    if !matches!(status, [0] | [1]) {
        return Err(format!("the TSA did not grant a time-stamp (status {status:?})"));
    }
    // ContentInfo ::= SEQUENCE { id-signedData, [0] EXPLICIT SignedData }
    let mut content_info = Der(resp.expect(0x30, "time-stamp token")?);
    resp.end("TimeStampResp")?;
    if content_info.expect(0x06, "content type")? != ID_SIGNED_DATA {
        return Err("the time-stamp token is not CMS SignedData".into());
    }
    let explicit = content_info.expect(0xa0, "SignedData")?;
    content_info.end("time-stamp token")?;
    // SignedData ::= SEQUENCE { version, digestAlgorithms SET,
    //   encapContentInfo, certificates [0]?, crls [1]?, signerInfos SET }
    let mut signed_data = Der(only(explicit, 0x30, "SignedData")?);
    integer(&mut signed_data, "SignedData version")?;
    signed_data.expect(0x31, "digest algorithms")?;
    let mut encapsulated = Der(signed_data.expect(0x30, "encapsulated content")?);
    signed_data.optional(0xa0, "certificates")?;
    signed_data.optional(0xa1, "CRLs")?;
    signed_data.expect(0x31, "signer information")?;
    signed_data.end("SignedData")?;
    // EncapsulatedContentInfo ::= SEQUENCE { id-ct-TSTInfo,
    //   [0] EXPLICIT OCTET STRING { TSTInfo } }
    if encapsulated.expect(0x06, "encapsulated content type")? != ID_CT_TST_INFO {
        return Err("the time-stamp token holds no TSTInfo".into());
    }
    let explicit = encapsulated.expect(0xa0, "TSTInfo")?;
    encapsulated.end("encapsulated content")?;
    let octets = only(explicit, 0x04, "TSTInfo")?;
    // TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber,
    //   genTime, accuracy?, ordering?, nonce?, tsa [0]?, extensions [1]? }
    let mut tst_info = Der(only(octets, 0x30, "TSTInfo")?);
    if integer(&mut tst_info, "TSTInfo version")? != [1] {
        return Err("the time-stamp's TSTInfo is not version 1".into());
    }
    tst_info.expect(0x06, "policy")?;
    let mut imprint = Der(tst_info.expect(0x30, "message imprint")?);
    let mut algorithm = Der(imprint.expect(0x30, "imprint algorithm")?);
    let oid = algorithm.expect(0x06, "imprint algorithm")?;
    if algorithm
        .optional(0x05, "imprint algorithm parameters")?
        .is_some_and(|p| !p.is_empty())
    {
        return Err("the time-stamp's imprint algorithm has parameters".into());
    }
    algorithm.end("imprint algorithm")?;
    let hashed = imprint.expect(0x04, "imprint")?;
    imprint.end("message imprint")?;
    if oid != ID_SHA256 {
        return Err("the time-stamp's imprint is not SHA-256".into());
    }
    let imprint: [u8; 32] = hashed
        .try_into()
        .map_err(|_| "the time-stamp's imprint is not 32 bytes")?;
    integer(&mut tst_info, "serial number")?;
    let gen_time = tst_info.expect(0x18, "genTime")?;
    let gen_time_ms =
        generalized_time_ms(gen_time).ok_or("the time-stamp's genTime is not a DER GeneralizedTime in UTC")?;
    tst_info.optional(0x30, "accuracy")?;
    if let Some(ordering) = tst_info.optional(0x01, "ordering")? {
        if !matches!(ordering, [0x00] | [0xff]) {
            return Err("the time-stamp's ordering is not a DER BOOLEAN".into());
        }
    }
    let nonce = if tst_info.0.first() == Some(&0x02) {
        let content = integer(&mut tst_info, "nonce")?;
        // Ours are 63 bits: at most 9 bytes with a sign byte.
        Some(
            (content.len() <= 9)
                .then(|| content.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b)))
                .ok_or("the time-stamp's nonce is longer than any this node sends")?,
        )
    } else {
        None
    };
    tst_info.optional(0xa0, "TSA name")?;
    tst_info.optional(0xa1, "extensions")?;
    tst_info.end("TSTInfo")?;
    Ok(TstInfo {
        imprint,
        gen_time_ms,
        nonce,
    })
}

/// A stamp's time must not be after `now_ms` (the checker's clock) by
/// more than [`FUTURE_TOLERANCE_MS`]: a verifier with a clock (the CLI,
/// the applicant's page) refuses a stamp from the future.
pub fn check_not_future(gen_time_ms: u64, now_ms: u64) -> Result<(), String> {
    if gen_time_ms > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(format!(
            "the time-stamp's time {} is in the future (this clock says {}): it is not believed",
            crate::text::utc_text(gen_time_ms),
            crate::text::utc_text(now_ms)
        ));
    }
    Ok(())
}

/// A stamp's time must not be before `newest_entry_ms` (the newest ledger
/// time among what it stamps) by more than [`ENTRY_TOLERANCE_MS`]: a
/// checkpoint cannot be stamped before its entries were written.
pub fn check_not_before_entries(gen_time_ms: u64, newest_entry_ms: u64) -> Result<(), String> {
    if gen_time_ms.saturating_add(ENTRY_TOLERANCE_MS) < newest_entry_ms {
        return Err(format!(
            "the time-stamp's time {} is before the entry of {} it would vouch for: it is not of this checkpoint",
            crate::text::utc_text(gen_time_ms),
            crate::text::utc_text(newest_entry_ms)
        ));
    }
    Ok(())
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

/// [`check_of_checkpoint`] of a checkpoint whose newest entry was written
/// at `newest_entry_ms` (ledger time), and [`check_not_before_entries`].
pub fn check_of_checkpoint_after(response: &[u8], note: &str, newest_entry_ms: u64) -> Result<TstInfo, String> {
    let info = check_of_checkpoint(response, note)?;
    check_not_before_entries(info.gen_time_ms, newest_entry_ms)?;
    Ok(info)
}

/// ms since the epoch of a DER GeneralizedTime `YYYYMMDDHHMMSS[.f+]Z`
/// (X.690 §11.7: UTC, seconds present, a fraction only if not zero and
/// without trailing zeros; no leap second here).
fn generalized_time_ms(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => {
            if fraction.is_empty() || fraction.ends_with('0') {
                return None;
            }
            (whole, fraction)
        }
        None => (text, ""),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole[range].parse::<u32>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
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

    /// A DER element with a minimal length.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    const LEVELS: [&str; 11] = [
        "resp",
        "status_info",
        "content_info",
        "explicit_signed_data",
        "signed_data",
        "encapsulated",
        "explicit_tst_info",
        "octets",
        "tst_info",
        "imprint",
        "algorithm",
    ];

    /// A granted answer as a TSA sends it, each constructed level's content
    /// passed through `tweak(level, content)`.
    fn answer_with(gen_time: &str, tweak: &dyn Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let seq = |level: &str, tag: u8, parts: &[Vec<u8>]| tlv(tag, &tweak(level, parts.concat()));
        let algorithm = seq("algorithm", 0x30, &[tlv(0x06, &ID_SHA256)]);
        let imprint = seq("imprint", 0x30, &[algorithm, tlv(0x04, &[0xab; 32])]);
        let tst_info = seq(
            "tst_info",
            0x30,
            &[
                tlv(0x02, &[1]),
                tlv(0x06, &[0x2a, 0x03]),
                imprint,
                tlv(0x02, &[0x01, 0x02]),
                tlv(0x18, gen_time.as_bytes()),
                tlv(0x30, &tlv(0x02, &[1])),
                tlv(0x02, &[0x00, 0x9a, 0x01]),
            ],
        );
        let octets = seq("octets", 0x04, &[tst_info]);
        let explicit_tst = seq("explicit_tst_info", 0xa0, &[octets]);
        let encapsulated = seq("encapsulated", 0x30, &[tlv(0x06, &ID_CT_TST_INFO), explicit_tst]);
        let signed_data = seq(
            "signed_data",
            0x30,
            &[
                tlv(0x02, &[3]),
                tlv(0x31, &tlv(0x30, &tlv(0x06, &ID_SHA256))),
                encapsulated,
                tlv(0xa0, &tlv(0x30, &[0x05, 0x00])),
                tlv(0x31, &tlv(0x30, &tlv(0x02, &[1]))),
            ],
        );
        let explicit_signed_data = seq("explicit_signed_data", 0xa0, &[signed_data]);
        let content_info = seq(
            "content_info",
            0x30,
            &[tlv(0x06, &ID_SIGNED_DATA), explicit_signed_data],
        );
        let status_info = seq("status_info", 0x30, &[tlv(0x02, &[0])]);
        seq("resp", 0x30, &[status_info, content_info])
    }

    fn answer(gen_time: &str) -> Vec<u8> {
        answer_with(gen_time, &|_, content| content)
    }

    #[test]
    fn a_well_formed_answer_is_read() {
        let info = read_response(&answer("20261128031502.25Z")).expect("read");
        assert_eq!(info.imprint, [0xab; 32]);
        assert_eq!(info.gen_time_ms, 1_795_835_702_250);
        assert_eq!(info.nonce, Some(0x9a01));
    }

    #[test]
    fn bytes_left_over_at_any_level_are_refused() {
        for level in LEVELS {
            let tweaked = answer_with("20261128031502Z", &|at, mut content| {
                if at == level {
                    content.extend([0x04, 0x00]);
                }
                content
            });
            let refused = read_response(&tweaked);
            assert!(refused.is_err(), "{level}: {refused:?}");
        }
        let mut trailing = answer("20261128031502Z");
        trailing.push(0);
        assert!(read_response(&trailing).is_err());
        // Two SignedData in the explicit wrapper.
        let twice = answer_with("20261128031502Z", &|at, content| {
            if at == "explicit_signed_data" {
                [content.clone(), content].concat()
            } else {
                content
            }
        });
        let refused = read_response(&twice);
        assert!(matches!(&refused, Err(e) if e.contains("bytes after")), "{refused:?}");
    }

    #[test]
    fn lengths_that_are_not_minimal_and_missing_fields_are_refused() {
        let good = answer("20261128031502Z");
        // The TSTInfo version `02 01 01` written `02 81 01 01`.
        let version = [0x02, 0x01, 0x01, 0x06];
        let at = good.windows(4).position(|w| w == version).expect("the version");
        let mut long = good[..at].to_vec();
        long.extend([0x02, 0x81, 0x01, 0x01]);
        long.extend_from_slice(&good[at + 3..]);
        // (The enclosing lengths now disagree too; either way it is refused.)
        assert!(read_response(&long).is_err());
        // A long form with a leading zero byte for the whole answer.
        let header = if good[1] < 0x80 {
            2
        } else {
            2 + usize::from(good[1] & 0x7f)
        };
        let content = &good[header..];
        let mut padded = vec![0x30, 0x83, 0x00, (content.len() >> 8) as u8, content.len() as u8];
        padded.extend_from_slice(content);
        let refused = read_response(&padded);
        assert!(matches!(&refused, Err(e) if e.contains("not DER")), "{refused:?}");
        // A status with a needless leading zero, and no signer information.
        let status = answer_with("20261128031502Z", &|at, content| {
            if at == "status_info" {
                tlv(0x02, &[0, 0])
            } else {
                content
            }
        });
        assert!(read_response(&status).is_err());
        let unsigned = answer_with("20261128031502Z", &|at, content| {
            if at == "signed_data" {
                let last = content.iter().rposition(|b| *b == 0x31).expect("signer infos");
                content[..last].to_vec()
            } else {
                content
            }
        });
        let refused = read_response(&unsigned);
        assert!(
            matches!(&refused, Err(e) if e.contains("signer information")),
            "{refused:?}"
        );
    }

    #[test]
    fn generalized_times_are_read_as_der_says() {
        assert_eq!(generalized_time_ms(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time_ms(b"20261128031502.25Z"), Some(1_795_835_702_250));
        for bad in [
            &b"20261128031502"[..],
            b"2026112803150Z",
            b"20261328031502Z",
            b"20260230031502Z",
            b"2026112803150xZ",
            b"20161231235960Z", // a leap second
            b"20261128031502.Z",
            b"20261128031502.250Z",
            b"202611280315Z",
        ] {
            assert_eq!(generalized_time_ms(bad), None, "{bad:?}");
        }
        assert_eq!(stamped_text("a\nb\n\n— x y\n"), "a\nb\n");
        for time in ["20161231235960Z", "20261128031502.250Z"] {
            let refused = read_response(&answer(time));
            assert!(
                matches!(&refused, Err(e) if e.contains("genTime")),
                "{time}: {refused:?}"
            );
        }
    }

    #[test]
    fn times_before_the_entries_or_in_the_future_are_refused() {
        let written = 1_795_835_702_000;
        assert!(check_not_before_entries(written, written).is_ok());
        assert!(check_not_before_entries(written - ENTRY_TOLERANCE_MS, written).is_ok());
        let refused = check_not_before_entries(written - ENTRY_TOLERANCE_MS - 1, written);
        assert!(
            matches!(&refused, Err(e) if e.contains("before the entry")),
            "{refused:?}"
        );
        let now = written;
        assert!(check_not_future(now + FUTURE_TOLERANCE_MS, now).is_ok());
        let refused = check_not_future(now + FUTURE_TOLERANCE_MS + 1, now);
        assert!(matches!(&refused, Err(e) if e.contains("in the future")), "{refused:?}");
    }

    #[test]
    fn answers_that_grant_nothing_are_refused() {
        assert!(read_response(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_err());
        // status 2 (rejection)
        let refused = read_response(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]);
        assert!(matches!(&refused, Err(e) if e.contains("did not grant")), "{refused:?}");
    }
}
