//! HPACK header decompression (RFC 7541), one decoder per direction of a connection.
//!
//! podtap only listens, so it must follow the encoder's dynamic table exactly or report
//! that it cannot. A connection picked up midstream (or after a gap, or after a header
//! block podtap had to skip) has table entries podtap never saw: the table then has an
//! *unknown tail*. Entries inserted since are still known (insertion is at the front, so
//! their indices are certain), references past them are reported as unknown fields rather
//! than guessed, and the table becomes fully known again when a size update empties it or
//! the known entries fill it so that nothing older can remain.
//!
//! Every length and index is checked: hostile input yields an error, never a panic, and
//! memory stays within the configured table and header-list bounds.

use std::collections::VecDeque;

use super::huffman;

/// The HPACK static table (RFC 7541 Appendix A), index 1..=61.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A field as (name, value), or `None` for a dynamic entry podtap never saw.
type Lookup<'a> = Result<Option<(&'a [u8], &'a [u8])>, HpackError>;

/// The table size every connection starts with (SETTINGS_HEADER_TABLE_SIZE default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Per-entry overhead counted by the RFC.
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block could not be decoded. The decoder's table is then unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer does not fit in 32 bits")]
    IntegerOverflow,
    #[error("index {0} is outside the static and dynamic tables")]
    BadIndex(u32),
    #[error("invalid Huffman string")]
    Huffman,
    #[error("table size update {0} above the allowed maximum")]
    SizeUpdate(u32),
}

/// One decoded field, borrowed from the block, the tables or the decoder's scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Header {
        name: &'a [u8],
        value: &'a [u8],
    },
    /// The field references a dynamic-table entry podtap never saw.
    Unknown,
}

/// What decoding one block found besides its fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Fields that referenced unknown dynamic-table entries.
    pub unknown: u32,
    /// Fields not emitted because the header list exceeded its bound.
    pub over_limit: u32,
}

/// Memory bounds of one decoder.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of dynamic-table entries kept (name + value + 32 each). An encoder allowed a
    /// larger table has its oldest entries forgotten (they become unknown).
    pub max_table_bytes: usize,
    /// Bytes of fields (name + value + 32 each) emitted per block; the rest are counted in
    /// `BlockInfo::over_limit` (and still applied to the table).
    pub max_list_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_table_bytes: 65536,
            max_list_bytes: 65536,
        }
    }
}

/// One dynamic-table entry: name and value in one allocation.
struct Entry {
    data: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.data[..self.name_len]
    }
    fn value(&self) -> &[u8] {
        &self.data[self.name_len..]
    }
    fn size(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// Where a decoded string lives until it is used.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch,
}

pub struct Decoder {
    /// Known entries, newest first (dynamic index 62 is `entries[0]`).
    entries: VecDeque<Entry>,
    /// RFC size of the known entries.
    size: usize,
    /// The table capacity the encoder uses (last size update; 4096 until one is seen).
    max_size: usize,
    /// Whether `max_size` was seen (a size update) rather than assumed.
    max_size_known: bool,
    /// The largest size the peer's SETTINGS_HEADER_TABLE_SIZE allowed.
    allowed: usize,
    /// Entries older than the known ones may exist (midstream, gap, skipped block).
    unknown_tail: bool,
    limits: Limits,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Decoder {
    /// Heap bytes of the table and the scratch buffers (entries counted at their RFC size,
    /// which includes 32 bytes for the allocation).
    pub fn heap_bytes(&self) -> usize {
        self.size
            + crate::proto::heap::deque_bytes(&self.entries)
            + self.name_buf.capacity()
            + self.value_buf.capacity()
    }

    /// A decoder for a connection seen from its start (`known`) or picked up midstream.
    pub fn new(limits: Limits, known: bool) -> Decoder {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            max_size_known: known,
            allowed: DEFAULT_TABLE_SIZE,
            unknown_tail: !known,
            limits,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Whether every entry of the table is known.
    pub fn is_known(&self) -> bool {
        !self.unknown_tail
    }

    /// Entries podtap knows.
    pub fn known_entries(&self) -> usize {
        self.entries.len()
    }

    /// The table's RFC size (known entries).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Forget the table: a block was skipped or the stream lost bytes, so insertions may
    /// have been missed. Known entries stay (they are still at their indices only if
    /// nothing was inserted, which cannot be known), so all are dropped.
    pub fn lose_state(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.unknown_tail = true;
    }

    /// The decoding side's SETTINGS_HEADER_TABLE_SIZE: the bound for size updates. podtap
    /// cannot tell when the setting is acknowledged, so it accepts the largest bound seen.
    pub fn set_allowed(&mut self, n: u32) {
        self.allowed = self.allowed.max(n as usize);
    }

    /// Decode one complete header block, calling `emit` per field in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut emit: impl FnMut(Field<'_>),
    ) -> Result<BlockInfo, HpackError> {
        let r = self.decode_inner(block, &mut emit);
        if r.is_err() {
            // The encoder's table and ours no longer agree.
            self.lose_state();
        }
        r
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        emit: &mut impl FnMut(Field<'_>),
    ) -> Result<BlockInfo, HpackError> {
        let mut info = BlockInfo::default();
        let mut list = 0usize;
        let mut pos = 0;
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                let idx = integer(block, &mut pos, 7)?;
                match self.lookup(idx)? {
                    Some((name, value)) => {
                        list += name.len() + value.len() + ENTRY_OVERHEAD;
                        if list <= self.limits.max_list_bytes {
                            emit(Field::Header { name, value });
                        } else {
                            info.over_limit += 1;
                        }
                    }
                    None => {
                        info.unknown += 1;
                        emit(Field::Unknown);
                    }
                }
            } else if b & 0xe0 == 0x20 {
                let n = integer(block, &mut pos, 5)?;
                if n as usize > self.allowed.max(DEFAULT_TABLE_SIZE) {
                    return Err(HpackError::SizeUpdate(n));
                }
                self.max_size = n as usize;
                self.max_size_known = true;
                if n == 0 {
                    // Everything is evicted, seen or not: the table is known again.
                    self.unknown_tail = false;
                }
                self.evict();
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let name_idx = integer(block, &mut pos, prefix)?;
                // The name: from a table, or a string literal.
                let name_known = if name_idx == 0 {
                    let s = self.string(block, &mut pos, true)?;
                    Some(s)
                } else {
                    match lookup_in(&self.entries, self.unknown_tail, name_idx)? {
                        Some((name, _)) => {
                            self.name_buf.clear();
                            self.name_buf.extend_from_slice(name);
                            Some(Str::Scratch)
                        }
                        None => None,
                    }
                };
                let value = self.string(block, &mut pos, false)?;
                let Some(name) = name_known else {
                    info.unknown += 1;
                    emit(Field::Unknown);
                    if index {
                        // An entry of unknown size went in: eviction can no longer be
                        // followed, so nothing older is certain.
                        self.lose_state();
                    }
                    continue;
                };
                let name = match name {
                    Str::Block(s, e) => &block[s..e],
                    Str::Scratch => &self.name_buf[..],
                };
                let value = match value {
                    Str::Block(s, e) => &block[s..e],
                    Str::Scratch => &self.value_buf[..],
                };
                list += name.len() + value.len() + ENTRY_OVERHEAD;
                if list <= self.limits.max_list_bytes {
                    emit(Field::Header { name, value });
                } else {
                    info.over_limit += 1;
                }
                if index {
                    let mut data = Vec::with_capacity(name.len() + value.len());
                    data.extend_from_slice(name);
                    data.extend_from_slice(value);
                    let name_len = name.len();
                    self.insert(Entry {
                        data: data.into_boxed_slice(),
                        name_len,
                    });
                }
            }
        }
        Ok(info)
    }

