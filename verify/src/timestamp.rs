//! RFC 3161 time-stamp answers of checkpoints (FORMAT §6c), read without
//! checking the TSA's signature: that is CMS with the TSA's certificate,
//! checked by `openssl ts -verify` (`verify-bundle --tsa-ca` runs it).
//! What this module checks is what binds the answer to the checkpoint:
//! the token is granted, and its TSTInfo's message imprint is SHA-256 of
//! the checkpoint's text; it also reads the time the TSA put in it.
//!
//! The answer is not signed by the node, and without the TSA's signature
//! anyone can edit it: it is read as strict DER, every field in its place
//! and nothing else ([`read_response`]), and its time must be plausible:
//! not before the entries it stamps ([`check_not_before_entries`], pure),
//! not after the checker's clock ([`check_not_future`], for verifiers that
//! have one).

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
/// (clocks differ): [`check_not_future`], for verifiers with a clock.
pub const FUTURE_TOLERANCE_MS: u64 = 10 * 60 * 1000;
/// How far a stamp's time may be before the newest entry's ledger time (the
/// node's clock and the TSA's differ a little; a stamp cannot be much
/// older than what it stamps): [`check_not_before_entries`].
pub const ENTRY_TOLERANCE_MS: u64 = 10 * 60 * 1000;

/// How deep the parts read without being interpreted (certificates, the
/// signer's information, extensions) may nest: X.509 and CMS need about a
/// dozen levels; a bound keeps a hostile answer from exhausting the stack.
const MAX_DEPTH: usize = 32;

/// A DER reader over the elements of one constructed value: every length
/// definite and minimal, every tag of the low-number form, and [`Der::end`]
/// refuses what is left over.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element: (tag, content).
    fn next(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let bad = || format!("the time-stamp answer's {what} is not DER");
        let (&tag, rest) = self
            .0
            .split_first()
            .ok_or_else(|| format!("the time-stamp answer has no {what}"))?;
        if tag & 0x1f == 0x1f {
            // The high-tag-number form: no field of an answer has one.
            return Err(format!(
                "the time-stamp answer's {what} has a tag no field of an answer has"
            ));
        }
        let (&first, rest) = rest.split_first().ok_or_else(bad)?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Long form: 1 to 4 length bytes, no leading zero, and only
            // for lengths the short form cannot state (DER, X.690 §10.1);
            // 0x80 (indefinite, BER only) has a count of 0.
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

    /// [`Der::expect`] of a field read without being interpreted: its
    /// content is walked as well-formed DER ([`walk`]).
    fn skip(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let content = self.expect(tag, what)?;
        walk(tag, content, what, 0)?;
        Ok(content)
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

/// Checks an element read without being interpreted, and what it holds:
/// SEQUENCE and SET constructed, the other universal types primitive (DER
/// has no constructed strings), no end-of-contents tag, and the content of
/// a constructed element DER elements one after the other, each walked the
/// same way, nothing left over.
fn walk(tag: u8, content: &[u8], what: &str, depth: usize) -> Result<(), String> {
    let constructed = tag & 0x20 != 0;
    let fits = match (tag & 0xc0, tag & 0x1f) {
        (0, 0) => false,
        (0, 0x10 | 0x11) => constructed,
        (0, _) => !constructed,
        _ => true,
    };
    if !fits {
        return Err(format!("the time-stamp answer's {what} is not DER (tag {tag:#04x})"));
    }
    if constructed {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "the time-stamp answer's {what} nests deeper than {MAX_DEPTH} levels"
            ));
        }
        let mut der = Der(content);
        while !der.0.is_empty() {
            let (tag, inner) = der.next(what)?;
            walk(tag, inner, what, depth + 1)?;
        }
    }
    Ok(())
}

/// The elements of a SET OF or SEQUENCE OF, each with one of the tags
/// `allowed`: their contents.
fn elements<'a>(content: &'a [u8], allowed: &[u8], what: &str) -> Result<Vec<(u8, &'a [u8])>, String> {
    let mut der = Der(content);
    let mut found = Vec::new();
    while !der.0.is_empty() {
        let (tag, inner) = der.next(what)?;
        if !allowed.contains(&tag) {
            return Err(format!(
                "the time-stamp answer's {what} has an element of a kind it cannot have (tag {tag:#04x})"
            ));
        }
        found.push((tag, inner));
    }
    Ok(found)
}

/// [`elements`] read without being interpreted, each walked ([`walk`]):
/// how many there are.
fn skip_elements(content: &[u8], allowed: &[u8], what: &str) -> Result<usize, String> {
    let found = elements(content, allowed, what)?;
    for (tag, inner) in &found {
        walk(*tag, inner, what, 1)?;
    }
    Ok(found.len())
}

/// The content of the one element of `bytes` with `tag`, nothing after it.
fn only<'a>(bytes: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], String> {
    let mut der = Der(bytes);
    let content = der.expect(tag, what)?;
    if !der.0.is_empty() {
        return Err(format!("the time-stamp answer's {what} is followed by other bytes"));
    }
    Ok(content)
}

/// A DER INTEGER's content is minimal: not empty, no needless leading 0x00
/// or 0xff (X.690 §8.3.2).
fn minimal_integer<'a>(content: &'a [u8], what: &str) -> Result<&'a [u8], String> {
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

/// The next element, a DER INTEGER: its content.
fn integer<'a>(der: &mut Der<'a>, what: &str) -> Result<&'a [u8], String> {
    minimal_integer(der.expect(0x02, what)?, what)
}

/// The next element, an OBJECT IDENTIFIER: its content, which has at least
/// one subidentifier, each minimal (no leading 0x80 byte) and ended.
fn oid<'a>(der: &mut Der<'a>, what: &str) -> Result<&'a [u8], String> {
    let content = der.expect(0x06, what)?;
    let starts_padded = content
        .iter()
        .enumerate()
        .any(|(at, b)| *b == 0x80 && (at == 0 || content[at - 1] & 0x80 == 0));
    if content.last().is_some_and(|b| b & 0x80 == 0) && !starts_padded {
        Ok(content)
    } else {
        Err(format!("the time-stamp answer's {what} is not a DER OBJECT IDENTIFIER"))
    }
}

/// A BIT STRING of named bits (`failInfo`) as DER has it: the count of
/// unused bits 0 to 7 (0 when there are no bits), those bits zero, and no
/// trailing zero bit (X.690 §11.2.2).
fn named_bits(content: &[u8], what: &str) -> Result<(), String> {
    let fits = match content {
        [unused] => *unused == 0,
        [unused, .., last] => *unused <= 7 && (last >> unused) & 1 == 1 && u16::from(*last) & ((1 << unused) - 1) == 0,
        [] => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!("the time-stamp answer's {what} is not a DER BIT STRING"))
    }
}

