//! The commands of a connection waiting for their replies, oldest first, with a run of
//! identical ones kept as one entry.
//!
//! Why: a pipelining client sends its commands in batches, and one packet often carries
//! a dozen commands of one kind, with the same timestamp. Their entries would differ
//! only in their keys, which a waiting command does not keep. Queueing each one wrote
//! its entry into the queue and read it back at its reply: a tenth of a pipelined
//! worker's time. A run is one entry with a count. A command joins the run at the back
//! when it has the same name, start, size and blocking flag, and nothing special about
//! it. Its reply takes one off the front.
//!
//! An entry holds one hold on its name (see [`super::names`]) however many commands it
//! counts. A command taken off a run gets a hold of its own.

use super::names::{NameId, Names};
use super::{Pending, Special};
use crate::proto::heap::TrackedDeque;
use crate::time::Timestamp;

/// How many commands an entry counts (a `Pending` with `count` 1 outside the queue).
pub(super) struct Waiting {
    q: TrackedDeque<(Pending, u32)>,
    /// Commands waiting, all entries' counts together.
    len: usize,
}

impl crate::proto::heap::HeapSize for (Pending, u32) {
    fn heap_size(&self) -> usize {
        self.0.heap_size()
    }
}

/// Whether `p` may share an entry with others like it: nothing about it is its own.
#[inline(always)]
fn plain(p: &Pending) -> bool {
    p.special == Special::None && p.completeness == 0 && p.query.is_none()
}

impl Waiting {
    pub fn new() -> Self {
        Waiting {
            q: TrackedDeque::new(),
            len: 0,
        }
    }

    /// Commands waiting.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest command (of a run: its first, which is like the others).
    #[inline(always)]
    pub fn front(&self) -> Option<&Pending> {
        self.q.front().map(|(p, _)| p)
    }

    /// Entries (runs), for tests that count holds.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.q.len()
    }

    /// Queue `p`, which holds its name.
    pub fn push(&mut self, p: Pending, names: &mut Names) {
        if plain(&p) && self.join_back(p.name, p.start, p.req_bytes, p.blocking) {
            names.release(p.name);
            return;
        }
        self.len += 1;
        self.q.push_back((p, 1));
    }

    /// Count a plain command like this one into the run at the back, if there is one.
    #[inline(always)]
    fn join_back(&mut self, name: NameId, start: Timestamp, req_bytes: u64, blocking: bool) -> bool {
        match self.q.back_mut() {
            Some((b, n))
                if *n < u32::MAX
                    && b.name == name
                    && b.start == start
                    && b.req_bytes == req_bytes
                    && b.blocking == blocking
                    && plain(b) =>
            {
                *n += 1;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Queue a plain command of `name` (not held: the queue holds it if it needs to).
    /// Most join the run at the back, without a new entry or a hold.
    #[inline(always)]
    pub fn push_plain(
        &mut self,
        name: NameId,
        start: Timestamp,
        req_bytes: u64,
        blocking: bool,
        names: &mut Names,
    ) {
        if self.join_back(name, start, req_bytes, blocking) {
            return;
        }
        self.len += 1;
        let p = Pending {
            start,
            req_bytes,
            name: names.hold(name),
            special: Special::None,
            blocking,
            completeness: 0,
            query: None,
        };
        self.q.push_back_empty((p, 1));
    }

    /// The oldest command, off the queue, holding its name.
    pub fn pop_front(&mut self, names: &mut Names) -> Option<Pending> {
        let (f, n) = self.q.front_mut()?;
        self.len -= 1;
        if *n > 1 {
            // One of a run: plain, so a copy of the front (no query text to move).
            *n -= 1;
            return Some(Pending {
                start: f.start,
                req_bytes: f.req_bytes,
                name: names.hold(f.name),
                special: f.special,
                blocking: f.blocking,
                completeness: f.completeness,
                query: None,
            });
        }
        self.q.pop_front().map(|(p, _)| p)
    }

    /// Take the oldest command off the queue when it was counted where it stood (its
    /// name let go with the last of its run).
    #[inline(always)]
    pub fn drop_front(&mut self, names: &mut Names) {
        if let Some((f, n)) = self.q.front_mut() {
            self.len -= 1;
            if *n > 1 {
                *n -= 1;
            } else {
                names.release(f.name);
                self.q.pop_front();
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.q.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_pending(names: &mut Names, op: &str, start: u64, bytes: u64) -> Pending {
        Pending {
            start: Timestamp(start),
            req_bytes: bytes,
            name: names.lookup(op, b"k"),
            special: Special::None,
            blocking: false,
            completeness: 0,
            query: None,
        }
    }

    #[test]
    fn a_run_of_like_commands_is_one_entry_and_comes_out_one_by_one() {
        let mut names = Names::default();
        let mut w = Waiting::new();
        for _ in 0..3 {
            let p = plain_pending(&mut names, "GET", 10, 20);
            w.push(p, &mut names);
        }
        let get = names.lookup("GET", b"k");
        w.push_plain(get, Timestamp(10), 20, false, &mut names);
        names.release(get);
        // Another start, another size, another name, something special: new entries.
        w.push_plain(get, Timestamp(11), 20, false, &mut names);
        w.push_plain(get, Timestamp(11), 21, false, &mut names);
        let p = plain_pending(&mut names, "SET", 11, 21);
        w.push(p, &mut names);
        let mut sel = plain_pending(&mut names, "SELECT", 11, 21);
        sel.special = Special::Select(1);
        w.push(sel, &mut names);
        let mut sel2 = plain_pending(&mut names, "SELECT", 11, 21);
        sel2.special = Special::Select(1);
        w.push(sel2, &mut names);
        assert_eq!((w.len(), w.entries()), (9, 6));
        let (held, recent) = names.holds();
        assert_eq!(held, w.entries() + recent, "an entry holds its name once");

        let mut seen = Vec::new();
        while let Some(p) = w.pop_front(&mut names) {
            seen.push((names.get(p.name).op.to_string(), p.start.0, p.req_bytes, p.special));
            names.release(p.name);
            if w.len() == 7 {
                // Counted where it stood: one off the run at the front.
                w.drop_front(&mut names);
            }
        }
        let s = |op: &str, t, b, sp| (op.to_string(), t, b, sp);
        assert_eq!(
            seen,
            [
                s("GET", 10, 20, Special::None),
                s("GET", 10, 20, Special::None),
                s("GET", 10, 20, Special::None),
                s("GET", 11, 20, Special::None),
                s("GET", 11, 21, Special::None),
                s("SET", 11, 21, Special::None),
                s("SELECT", 11, 21, Special::Select(1)),
                s("SELECT", 11, 21, Special::Select(1)),
            ]
        );
        assert!(w.is_empty() && w.entries() == 0);
        let (held, recent) = names.holds();
        assert_eq!(held, recent, "every hold let go");
    }
}
