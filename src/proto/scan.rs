//! Byte-class searches over the short spans text protocols are made of: a header line, a
//! field name, a request target.
//!
//! Spans are tens of bytes, where a general SIMD search (`memchr`) spends more on choosing
//! and setting up its kernel than on searching. Here each step tests 16 bytes with SSE2,
//! which every x86-64 CPU has, so there is no runtime dispatch; the last partial window is
//! re-read overlapping the previous one instead of finishing byte by byte. Spans shorter
//! than one window, and other architectures, get plain loops with the same results (the
//! tests check both agree).

/// Token characters (RFC 9110 `tchar`) as a table.
pub static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        c += 1;
    }
    t
};

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// The 16 bytes at `b[i..i + 16]`.
    #[inline(always)]
    pub fn load(b: &[u8], i: usize) -> __m128i {
        assert!(i + 16 <= b.len());
        // SAFETY: the 16 bytes read are inside `b` (checked above); unaligned loads are
        // what `loadu` is for.
        unsafe { _mm_loadu_si128(b.as_ptr().add(i).cast()) }
    }

    /// One bit per byte of `v`, set where the byte's lane of `m` is all ones.
    #[inline(always)]
    pub fn bits(m: __m128i) -> u32 {
        // SAFETY: SSE2 is part of the x86-64 baseline: always available.
        unsafe { _mm_movemask_epi8(m) as u32 }
    }

    #[inline(always)]
    pub fn eq(v: __m128i, c: u8) -> __m128i {
        // SAFETY: SSE2 is part of the x86-64 baseline: always available.
        unsafe { _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)) }
    }

    /// Lanes whose byte is in `lo..=hi` (both below 0x80: bytes from 0x80 compare as
    /// negative and never match).
    #[inline(always)]
    pub fn in_range(v: __m128i, lo: u8, hi: u8) -> __m128i {
        // SAFETY: SSE2 is part of the x86-64 baseline: always available.
        unsafe {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(lo as i8 - 1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(hi as i8 + 1)),
            )
        }
    }

    /// Lanes holding a letter, digit or `-`: nearly every byte of a real field name.
    #[inline(always)]
    pub fn alnum_dash(v: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of the x86-64 baseline: always available.
        unsafe {
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            _mm_or_si128(
                _mm_or_si128(in_range(lower, b'a', b'z'), in_range(v, b'0', b'9')),
                eq(v, b'-'),
            )
        }
    }

    /// Lanes holding a control byte, a space or DEL (not allowed in a request target).
    #[inline(always)]
    pub fn ctl_or_space(v: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of the x86-64 baseline: always available.
        unsafe {
            let space = _mm_set1_epi8(0x20);
            _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, space), space), eq(v, 0x7f))
        }
    }

    /// Index of the first set bit of `mask(window)` at or after `from`, in 16-byte
    /// windows of `b`; `b.len()` if none. The last window overlaps the one before it.
    /// `None` for a slice shorter than a window: the byte loop is cheaper there than
    /// copying it into one.
    #[inline(always)]
    pub fn first(b: &[u8], mut from: usize, mask: impl Fn(__m128i) -> u32) -> Option<usize> {
        if b.len() < 16 {
            return None;
        }
        while from + 16 <= b.len() {
            let m = mask(load(b, from));
            if m != 0 {
                return Some(from + m.trailing_zeros() as usize);
            }
            from += 16;
        }
        if from < b.len() {
            let base = b.len() - 16;
            let m = mask(load(b, base)) >> (from - base);
            if m != 0 {
                return Some(from + m.trailing_zeros() as usize);
            }
        }
        Some(b.len())
    }

    #[inline]
    pub fn find_byte(b: &[u8], from: usize, needle: u8) -> usize {
        first(b, from, |v| bits(eq(v, needle)))
            .unwrap_or_else(|| super::portable::find_byte(b, from, needle))
    }

    #[inline]
    pub fn token_len(b: &[u8]) -> usize {
        // Letters, digits and `-` a window at a time; any other token character (rare in
        // names) continues the walk byte by byte.
        let from = first(b, 0, |v| !bits(alnum_dash(v)) & 0xffff).unwrap_or(0);
        from + super::portable::token_len(&b[from..])
    }

    #[inline(always)]
    pub fn field_line(b: &[u8]) -> (usize, usize) {
        if b.len() < 16 {
            return super::portable::field_line(b);
        }
        // Both searches start from the one window at the line's start, so neither waits
        // for the other: the newline search does not start after the name's end.
        let v = load(b, 0);
        let name_end = !bits(alnum_dash(v)) & 0xffff;
        let lf = bits(eq(v, b'\n'));
        let i = match name_end {
            0 => token_len(b),
            m => {
                // Nearly every name is letters and dashes up to its colon: that colon ends
                // the token (it is no token character) without a look at the bytes after.
                let from = m.trailing_zeros() as usize;
                if b[from] == b':' {
                    from
                } else {
                    from + super::portable::token_len(&b[from..])
                }
            }
        };
        let j = match lf {
            0 => find_byte(b, 16, b'\n'),
            m => m.trailing_zeros() as usize,
        };
        (i, j)
    }

    #[inline]
    pub fn find_ctl_or_space(b: &[u8]) -> usize {
        first(b, 0, |v| bits(ctl_or_space(v)))
            .unwrap_or_else(|| super::portable::find_ctl_or_space(b))
    }

    #[inline]
    pub fn has_ctl_or_space(b: &[u8], len: usize) -> bool {
        let len = len.min(b.len());
        if len < 16 && b.len() >= 16 {
            // One window over the span and what follows it; bits past the span dropped.
            return bits(ctl_or_space(load(b, 0))) & ((1 << len) - 1) != 0;
        }
        if len < 16 {
            return super::portable::has_ctl_or_space(b, len);
        }
        find_ctl_or_space(&b[..len]) != len
    }

    // The sign bit of each lane is its high bit: a zero movemask is sixteen ASCII bytes.
    #[inline]
    pub fn is_ascii(b: &[u8]) -> bool {
        first(b, 0, bits).map_or_else(|| super::portable::is_ascii(b), |i| i == b.len())
    }
}

