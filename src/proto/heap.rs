//! What a connection's decoder holds on the heap, for the worker's decoder heap bound
//! (`protocols.max_worker_heap_bytes`, see `session::DecoderHeap`): the capacities of its
//! containers, and what queued transactions own (attribute vectors, long strings), which
//! [`TrackedDeque`] keeps a running sum of so that asking costs O(1).

use std::collections::VecDeque;

use compact_str::CompactString;

use super::{AttrValue, Transaction};

/// Heap bytes of a queue's allocation (its capacity; the elements' own heap not counted).
pub fn deque_bytes<T>(q: &VecDeque<T>) -> usize {
    q.capacity() * std::mem::size_of::<T>()
}

/// Heap bytes of a vector's allocation (its capacity, which a slice does not know).
#[allow(clippy::ptr_arg)]
pub fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Heap bytes of a map's table, with `extra` bytes per entry for what its entries own
/// (an estimate where they own strings: statement texts are summaries, short).
pub fn map_bytes<K, V, S>(m: &hashbrown::HashMap<K, V, S>, extra: usize) -> usize {
    m.capacity() * (std::mem::size_of::<(K, V)>() + 1) + m.len() * extra
}

/// Heap bytes a value owns beyond its own size.
pub trait HeapSize {
    fn heap_size(&self) -> usize;
}

/// Heap bytes of a string that did not fit inline.
pub fn str_heap(s: &CompactString) -> usize {
    if s.is_heap_allocated() {
        s.capacity()
    } else {
        0
    }
}

impl HeapSize for Transaction {
    /// The attribute vector and the strings that did not fit inline.
    fn heap_size(&self) -> usize {
        let attrs: usize = self
            .attrs
            .iter()
            .map(|(_, v)| match v {
                AttrValue::Str(s) => str_heap(s),
                _ => 0,
            })
            .sum();
        self.attrs.capacity() * std::mem::size_of::<(&str, AttrValue)>()
            + attrs
            + str_heap(&self.operation)
            + str_heap(&self.resource)
            + self.error.as_ref().map_or(0, str_heap)
            + self
                .trace
                .as_ref()
                .map_or(0, |t| std::mem::size_of_val(&**t))
    }
}

/// A queue that knows what its elements own on the heap: each element's size is taken
/// when it is queued and given back when it leaves (what an element gains while queued,
/// a response's fields filled into a waiting request, is not counted: it leaves soon).
pub struct TrackedDeque<T> {
    q: VecDeque<(T, u32)>,
    owned: usize,
}

impl<T> Default for TrackedDeque<T> {
    fn default() -> Self {
        TrackedDeque {
            q: VecDeque::new(),
            owned: 0,
        }
    }
}

impl<T> std::ops::Index<usize> for TrackedDeque<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.q[i].0
    }
}

impl<T> std::ops::IndexMut<usize> for TrackedDeque<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.q[i].0
    }
}

impl<T: HeapSize> TrackedDeque<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn size(v: &T) -> u32 {
        u32::try_from(v.heap_size()).unwrap_or(u32::MAX)
    }

    fn out(&mut self, e: Option<(T, u32)>) -> Option<T> {
        e.map(|(v, n)| {
            self.owned -= n as usize;
            v
        })
    }

    /// Queue `v` uncounted, for an element built in place afterwards and counted then
    /// ([`TrackedDeque::recount_back`]): an empty one owns nothing yet.
    #[inline]
    pub fn push_back_empty(&mut self, v: T) {
        self.q.push_back((v, 0));
    }

    #[inline]
    pub fn push_back(&mut self, v: T) {
        let n = Self::size(&v);
        self.owned += n as usize;
        self.q.push_back((v, n));
    }

    /// Queue `v`, which owns `n` heap bytes (its `heap_size`, known to the caller: an
    /// element made of the same strings as the last, say).
    #[inline]
    pub fn push_back_sized(&mut self, v: T, n: u32) {
        self.owned += n as usize;
        self.q.push_back((v, n));
    }

    pub fn push_front(&mut self, v: T) {
        let n = Self::size(&v);
        self.owned += n as usize;
        self.q.push_front((v, n));
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let e = self.q.pop_front();
        self.out(e)
    }

    pub fn pop_back(&mut self) -> Option<T> {
        let e = self.q.pop_back();
        self.out(e)
    }

    pub fn remove(&mut self, i: usize) -> Option<T> {
        let e = self.q.remove(i);
        self.out(e)
    }

    /// Keep the elements `f` accepts.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        let mut gone = 0;
        self.q.retain(|(v, n)| {
            let keep = f(v);
            if !keep {
                gone += *n as usize;
            }
            keep
        });
        self.owned -= gone;
    }

    /// Every element, oldest first, leaving the queue empty.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.owned = 0;
        self.q.drain(..).map(|(v, _)| v)
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn front(&self) -> Option<&T> {
        self.q.front().map(|(v, _)| v)
    }

    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.q.front_mut().map(|(v, _)| v)
    }

    pub fn back(&self) -> Option<&T> {
        self.q.back().map(|(v, _)| v)
    }

    pub fn back_mut(&mut self) -> Option<&mut T> {
        self.q.back_mut().map(|(v, _)| v)
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.q.get(i).map(|(v, _)| v)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.q.get_mut(i).map(|(v, _)| v)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.q.iter().map(|(v, _)| v)
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> + ExactSizeIterator {
        self.q.iter_mut().map(|(v, _)| v)
    }

    /// Take the newest element's size again (it was built in place after being queued).
    pub fn recount_back(&mut self) {
        if let Some((v, n)) = self.q.back_mut() {
            let now = u32::try_from(v.heap_size()).unwrap_or(u32::MAX);
            self.owned = self.owned - *n as usize + now as usize;
            *n = now;
        }
    }

    /// Heap bytes: the queue's allocation and what its elements owned when queued.
    pub fn heap_bytes(&self) -> usize {
        self.q.capacity() * std::mem::size_of::<(T, u32)>() + self.owned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Protocol;
    use crate::time::Timestamp;

    #[test]
    fn a_queue_counts_what_its_transactions_own_until_they_leave() {
        let mut q = TrackedDeque::new();
        let mut tx = Transaction::new(Protocol::Http, Timestamp(1));
        tx.attr_str("url.path", "/a".repeat(500));
        let owned = tx.heap_size();
        assert!(owned >= 1000, "{owned}");
        q.push_back(tx.clone());
        q.push_back(tx);
        assert!(q.heap_bytes() >= 2 * owned);
        q.pop_front();
        let one = q.heap_bytes();
        assert!(one >= owned && one < 2 * owned, "{one}");
        assert_eq!(q.drain().count(), 1);
        assert!(q.heap_bytes() < owned);
    }
}