/// The DER content of the OIDs read here.
const ID_SIGNED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const ID_CT_TST_INFO: [u8; 11] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04];
const ID_SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// The tags of a `GeneralName` (RFC 5280 §4.2.1.6), the TSA's name: each
/// alternative as DER writes it (constructed where its type is).
const GENERAL_NAME_TAGS: [u8; 9] = [0xa0, 0x81, 0x82, 0xa3, 0xa4, 0xa5, 0x86, 0x87, 0x88];

/// Reads a DER `TimeStampResp` (RFC 3161 §2.4.2), strictly: its status
/// grants a token (0 granted, 1 granted with modifications), the token is
/// CMS SignedData (RFC 5652 §5.1) with one signer whose encapsulated
/// content is a `TSTInfo` with a SHA-256 message imprint; every element in
/// its place, every length minimal, nothing left over at any level, and
/// the parts not interpreted (certificates, the signer's information,
/// extensions) walked as well-formed DER. Returns that TSTInfo. (The
/// signature over it is checked by `openssl ts -verify`.)
pub fn read_response(response: &[u8]) -> Result<TstInfo, String> {
    // TimeStampResp ::= SEQUENCE { status PKIStatusInfo,
    //   timeStampToken TimeStampToken OPTIONAL }
    let mut resp = Der(only(response, 0x30, "TimeStampResp")?);
    // PKIStatusInfo ::= SEQUENCE { status PKIStatus,
    //   statusString PKIFreeText OPTIONAL, failInfo PKIFailureInfo OPTIONAL }
    let mut status_info = Der(resp.expect(0x30, "PKIStatusInfo")?);
    let status = integer(&mut status_info, "status")?;
    if let Some(text) = status_info.optional(0x30, "status string")? {
        // PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String
        if skip_elements(text, &[0x0c], "status string")? == 0 {
            return Err("the time-stamp answer's status string is empty".into());
        }
    }
    if let Some(bits) = status_info.optional(0x03, "failure information")? {
        named_bits(bits, "failure information")?;
    }
    status_info.end("PKIStatusInfo")?;
    if !matches!(status, [0] | [1]) {
        return Err(format!("the TSA did not grant a time-stamp (status {status:?})"));
    }
    // TimeStampToken ::= ContentInfo
    // ContentInfo ::= SEQUENCE { contentType id-signedData,
    //   content [0] EXPLICIT SignedData }
    let mut content_info = Der(resp.expect(0x30, "time-stamp token")?);
    resp.end("TimeStampResp")?;
    if oid(&mut content_info, "content type")? != ID_SIGNED_DATA {
        return Err("the time-stamp token is not CMS SignedData".into());
    }
    let explicit = content_info.expect(0xa0, "SignedData")?;
    content_info.end("time-stamp token")?;
    // SignedData ::= SEQUENCE { version CMSVersion,
    //   digestAlgorithms SET OF DigestAlgorithmIdentifier,
    //   encapContentInfo EncapsulatedContentInfo,
    //   certificates [0] IMPLICIT CertificateSet OPTIONAL,
    //   crls [1] IMPLICIT RevocationInfoChoices OPTIONAL,
    //   signerInfos SET OF SignerInfo }
    let mut signed_data = Der(only(explicit, 0x30, "SignedData")?);
    integer(&mut signed_data, "SignedData version")?;
    let digests = signed_data.expect(0x31, "digest algorithms")?;
    skip_elements(digests, &[0x30], "digest algorithms")?;
    let mut encapsulated = Der(signed_data.expect(0x30, "encapsulated content")?);
    if let Some(certificates) = signed_data.optional(0xa0, "certificates")? {
        // CertificateChoices: Certificate, or [0] to [3] IMPLICIT.
        skip_elements(certificates, &[0x30, 0xa0, 0xa1, 0xa2, 0xa3], "certificates")?;
    }
    if let Some(crls) = signed_data.optional(0xa1, "CRLs")? {
        // RevocationInfoChoice: CertificateList, or other [1] IMPLICIT.
        skip_elements(crls, &[0x30, 0xa1], "CRLs")?;
    }
    let signers = signed_data.expect(0x31, "signer information")?;
    signed_data.end("SignedData")?;
    // "The time-stamp token MUST NOT contain any signatures other than the
    // signature of the TSA" (RFC 3161 §2.4.2).
    match elements(signers, &[0x30], "signer information")?[..] {
        [(_, signer)] => read_signer_info(signer)?,
        ref found => {
            return Err(format!(
                "the time-stamp token has {} signatures: RFC 3161 allows one, the TSA's",
                found.len()
            ))
        }
    }
    // EncapsulatedContentInfo ::= SEQUENCE { eContentType id-ct-TSTInfo,
    //   eContent [0] EXPLICIT OCTET STRING OPTIONAL }, the OCTET STRING
    //   holding the DER of a TSTInfo.
    if oid(&mut encapsulated, "encapsulated content type")? != ID_CT_TST_INFO {
        return Err("the time-stamp token holds no TSTInfo".into());
    }
    let explicit = encapsulated.expect(0xa0, "TSTInfo")?;
    encapsulated.end("encapsulated content")?;
    let octets = only(explicit, 0x04, "TSTInfo OCTET STRING")?;
    read_tst_info(only(octets, 0x30, "TSTInfo")?)
}

/// Walks `SignerInfo` (RFC 5652 §5.3) in its order, without interpreting
/// it: version, sid (IssuerAndSerialNumber or [0] SubjectKeyIdentifier),
/// digestAlgorithm, signedAttrs [0]?, signatureAlgorithm, signature,
/// unsignedAttrs [1]?, and nothing after.
fn read_signer_info(content: &[u8]) -> Result<(), String> {
    let mut signer = Der(content);
    integer(&mut signer, "signer version")?;
    if signer.0.first() == Some(&0x80) {
        signer.expect(0x80, "signer identifier")?;
    } else {
        signer.skip(0x30, "signer identifier")?;
    }
    signer.skip(0x30, "signer's digest algorithm")?;
    if let Some(attributes) = signer.optional(0xa0, "signed attributes")? {
        skip_elements(attributes, &[0x30], "signed attributes")?;
    }
    signer.skip(0x30, "signature algorithm")?;
    signer.expect(0x04, "signature")?;
    if let Some(attributes) = signer.optional(0xa1, "unsigned attributes")? {
        skip_elements(attributes, &[0x30], "unsigned attributes")?;
    }
    signer.end("signer information")
}

