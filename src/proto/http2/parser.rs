//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte header and the typed payloads.
//!
//! A pure parser over complete byte slices; the streaming (frames split anywhere, DATA
//! skipped without buffering) lives in the state machine. Every length is checked before
//! it is used.

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a peer raises it.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 1;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 5;

/// Why a frame is malformed (a connection error for an endpoint; podtap stops decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame type {0} on the wrong stream (connection vs. stream frame)")]
    StreamId(u8),
    #[error("frame type {ty} with invalid length {len}")]
    Length { ty: u8, len: u32 },
    #[error("padding longer than the frame")]
    Padding,
    #[error("CONTINUATION expected on stream {0}")]
    ContinuationExpected(u32),
    #[error("CONTINUATION without a header block to continue")]
    UnexpectedContinuation,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    /// The header at the start of `b` (at least 9 bytes).
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h = b.get(..HEADER_LEN)?;
        Some(FrameHeader {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            ty: h[3],
            flags: h[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Checks that need only the header: which frames belong to stream 0, fixed lengths.
    pub fn validate(&self) -> Result<(), FrameError> {
        let conn = matches!(self.ty, SETTINGS | PING | GOAWAY);
        let stream = matches!(
            self.ty,
            DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION
        );
        if (conn && self.stream != 0) || (stream && self.stream == 0) {
            return Err(FrameError::StreamId(self.ty));
        }
        let len_ok = match self.ty {
            PRIORITY => self.len == 5,
            RST_STREAM | WINDOW_UPDATE => self.len == 4,
            PING => self.len == 8,
            SETTINGS => self.len.is_multiple_of(6) && (!self.has(ACK) || self.len == 0),
            GOAWAY => self.len >= 8,
            PUSH_PROMISE => self.len >= 4,
            _ => true,
        };
        if !len_ok {
            return Err(FrameError::Length {
                ty: self.ty,
                len: self.len,
            });
        }
        Ok(())
    }

    /// Whether these 9 bytes could start an HTTP/2 frame: a known type, a valid header,
    /// and a length no peer would send without raising its limits.
    pub fn plausible(&self) -> bool {
        self.ty <= CONTINUATION && self.len <= DEFAULT_MAX_FRAME * 4 && self.validate().is_ok()
    }
}

/// A parsed frame payload (all but DATA, which the state machine skips as it streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Headers {
        end_stream: bool,
        end_headers: bool,
        block: &'a [u8],
    },
    Priority,
    RstStream {
        code: u32,
    },
    Settings {
        ack: bool,
        params: &'a [u8],
    },
    PushPromise {
        end_headers: bool,
        promised: u32,
        block: &'a [u8],
    },
    Ping,
    Goaway {
        last_stream: u32,
        code: u32,
    },
    WindowUpdate,
    Continuation {
        end_headers: bool,
        block: &'a [u8],
    },
    /// DATA payload or an unknown frame type: not interpreted.
    Other,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Strip padding: `payload` of a PADDED frame starts with the pad length.
fn unpad(h: &FrameHeader, payload: &[u8]) -> Result<(usize, usize), FrameError> {
    if !h.has(PADDED) {
        return Ok((0, payload.len()));
    }
    let pad = *payload.first().ok_or(FrameError::Padding)? as usize;
    if 1 + pad > payload.len() {
        return Err(FrameError::Padding);
    }
    Ok((1, payload.len() - pad))
}

/// Parse one complete frame payload (`payload.len() == h.len`), header already validated.
pub fn parse<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    h.validate()?;
    let p = payload;
    Ok(match h.ty {
        HEADERS => {
            let (mut s, e) = unpad(h, p)?;
            if h.has(PRIORITY_FLAG) {
                s += 5;
                if s > e {
                    return Err(FrameError::Length {
                        ty: h.ty,
                        len: h.len,
                    });
                }
            }
            Frame::Headers {
                end_stream: h.has(END_STREAM),
                end_headers: h.has(END_HEADERS),
                block: &p[s..e],
            }
        }
        PRIORITY => Frame::Priority,
        RST_STREAM => Frame::RstStream { code: be32(p) },
        SETTINGS => Frame::Settings {
            ack: h.has(ACK),
            params: p,
        },
        PUSH_PROMISE => {
            let (s, e) = unpad(h, p)?;
            if s + 4 > e {
                return Err(FrameError::Length {
                    ty: h.ty,
                    len: h.len,
                });
            }
            Frame::PushPromise {
                end_headers: h.has(END_HEADERS),
                promised: be32(&p[s..]) & 0x7fff_ffff,
                block: &p[s + 4..e],
            }
        }
        PING => Frame::Ping,
        GOAWAY => Frame::Goaway {
            last_stream: be32(p) & 0x7fff_ffff,
            code: be32(&p[4..]),
        },
        WINDOW_UPDATE => Frame::WindowUpdate,
        CONTINUATION => Frame::Continuation {
            end_headers: h.has(END_HEADERS),
            block: p,
        },
        _ => Frame::Other,
    })
}

