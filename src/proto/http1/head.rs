//! HTTP/1 head parsing: request and status lines and header fields of a head whose end
//! (the blank line) has already been found.
//!
//! podtap reads only a handful of fields per message, so this walks the head line by line
//! (one SIMD newline search per line) and checks just enough structure to reject what is
//! not HTTP — tokens without whitespace, a colon in every field line, the version string —
//! instead of validating every byte as a general-purpose parser must. Zero-copy: every
//! field borrows the head.

/// A request line: method, request target and minor version (0 or 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub target: &'a [u8],
    pub minor: u8,
}

/// Split `head` into its first line and the header block after it. Empty lines before
/// the first line are skipped (RFC 9112 section 2.2: a stray CRLF after a body whose length
/// was off by two is common).
fn first_line(head: &[u8]) -> Option<(&[u8], &[u8])> {
    let skip = head.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let head = &head[skip..];
    let nl = memchr::memchr(b'\n', head)?;
    let line = &head[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &head[nl + 1..]))
}

fn version(v: &[u8]) -> Option<u8> {
    match v {
        b"HTTP/1.1" => Some(1),
        b"HTTP/1.0" => Some(0),
        _ => None,
    }
}

fn is_tchar(c: u8) -> bool {
    TCHAR[c as usize]
}

/// Parse the request line of `head`; returns it and the header block.
pub fn request_line(head: &[u8]) -> Option<(RequestLine<'_>, &[u8])> {
    let (line, rest) = first_line(head)?;
    let sp1 = memchr::memchr(b' ', line)?;
    let sp2 = memchr::memrchr(b' ', line)?;
    if sp2 <= sp1 {
        return None;
    }
    let method = &line[..sp1];
    let target = &line[sp1 + 1..sp2];
    if method.is_empty() || !method.iter().all(|&c| is_tchar(c)) {
        return None;
    }
    if target.is_empty() || target.iter().any(|&c| c <= b' ' || c == 0x7f) {
        return None;
    }
    let minor = version(&line[sp2 + 1..])?;
    // Token characters are ASCII, so this cannot fail.
    let method = std::str::from_utf8(method).ok()?;
    Some((
        RequestLine {
            method,
            target,
            minor,
        },
        rest,
    ))
}

/// Parse the status line of `head`: minor version and status code, and the header block.
pub fn status_line(head: &[u8]) -> Option<(u8, u16, &[u8])> {
    let (line, rest) = first_line(head)?;
    if line.len() < 12 || line[8] != b' ' {
        return None;
    }
    let minor = version(&line[..8])?;
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&c| c != b' ') {
        return None;
    }
    let code = code.iter().fold(0u16, |n, &d| n * 10 + (d - b'0') as u16);
    Some((minor, code, rest))
}

/// Header fields parsed per message; more is a malformed message for podtap's purposes.
pub const MAX_HEADERS: usize = 100;

/// The header fields of a header block, in order; a line that is not a field (no colon,
/// whitespace or other non-token bytes in the name, an obsolete folded line), or a field
/// beyond [`MAX_HEADERS`], ends the iteration with `Err`.
pub struct Fields<'a> {
    rest: &'a [u8],
    /// Fields still allowed.
    left: usize,
}

pub fn fields(block: &[u8]) -> Fields<'_> {
    Fields {
        rest: block,
        left: MAX_HEADERS,
    }
}

