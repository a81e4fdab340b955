//! HTTP/1 head parsing: request and status lines and header fields. The field walk finds
//! the blank line that ends the head itself, so a head can be parsed in place, straight
//! from the segment it arrived in, and only a head cut short needs buffering.
//!
//! podtap reads only a handful of fields per message, so this walks the head line by line
//! (one 16-bytes-a-step newline search per line) and checks just enough structure to
//! reject what is not HTTP — tokens without whitespace, a colon in every field line, the
//! version string — instead of validating every byte as a general-purpose parser must.
//! Zero-copy: every field borrows the head.

use crate::proto::scan;

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
    // Nearly every head starts right away.
    let skip = match head.first() {
        Some(b'\r' | b'\n') => head.iter().position(|&c| c != b'\r' && c != b'\n')?,
        Some(_) => 0,
        None => return None,
    };
    let head = &head[skip..];
    let nl = find_lf(head, 0);
    if nl == head.len() {
        return None;
    }
    let line = &head[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &head[nl + 1..]))
}

fn version(v: &[u8]) -> Option<u8> {
    // One eight-byte comparison each.
    const V11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
    const V10: u64 = u64::from_le_bytes(*b"HTTP/1.0");
    match u64::from_le_bytes(v.try_into().ok()?) {
        V11 => Some(1),
        V10 => Some(0),
        _ => None,
    }
}

/// Index of the first `\n` in `b` from `i`, or `b.len()`.
#[inline]
pub(super) fn find_lf(b: &[u8], i: usize) -> usize {
    scan::find_byte(b, i, b'\n')
}

/// Parse the request line of `head`; returns it and the header block.
pub fn request_line(head: &[u8]) -> Option<(RequestLine<'_>, &[u8])> {
    let (line, rest) = first_line(head)?;
    // method SP target SP version: the method is a token ending in the first space, and
    // the version (which has no space) is the line's last eight bytes after the last one.
    let sp1 = scan::token_len(line);
    if sp1 == 0 || line.get(sp1) != Some(&b' ') || line.len() < sp1 + 11 {
        return None;
    }
    let sp2 = line.len() - 9;
    let minor = version(&line[sp2 + 1..])?;
    if line[sp2] != b' ' {
        return None;
    }
    let target = &line[sp1 + 1..sp2];
    // (Tested with the version after it: short targets then take one window.)
    if target.is_empty() || scan::has_ctl_or_space(&line[sp1 + 1..], target.len()) {
        return None;
    }
    // SAFETY: token characters are ASCII, hence UTF-8.
    let method = unsafe { std::str::from_utf8_unchecked(&line[..sp1]) };
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
    let [a, b, c] = [line[9], line[10], line[11]].map(|d| d.wrapping_sub(b'0'));
    if a > 9 || b > 9 || c > 9 || line.get(12).is_some_and(|&c| c != b' ') {
        return None;
    }
    let code = a as u16 * 100 + b as u16 * 10 + c as u16;
    Some((minor, code, rest))
}

/// Header fields parsed per message; more is a malformed message for podtap's purposes.
/// Fields are walked, not stored, and `max_header_bytes` bounds the head: this only has
/// to be above what real peers send (Node.js accepts 2000; a 16 KiB head of short fields
/// holds a few hundred).
pub const MAX_HEADERS: usize = 2000;

/// The header fields of a header block, in order, each a name and its raw value: the
/// bytes after the colon up to the newline, optional whitespace and CR included
/// ([`field_value`] trims them; most values are never looked at). A line that is not a
/// field (no colon, whitespace or other non-token bytes in the name, an obsolete folded
/// line), or a field beyond [`MAX_HEADERS`], ends the iteration with `Err`. The iteration
/// also ends (with `None`) when the bytes run out before the blank line:
/// [`Fields::complete`] tells the two ends apart, so a head can be parsed in place before
/// its end is known.
pub struct Fields<'a> {
    rest: &'a [u8],
    /// Fields still allowed.
    left: usize,
    /// The blank line that ends the block was seen.
    complete: bool,
}

pub fn fields(block: &[u8]) -> Fields<'_> {
    Fields {
        rest: block,
        left: MAX_HEADERS,
        complete: false,
    }
}

impl<'a> Fields<'a> {
    /// Whether the iteration ended at the blank line (and not at the end of the bytes).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The bytes after the blank line, once [`complete`](Self::complete).
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

/// A field value without the optional whitespace around it (RFC 9110 section 5.6.3: space
/// and tab) and the line's CR. Plain loops: values carry one space and one CR at most,
/// where a general ASCII-whitespace trim costs several times as much.
#[inline]
pub fn field_value(v: &[u8]) -> &[u8] {
    // The shape of nearly every field line: `: value\r`.
    if let [b' ', mid @ .., b'\r'] = v
        && let (Some(&f), Some(&l)) = (mid.first(), mid.last())
        && f > b' '
        && l > b' '
    {
        return mid;
    }
    let (mut s, mut e) = (0, v.len());
    while s < e && (v[s] == b' ' || v[s] == b'\t') {
        s += 1;
    }
    while e > s && (v[e - 1] == b'\r' || v[e - 1] == b' ' || v[e - 1] == b'\t') {
        e -= 1;
    }
    &v[s..e]
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a str, &'a [u8]), ()>;

    // Inlined into each field loop: the call and its result in memory cost about as much
    // as the work on a short line.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        // The name's length and the line's end: the name runs to the colon and must be a
        // token; an empty line ends the block.
        let (i, j) = scan::field_line(b);
        if i == 0 {
            let blank = match b {
                [b'\n', ..] => 1,
                [b'\r', b'\n', ..] => 2,
                [] | [b'\r'] => return None,
                _ => 0,
            };
            if blank > 0 {
                self.rest = &b[blank..];
                self.complete = true;
                return None;
            }
        }
        if i == 0 || b.get(i) != Some(&b':') || self.left == 0 {
            if i == b.len() {
                // A name cut off by the end of the bytes: not known to be bad yet.
                return None;
            }
            self.rest = &[];
            return Some(Err(()));
        }
        if j == b.len() {
            // The line's end is not here yet.
            return None;
        }
        self.left -= 1;
        let name = &b[..i];
        let value = &b[i + 1..j];
        self.rest = &b[j + 1..];
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
        let f: Vec<_> = fields(block)
            .map(|f| f.map(|(n, v)| (n, field_value(v))))
            .collect();
        assert_eq!(
            f,
            vec![
                Ok(("Host", &b"a.b"[..])),
                Ok(("X-Empty", &b""[..])),
                Ok(("Content-Length", &b"12"[..])),
            ]
        );
        assert_eq!(fields(b"\r\n").count(), 0);
        let mut f = fields(b"A: 1\r\n\r\nbody");
        assert_eq!(f.by_ref().count(), 1);
        assert!(f.complete());
        assert_eq!(f.rest(), b"body");
        // Cut anywhere before the blank line: fields so far, then an incomplete end.
        let whole = b"Host: a\r\nContent-Length: 2\r\n\r\n";
        for cut in 0..whole.len() - 1 {
            let mut f = fields(&whole[..cut]);
            assert!(f.by_ref().all(|x| x.is_ok()), "cut {cut}");
            assert!(!f.complete(), "cut {cut}");
        }
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
