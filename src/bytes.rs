//! Byte-string helpers for the per-packet and per-transaction paths.

/// `a == b` for short byte strings (an operation, a table, a route, a statement name)
/// without a call to `memcmp`: up to 16 bytes as two overlapping words (or halves of
/// one), longer ones compared whole. A summary row's key is compared this way for every
/// transaction, a PostgreSQL statement name for every Bind.
#[inline(always)]
pub fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_is_byte_equality_at_every_length() {
        let mut r = crate::test_rng::rng(0x1234_5678);
        for n in 0..40usize {
            for _ in 0..300 {
                let a: Vec<u8> = (0..n).map(|_| b"ab"[r(2) as usize]).collect();
                // Equal, or one byte changed anywhere, or a length one off.
                let mut b = a.clone();
                match r(3) {
                    0 => {}
                    1 if n > 0 => b[r(n as u64) as usize] ^= 1,
                    _ => b.push(b'a'),
                }
                assert_eq!(same_text(&a, &b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
