//! The pieces JSON lines are made of, appended to a byte buffer: escaped string contents,
//! integers, IPv4 addresses, hex. The JSON lines writer calls these some thirty times per
//! record, so each avoids `core::fmt` (its dynamic dispatch and padding logic cost more
//! than the formatting itself) and copies unescaped text in whole runs.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::time::digits2;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each byte of `x` that is zero, nothing elsewhere. Exact per byte (no carry
/// crosses a byte), so every set bit names a zero byte, not only the lowest.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// 0x80 in each byte of `w` that a JSON string must escape: `"`, `\` and bytes below 0x20.
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    // Low seven bits plus 0x60 reach 0x80 from 0x20 up; the byte's own top bit covers
    // 0x80 and above.
    let control = !(((w & LOW7) + ONES * 0x60) | w) & HIGH;
    control | zero_bytes(w ^ (ONES * b'"' as u64)) | zero_bytes(w ^ (ONES * b'\\' as u64))
}

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The escape of one byte that needs one: `\"`, `\\`, `\n`, `\r`, `\t`, and `\u00xx`
/// (lower-case hex) for the other control bytes, as podtap has always written them.
#[cold]
fn push_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        }
    }
}

/// Appends the inside of a JSON string literal for `s`. Text is UTF-8 already (`&str`):
/// multi-byte sequences are all bytes from 0x80 and pass through unchanged, as does DEL.
#[inline]
pub fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Bytes before `run` are written; eight are tested at a time and runs without escapes
    // are copied whole.
    let mut run = 0;
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        let mut m = special_bytes(w);
        while m != 0 {
            let j = i + (m.trailing_zeros() / 8) as usize;
            out.extend_from_slice(&b[run..j]);
            push_escape(out, b[j]);
            run = j + 1;
            m &= m - 1;
        }
        i += 8;
    }
    if i < b.len() {
        if b.len() >= 8 {
            // The last eight bytes, overlapping the ones already tested (masked off).
            let k = b.len() - 8;
            let w = u64::from_le_bytes(b[k..].try_into().expect("eight bytes"));
            let mut m = special_bytes(w) & (u64::MAX << ((i - k) * 8));
            while m != 0 {
                let j = k + (m.trailing_zeros() / 8) as usize;
                out.extend_from_slice(&b[run..j]);
                push_escape(out, b[j]);
                run = j + 1;
                m &= m - 1;
            }
        } else {
            for (j, &c) in b.iter().enumerate() {
                if needs_escape(c) {
                    out.extend_from_slice(&b[run..j]);
                    push_escape(out, c);
                    run = j + 1;
                }
            }
        }
    }
    out.extend_from_slice(&b[run..]);
}

/// Appends `s` as a JSON string literal.
#[inline]
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends `v` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let start = format_u64(&mut buf, v);
    out.extend_from_slice(&buf[start..]);
}

/// Appends `v` in decimal (`-` and the magnitude; `i64::MIN` too).
#[inline]
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Writes `v`'s digits at the end of `buf`, returning where they start: pairs of digits
/// from a table, four per division by 10000.
#[inline]
fn format_u64(buf: &mut [u8; 20], mut v: u64) -> usize {
    let mut i = buf.len();
    while v >= 10_000 {
        let r = (v % 10_000) as u32;
        v /= 10_000;
        buf[i - 4..i - 2].copy_from_slice(digits2(r / 100));
        buf[i - 2..i].copy_from_slice(digits2(r % 100));
        i -= 4;
    }
    let mut v = v as u32;
    if v >= 100 {
        buf[i - 2..i].copy_from_slice(digits2(v % 100));
        v /= 100;
        i -= 2;
    }
    if v >= 10 {
        buf[i - 2..i].copy_from_slice(digits2(v));
        i - 2
    } else {
        buf[i - 1] = b'0' + v as u8;
        i - 1
    }
}

/// Appends the address as `Display` writes it. IPv4 is formatted here; IPv6, rare and
/// with its zero-run compression rules, goes through the standard library.
#[inline]
pub fn push_ip(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[inline]
fn push_ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (k, &o) in a.octets().iter().enumerate() {
        if k > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let o = o as u32;
        if o >= 100 {
            buf[n] = b'0' + (o / 100) as u8;
            buf[n + 1..n + 3].copy_from_slice(digits2(o % 100));
            n += 3;
        } else if o >= 10 {
            buf[n..n + 2].copy_from_slice(digits2(o));
            n += 2;
        } else {
            buf[n] = b'0' + o as u8;
            n += 1;
        }
    }
    out.extend_from_slice(&buf[..n]);
}