    /// The field at `idx`: `Ok(None)` when it is a dynamic entry podtap never saw.
    fn lookup(&self, idx: u32) -> Lookup<'_> {
        lookup_in(&self.entries, self.unknown_tail, idx)
    }

    /// Read a string literal; Huffman strings go to the name or value scratch buffer.
    fn string(&mut self, block: &[u8], pos: &mut usize, name: bool) -> Result<Str, HpackError> {
        let huff = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = integer(block, pos, 7)? as usize;
        let start = *pos;
        let end = start.checked_add(len).ok_or(HpackError::Truncated)?;
        if end > block.len() {
            return Err(HpackError::Truncated);
        }
        *pos = end;
        if !huff {
            return Ok(Str::Block(start, end));
        }
        let buf = if name {
            &mut self.name_buf
        } else {
            &mut self.value_buf
        };
        buf.clear();
        // Huffman codes are at least 5 bits: the output is at most 8/5 of the input.
        huffman::decode(&block[start..end], buf, len * 2).map_err(|_| HpackError::Huffman)?;
        Ok(Str::Scratch)
    }

    fn insert(&mut self, e: Entry) {
        let sz = e.size();
        if sz > self.max_size {
            // An entry larger than the table empties it and is not added (RFC 7541 4.4).
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = false;
            return;
        }
        self.size += sz;
        self.entries.push_front(e);
        self.evict();
    }

    fn evict(&mut self) {
        // Unknown entries are the oldest and go first: known ones are evicted only when
        // the known ones alone overflow, which also proves nothing older remains. (With an
        // assumed capacity that proof is not sound, so the tail stays unknown.)
        if self.unknown_tail && self.max_size_known && self.size + ENTRY_OVERHEAD > self.max_size {
            self.unknown_tail = false;
        }
        while self.size > self.max_size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => break,
            }
        }
        // podtap's own memory bound: forget the oldest known entries beyond it.
        while self.size > self.limits.max_table_bytes {
            match self.entries.pop_back() {
                Some(e) => {
                    self.size -= e.size();
                    self.unknown_tail = true;
                }
                None => break,
            }
        }
    }
}

/// `lookup` over the table fields alone, so the scratch buffers can be borrowed beside it.
fn lookup_in(entries: &VecDeque<Entry>, unknown_tail: bool, idx: u32) -> Lookup<'_> {
    let i = idx as usize;
    if i == 0 {
        return Err(HpackError::BadIndex(idx));
    }
    if i <= STATIC.len() {
        let (n, v) = STATIC[i - 1];
        return Ok(Some((n.as_bytes(), v.as_bytes())));
    }
    match entries.get(i - STATIC.len() - 1) {
        Some(e) => Ok(Some((e.name(), e.value()))),
        None if unknown_tail => Ok(None),
        None => Err(HpackError::BadIndex(idx)),
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541 5.1), at most 32 bits.
fn integer(b: &[u8], pos: &mut usize, prefix: u8) -> Result<u32, HpackError> {
    let mask = (1u32 << prefix) - 1;
    let first = *b.get(*pos).ok_or(HpackError::Truncated)? as u32 & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut v = mask as u64;
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += ((byte & 0x7f) as u64) << shift;
        if v > u32::MAX as u64 {
            return Err(HpackError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return Ok(v as u32);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

#[cfg(test)]
mod tests;