/// The same searches a byte at a time: for other architectures, and the reference the
/// fast versions are tested against.
mod portable {
    #[inline]
    pub fn find_byte(b: &[u8], from: usize, needle: u8) -> usize {
        let from = from.min(b.len());
        b[from..]
            .iter()
            .position(|&c| c == needle)
            .map_or(b.len(), |i| from + i)
    }

    #[inline]
    pub fn token_len(b: &[u8]) -> usize {
        b.iter()
            .position(|&c| !super::TCHAR[c as usize])
            .unwrap_or(b.len())
    }

    #[inline]
    pub fn field_line(b: &[u8]) -> (usize, usize) {
        (token_len(b), find_byte(b, 0, b'\n'))
    }

    #[inline]
    pub fn find_ctl_or_space(b: &[u8]) -> usize {
        b.iter()
            .position(|&c| c <= b' ' || c == 0x7f)
            .unwrap_or(b.len())
    }

    #[inline]
    pub fn has_ctl_or_space(b: &[u8], len: usize) -> bool {
        let len = len.min(b.len());
        find_ctl_or_space(&b[..len]) != len
    }

    #[inline]
    pub fn is_ascii(b: &[u8]) -> bool {
        b.is_ascii()
    }
}

#[cfg(not(target_arch = "x86_64"))]
use portable as imp;
#[cfg(target_arch = "x86_64")]
use sse2 as imp;

/// Index of the first `needle` in `b` at or after `from`, or `b.len()`.
#[inline]
pub fn find_byte(b: &[u8], from: usize, needle: u8) -> usize {
    imp::find_byte(b, from, needle)
}

/// Length of the token (RFC 9110 `tchar`s) that starts `b`.
#[inline]
pub fn token_len(b: &[u8]) -> usize {
    imp::token_len(b)
}

/// A header field line at the start of `b`: the length of the token that starts it and the
/// index of its first `\n` (`b.len()` if none). A token holds no newline, so the name ends
/// at or before the line's end.
#[inline(always)]
pub fn field_line(b: &[u8]) -> (usize, usize) {
    imp::field_line(b)
}

/// Index of the first control byte, space or DEL in `b`, or `b.len()`.
#[inline]
pub fn find_ctl_or_space(b: &[u8]) -> usize {
    imp::find_ctl_or_space(b)
}

/// Whether `b[..len]` holds a control byte, a space or DEL. `b` may run on past `len`
/// (the rest of a line): a span shorter than a window is then tested in one window that
/// reads past it, instead of byte by byte.
#[inline]
pub fn has_ctl_or_space(b: &[u8], len: usize) -> bool {
    imp::has_ctl_or_space(b, len)
}