/// Appends `b` as lower-case hex, two digits per byte.
pub fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &x in b {
        out.extend_from_slice(&[HEX[(x >> 4) as usize], HEX[(x & 15) as usize]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut v = Vec::new();
        push_escaped(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    /// Reference: the escaping podtap wrote before (one char at a time through `fmt`).
    fn reference(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out
    }

    fn check(s: &str) {
        let got = escaped(s);
        assert_eq!(got, reference(s), "{s:?}");
        // And JSON parses it back to the same text.
        let back: String = serde_json::from_str(&format!("\"{got}\"")).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn every_byte_below_0x80_alone_and_in_every_position() {
        for b in 0u8..0x80 {
            let c = (b as char).to_string();
            check(&c);
            // At each offset of strings long enough for the word loop and the
            // overlapping last word, between plain letters and between other escapes.
            for len in [1usize, 7, 8, 9, 15, 16, 17, 23, 24, 31] {
                for at in 0..len {
                    let mut s: Vec<u8> = (0..len).map(|k| b'a' + (k % 26) as u8).collect();
                    s[at] = b;
                    check(std::str::from_utf8(&s).unwrap());
                    s[len - 1 - at] = b'"';
                    check(std::str::from_utf8(&s).unwrap());
                }
            }
        }
    }

    #[test]
    fn control_bytes_quotes_backslashes_and_multibyte_text() {
        let all_controls: String = (0u8..0x20).map(|b| b as char).collect();
        assert_eq!(
            escaped(&all_controls),
            "\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\u0008\\t\\n\\u000b\
             \\u000c\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\
             \\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
        );
        check(&all_controls);
        check(&all_controls.repeat(3));
        assert_eq!(escaped("a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(escaped(r#"\\\\""""\\"#), r#"\\\\\\\\\"\"\"\"\\\\"#);
        check("\u{7f}é€😀\u{10ffff} ünïcödé text long enough for words \"q\" \\ end");
        check("€€€€€€€€€€€€\n😀😀😀😀😀\t");
        check("");
        // What the HTTP decoder makes of invalid UTF-8 (lossy: U+FFFD) passes through.
        let lossy = String::from_utf8_lossy(b"/p\xff\xfe?x=\x01\xc3");
        check(&lossy);
        assert_eq!(escaped(&lossy), "/p\u{fffd}\u{fffd}?x=\\u0001\u{fffd}");
    }

    #[test]
    fn escaping_matches_serde_json_on_random_text() {
        // serde_json writes 0x08 and 0x0c as `\b` and `\f` where podtap writes `\u0008`
        // and `\u000c`: byte-exact against the reference, equal to serde_json's once parsed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = [
            'a', 'Z', '"', '\\', '\n', '\u{1}', '\u{1f}', ' ', 'é', '😀', '/', '\u{7f}',
        ];
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let s: String = (0..len)
                .map(|k| alphabet[((x >> (k % 60)) as usize + k) % alphabet.len()])
                .collect();
            check(&s);
            assert_eq!(
                serde_json::from_str::<String>(&String::from_utf8(string(&s)).unwrap()).unwrap(),
                serde_json::from_str::<String>(&serde_json::to_string(&s).unwrap()).unwrap()
            );
        }
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        push_string(&mut v, s);
        v
    }

    #[test]
    fn integers_match_std() {
        let mut vals: Vec<u64> = vec![0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 65_535];
        let mut p: u64 = 1;
        while let Some(n) = p.checked_mul(10) {
            vals.extend([p - 1, p, p + 1, n - 1]);
            p = n;
        }
        vals.extend([p, u64::MAX, u64::MAX - 1, i64::MAX as u64, 1 << 63, 1 << 32]);
        let mut x: u64 = 12345;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            vals.push(x >> (x % 64));
        }
        for &v in &vals {
            let mut b = Vec::new();
            push_u64(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
            assert_eq!(b, serde_json::to_string(&v).unwrap().as_bytes());
            for s in [v as i64, (v as i64).wrapping_neg()] {
                let mut b = Vec::new();
                push_i64(&mut b, s);
                assert_eq!(b, s.to_string().as_bytes());
            }
        }
        for s in [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            -1,
            0,
            -10,
            -9,
            -1_000_000_000_000_000_000,
        ] {
            let mut b = b"x".to_vec();
            push_i64(&mut b, s);
            assert_eq!(b, format!("x{s}").as_bytes());
            assert_eq!(&b[1..], serde_json::to_string(&s).unwrap().as_bytes());
        }
    }

    #[test]
    fn addresses_match_display() {
        let mut x: u32 = 1;
        let check = |a: IpAddr| {
            let mut b = Vec::new();
            push_ip(&mut b, a);
            assert_eq!(b, a.to_string().as_bytes());
        };
        for o in 0..=255u8 {
            check(IpAddr::from([o, 0, o, 255 - o]));
        }
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            check(IpAddr::from(x.to_be_bytes()));
        }
        check("::".parse().unwrap());
        check("::1".parse().unwrap());
        check("::ffff:10.1.2.3".parse().unwrap());
        check("2001:db8::8a2e:370:7334".parse().unwrap());
        check("fe80::1:0:0:1".parse().unwrap());
    }

    #[test]
    fn hex_is_lower_case_pairs() {
        let mut b = Vec::new();
        push_hex(&mut b, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(b, b"000fa5ff");
    }
}
