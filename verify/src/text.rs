//! What free text and identifiers in the permanent ledger may hold. A
//! record can never be deleted, so personal numbers must not enter it
//! through a free-text field (PIPL), and identifiers must not have
//! look-alikes that read the same to a person and differ to the rules.

/// Characters that change how a string looks, or look like nothing:
/// zero-width spaces and joiners, bidirectional controls, the soft hyphen,
/// variation selectors, fillers, tags and the byte-order mark.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F
            | 0x1160
            | 0x17B4
            | 0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xE0000..=0xE0FFF
    )
}

/// Digits in a row that make a personal number: a mobile phone has 11,
/// a bank card 16 to 19, an ID card 18.
pub const PERSONAL_DIGITS_MIN: usize = 11;

/// Whether `c` is a digit a person would read as one: any Unicode number
/// (ASCII, full-width, Arabic-Indic, mathematical, circled…) or a Chinese
/// numeral, plain or financial.
pub fn is_digit_like(c: char) -> bool {
    c.is_numeric() || "〇零一二三四五六七八九壹贰叁肆伍陆柒捌玖貳參陸".contains(c)
}

/// Whether `c` may sit inside a written number: any whitespace, dashes,
/// dots, commas, slashes and brackets, ASCII, full-width or typographic.
fn is_number_separator(c: char) -> bool {
    c.is_whitespace() || "-‐‑‒–—―－﹣.．,，、/／()（）·・_".contains(c)
}

/// The longest run of digit-like characters in `text` (see
/// [`is_digit_like`]), counted across up to two separators in a row
/// between digits (`138 1234 5678`, `(138)1234-5678`, `138,,1234` are
/// runs of 11).
pub fn longest_digit_run(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let (mut longest, mut run) = (0, 0);
    let mut i = 0;
    while i < chars.len() {
        if is_digit_like(chars[i]) {
            run += 1;
            longest = longest.max(run);
            i += 1;
            continue;
        }
        // Up to two separators followed by a digit keep the run going.
        let gap = chars[i..].iter().take_while(|&&c| is_number_separator(c)).count();
        let continues = gap > 0 && gap <= 2 && chars.get(i + gap).is_some_and(|&n| is_digit_like(n));
        if !continues {
            run = 0;
        }
        i += gap.max(1);
    }
    longest
}

/// Why a free text may not enter the ledger, if it may not.
pub fn free_text_problem(text: &str, bytes_max: usize) -> Option<String> {
    if text.trim().is_empty() || text.len() > bytes_max {
        return Some(format!("1 to {bytes_max} bytes"));
    }
    if text.trim() != text {
        return Some("no leading or trailing spaces".into());
    }
    if text.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Some("no control or invisible characters".into());
    }
    if longest_digit_run(text) >= PERSONAL_DIGITS_MIN {
        return Some(format!(
            "no run of {PERSONAL_DIGITS_MIN} or more digits: phone, bank account and ID-card numbers never enter the ledger"
        ));
    }
    None
}

/// Why a court-made identifier (member, applicant, account, disbursement,
/// bank reference) may not be used, if it may not: ASCII letters, digits,
/// `-`, `_`, `.` and `:` only (no look-alike letters of other scripts or
/// typographic dashes), and, unless `digits_allowed`, no personal number
/// in it.
pub fn ascii_id_problem(id: &str, bytes_max: usize, digits_allowed: bool) -> Option<String> {
    if id.is_empty() || id.len() > bytes_max {
        return Some(format!("1 to {bytes_max} bytes"));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return Some("ASCII letters, digits, '-', '_', '.' and ':' only".into());
    }
    if !digits_allowed && longest_digit_run(id) >= PERSONAL_DIGITS_MIN {
        return Some(format!("fewer than {PERSONAL_DIGITS_MIN} digits in a row"));
    }
    None
}

/// Why an identifier may not be used, if it may not: no whitespace, no
/// control or invisible character (two ids that look the same must be the
/// same bytes), no '/'.
pub fn id_problem(id: &str, bytes_max: usize) -> Option<String> {
    if id.is_empty() || id.len() > bytes_max {
        return Some(format!("1 to {bytes_max} bytes"));
    }
    if id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c) || c == '/')
    {
        return Some("without spaces, control or invisible characters, or '/'".into());
    }
    None
}

/// The date in China Standard Time of `ms` since the epoch, `YYYY-MM-DD`.
pub fn date_cst(ms: u64) -> String {
    let (year, month, day) = civil_from_days((ms.saturating_add(8 * 3_600_000) / 86_400_000) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc_text(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard
/// Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` when
/// the day does not exist (Howard Hinnant's days_from_civil).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_numbers_and_invisible_characters_are_found() {
        for number in [
            "13812345678",
            "138 1234 5678",
            "138-1234-5678",
            "１３８１２３４５６７８",
            "6222 0000 1111 0001",
            "32010219900101123X",
        ] {
            let text = format!("申请人电话{number}");
            assert!(free_text_problem(&text, 500).is_some(), "{text}");
        }
        for number in [
            "一三八一二三四五六七八",
            "138\u{a0}1234\u{a0}5678",
            "138,1234,5678",
            "(138)1234-5678",
            "138  1234  5678",
            "١٣٨١٢٣٤٥٦٧٨",
        ] {
            assert!(free_text_problem(number, 500).is_some(), "{number}");
        }
        assert!(free_text_problem("2026-11-20 10:30", 500).is_none());
        assert!(ascii_id_problem("CR\u{2010}100", 128, true).is_some());
        assert!(ascii_id_problem("320102199001011234", 128, false).is_some());
        assert!(ascii_id_problem("PAY-20261120123456789", 128, true).is_none());
        for fine in [
            "执行款发放",
            "(2023)苏02执123号 第2笔",
            "2026-11-20 退回",
            "金额 1000000 元",
        ] {
            assert_eq!(free_text_problem(fine, 500), None, "{fine}");
        }
        assert!(free_text_problem("张\u{200B}三", 500).is_some());
        assert!(free_text_problem("abc\u{202E}fed", 500).is_some());
        assert!(free_text_problem("trailing ", 500).is_some());
        assert!(id_problem("acct-1", 128).is_none());
        assert!(id_problem("acct\u{200B}1", 128).is_some());
    }
}
