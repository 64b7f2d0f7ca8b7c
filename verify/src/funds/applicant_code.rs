//! Applicants' verification codes as they travel by SMS (docs/FORMAT.md
//! §3b): 16 symbols of Crockford's base32 (80 random bits) and a check
//! symbol (Luhn mod 32 over the same alphabet), shown in groups of four
//! (`K7QM-2X9P-A4HD-W3ZN-8`). Typed codes are read case-insensitively,
//! with spaces and hyphens ignored and Crockford's look-alikes (`O` for
//! `0`, `I` and `L` for `1`) taken as meant; a wrong check symbol is told
//! apart from an unknown code. The canonical form (upper case, 17 symbols,
//! no separators) is what [`super::model::applicant_code_hash`] hashes.
//! Codes of the first format (32 lower-case hex digits) are still read.

/// Crockford's base32 alphabet: no I, L, O or U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols in a code (5 bits each: 80 bits).
pub const DATA_SYMBOLS: usize = 16;
/// Random bytes a code is drawn from.
pub const RANDOM_BYTES: usize = 10;

/// Why a typed code is not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a verification code has 17 letters and digits (for example K7QM-2X9P-A4HD-W3ZN-8)")]
    Length,
    #[error("a verification code holds only the digits 0-9 and the letters A-Z except U")]
    Symbol,
    #[error("the code was mistyped: its last symbol does not match the others")]
    Check,
}

fn value(symbol: u8) -> Option<u32> {
    let symbol = match symbol.to_ascii_uppercase() {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|s| *s == symbol).map(|p| p as u32)
}

/// Luhn mod 32 check symbol of `data` (canonical symbols).
fn check_symbol(data: &[u8]) -> u8 {
    let mut factor = 2;
    let mut sum = 0;
    for symbol in data.iter().rev() {
        let addend = factor * value(*symbol).unwrap_or(0);
        factor = if factor == 2 { 1 } else { 2 };
        sum += addend / 32 + addend % 32;
    }
    ALPHABET[((32 - sum % 32) % 32) as usize]
}

/// The canonical code for 10 random bytes: their 80 bits as 16 symbols,
/// most significant first, then the check symbol.
pub fn from_random(random: [u8; RANDOM_BYTES]) -> String {
    let mut bits = 0u128;
    for byte in random {
        bits = (bits << 8) | u128::from(byte);
    }
    let mut code: Vec<u8> = (0..DATA_SYMBOLS)
        .map(|i| ALPHABET[((bits >> (5 * (DATA_SYMBOLS - 1 - i))) & 31) as usize])
        .collect();
    code.push(check_symbol(&code));
    String::from_utf8(code).expect("ASCII")
}

/// A typed or linked code in its canonical form (what is hashed), or why it
/// cannot be one. A code of the first format (32 hex digits) is returned in
/// lower case, as it was issued.
pub fn canonical(typed: &str) -> Result<String, CodeError> {
    let compact: Vec<u8> = typed.bytes().filter(|b| !matches!(b, b' ' | b'-' | b'\t')).collect();
    if compact.len() == 32 && compact.iter().all(u8::is_ascii_hexdigit) {
        return Ok(String::from_utf8_lossy(&compact).to_ascii_lowercase());
    }
    if compact.len() != DATA_SYMBOLS + 1 {
        return Err(CodeError::Length);
    }
    let code = compact
        .iter()
        .map(|b| value(*b).map(|v| ALPHABET[v as usize]))
        .collect::<Option<Vec<u8>>>()
        .ok_or(CodeError::Symbol)?;
    if check_symbol(&code[..DATA_SYMBOLS]) != code[DATA_SYMBOLS] {
        return Err(CodeError::Check);
    }
    Ok(String::from_utf8(code).expect("ASCII"))
}

/// A canonical code in groups of four for people (`K7QM-2X9P-A4HD-W3ZN-8`).
pub fn grouped(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        let code = from_random([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed]);
        assert_eq!(code.len(), 17);
        assert_eq!(canonical(&code), Ok(code.clone()));
        assert_eq!(canonical(&grouped(&code)), Ok(code.clone()));
        assert_eq!(
            canonical(&grouped(&code).to_lowercase().replace('-', " ")),
            Ok(code.clone())
        );
    }

    #[test]
    fn every_single_substitution_and_adjacent_swap_is_caught() {
        let code = from_random([7, 1, 8, 2, 8, 1, 8, 2, 8, 4]);
        let bytes = code.as_bytes();
        for at in 0..bytes.len() {
            for other in ALPHABET.iter().filter(|s| **s != bytes[at]) {
                let mut typo = bytes.to_vec();
                typo[at] = *other;
                let typo = String::from_utf8(typo).expect("ASCII");
                assert_eq!(canonical(&typo), Err(CodeError::Check), "{typo}");
            }
        }
        for at in 0..bytes.len() - 1 {
            if bytes[at] == bytes[at + 1] {
                continue;
            }
            let mut swapped = bytes.to_vec();
            swapped.swap(at, at + 1);
            let swapped = String::from_utf8(swapped).expect("ASCII");
            // Luhn mod N misses only the swap of its two self-mirrored symbols.
            let mirrored = [value(bytes[at]), value(bytes[at + 1])] == [Some(0), Some(31)]
                || [value(bytes[at]), value(bytes[at + 1])] == [Some(31), Some(0)];
            if !mirrored {
                assert_eq!(canonical(&swapped), Err(CodeError::Check), "{swapped}");
            }
        }
    }

    #[test]
    fn malformed_codes_are_told_apart() {
        assert_eq!(canonical("ABCD"), Err(CodeError::Length));
        assert_eq!(canonical("K7QM-2X9P-A4HD-W3ZN-U"), Err(CodeError::Symbol));
        assert_eq!(
            canonical("0123456789ABCDEF0123456789ABCDEF"),
            Ok("0123456789abcdef0123456789abcdef".to_owned())
        );
    }
}