/// Reads the content of a `TSTInfo` (RFC 3161 §2.4.2):
///
/// ```text
/// TSTInfo ::= SEQUENCE { version INTEGER { v1(1) }, policy TSAPolicyId,
///   messageImprint MessageImprint, serialNumber INTEGER,
///   genTime GeneralizedTime, accuracy Accuracy OPTIONAL,
///   ordering BOOLEAN DEFAULT FALSE, nonce INTEGER OPTIONAL,
///   tsa [0] GeneralName OPTIONAL, extensions [1] IMPLICIT Extensions OPTIONAL }
/// ```
fn read_tst_info(content: &[u8]) -> Result<TstInfo, String> {
    let mut tst_info = Der(content);
    if integer(&mut tst_info, "TSTInfo version")? != [1] {
        return Err("the time-stamp's TSTInfo is not version 1".into());
    }
    oid(&mut tst_info, "policy")?;
    // MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier,
    //   hashedMessage OCTET STRING }
    let mut imprint = Der(tst_info.expect(0x30, "message imprint")?);
    let mut algorithm = Der(imprint.expect(0x30, "imprint algorithm")?);
    let algorithm_oid = oid(&mut algorithm, "imprint algorithm")?;
    if algorithm
        .optional(0x05, "imprint algorithm parameters")?
        .is_some_and(|p| !p.is_empty())
    {
        return Err("the time-stamp's imprint algorithm has parameters".into());
    }
    algorithm.end("imprint algorithm")?;
    let hashed = imprint.expect(0x04, "imprint")?;
    imprint.end("message imprint")?;
    if algorithm_oid != ID_SHA256 {
        return Err("the time-stamp's imprint is not SHA-256".into());
    }
    let imprint: [u8; 32] = hashed
        .try_into()
        .map_err(|_| "the time-stamp's imprint is not 32 bytes")?;
    integer(&mut tst_info, "serial number")?;
    let gen_time = tst_info.expect(0x18, "genTime")?;
    let gen_time_ms =
        generalized_time_ms(gen_time).ok_or("the time-stamp's genTime is not a DER GeneralizedTime in UTC")?;
    if let Some(accuracy) = tst_info.optional(0x30, "accuracy")? {
        // Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL,
        //   millis [0] INTEGER (1..999) OPTIONAL,
        //   micros [1] INTEGER (1..999) OPTIONAL }
        let mut accuracy = Der(accuracy);
        if accuracy.0.first() == Some(&0x02) {
            integer(&mut accuracy, "accuracy in seconds")?;
        }
        for (tag, what) in [(0x80, "accuracy in milliseconds"), (0x81, "accuracy in microseconds")] {
            if let Some(value) = accuracy.optional(tag, what)? {
                let value = minimal_integer(value, what)?;
                let number = (value.len() <= 2 && value[0] < 0x80)
                    .then(|| value.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)));
                if !number.is_some_and(|n| (1..=999).contains(&n)) {
                    return Err(format!("the time-stamp's {what} is not from 1 to 999"));
                }
            }
        }
        accuracy.end("accuracy")?;
    }
    if let Some(ordering) = tst_info.optional(0x01, "ordering")? {
        // DER leaves out a value equal to its DEFAULT (X.690 §11.5): an
        // ordering that is there is TRUE, 0xFF.
        if ordering != [0xff] {
            return Err("the time-stamp's ordering is not DER (TRUE is 0xFF; FALSE, the default, is left out)".into());
        }
    }
    let nonce = if tst_info.0.first() == Some(&0x02) {
        let content = integer(&mut tst_info, "nonce")?;
        if content[0] >= 0x80 {
            return Err("the time-stamp's nonce is negative: this node sends none".into());
        }
        // Ours are 63 bits: at most 9 bytes with a sign byte.
        Some(
            (content.len() <= 9)
                .then(|| content.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b)))
                .ok_or("the time-stamp's nonce is longer than any this node sends")?,
        )
    } else {
        None
    };
    if let Some(name) = tst_info.optional(0xa0, "TSA name")? {
        // [0] of a CHOICE is EXPLICIT: exactly one GeneralName.
        if skip_elements(name, &GENERAL_NAME_TAGS, "TSA name")? != 1 {
            return Err("the time-stamp answer's TSA name is not one GeneralName".into());
        }
    }
    if let Some(extensions) = tst_info.optional(0xa1, "extensions")? {
        // Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension
        if skip_elements(extensions, &[0x30], "extensions")? == 0 {
            return Err("the time-stamp answer's extensions are empty".into());
        }
    }
    tst_info.end("TSTInfo")?;
    Ok(TstInfo {
        imprint,
        gen_time_ms,
        nonce,
    })
}