/// The (identifier, value) pairs of a SETTINGS payload (a multiple of 6 bytes).
pub fn settings(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params
        .chunks_exact(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), be32(&c[2..])))
}

/// RFC 9113 section 7 error code names.
pub fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, ty: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(ty);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v
    }

    #[test]
    fn header_fields_and_reserved_bit() {
        let mut b = hdr(0x01_02_03, HEADERS, END_HEADERS, 5);
        b[5] |= 0x80;
        let h = FrameHeader::parse(&b).unwrap();
        assert_eq!((h.len, h.ty, h.flags, h.stream), (0x010203, 1, 4, 5));
        assert!(FrameHeader::parse(&b[..8]).is_none());
    }

    #[test]
    fn headers_with_padding_and_priority() {
        let h = FrameHeader {
            len: 1 + 5 + 3 + 2,
            ty: HEADERS,
            flags: PADDED | PRIORITY_FLAG | END_HEADERS | END_STREAM,
            stream: 1,
        };
        let p = [2, 0, 0, 0, 3, 16, 0x82, 0x86, 0x84, 0, 0];
        assert_eq!(
            parse(&h, &p),
            Ok(Frame::Headers {
                end_stream: true,
                end_headers: true,
                block: &[0x82, 0x86, 0x84]
            })
        );
        // Padding longer than the frame.
        let p = [20, 0, 0, 0, 3, 16, 0x82, 0x86, 0x84, 0, 0];
        assert_eq!(parse(&h, &p), Err(FrameError::Padding));
        let h = FrameHeader { len: 3, ..h };
        assert!(parse(&h, &[0, 0, 0]).is_err(), "priority beyond the frame");
    }

    #[test]
    fn connection_frames() {
        let h = FrameHeader::parse(&hdr(12, SETTINGS, 0, 0)).unwrap();
        let p = [0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0];
        let Ok(Frame::Settings { ack: false, params }) = parse(&h, &p) else {
            panic!()
        };
        assert_eq!(
            settings(params).collect::<Vec<_>>(),
            [(1, 4096), (5, 16384)]
        );
        let h = FrameHeader::parse(&hdr(8, GOAWAY, 0, 0)).unwrap();
        assert_eq!(
            parse(&h, &[0x80, 0, 0, 7, 0, 0, 0, 2]),
            Ok(Frame::Goaway {
                last_stream: 7,
                code: 2
            })
        );
        let h = FrameHeader::parse(&hdr(4, RST_STREAM, 0, 3)).unwrap();
        assert_eq!(parse(&h, &[0, 0, 0, 8]), Ok(Frame::RstStream { code: 8 }));
        let h = FrameHeader::parse(&hdr(8, PUSH_PROMISE, END_HEADERS, 1)).unwrap();
        assert_eq!(
            parse(&h, &[0, 0, 0, 2, 0x82, 0x87, 0x84, 0x41]),
            Ok(Frame::PushPromise {
                end_headers: true,
                promised: 2,
                block: &[0x82, 0x87, 0x84, 0x41]
            })
        );
    }

    #[test]
    fn invalid_headers_are_rejected() {
        for (len, ty, flags, stream) in [
            (6, SETTINGS, 0, 1),
            (7, SETTINGS, 0, 0),
            (6, SETTINGS, ACK, 0),
            (8, PING, 0, 1),
            (7, PING, 0, 0),
            (4, RST_STREAM, 0, 0),
            (5, RST_STREAM, 0, 1),
            (4, WINDOW_UPDATE, 0, 1 << 20),
            (4, PRIORITY, 0, 1),
            (0, DATA, 0, 0),
            (0, HEADERS, 0, 0),
            (4, GOAWAY, 0, 0),
        ] {
            let h = FrameHeader::parse(&hdr(len, ty, flags, stream)).unwrap();
            let valid = !(ty == WINDOW_UPDATE && len == 4);
            assert_eq!(h.validate().is_ok(), !valid, "{h:?}");
        }
        assert!(!FrameHeader::parse(&hdr(4, 0x20, 0, 1)).unwrap().plausible());
        assert!(
            !FrameHeader::parse(&hdr(1 << 20, DATA, 0, 1))
                .unwrap()
                .plausible()
        );
        assert!(
            FrameHeader::parse(&hdr(100, DATA, 0, 1))
                .unwrap()
                .plausible()
        );
    }
}