/// Token characters (RFC 9110 `tchar`) as a table: one load per byte of a field name.
static TCHAR: [bool; 256] = {
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

/// Eight bytes at `i` as one little-endian word (the caller checks `i + 8 <= b.len()`).
#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is zero. Borrows can only mark bytes above a true
/// zero byte, so the lowest mark is always exact.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// Index of the first `\n` in `b` from `i`, or `b.len()`. Field values are short, so a
/// word-at-a-time scan beats both a byte loop and a SIMD search's set-up.
#[inline]
pub(super) fn find_lf(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() {
        let m = zero_bytes(word(b, i) ^ (LO * b'\n' as u64));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// The end of a field name: the first byte of `b` that is not a token character. Names
/// are short (a dozen bytes), so a table lookup per byte is the cheap way.
#[inline]
fn name_end(b: &[u8]) -> usize {
    b.iter().position(|&c| !TCHAR[c as usize]).unwrap_or(b.len())
}

/// A field value without the optional whitespace around it (RFC 9110 section 5.6.3: space
/// and tab) and the line's CR. Plain loops: values carry one space and one CR at most,
/// where a general ASCII-whitespace trim costs several times as much.
#[inline]
fn ows_trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = v {
        v = rest;
    }
    v
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a str, &'a [u8]), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        // The name runs to the colon and must be a token; an empty line ends the block.
        let i = name_end(b);
        if i == 0 && (b.is_empty() || b[0] == b'\n' || (b[0] == b'\r' && b.get(1) == Some(&b'\n')))
        {
            self.rest = &[];
            return None;
        }
        if i == 0 || b.get(i) != Some(&b':') || self.left == 0 {
            self.rest = &[];
            return Some(Err(()));
        }
        self.left -= 1;
        let name = &b[..i];
        let j = find_lf(b, i + 1);
        let value = ows_trim(&b[i + 1..j]);
        self.rest = b.get(j + 1..).unwrap_or(&[]);
        // SAFETY: token characters are ASCII, hence UTF-8.
        let name = unsafe { std::str::from_utf8_unchecked(name) };
        Some(Ok((name, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let (r, rest) = request_line(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, b"/a?b");
        assert_eq!(r.minor, 1);
        assert_eq!(rest, b"Host: x\r\n\r\n");
        assert_eq!(request_line(b"GET / HTTP/1.0\n\n").unwrap().0.minor, 0);
        assert_eq!(
            request_line(b"\r\nGET / HTTP/1.1\r\n\r\n")
                .unwrap()
                .0
                .method,
            "GET"
        );
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b" / HTTP/1.1\r\n\r\n",
            b"GET a b HTTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"no newline",
        ] {
            assert!(
                request_line(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 404 Not Found\r\n\r\n").map(|s| (s.0, s.1)),
            Some((1, 404))
        );
        assert_eq!(status_line(b"HTTP/1.0 200\r\n\r\n").map(|s| s.1), Some(200));
        assert_eq!(
            status_line(b"\r\nHTTP/1.1 200 OK\r\n\r\n").map(|s| s.1),
            Some(200)
        );
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/3.0 200 OK\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
        ] {
            assert!(
                status_line(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn field_lines() {
        let block = b"Host: a.b\r\nX-Empty:\r\nContent-Length:  12 \r\n\r\nbody";
        let f: Vec<_> = fields(block).collect();
        assert_eq!(
            f,
            vec![
                Ok(("Host", &b"a.b"[..])),
                Ok(("X-Empty", &b""[..])),
                Ok(("Content-Length", &b"12"[..])),
            ]
        );
        assert_eq!(fields(b"\r\n").count(), 0);
        assert_eq!(fields(b"A: 1\nB: 2\n\n").count(), 2);
        for bad in [
            &b"No colon\r\n\r\n"[..],
            b"Bad Name: x\r\n\r\n",
            b" folded\r\n\r\n",
            b": x\r\n\r\n",
        ] {
            let v: Vec<_> = fields(bad).collect();
            assert_eq!(v, vec![Err(())], "{:?}", String::from_utf8_lossy(bad));
        }
        // At most MAX_HEADERS fields; the next one is an error.
        let block = "A: 1\r\n".repeat(MAX_HEADERS) + "\r\n";
        assert!(fields(block.as_bytes()).all(|f| f.is_ok()));
        assert_eq!(fields(block.as_bytes()).count(), MAX_HEADERS);
        let block = "A: 1\r\n".repeat(MAX_HEADERS + 1) + "\r\n";
        let v: Vec<_> = fields(block.as_bytes()).collect();
        assert_eq!(v.len(), MAX_HEADERS + 1);
        assert_eq!(v[MAX_HEADERS], Err(()));
    }
}
