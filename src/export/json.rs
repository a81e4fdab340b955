//! The pieces JSON lines are made of, appended to a byte buffer: escaped string contents,
//! integers, IPv4 addresses, hex. The JSON lines writer calls these some thirty times per
//! record, so each avoids `core::fmt` (its dynamic dispatch and padding logic cost more
//! than the formatting itself) and copies unescaped text in whole runs.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr};

use crate::time::digits2;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each byte of `w` that a JSON string must escape (`"`, `\` and bytes below 0x20),
/// nothing elsewhere. Exact per byte (no carry crosses a byte), so every set bit names a
/// byte to escape, not only the lowest.
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    // On the low seven bits of each byte: adding 0x60 reaches 0x80 from 0x20 up; XOR with
    // `"` (or `\`) and adding 0x7f reaches 0x80 unless the byte was that character. A byte
    // passes when all three reach it, or when its own top bit is set (0x80 and up).
    let t = w & LOW7;
    let not_control = t + ONES * 0x60;
    let not_quote = (t ^ (ONES * b'"' as u64)) + LOW7;
    let not_backslash = (t ^ (ONES * b'\\' as u64)) + LOW7;
    !((not_control & not_quote & not_backslash) | w) & HIGH
}

// Writing: each function reserves the most it can write (escaping makes at most six bytes
// of one), stores into the spare capacity by index, then sets the length once. Indexing is
// bounds-checked, so a wrong reservation panics instead of writing out of bounds; what the
// length then covers was all written. This saves a capacity check and a length update per
// piece, and lets whole 8-byte words be stored: a copy of a short run through `memcpy`
// costs more than the run.

/// Stores `bytes` at `sp[o..o + N]`.
#[inline(always)]
fn put<const N: usize>(sp: &mut [MaybeUninit<u8>], o: usize, bytes: [u8; N]) {
    sp[o..o + N].copy_from_slice(&bytes.map(MaybeUninit::new));
}

/// Sets the length of `out` to `len`, after `out[..len]` has been written.
#[inline(always)]
fn commit(out: &mut Vec<u8>, len: usize) {
    assert!(len <= out.capacity());
    // SAFETY: within capacity (checked above); the callers wrote every byte from the old
    // length up to `len` through `spare_capacity_mut` before calling this.
    unsafe { out.set_len(len) }
}

/// The escape of one byte that needs one, at `sp[o..]`, returning its length: `\"`, `\\`,
/// `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the other control bytes, as podtap
/// has always written them.
#[cold]
fn put_escape(sp: &mut [MaybeUninit<u8>], o: usize, b: u8) -> usize {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hex = [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]];
            put(sp, o, [b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            return 6;
        }
    };
    put(sp, o, [b'\\', short]);
    2
}

/// Stores the low `len` bytes of `w` at `sp[o..]`, escaping those `m` (from
/// [`special_bytes`], limited to them) marks, and returns where the output continues.
#[inline(always)]
fn put_word(sp: &mut [MaybeUninit<u8>], o: usize, w: u64, m: u64, len: usize) -> usize {
    // All eight bytes are stored; the output only advances over the `len` that count.
    put(sp, o, w.to_le_bytes());
    if m == 0 {
        o + len
    } else {
        put_word_escaped(sp, o, w, m, len)
    }
}

/// [`put_word`] for a word with bytes to escape: after each escape, the rest of the word is
/// stored again right behind it.
#[inline(never)]
fn put_word_escaped(
    sp: &mut [MaybeUninit<u8>],
    mut o: usize,
    w: u64,
    mut m: u64,
    len: usize,
) -> usize {
    let mut done = 0;
    while m != 0 {
        let p = (m.trailing_zeros() / 8) as usize;
        o += p - done;
        o += put_escape(sp, o, (w >> (p * 8)) as u8);
        done = p + 1;
        if done < 8 {
            put(sp, o, (w >> (done * 8)).to_le_bytes());
        }
        m &= m - 1;
    }
    o + len - done
}

/// Appends `before`, the inside of a JSON string literal for `s`, and `after`. Text is
/// UTF-8 already (`&str`): multi-byte sequences are all bytes from 0x80 and pass through
/// unchanged, as does DEL.
#[inline]
pub fn push_escaped_between<const A: usize, const B: usize>(
    out: &mut Vec<u8>,
    before: &[u8; A],
    s: &str,
    after: &[u8; B],
) {
    let b = s.as_bytes();
    let n = b.len();
    // Six bytes per input byte at most, and eight of slack for a word's store.
    out.reserve(A + B + 6 * n + 8);
    let base = out.len();
    let sp = out.spare_capacity_mut();
    put(sp, 0, *before);
    let mut o = A;
    // Eight bytes at a time, each word tested and stored whole.
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        o = put_word(sp, o, w, special_bytes(w), 8);
    }
    let r = words.remainder().len();
    if r > 0 {
        let (w, m) = if n >= 8 {
            // The last eight bytes, shifted so that the `r` not yet written come first.
            let shift = (8 - r) * 8;
            let w = u64::from_le_bytes(b[n - 8..].try_into().expect("eight bytes"));
            (w >> shift, special_bytes(w) >> shift)
        } else {
            let mut w = 0;
            for (k, &c) in b.iter().enumerate() {
                w |= (c as u64) << (k * 8);
            }
            // The zero bytes above the string would count as control bytes.
            (w, special_bytes(w) & ((1 << (r * 8)) - 1))
        };
        o = put_word(sp, o, w, m, r);
    }
    put(sp, o, *after);
    commit(out, base + o + B);
}

/// Appends the inside of a JSON string literal for `s` (see [`push_escaped_between`]).
#[inline]
pub fn push_escaped(out: &mut Vec<u8>, s: &str) {
    push_escaped_between(out, &[], s, &[]);
}

/// Appends `s` as a JSON string literal.
#[inline]
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    push_escaped_between(out, b"\"", s, b"\"");
}

/// Appends `v` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.reserve(20);
    let base = out.len();
    let n = format_u64(out.spare_capacity_mut(), v);
    commit(out, base + n);
}

/// Appends `v` in decimal (`-` and the magnitude; `i64::MIN` too).
#[inline]
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Writes `v`'s digits at the start of `sp`, returning how many: counted first, then
/// written from the last, pairs of digits from a table, four per division by 10000.
#[inline]
fn format_u64(sp: &mut [MaybeUninit<u8>], mut v: u64) -> usize {
    let n = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut i = n;
    while v >= 10_000 {
        let r = (v % 10_000) as u32;
        v /= 10_000;
        put(sp, i - 4, *digits2(r / 100));
        put(sp, i - 2, *digits2(r % 100));
        i -= 4;
    }
    let mut v = v as u32;
    if v >= 100 {
        put(sp, i - 2, *digits2(v % 100));
        v /= 100;
        i -= 2;
    }
    if v >= 10 {
        put(sp, i - 2, *digits2(v));
    } else {
        sp[i - 1].write(b'0' + v as u8);
    }
    n
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
    out.reserve(15);
    let base = out.len();
    let sp = out.spare_capacity_mut();
    let mut n = 0;
    for (k, &x) in a.octets().iter().enumerate() {
        if k > 0 {
            sp[n].write(b'.');
            n += 1;
        }
        let x = x as u32;
        if x >= 100 {
            sp[n].write(b'0' + (x / 100) as u8);
            put(sp, n + 1, *digits2(x % 100));
            n += 3;
        } else if x >= 10 {
            put(sp, n, *digits2(x));
            n += 2;
        } else {
            sp[n].write(b'0' + x as u8);
            n += 1;
        }
    }
    commit(out, base + n);
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
