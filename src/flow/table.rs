//! The per-worker flow table: a slab of flows, a hash index by [`FlowKey`], and an
//! intrusive least-recently-seen list for eviction and idle expiry. Lookup, insert and
//! touch are O(1) and do not allocate once the slab and index have grown to their working
//! size; the table never holds more than `max_flows`.

use hashbrown::HashMap;

use super::{Flow, FlowKey};
use crate::time::Timestamp;

const NIL: u32 = u32::MAX;

struct Slot {
    flow: Option<Flow>,
    prev: u32,
    next: u32,
}

pub struct FlowTable {
    index: HashMap<FlowKey, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently seen at the head, least recently seen at the tail.
    head: u32,
    tail: u32,
    max: usize,
}

/// A handle to a flow in the table, valid until the flow is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowId(u32);

impl FlowTable {
    pub fn new(max_flows: usize) -> Self {
        // Grow on demand up to the limit: a worker that sees few flows stays small.
        let initial = max_flows.min(4096);
        FlowTable {
            index: HashMap::with_capacity(initial),
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            max: max_flows,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.index.len() >= self.max
    }

    // Always inlined, as `touch`: both run for every packet, and as calls they were a
    // dozen instructions of a packet's cost each.
    #[inline(always)]
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowId> {
        self.index.get(key).map(|&i| FlowId(i))
    }

    #[inline]
    pub fn get_mut(&mut self, id: FlowId) -> &mut Flow {
        // Ids handed out by this table always point at occupied slots.
        self.slots[id.0 as usize]
            .flow
            .as_mut()
            .expect("flow id refers to a live flow")
    }

    /// Insert a new flow. The caller makes room first (`is_full` / `pop_lru`).
    pub fn insert(&mut self, flow: Flow) -> FlowId {
        debug_assert!(!self.is_full());
        let key = flow.key;
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].flow = Some(flow);
                i
            }
            None => {
                self.slots.push(Slot {
                    flow: Some(flow),
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.push_front(i);
        FlowId(i)
    }

    /// Mark a flow as just seen (moves it to the head of the LRU list).
    #[inline(always)]
    pub fn touch(&mut self, id: FlowId) {
        if self.head != id.0 {
            self.unlink(id.0);
            self.push_front(id.0);
        }
    }

    pub fn remove(&mut self, id: FlowId) -> Flow {
        self.unlink(id.0);
        let flow = self.slots[id.0 as usize]
            .flow
            .take()
            .expect("flow id refers to a live flow");
        self.index.remove(&flow.key);
        self.free.push(id.0);
        flow
    }

    /// The least recently seen flow, if any.
    pub fn lru(&self) -> Option<FlowId> {
        (self.tail != NIL).then_some(FlowId(self.tail))
    }

    /// Walk from the least recently seen flow towards the most recent, collecting up to
    /// `max` flows for which `expired(flow)` holds, and stop at the first flow last seen
    /// after `horizon` (nothing newer can have expired).
    pub fn collect_expired(
        &self,
        horizon: Timestamp,
        max: usize,
        mut expired: impl FnMut(&Flow) -> bool,
        out: &mut Vec<FlowId>,
    ) {
        let mut i = self.tail;
        while i != NIL && out.len() < max {
            let slot = &self.slots[i as usize];
            let Some(flow) = slot.flow.as_ref() else {
                break;
            };
            if flow.last > horizon {
                break;
            }
            if expired(flow) {
                out.push(FlowId(i));
            }
            i = slot.prev;
        }
    }

    /// Visit up to `max` slots starting at `cursor`, calling `f` on each live flow; returns
    /// where the next sweep should start (wrapping around).
    pub fn sweep(&mut self, cursor: usize, max: usize, mut f: impl FnMut(&mut Flow)) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut i = cursor % n;
        for _ in 0..max.min(n) {
            if let Some(flow) = self.slots[i].flow.as_mut() {
                f(flow);
            }
            i = (i + 1) % n;
        }
        i
    }

    /// All live flows (for shutdown).
    pub fn ids(&self) -> Vec<FlowId> {
        self.index.values().map(|&i| FlowId(i)).collect()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.slots[i as usize].prev, self.slots[i as usize].next);
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.slots[i as usize].prev = NIL;
        self.slots[i as usize].next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        self.slots[i as usize].prev = NIL;
        self.slots[i as usize].next = self.head;
        if self.head != NIL {
            self.slots[self.head as usize].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
}
/// What one tracked flow costs the table: its slot, and its entry in the index
/// (hashbrown: key, value and one control byte, at most 7/8 full).
pub const FLOW_BYTES: usize =
    std::mem::size_of::<Slot>() + (std::mem::size_of::<(FlowKey, u32)>() + 1) * 8 / 7 + 1;

// A tracked flow costs at most 1 KiB (issue 27), and so does a flow's decoder (its own
// allocation, made when the flow carries application data): a field that breaks either
// breaks the build. (Sizes today: slot 832 bytes, index entry 80, decoder 912.)
const _: () = assert!(FLOW_BYTES <= 1024);
const _: () = assert!(std::mem::size_of::<crate::proto::Decoder>() <= 1024);
