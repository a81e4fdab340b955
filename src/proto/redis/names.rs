//! A connection's command names: each operation and key prefix kept once, in a table, and
//! referred to by index by the commands that wait for their replies.
//!
//! Why: a command waits in the queue from the moment it is read until its reply comes.
//! With its operation and prefix as two strings of its own, it was about a hundred bytes,
//! written into the queue and read back out for every command, and its two strings were
//! copied and dropped each time. A connection sends a few kinds of command over and over,
//! so the strings are kept here once, and a waiting command holds a [`NameId`] instead,
//! which makes it less than half that size.
//!
//! A slot is counted by its holders: each waiting command, the repeat shortcut, and the
//! two names looked up last. A slot that nobody holds any more is reused for the next new
//! name, so the table never has more slots than it had holders at one time (at most the
//! `max_pending` commands waiting, plus three).

use compact_str::CompactString;

use super::short_eq;
use crate::proto::heap::str_heap;

/// The index of a name in [`Names`], held by whoever keeps it: let go of it with
/// [`Names::release`] exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NameId(u32);

pub(super) struct Name {
    /// `db.operation.name`.
    pub op: CompactString,
    /// The key's prefix (empty: none).
    pub prefix: CompactString,
    /// Its [`crate::proto::tally`] shape: a new one each time a slot takes a new name.
    pub shape: u64,
    refs: u32,
}

#[derive(Default)]
pub(super) struct Names {
    slots: Vec<Name>,
    /// Slots that nobody holds.
    free: Vec<u32>,
    /// Heap bytes of the slots' strings.
    heap: usize,
    /// The two names looked up last, most recent first, held: a command is looked for
    /// there and nowhere else (most repeat one of them), so a lookup is two comparisons
    /// and a new name never costs a search through the table.
    recent: [Option<NameId>; 2],
}

impl Names {
    #[inline(always)]
    pub fn get(&self, id: NameId) -> &Name {
        &self.slots[id.0 as usize]
    }

    /// Another hold on `id`.
    #[inline(always)]
    pub fn hold(&mut self, id: NameId) -> NameId {
        self.slots[id.0 as usize].refs += 1;
        id
    }

    /// Let go of `id`.
    #[inline(always)]
    pub fn release(&mut self, id: NameId) {
        let s = &mut self.slots[id.0 as usize];
        s.refs -= 1;
        if s.refs == 0 {
            self.free.push(id.0);
        }
    }

    /// A hold on the name of `op` and `prefix` (bytes of a key: not always UTF-8).
    pub fn lookup(&mut self, op: &str, prefix: &[u8]) -> NameId {
        let is = |n: &Name| {
            short_eq(n.op.as_bytes(), op.as_bytes()) && short_eq(n.prefix.as_bytes(), prefix)
        };
        if let Some(id) = self.recent[0]
            && is(self.get(id))
        {
            return self.hold(id);
        }
        if let Some(id) = self.recent[1]
            && is(self.get(id))
        {
            self.recent.swap(0, 1);
            return self.hold(id);
        }
        // The older of the two is let go first, so that its slot may take the new name.
        if let Some(old) = self.recent[1].take() {
            self.release(old);
        }
        let id = self.add(op, prefix);
        self.recent[1] = self.recent[0];
        self.recent[0] = Some(self.hold(id));
        id
    }

    /// A new name, held once, in a free slot if there is one.
    fn add(&mut self, op: &str, prefix: &[u8]) -> NameId {
        let op = CompactString::new(op);
        let prefix = CompactString::from_utf8_lossy(prefix);
        self.heap += str_heap(&op) + str_heap(&prefix);
        let name = Name {
            op,
            prefix,
            shape: crate::proto::tally::new_shape(),
            refs: 1,
        };
        match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                self.heap -= str_heap(&s.op) + str_heap(&s.prefix);
                *s = name;
                NameId(i)
            }
            None => {
                // At most `max_pending` + 3 slots (see the module's comment): the index fits.
                self.slots.push(name);
                NameId((self.slots.len() - 1) as u32)
            }
        }
    }

    /// Heap bytes of the table.
    pub fn heap_bytes(&self) -> usize {
        crate::proto::heap::vec_bytes(&self.slots) + crate::proto::heap::vec_bytes(&self.free) + self.heap
    }

    /// Holds on each slot, for tests that check nobody forgot to let go.
    #[cfg(test)]
    pub fn holds(&self) -> (usize, usize) {
        let held = self.slots.iter().map(|s| s.refs as usize).sum();
        let recent = self.recent.iter().flatten().count();
        (held, recent)
    }

    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_kept_once_and_its_slot_reused_when_nobody_holds_it() {
        let mut n = Names::default();
        let a = n.lookup("GET", b"user");
        let a2 = n.lookup("GET", b"user");
        assert_eq!(a, a2);
        let b = n.lookup("SET", b"user");
        let a3 = n.lookup("GET", b"user");
        assert_eq!(a, a3);
        assert_ne!(a, b);
        assert_eq!(n.slots(), 2);
        // A third name pushes the oldest of the two recent ones out; it is still held.
        let c = n.lookup("DEL", b"");
        assert_eq!(n.slots(), 3);
        for id in [a, a2, a3, b] {
            n.release(id);
        }
        // `b` was pushed out of the recent two and is held by nobody; `a` is pushed out
        // by the next new name: its slot, the last let go, takes it.
        let shape_a = n.get(a).shape;
        let d = n.lookup("INCR", b"hits");
        assert_eq!(d, a);
        assert_eq!(n.get(d).op, "INCR");
        assert_eq!(n.get(d).prefix, "hits");
        assert_ne!(n.get(d).shape, shape_a, "a new name gets a new shape");
        let e = n.lookup("DECR", b"hits");
        assert_eq!(e, b, "and `b`'s the one after");
        assert_eq!(n.slots(), 3);
        for id in [c, d, e] {
            n.release(id);
        }
        assert_eq!(n.holds(), (2, 2), "only the two recent ones are held");
    }

    #[test]
    fn the_table_never_outgrows_its_holders() {
        let mut n = Names::default();
        // 1000 distinct names, each let go before the next: the table stays small.
        for i in 0..1000 {
            let id = n.lookup("GET", format!("k{i}").as_bytes());
            n.release(id);
        }
        assert!(n.slots() <= 3, "{} slots", n.slots());
        // 100 held at once, then let go: 100 slots (plus the recent two), no more.
        let ids: Vec<_> = (0..100).map(|i| n.lookup("SET", format!("p{i}").as_bytes())).collect();
        assert!(n.slots() <= 103);
        for id in ids {
            n.release(id);
        }
        let before = n.slots();
        for i in 0..100 {
            let id = n.lookup("SET", format!("q{i}").as_bytes());
            n.release(id);
        }
        assert_eq!(n.slots(), before);
    }

    #[test]
    fn long_names_are_counted_in_the_heap() {
        let mut n = Names::default();
        let base = n.heap_bytes();
        let long = [b'x'; 40];
        let id = n.lookup("GET", &long);
        assert!(n.heap_bytes() >= base + 40);
        n.release(id);
    }
}