/// A stamp's time must not be after `now_ms` (the checker's clock) by
/// more than [`FUTURE_TOLERANCE_MS`]: a verifier with a clock (the CLI,
/// the applicant's page) refuses a stamp from the future. (The pure
/// verifier has no clock and does not call it.)
pub fn check_not_future(gen_time_ms: u64, now_ms: u64) -> Result<(), String> {
    if gen_time_ms > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(format!(
            "the time-stamp says {}, more than {} minutes after this clock's {}: a time-stamp from the future is not believed",
            crate::text::utc_text(gen_time_ms),
            FUTURE_TOLERANCE_MS / 60_000,
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
            "the time-stamp says {}, more than {} minutes before the entry of {} it stamps: a checkpoint cannot be time-stamped before its entries were written",
            crate::text::utc_text(gen_time_ms),
            ENTRY_TOLERANCE_MS / 60_000,
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
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            let digits: Vec<u8> = content
                .len()
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | digits.len() as u8);
            out.extend(digits);
        }
        out.extend_from_slice(content);
        out
    }

    /// The element with its length one byte longer than DER has it: below
    /// 128 in the long form (`81 n`), from 128 on with a leading zero byte.
    fn padded_length(tag: u8, content: &[u8]) -> Vec<u8> {
        let digits: Vec<u8> = if content.len() < 0x80 {
            vec![content.len() as u8]
        } else {
            let digits = content.len().to_be_bytes().into_iter().skip_while(|b| *b == 0);
            std::iter::once(0).chain(digits).collect()
        };
        [vec![tag, 0x80 | digits.len() as u8], digits, content.to_vec()].concat()
    }

    const GEN_TIME: &str = "20261128031502.25Z";
    const GEN_TIME_MS: u64 = 1_795_835_702_250;
    const IMPRINT: [u8; 32] = [0xab; 32];
    const ECDSA_SHA256: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

    /// How an element is written: `(name, tag, content)` to its bytes.
    type Edit<'e> = &'e dyn Fn(&str, u8, Vec<u8>) -> Vec<u8>;

    /// A granted answer as a TSA sends it, with every optional field, each
    /// element written by `edit` (named as below).
    fn answer_with(gen_time: &str, imprint: [u8; 32], edit: Edit) -> Vec<u8> {
        let el = |name: &str, tag: u8, parts: &[Vec<u8>]| edit(name, tag, parts.concat());
        let leaf = |name: &str, tag: u8, content: &[u8]| edit(name, tag, content.to_vec());
        let common_name = |name: &[u8]| {
            tlv(
                0x30,
                &tlv(
                    0x31,
                    &tlv(0x30, &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, name)].concat()),
                ),
            )
        };
        let algorithm = el(
            "algorithm",
            0x30,
            &[
                leaf("algorithm_oid", 0x06, &ID_SHA256),
                leaf("algorithm_null", 0x05, &[]),
            ],
        );
        let imprint = el("imprint", 0x30, &[algorithm, leaf("hashed", 0x04, &imprint)]);
        let accuracy = el(
            "accuracy",
            0x30,
            &[
                leaf("seconds", 0x02, &[1]),
                leaf("millis", 0x80, &[0x01, 0xf4]),
                leaf("micros", 0x81, &[100]),
            ],
        );
        let tsa = el("tsa", 0xa0, &[el("directory_name", 0xa4, &[common_name(b"Test TSA")])]);
        let extensions = el(
            "extensions",
            0xa1,
            &[tlv(
                0x30,
                &[tlv(0x06, &[0x2a, 0x03, 0x04]), tlv(0x04, &[0x05, 0x00])].concat(),
            )],
        );
        let tst_info = el(
            "tst_info",
            0x30,
            &[
                leaf("version", 0x02, &[1]),
                leaf("policy", 0x06, &[0x2a, 0x03, 0x04, 0x01]),
                imprint,
                leaf("serial", 0x02, &[0x01, 0x02]),
                leaf("gen_time", 0x18, gen_time.as_bytes()),
                accuracy,
                leaf("ordering", 0x01, &[0xff]),
                leaf("nonce", 0x02, &[0x00, 0x9a, 0x01]),
                tsa,
                extensions,
            ],
        );
        let octets = el("octets", 0x04, &[tst_info]);
        let explicit_tst_info = el("explicit_tst_info", 0xa0, &[octets]);
        let encapsulated = el(
            "encapsulated",
            0x30,
            &[leaf("econtent_type", 0x06, &ID_CT_TST_INFO), explicit_tst_info],
        );
        // A certificate as far as this reader looks at one: well-formed
        // DER, long enough for a long-form length.
        let certificate = el(
            "certificate",
            0x30,
            &[
                tlv(
                    0x30,
                    &[
                        tlv(0xa0, &tlv(0x02, &[2])),
                        tlv(0x02, &[0x09; 20]),
                        tlv(0x30, &tlv(0x06, &ECDSA_SHA256)),
                        common_name(b"Test TSA CA"),
                    ]
                    .concat(),
                ),
                tlv(0x30, &tlv(0x06, &ECDSA_SHA256)),
                tlv(0x03, &[&[0][..], &[0x5a; 100]].concat()),
            ],
        );
        let certificates = el("certificates", 0xa0, &[certificate]);
        let signer_info = el(
            "signer_info",
            0x30,
            &[
                leaf("signer_version", 0x02, &[1]),
                el("sid", 0x30, &[common_name(b"Test TSA CA"), tlv(0x02, &[0x09; 20])]),
                el("signer_digest", 0x30, &[tlv(0x06, &ID_SHA256)]),
                el(
                    "signed_attrs",
                    0xa0,
                    &[tlv(
                        0x30,
                        &[
                            tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03]),
                            tlv(0x31, &tlv(0x06, &ID_CT_TST_INFO)),
                        ]
                        .concat(),
                    )],
                ),
                el("signature_algorithm", 0x30, &[tlv(0x06, &ECDSA_SHA256)]),
                leaf("signature", 0x04, &[0x30; 70]),
            ],
        );
        let signer_infos = el("signer_infos", 0x31, &[signer_info]);
        let signed_data = el(
            "signed_data",
            0x30,
            &[
                leaf("sd_version", 0x02, &[3]),
                el(
                    "digest_algorithms",
                    0x31,
                    &[tlv(0x30, &[tlv(0x06, &ID_SHA256), tlv(0x05, &[])].concat())],
                ),
                encapsulated,
                certificates,
                signer_infos,
            ],
        );
        let explicit_signed_data = el("explicit_signed_data", 0xa0, &[signed_data]);
        let content_info = el(
            "content_info",
            0x30,
            &[leaf("content_type", 0x06, &ID_SIGNED_DATA), explicit_signed_data],
        );
        let status_info = el("status_info", 0x30, &[leaf("status", 0x02, &[0])]);
        el("resp", 0x30, &[status_info, content_info])
    }

    fn as_der(_: &str, tag: u8, content: Vec<u8>) -> Vec<u8> {
        tlv(tag, &content)
    }

    /// The answer with the element `at` written by `with(tag, content)`.
    fn edited(at: &str, with: impl Fn(u8, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        answer_with(GEN_TIME, IMPRINT, &|name, tag, content| {
            if name == at {
                with(tag, content)
            } else {
                tlv(tag, &content)
            }
        })
    }

    /// The answer with `bytes` appended to the content of `at`.
    fn appended(at: &str, bytes: &[u8]) -> Vec<u8> {
        edited(at, |tag, content| tlv(tag, &[&content[..], bytes].concat()))
    }

    /// Asserts `answer` is refused with an error that contains `expected`.
    #[track_caller]
    fn assert_refused(answer: &[u8], expected: &str) {
        let refused = read_response(answer).expect_err(expected);
        assert!(refused.contains(expected), "expected {expected:?}, got {refused:?}");
    }

    #[test]
    fn a_well_formed_answer_is_read_with_or_without_its_optional_fields() {
        let info = read_response(&answer_with(GEN_TIME, IMPRINT, &as_der)).expect("read");
        assert_eq!(
            info,
            TstInfo {
                imprint: IMPRINT,
                gen_time_ms: GEN_TIME_MS,
                nonce: Some(0x9a01)
            }
        );
        let optional = [
            "accuracy",
            "ordering",
            "nonce",
            "tsa",
            "extensions",
            "certificates",
            "signed_attrs",
            "algorithm_null",
            "seconds",
            "millis",
            "micros",
        ];
        let bare = answer_with(GEN_TIME, IMPRINT, &|name, tag, content| {
            if optional.contains(&name) {
                Vec::new()
            } else {
                tlv(tag, &content)
            }
        });
        let info = read_response(&bare).expect("read without optional fields");
        assert_eq!((info.gen_time_ms, info.nonce), (GEN_TIME_MS, None));
        // A status string, granted with modifications, a sid by key
        // identifier, CRLs and unsigned attributes are in their places too.
        let more = answer_with(GEN_TIME, IMPRINT, &|name, tag, content| match name {
            "status_info" => tlv(
                tag,
                &[
                    tlv(0x02, &[1]),
                    tlv(0x30, &tlv(0x0c, b"modified")),
                    tlv(0x03, &[0x06, 0x40]),
                ]
                .concat(),
            ),
            "sid" => tlv(0x80, &[0x11; 20]),
            "certificates" => [tlv(tag, &content), tlv(0xa1, &tlv(0x30, &tlv(0x02, &[1])))].concat(),
            "signature" => [tlv(tag, &content), tlv(0xa1, &tlv(0x30, &tlv(0x06, &[0x2a, 0x03])))].concat(),
            _ => tlv(tag, &content),
        });
        assert_eq!(read_response(&more).expect("read").gen_time_ms, GEN_TIME_MS);
    }

    const OPENSSL_FULL: &str = concat!(
        "3082054630030201003082053d06092a864886f70d010702a082052e3082052a020103310f300d060960864801650304",
        "0201050030819f060b2a864886f70d0109100104a0818f04818c30818902010106042a0304013031300d060960864801",
        "65030402010500042059956abf3d38dcbf3e54d507ccad2d1c3cf733ece9e9b1a0d05ca3b65ee45f3d02010218133230",
        "3236313132383038333335332e3433355a300a020101800201f48101640101ff0208755092cd662ab25ba01aa4183016",
        "3114301206035504030c0b5363726174636820545341a0820327308201aa3082014fa00302010202140934caaabbd8d1",
        "227f79a4e960fe55dbd44fca33300a06082a8648ce3d04030230193117301506035504030c0e53637261746368205453",
        "41204341301e170d3236313132383038333335335a170d3336313132353038333335335a30163114301206035504030c",
        "0b53637261746368205453413059301306072a8648ce3d020106082a8648ce3d03010703420004ce94c9c5fb848c6cec",
        "f575d9e9eb97cd9425e0d8d392078cd2f83d38717a37d72c5a86c0979b1fa5985aeff54f3debbe8847080ac7abc32bef",
        "6aa2a311379adca3783076300c0603551d130101ff04023000300e0603551d0f0101ff04040302078030160603551d25",
        "0101ff040c300a06082b06010505070308301d0603551d0e041604142935797eabf59267bf7beacaa849a9181f8d27fc",
        "301f0603551d23041830168014d04b7463331e5d1fcf0d7fb9d6f6fc1ed226c1d0300a06082a8648ce3d040302034900",
        "3046022100da1a615c1df4a94df53145b9e209951dac46a6292950ea64935f7ed78a99276b022100d73e8dab4bb6408c",
        "4a387b7dcd07f7ba56c2d31b35fbac2fd583214263c00425308201753082011ca00302010202143955ed4b9673fc2b10",
        "1d35da95730828732995d3300a06082a8648ce3d04030230193117301506035504030c0e536372617463682054534120",
        "4341301e170d3236313132383038333335335a170d3336313132353038333335335a30193117301506035504030c0e53",
        "637261746368205453412043413059301306072a8648ce3d020106082a8648ce3d03010703420004939473398ba8df96",
        "e8f5d3f8839f996c2aa0d61436576937ac26ed5b01ec886da7d1e38fc4ef8a6e13ebc0d0765b98e99f36f790e4db9f4f",
        "f2d6a58ed2560484a3423040300f0603551d130101ff040530030101ff300e0603551d0f0101ff040403020106301d06",
        "03551d0e04160414d04b7463331e5d1fcf0d7fb9d6f6fc1ed226c1d0300a06082a8648ce3d0403020347003044022032",
        "d4cae72e35bfb6caddca26a9631cd79c9ba2409f40d816d465b043b70ad71902200320d6a2d510e413cd113d27b46f4a",
        "b46c2be0b930a3aca169a416a4238bbfa23182014530820141020101303130193117301506035504030c0e5363726174",
        "63682054534120434102140934caaabbd8d1227f79a4e960fe55dbd44fca33300d06096086480165030402010500a081",
        "a4301a06092a864886f70d010903310d060b2a864886f70d0109100104301c06092a864886f70d010905310f170d3236",
        "313132383038333335335a302f06092a864886f70d01090431220420fb6119a5e44ef19017fad8d783e259f359ad6731",
        "40789327e1145ad8756f7f4e3037060b2a864886f70d010910022f31283026302430220420e5dc542e83c3e69d08e236",
        "d393d6a14e8f04899a90f1d96c0dabedfcd210aa64300a06082a8648ce3d040302044730450220751bcd167ff0244e93",
        "19917d52523dfbe8544c2be1a03a9b71732855be77b120022100eb38ac8f995e0d33d16294de16e03ffad8d42ead9891",
        "f4bfc9ee1c73f53ed7d3",
    );
    const OPENSSL_MINIMAL: &str = concat!(
        "308201de3003020100308201d506092a864886f70d010702a08201c6308201c2020103310f300d060960864801650304",
        "020105003063060b2a864886f70d0109100104a0540452305002010106042a0304013031300d06096086480165030402",
        "010500042059956abf3d38dcbf3e54d507ccad2d1c3cf733ece9e9b1a0d05ca3b65ee45f3d020103180f323032363131",
        "32383038333435345a3182014530820141020101303130193117301506035504030c0e53637261746368205453412043",
        "4102140934caaabbd8d1227f79a4e960fe55dbd44fca33300d06096086480165030402010500a081a4301a06092a8648",
        "86f70d010903310d060b2a864886f70d0109100104301c06092a864886f70d010905310f170d32363131323830383334",
        "35345a302f06092a864886f70d01090431220420951a295f91c0ae05b744f95f1c561a7c98e6b0bf1f27a761b551259b",
        "ed562bfe3037060b2a864886f70d010910022f31283026302430220420e5dc542e83c3e69d08e236d393d6a14e8f0489",
        "9a90f1d96c0dabedfcd210aa64300a06082a8648ce3d04030204473045022100877aaaeebd93c391659b5e1bdb218ffd",
        "546ac4be5a8f4af59215b41cd112d6ab02206df5a501ffc40bf9f7c5aac22b8e66d573d01f88ea1ee454e57632500c83",
        "f855",
    );
    const OPENSSL_REJECTION: &str = concat!(
        "30373035020102302c0c2a4d6573736167652064696765737420616c676f726974686d206973206e6f7420737570706f",
        "727465642e03020780",
    );

    /// What `openssl ts -reply` stamped: the checkpoint text of this note.
    const SCRATCH_NOTE: &str = "caseledger scratch\n\n— scratch signature\n";

    /// Answers of `openssl ts -reply` (OpenSSL 3.0) for `caseledger
    /// scratch\n`: with a nonce, the certificates, accuracy (seconds,
    /// millis, micros), ordering and the TSA's name, genTime with a
    /// fraction; then with none of those; then a rejection (a SHA-1 query).
    #[test]
    fn answers_of_openssl_ts_reply_are_read() {
        let full = hex::decode(OPENSSL_FULL).expect("hex");
        let info = check_of_checkpoint(&full, SCRATCH_NOTE).expect("openssl's answer");
        assert_eq!(info.gen_time_ms, 1_795_854_833_435);
        assert_eq!(info.nonce, Some(0x7550_92cd_662a_b25b));
        let minimal = hex::decode(OPENSSL_MINIMAL).expect("hex");
        let info = check_of_checkpoint(&minimal, SCRATCH_NOTE).expect("openssl's answer");
        assert_eq!((info.gen_time_ms, info.nonce), (1_795_854_894_000, None));
        let rejection = hex::decode(OPENSSL_REJECTION).expect("hex");
        assert_refused(&rejection, "the TSA did not grant a time-stamp (status [2])");
        // One byte more or less is not the answer.
        assert_refused(&[&full[..], &[0]].concat(), "TimeStampResp is followed by other bytes");
        assert_refused(&full[..full.len() - 1], "TimeStampResp is not DER");
    }

    #[test]
    fn bytes_left_over_at_any_level_are_refused() {
        for (level, expected) in [
            ("resp", "TimeStampResp has bytes after its last field"),
            ("status_info", "PKIStatusInfo has bytes after its last field"),
            ("content_info", "time-stamp token has bytes after its last field"),
            ("explicit_signed_data", "SignedData is followed by other bytes"),
            ("signed_data", "SignedData has bytes after its last field"),
            ("encapsulated", "encapsulated content has bytes after its last field"),
            ("explicit_tst_info", "TSTInfo OCTET STRING is followed by other bytes"),
            ("octets", "TSTInfo is followed by other bytes"),
            ("tst_info", "TSTInfo has bytes after its last field"),
            ("imprint", "message imprint has bytes after its last field"),
            ("algorithm", "imprint algorithm has bytes after its last field"),
            ("accuracy", "accuracy has bytes after its last field"),
            ("signer_info", "signer information has bytes after its last field"),
            (
                "digest_algorithms",
                "digest algorithms has an element of a kind it cannot have",
            ),
            ("certificates", "certificates has an element of a kind it cannot have"),
            (
                "signer_infos",
                "signer information has an element of a kind it cannot have",
            ),
            (
                "signed_attrs",
                "signed attributes has an element of a kind it cannot have",
            ),
            ("tsa", "TSA name has an element of a kind it cannot have"),
            ("extensions", "extensions has an element of a kind it cannot have"),
        ] {
            let refused = read_response(&appended(level, &[0x04, 0x00])).expect_err(level);
            assert!(refused.contains(expected), "{level}: {refused}");
        }
        let good = answer_with(GEN_TIME, IMPRINT, &as_der);
        assert_refused(&[&good[..], &[0]].concat(), "TimeStampResp is followed by other bytes");
        // Bytes that are not an element, inside what is walked unread.
        assert_refused(&appended("certificate", &[0x05]), "certificates is not DER");
        assert_refused(&appended("sid", &[0x02, 0x05, 0x01]), "signer identifier is not DER");
        // Two of what there is one of.
        let twice = |level: &str| edited(level, |tag, content| [tlv(tag, &content), tlv(tag, &content)].concat());
        assert_refused(&twice("signed_data"), "SignedData is followed by other bytes");
        assert_refused(&twice("content_info"), "TimeStampResp has bytes after its last field");
        assert_refused(&twice("octets"), "TSTInfo OCTET STRING is followed by other bytes");
        assert_refused(&twice("tst_info"), "TSTInfo is followed by other bytes");
        assert_refused(&twice("nonce"), "TSTInfo has bytes after its last field");
        assert_refused(&twice("accuracy"), "TSTInfo has bytes after its last field");
        assert_refused(&twice("hashed"), "message imprint has bytes after its last field");
        assert_refused(
            &twice("signer_info"),
            "the time-stamp token has 2 signatures: RFC 3161 allows one, the TSA's",
        );
        assert_refused(
            &edited("signer_infos", |tag, _| tlv(tag, &[])),
            "the time-stamp token has 0 signatures",
        );
        assert_refused(
            &edited("directory_name", |tag, content| {
                [tlv(tag, &content), tlv(0x82, b"tsa.example")].concat()
            }),
            "TSA name is not one GeneralName",
        );
    }

    #[test]
    fn lengths_that_are_not_minimal_are_refused() {
        // Below 128 (`81 n`) and from 128 on (a leading zero byte).
        for (level, what) in [
            ("resp", "TimeStampResp"),
            ("status", "status"),
            ("content_info", "time-stamp token"),
            ("signed_data", "SignedData"),
            ("digest_algorithms", "digest algorithms"),
            ("octets", "TSTInfo OCTET STRING"),
            ("tst_info", "TSTInfo"),
            ("version", "TSTInfo version"),
            ("hashed", "imprint"),
            ("gen_time", "genTime"),
            ("nonce", "nonce"),
            ("tsa", "TSA name"),
            ("certificate", "certificates"),
            ("signer_info", "signer information"),
            ("sid", "signer identifier"),
        ] {
            let refused = read_response(&edited(level, |tag, content| padded_length(tag, &content))).expect_err(level);
            assert_eq!(refused, format!("the time-stamp answer's {what} is not DER"), "{level}");
        }
        assert!(
            answer_with(GEN_TIME, IMPRINT, &as_der)[1] > 0x80,
            "a long form is tried"
        );
        // Indefinite (BER), and five length bytes.
        assert_refused(
            &edited("signed_data", |tag, content| {
                [&[tag, 0x80], &content[..], &[0, 0]].concat()
            }),
            "the time-stamp answer's SignedData is not DER",
        );
        assert_refused(
            &edited("serial", |tag, _| vec![tag, 0x85, 0x01, 0, 0, 0, 0]),
            "the time-stamp answer's serial number is not DER",
        );
        // INTEGERs with a needless leading byte, or none.
        for (level, content, what) in [
            ("status", &[0x00, 0x00][..], "status"),
            ("serial", &[0x00, 0x01], "serial number"),
            ("nonce", &[0xff, 0x80], "nonce"),
            ("version", &[], "TSTInfo version"),
            ("sd_version", &[0x00, 0x03], "SignedData version"),
            ("millis", &[0x00, 0x05], "accuracy in milliseconds"),
        ] {
            let refused = read_response(&edited(level, |tag, _| tlv(tag, content))).expect_err(level);
            assert_eq!(refused, format!("the time-stamp answer's {what} is not a DER INTEGER"));
        }
    }

    #[test]
    fn fields_missing_out_of_order_or_unknown_are_refused() {
        let dropped = |level: &str| edited(level, |_, _| Vec::new());
        assert_refused(
            &dropped("signer_infos"),
            "the time-stamp answer has no signer information",
        );
        assert_refused(&dropped("hashed"), "the time-stamp answer has no imprint");
        assert_refused(&dropped("gen_time"), "the time-stamp answer has no genTime");
        // An unknown field after the last one, and a multi-byte tag.
        assert_refused(
            &appended("tst_info", &tlv(0xa2, &[])),
            "TSTInfo has bytes after its last field",
        );
        assert_refused(
            &appended("tst_info", &[0x9f, 0x20, 0x00]),
            "TSTInfo has bytes after its last field",
        );
        assert_refused(
            &appended("certificate", &[0x9f, 0x20, 0x00]),
            "the time-stamp answer's certificates has a tag no field of an answer has",
        );
        // The optional fields out of their order.
        let ordering = tlv(0x01, &[0xff]);
        let swapped = answer_with(GEN_TIME, IMPRINT, &|name, tag, content| match name {
            "ordering" => Vec::new(),
            "nonce" => [tlv(tag, &content), ordering.clone()].concat(),
            _ => tlv(tag, &content),
        });
        assert_refused(&swapped, "TSTInfo has bytes after its last field");
        let crls_first = answer_with(GEN_TIME, IMPRINT, &|name, tag, content| match name {
            "certificates" => [tlv(0xa1, &tlv(0x30, &[])), tlv(tag, &content)].concat(),
            _ => tlv(tag, &content),
        });
        assert_refused(&crls_first, "the time-stamp answer has no signer information");
        // Values DER or RFC 3161 do not allow.
        assert_refused(
            &edited("ordering", |tag, _| tlv(tag, &[0x00])),
            "the time-stamp's ordering is not DER (TRUE is 0xFF; FALSE, the default, is left out)",
        );
        assert_refused(&edited("ordering", |tag, _| tlv(tag, &[0x01])), "ordering is not DER");
        for millis in [&[0x00][..], &[0x03, 0xe8]] {
            assert_refused(
                &edited("millis", |tag, _| tlv(tag, millis)),
                "the time-stamp's accuracy in milliseconds is not from 1 to 999",
            );
        }
        assert_refused(
            &edited("nonce", |tag, _| tlv(tag, &[0x80])),
            "the time-stamp's nonce is negative",
        );
        assert_refused(
            &edited("nonce", |tag, _| tlv(tag, &[0x01; 10])),
            "the time-stamp's nonce is longer than any this node sends",
        );
        assert_refused(
            &edited("algorithm_null", |tag, _| tlv(tag, &[0])),
            "the time-stamp's imprint algorithm has parameters",
        );
        assert_refused(
            &edited("algorithm_null", |_, _| tlv(0x06, &[0x2a, 0x03])),
            "imprint algorithm has bytes after its last field",
        );
        assert_refused(
            &edited("algorithm_oid", |tag, _| tlv(tag, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])),
            "the time-stamp's imprint is not SHA-256",
        );
        assert_refused(
            &edited("hashed", |tag, _| tlv(tag, &[0xab; 20])),
            "the time-stamp's imprint is not 32 bytes",
        );
        for policy in [&[][..], &[0x2a, 0x80, 0x03], &[0x80, 0x2a], &[0x2a, 0x83]] {
            assert_refused(
                &edited("policy", |tag, _| tlv(tag, policy)),
                "the time-stamp answer's policy is not a DER OBJECT IDENTIFIER",
            );
        }
        assert_refused(
            &edited("content_type", |tag, _| tlv(tag, &ID_CT_TST_INFO)),
            "the time-stamp token is not CMS SignedData",
        );
        assert_refused(
            &edited("econtent_type", |tag, _| tlv(tag, &ID_SIGNED_DATA)),
            "the time-stamp token holds no TSTInfo",
        );
        assert_refused(
            &edited("version", |tag, _| tlv(tag, &[2])),
            "the time-stamp's TSTInfo is not version 1",
        );
        assert_refused(
            &edited("status_info", |tag, _| {
                tlv(tag, &[tlv(0x02, &[0]), tlv(0x30, &[])].concat())
            }),
            "the time-stamp answer's status string is empty",
        );
        for bits in [&[0x08, 0x80][..], &[0x07, 0x00], &[0x06, 0x41], &[0x01], &[]] {
            assert_refused(
                &edited("status_info", |tag, _| {
                    tlv(tag, &[tlv(0x02, &[0]), tlv(0x03, bits)].concat())
                }),
                "the time-stamp answer's failure information is not a DER BIT STRING",
            );
        }
        assert_refused(
            &edited("tsa", |tag, _| tlv(tag, &tlv(0x30, &[]))),
            "TSA name has an element of a kind it cannot have (tag 0x30)",
        );
        // What is walked unread: no constructed string, no end-of-contents,
        // no primitive SEQUENCE, no endless nesting.
        for (bytes, tag) in [
            (tlv(0x24, &tlv(0x04, &[1])), "0x24"),
            (vec![0x00, 0x00], "0x00"),
            (tlv(0x10, &[]), "0x10"),
        ] {
            assert_refused(
                &appended("certificate", &bytes),
                &format!("the time-stamp answer's certificates is not DER (tag {tag})"),
            );
        }
        let deep = (0..40).fold(Vec::new(), |inner, _| tlv(0x30, &inner));
        assert_refused(
            &appended("certificate", &deep),
            "the time-stamp answer's certificates nests deeper than 32 levels",
        );
        let nested = (0..20).fold(Vec::new(), |inner, _| tlv(0x30, &inner));
        assert!(read_response(&appended("certificate", &nested)).is_ok());
    }

    #[test]
    fn generalized_times_are_read_as_der_says() {
        assert_eq!(generalized_time_ms(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time_ms(b"20261128031502.25Z"), Some(GEN_TIME_MS));
        assert_eq!(generalized_time_ms(b"20261128031502.0001Z"), Some(GEN_TIME_MS - 250));
        assert_eq!(generalized_time_ms(b"20280229235959Z"), Some(1_835_481_599_000));
        for bad in [
            &b"20261128031502"[..], // local time
            b"20261128031502+0800",
            b"20261128111502+0800Z",
            b"2026112803150Z",
            b"261128031502Z", // UTCTime's two-digit year
            b"202611280315Z", // no seconds
            b"20261328031502Z",
            b"20260230031502Z", // 30 February
            b"20260229031502Z", // 2026 is not a leap year
            b"20260431031502Z", // 31 April
            b"20261100031502Z",
            b"20261128241502Z",
            b"20261128036002Z",
            b"2026112803150xZ",
            b"20161231235960Z", // a leap second
            b"20261128031502.Z",
            b"20261128031502.250Z",
            b"20261128031502.0Z",
            b"20261128031502,25Z",
            b"+2026112803150Z",
            b"19691231235959Z",
        ] {
            assert_eq!(generalized_time_ms(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(stamped_text("a\nb\n\n— x y\n"), "a\nb\n");
        for time in [
            "20161231235960Z",
            "20261128031502.250Z",
            "20260230031502Z",
            "20261128031502",
        ] {
            assert_refused(
                &answer_with(time, IMPRINT, &as_der),
                "the time-stamp's genTime is not a DER GeneralizedTime in UTC",
            );
        }
        // UTCTime is not GeneralizedTime.
        assert_refused(
            &edited("gen_time", |_, _| tlv(0x17, b"261128031502Z")),
            "the time-stamp answer has no genTime",
        );
    }

    #[test]
    fn a_stamp_older_than_the_newest_entry_is_refused() {
        let note = "caseledger.example/court\n3\nAAAA\n\n— caseledger.example/court sig\n";
        let digest: [u8; 32] = Sha256::digest(stamped_text(note).as_bytes()).into();
        let answer = answer_with(GEN_TIME, digest, &as_der);
        let info = check_of_checkpoint_after(&answer, note, GEN_TIME_MS + ENTRY_TOLERANCE_MS).expect("within 10 min");
        assert_eq!(info.gen_time_ms, GEN_TIME_MS);
        assert_eq!(
            check_of_checkpoint_after(&answer, note, GEN_TIME_MS + ENTRY_TOLERANCE_MS + 1000),
            Err(
                "the time-stamp says 2026-11-28T03:15:02Z, more than 10 minutes before the entry of \
                 2026-11-28T03:25:03Z it stamps: a checkpoint cannot be time-stamped before its entries were written"
                    .into()
            )
        );
        // genTime in 1999 for entries of 2026.
        let old = answer_with("19991231235959Z", digest, &as_der);
        let refused = check_of_checkpoint_after(&old, note, GEN_TIME_MS).expect_err("1999");
        assert!(refused.starts_with("the time-stamp says 1999-12-31T23:59:59Z, more than 10 minutes before"));
        assert_eq!(
            check_of_checkpoint_after(&answer, "another\n\n— sig\n", 0),
            Err("the time-stamp is of another text than this checkpoint".into())
        );
        assert_eq!(ENTRY_TOLERANCE_MS, 600_000);
        assert!(check_not_before_entries(GEN_TIME_MS, GEN_TIME_MS).is_ok());
        assert!(check_not_before_entries(0, ENTRY_TOLERANCE_MS).is_ok());
        assert!(check_not_before_entries(0, ENTRY_TOLERANCE_MS + 1).is_err());
    }

    #[test]
    fn a_stamp_from_the_future_is_refused_by_a_checker_with_a_clock() {
        assert_eq!(FUTURE_TOLERANCE_MS, 600_000);
        let now = GEN_TIME_MS;
        assert!(check_not_future(now, now).is_ok());
        assert!(check_not_future(now + FUTURE_TOLERANCE_MS, now).is_ok());
        assert!(check_not_future(now + FUTURE_TOLERANCE_MS + 1, now).is_err());
        // genTime in 2099.
        let later = generalized_time_ms(b"20990101000000Z").expect("2099");
        assert_eq!(
            check_not_future(later, now),
            Err(
                "the time-stamp says 2099-01-01T00:00:00Z, more than 10 minutes after this clock's \
                 2026-11-28T03:15:02Z: a time-stamp from the future is not believed"
                    .into()
            )
        );
        assert!(check_not_future(u64::MAX, u64::MAX).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes are read or refused, never a panic.
        #[test]
        fn no_bytes_make_the_reader_panic(bytes in proptest::collection::vec(0u8..=255, 0..300)) {
            let _ = read_response(&bytes);
        }

        /// Nor a real answer with one byte changed and cut anywhere.
        #[test]
        fn no_changed_answer_makes_the_reader_panic(at in 0usize..1354, byte in 0u8..=255, cut in 0usize..1354) {
            let mut answer = hex::decode(OPENSSL_FULL).expect("hex");
            answer[at] = byte;
            let _ = read_response(&answer);
            let _ = read_response(&answer[..cut]);
        }
    }

    #[test]
    fn answers_that_grant_nothing_are_refused() {
        assert_refused(
            &[0x30, 0x03, 0x30, 0x01, 0x02],
            "the time-stamp answer's status is not DER",
        );
        assert_refused(
            &[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02],
            "the TSA did not grant a time-stamp (status [2])",
        );
        assert_refused(
            &[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00],
            "the time-stamp answer has no time-stamp token",
        );
        assert_refused(&[], "the time-stamp answer has no TimeStampResp");
    }
}
