//! Document lines as rows of PostgreSQL's binary COPY format, for the
//! restore: the server then reads integers, timestamps and uuids as they are
//! stored instead of parsing their text (a third less server time for a
//! large queue than a text COPY, see the `backup` bench). The file format
//! does not change: only what the restore sends to the database.

use serde_json::value::RawValue;

/// What starts a binary COPY stream: the signature, no flags, no header
/// extension.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// What ends it: a tuple of -1 fields.
pub(crate) const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Why a value of a document line cannot be a column of the documents table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

/// The columns of a document line as binary COPY fields (in
/// [`DOC_COLUMNS`](crate::format::DOC_COLUMNS) order, the order of the COPY's
/// column list), appended to `out` as one tuple of every column of
/// `DOC_COLUMNS`. A line of format version 1 (no `key`, the last column)
/// gets a NULL key. A key is a string of at most
/// [`MAX_KEY_CHARS`](crate::format::MAX_KEY_CHARS) characters or null.
pub(crate) fn doc_tuple(cols: &[&RawValue], out: &mut Vec<u8>) -> Result<(), Invalid> {
    const COLUMNS: usize = crate::format::DOC_COLUMNS.len();
    if cols.len() != COLUMNS && cols.len() != COLUMNS - 1 {
        return Err(Invalid);
    }
    let fields = i16::try_from(COLUMNS).map_err(|_| Invalid)?;
    let mark = out.len();
    out.extend_from_slice(&fields.to_be_bytes());
    if cols.len() < COLUMNS {
        // a version 1 line: no key
        let result = doc_fields(cols, out);
        out.extend_from_slice(&(-1i32).to_be_bytes());
        if result.is_err() {
            out.truncate(mark);
        }
        return result;
    }
    let result = doc_fields(cols, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

/// The fields of [`doc_tuple`], without the field count.
fn doc_fields(cols: &[&RawValue], out: &mut Vec<u8>) -> Result<(), Invalid> {
    cols.iter().enumerate().try_for_each(|(i, col)| {
        let raw = col.get();
        if raw == "null" {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        match i {
            // subject (varchar): its UTF-8 text
            0 => {
                let text = string(raw)?;
                field(out, text.as_bytes());
            }
            // version, priority, status, attempts: integer
            1..=4 => {
                let v: i32 = raw.parse().map_err(|_| Invalid)?;
                field(out, &v.to_be_bytes());
            }
            // iterations: bigint
            5 => {
                let v: i64 = raw.parse().map_err(|_| Invalid)?;
                field(out, &v.to_be_bytes());
            }
            // next_iteration, created_at, last_iteration: timestamptz
            6..=8 => {
                let us = timestamp(&string(raw)?)?;
                field(out, &us.to_be_bytes());
            }
            // lease_token: uuid
            9 => field(out, &uuid(&string(raw)?)?),
            // payload: jsonb, version 1 then its text
            10 => {
                let len = i32::try_from(raw.len() + 1).map_err(|_| Invalid)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.push(1);
                out.extend_from_slice(raw.as_bytes());
            }
            // key (varchar(255)): 1 to 255 characters of UTF-8 text
            11 => {
                let text = key(raw)?;
                field(out, text.as_bytes());
            }
            _ => return Err(Invalid),
        }
        Ok(())
    })
}

/// A document key's text: a JSON string of 1 to
/// [`MAX_KEY_CHARS`](crate::format::MAX_KEY_CHARS) characters (what the
/// engine accepts and its column holds).
pub(crate) fn key(raw: &str) -> Result<std::borrow::Cow<'_, str>, Invalid> {
    let text = string(raw)?;
    let chars = text.chars().count();
    if chars == 0 || chars > crate::format::MAX_KEY_CHARS {
        return Err(Invalid);
    }
    Ok(text)
}

fn field(out: &mut Vec<u8>, data: &[u8]) {
    // a document line is at most MAX_LINE (256 MB) long
    let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// A JSON string's text (borrowed when it has no escape).
fn string(raw: &str) -> Result<std::borrow::Cow<'_, str>, Invalid> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(Invalid)?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| Invalid)
    } else {
        Ok(std::borrow::Cow::Borrowed(inner))
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar (astronomical year: 1 BC is 0).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Digits at the start of `s` as a number, and the rest.
fn digits(s: &[u8], min: usize, max: usize) -> Result<(i64, &[u8]), Invalid> {
    let n = s
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n < min {
        return Err(Invalid);
    }
    let v = s[..n]
        .iter()
        .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
    Ok((v, &s[n..]))
}

fn expect(s: &[u8], c: u8) -> Result<&[u8], Invalid> {
    match s.split_first() {
        Some((&b, rest)) if b == c => Ok(rest),
        _ => Err(Invalid),
    }
}

/// A timestamptz as `json_build_array` writes it (`2026-01-02T03:04:05.6+00:00`,
/// `0044-03-15T12:00:00+00:00 BC`, `infinity`) in microseconds since
/// 2000-01-01 UTC, PostgreSQL's binary form. A zone is required (a dump is
/// written in UTC); a date or time that does not exist is refused.
pub(crate) fn timestamp(text: &str) -> Result<i64, Invalid> {
    match text {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let s = text.as_bytes();
    let (year, s) = digits(s, 4, 9)?;
    let s = expect(s, b'-')?;
    let (month, s) = digits(s, 2, 2)?;
    let s = expect(s, b'-')?;
    let (day, s) = digits(s, 2, 2)?;
    let s = expect(s, b'T')?;
    let (hour, s) = digits(s, 2, 2)?;
    let s = expect(s, b':')?;
    let (minute, s) = digits(s, 2, 2)?;
    let s = expect(s, b':')?;
    let (second, mut s) = digits(s, 2, 2)?;
    let mut micros = 0;
    if let Some(rest) = s.strip_prefix(b".") {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return Err(Invalid);
        }
        let (v, rest) = digits(rest, n, n)?;
        micros = v * 10i64.pow(6 - u32::try_from(n).map_err(|_| Invalid)?);
        s = rest;
    }
    let (sign, rest) = match s.split_first() {
        Some((b'+', rest)) => (1, rest),
        Some((b'-', rest)) => (-1, rest),
        _ => return Err(Invalid),
    };
    let (zh, rest) = digits(rest, 2, 2)?;
    let (zm, rest) = match rest.strip_prefix(b":") {
        Some(r) => digits(r, 2, 2)?,
        None => (0, rest),
    };
    let (zs, rest) = match rest.strip_prefix(b":") {
        Some(r) => digits(r, 2, 2)?,
        None => (0, rest),
    };
    if !rest.is_empty() {
        return Err(Invalid);
    }
    if bc && year == 0 {
        return Err(Invalid);
    }
    let year = if bc { 1 - year } else { year };
    let month_days = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = (1..=12).contains(&month)
        && day >= 1
        && usize::try_from(month - 1)
            .ok()
            .and_then(|m| month_days.get(m))
            .is_some_and(|&max| day <= max)
        && hour < 24
        && minute < 60
        && second < 60
        && zm < 60
        && zs < 60;
    if !valid {
        return Err(Invalid);
    }
    let offset = sign * (zh * 3600 + zm * 60 + zs);
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    secs.checked_mul(1_000_000)
        .and_then(|us| us.checked_add(micros))
        .and_then(|us| us.checked_sub(PG_EPOCH_US))
        .ok_or(Invalid)
}

/// A uuid's 16 bytes from its text (hex digits, hyphens between groups
/// allowed, optionally in braces).
fn uuid(text: &str) -> Result<[u8; 16], Invalid> {
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    if text.starts_with('-') || text.ends_with('-') || text.contains("--") {
        return Err(Invalid);
    }
    let mut out = [0u8; 16];
    let mut n = 0usize;
    for b in text.bytes().filter(|&b| b != b'-') {
        let v = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Invalid),
        };
        let slot = out.get_mut(n / 2).ok_or(Invalid)?;
        *slot = (*slot << 4) | v;
        n += 1;
    }
    if n != 32 {
        return Err(Invalid);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2000-01-01T00:00:00+00:00"), Ok(0));
        assert_eq!(timestamp("1970-01-01T00:00:00+00:00"), Ok(-PG_EPOCH_US));
        assert_eq!(timestamp("2000-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(timestamp("1999-12-31T23:00:00-01:00"), Ok(0));
        assert_eq!(timestamp("2000-01-01T00:00:00.5+00:00"), Ok(500_000));
        assert_eq!(timestamp("2000-01-01T00:00:00.000001+00:00"), Ok(1));
        assert_eq!(
            timestamp("2000-03-01T00:00:00+00:00"),
            Ok(60 * 86_400_000_000)
        );
        // 2026-12-07 is 9837 days after 2000-01-01
        assert_eq!(
            timestamp("2026-12-07T03:04:05.123456+00:00"),
            Ok(((9837 * 86_400) + 3 * 3600 + 4 * 60 + 5) * 1_000_000 + 123_456)
        );
        // 1 BC is year 0, a leap year: 366 days before 0001-01-01
        assert_eq!(
            timestamp("0001-01-01T00:00:00+00:00")
                .map(|t| t - timestamp("0001-01-01T00:00:00+00:00 BC").unwrap_or(0)),
            Ok(366 * 86_400_000_000)
        );
        assert_eq!(
            timestamp("10000-01-01T00:00:00+00:00").map(|t| t > 0),
            Ok(true)
        );
        assert_eq!(timestamp("infinity"), Ok(i64::MAX));
        assert_eq!(timestamp("-infinity"), Ok(i64::MIN));
        for bad in [
            "",
            "2026-02-29T00:00:00+00:00",
            "2026-13-01T00:00:00+00:00",
            "2026-01-01T24:00:00+00:00",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00+00",
            "2026-01-01T00:00:00.+00:00",
            "2026-01-01T00:00:00.1234567+00:00",
            "2026-01-01T00:00:00+00:00x",
            "0000-01-01T00:00:00+00:00 BC",
            "999999999-01-01T00:00:00+00:00",
        ] {
            assert_eq!(timestamp(bad), Err(Invalid), "{bad}");
        }
        assert_eq!(timestamp("2024-02-29T00:00:00+00:00").map(|_| ()), Ok(()));
    }

    #[test]
    fn uuids() {
        let want = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), Ok(want));
        assert_eq!(uuid("{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"), Ok(want));
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1122",
        ] {
            assert_eq!(uuid(bad), Err(Invalid), "{bad}");
        }
    }

    #[test]
    fn a_tuple() {
        let line = r#"["s\tx", 1, -2, 3, 4, 5, "2000-01-01T00:00:00+00:00", "infinity", null, null, {"a": 1}]"#;
        let cols: Vec<&RawValue> = serde_json::from_str(line).unwrap_or_default();
        let mut out = Vec::new();
        assert_eq!(doc_tuple(&cols, &mut out), Ok(()));
        let mut want = vec![0, 12, 0, 0, 0, 3, b's', b'\t', b'x'];
        for v in [1i32, -2, 3, 4] {
            want.extend_from_slice(&4i32.to_be_bytes());
            want.extend_from_slice(&v.to_be_bytes());
        }
        for v in [5i64, 0, i64::MAX] {
            want.extend_from_slice(&8i32.to_be_bytes());
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&9i32.to_be_bytes());
        want.push(1);
        want.extend_from_slice(br#"{"a": 1}"#);
        // a version 1 line (11 columns): a NULL key
        want.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(out, want);
        // a value of the wrong kind leaves nothing behind
        let line =
            r#"["s", 1.5, -2, 3, 4, 5, "2000-01-01T00:00:00+00:00", "infinity", null, null, {}]"#;
        let cols: Vec<&RawValue> = serde_json::from_str(line).unwrap_or_default();
        assert_eq!(doc_tuple(&cols, &mut out), Err(Invalid));
        assert_eq!(out, want);
    }

    const LINE: &str =
        r#"["s", 1, -2, 3, 4, 5, "2000-01-01T00:00:00+00:00", "infinity", null, null, {}"#;

    /// The tuple of LINE with this key column (raw JSON).
    fn keyed(key: &str) -> Result<Vec<u8>, Invalid> {
        let line = format!("{LINE}, {key}]");
        let cols: Vec<&RawValue> = serde_json::from_str(&line).map_err(|_| Invalid)?;
        let mut out = Vec::new();
        doc_tuple(&cols, &mut out)?;
        Ok(out)
    }

    /// The last field of a tuple: its length and bytes.
    fn last_field(tuple: &[u8], len: i32) -> &[u8] {
        let n = usize::try_from(len.max(0)).unwrap_or(0);
        &tuple[tuple.len() - n - 4..]
    }

    #[test]
    fn document_keys() {
        // a NULL key: a NULL field, as for a version 1 line
        let null = keyed("null").unwrap_or_default();
        assert_eq!(&null[..2], &12i16.to_be_bytes());
        assert_eq!(&null[null.len() - 4..], &(-1i32).to_be_bytes());
        let v1_line = format!("{LINE}]");
        let cols: Vec<&RawValue> = serde_json::from_str(&v1_line).unwrap_or_default();
        let mut v1 = Vec::new();
        assert_eq!(doc_tuple(&cols, &mut v1), Ok(()));
        assert_eq!(v1, null);
        // quotes, backslashes, tabs, newlines, a control byte and non-ASCII
        // text: the key's UTF-8 bytes
        let key = "h\"o\\s\tt\n\u{1}é☃🦀";
        let raw = serde_json::to_string(key).unwrap_or_default();
        let tuple = keyed(&raw).unwrap_or_default();
        let len = i32::try_from(key.len()).unwrap_or(0);
        let mut want = len.to_be_bytes().to_vec();
        want.extend_from_slice(key.as_bytes());
        assert_eq!(last_field(&tuple, len), want.as_slice());
        assert_eq!(tuple[..tuple.len() - want.len()], null[..null.len() - 4]);
        // the longest key: 255 characters of 2 bytes
        let long = "é".repeat(crate::format::MAX_KEY_CHARS);
        let tuple = keyed(&format!("\"{long}\"")).unwrap_or_default();
        let len = i32::try_from(long.len()).unwrap_or(0);
        assert_eq!(&last_field(&tuple, len)[4..], long.as_bytes());
        // too long, empty, not a string, a bad escape: refused, nothing written
        let longer = format!("\"{}\"", "k".repeat(crate::format::MAX_KEY_CHARS + 1));
        for bad in [
            longer.as_str(),
            r#""""#,
            "7",
            "true",
            "[\"k\"]",
            "{}",
            r#""\ud800""#,
        ] {
            assert_eq!(keyed(bad), Err(Invalid), "{bad}");
        }
        // a line of 10 or 13 columns
        let cols: Vec<&RawValue> =
            serde_json::from_str(r#"["s", 1, -2, 3, 4, 5, "infinity", "infinity", null, null]"#)
                .unwrap_or_default();
        let mut out = Vec::new();
        assert_eq!(doc_tuple(&cols, &mut out), Err(Invalid));
        let line = format!("{LINE}, null, null]");
        let cols: Vec<&RawValue> = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(doc_tuple(&cols, &mut out), Err(Invalid));
        assert!(out.is_empty());
    }
}