/// Whether every byte of `b` is ASCII.
#[inline]
pub fn is_ascii(b: &[u8]) -> bool {
    imp::is_ascii(b)
}

/// Whether the token `name` equals `lower`, a lower-case name of letters, digits and `-`,
/// ignoring case. Setting bit 5 lower-cases a letter; among token characters only the
/// upper-case letters (and `^` and `_`, which become `~` and DEL) change under it, so no
/// byte can come to equal a pattern byte it did not already match ignoring case.
/// Branch-free, unlike `eq_ignore_ascii_case`'s early-exit loop, and eight bytes at a time
/// for names of 8 to 24 bytes (most of those podtap looks for): the words at the start and
/// at the end overlap in the middle, so two or three compare a name whole. With `lower` a
/// literal, its words are constants.
#[inline(always)]
pub fn token_eq_lower(name: &[u8], lower: &[u8]) -> bool {
    const BIT5: u64 = u64::from_ne_bytes([0x20; 8]);
    #[inline(always)]
    fn word(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let differs = |at: usize| (word(name, at) | BIT5) ^ word(lower, at);
    match n {
        8..=16 => differs(0) | differs(n - 8) == 0,
        17..=24 => differs(0) | differs(8) | differs(n - 8) == 0,
        _ => {
            name.iter()
                .zip(lower)
                .fold(0u8, |d, (&a, &b)| d | ((a | 0x20) ^ b))
                == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-loop definitions the fast paths must agree with.
    fn slow_find(b: &[u8], from: usize, n: u8) -> usize {
        (from..b.len()).find(|&i| b[i] == n).unwrap_or(b.len())
    }
    fn slow_token(b: &[u8]) -> usize {
        b.iter()
            .position(|&c| !TCHAR[c as usize])
            .unwrap_or(b.len())
    }
    fn slow_ctl(b: &[u8]) -> usize {
        b.iter()
            .position(|&c| c <= b' ' || c == 0x7f)
            .unwrap_or(b.len())
    }

    #[test]
    fn agrees_with_byte_loops_at_every_length_and_position() {
        // Every length from 0 to 40 (below, at and across window boundaries), the
        // interesting byte at every position, and bytes from every class around it.
        let fill = b"Content-Type_x.Y9~abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'\n', b':', b' ', 0x7f, 0x80, 0xff, 0, b'_', b'\t'] {
                    let mut b = fill[..len].to_vec();
                    if at < len {
                        b[at] = special;
                    }
                    for from in 0..=len {
                        assert_eq!(find_byte(&b, from, b'\n'), slow_find(&b, from, b'\n'));
                    }
                    assert_eq!(token_len(&b), slow_token(&b), "{b:?}");
                    let line = (slow_token(&b), slow_find(&b, 0, b'\n'));
                    assert_eq!(field_line(&b), line, "{b:?}");
                    assert_eq!(find_ctl_or_space(&b), slow_ctl(&b), "{b:?}");
                    for n in 0..=len {
                        let want = slow_ctl(&b[..n]) != n;
                        assert_eq!(has_ctl_or_space(&b, n), want, "{b:?} {n}");
                    }
                    assert_eq!(is_ascii(&b), b.is_ascii(), "{b:?}");
                }
            }
        }
        assert_eq!(find_byte(b"abc", 7, b'c'), 3);
    }

    #[test]
    fn token_names_compare_like_eq_ignore_ascii_case() {
        // Lengths on each path: byte by byte (3, 4, 7, 25), two words (8, 10, 12, 14, 15,
        // 16), three (17, 24).
        let patterns = [
            "content-length",
            "host",
            "x-b3-traceid",
            "sw8",
            "x-b3-sa",
            "x-b3-sam",
            "connection",
            "x-0123456789abc",
            "x-0123456789abcd",
            "transfer-encoding",
            "x-0123456789abcdefghijkl",
            "x-0123456789abcdefghijklm",
        ];
        for c in 0u8..=255 {
            if !TCHAR[c as usize] {
                continue;
            }
            for p in patterns {
                for at in 0..p.len() {
                    let mut name = p.as_bytes().to_vec();
                    name[at] = c;
                    assert_eq!(
                        token_eq_lower(&name, p.as_bytes()),
                        name.eq_ignore_ascii_case(p.as_bytes()),
                        "{name:?} {p}"
                    );
                }
            }
        }
        assert!(token_eq_lower(b"Content-Length", b"content-length"));
        assert!(!token_eq_lower(b"Content-Lengt", b"content-length"));
    }
}
