//! A bounded set of metric series: counters and histograms keyed by metric and attributes.
//!
//! Workers record into their own `Store` and hand it over each tick as a delta; the
//! exporter merges deltas into its stores. Each metric holds at most `max_series`
//! attribute sets; further ones fold into the series `otel.metric.overflow=true` (as the
//! OpenTelemetry SDK specification prescribes) and are counted in `overflowed`.

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, Equivalent, HashTable};
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::histogram::{Histogram, HistogramSpec};
use super::metrics::{Kind, Metric};

/// An attribute value that can key a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Str(CompactString),
    Int(i64),
    Bool(bool),
    /// An address, kept binary so the per-transaction key neither formats nor hashes a
    /// string; it is written as text (a string attribute) when exported.
    Ip(IpAddr),
    /// A string shared with pod metadata (a pod's name, namespace, service): recording a
    /// series copies a pointer, never the string.
    Shared(std::sync::Arc<str>),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Str(s) => f.write_str(s),
            Val::Int(i) => write!(f, "{i}"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Ip(a) => write!(f, "{a}"),
            Val::Shared(s) => f.write_str(s),
        }
    }
}

/// Attributes of one series, in the order the recorder adds them (a fixed order per
/// metric, so equal sets compare equal).
pub type Attrs = Vec<(&'static str, Val)>;

pub const OVERFLOW_KEY: &str = "otel.metric.overflow";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesKey {
    pub metric: Metric,
    pub attrs: Attrs,
}

/// The hash of a series: its metric and attribute values. The names are left out: a
/// metric's recorder adds them in a fixed order, so they add no information, and hashing
/// them doubled the cost of a lookup (one per transaction). Equal keys still hash equal.
fn hash_series<H: std::hash::Hasher>(metric: Metric, attrs: &[(&'static str, Val)], h: &mut H) {
    use std::hash::Hash;
    metric.hash(h);
    h.write_usize(attrs.len());
    for (_, v) in attrs {
        v.hash(h);
    }
}

impl std::hash::Hash for SeriesKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_series(self.metric, &self.attrs, h);
    }
}

/// A borrowed series key: looks a series up without building an owned `Attrs` (the
/// per-transaction path allocates only when a series is new). Hashes exactly like
/// [`SeriesKey`].
struct SeriesRef<'a> {
    metric: Metric,
    attrs: &'a [(&'static str, Val)],
}

impl std::hash::Hash for SeriesRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_series(self.metric, self.attrs, h);
    }
}

impl Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.metric == key.metric && self.attrs == &key.attrs[..]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    Histogram(Histogram),
    Gauge(i64),
}

#[derive(Clone, Debug)]
pub struct Store {
    spec: HistogramSpec,
    max_series: usize,
    /// A table with explicit hashes rather than a map: a lookup hashes the borrowed key
    /// once, also when it misses and the series is inserted.
    series: HashTable<(SeriesKey, Value)>,
    hasher: DefaultHashBuilder,
    per_metric: [usize; Metric::COUNT],
    /// Values folded into an overflow series since this store was made.
    pub overflowed: u64,
}

impl Store {
    pub fn new(spec: HistogramSpec, max_series: usize) -> Store {
        Store {
            spec,
            max_series: max_series.max(1),
            series: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            per_metric: [0; Metric::COUNT],
            overflowed: 0,
        }
    }

    /// An empty store with the same settings.
    pub fn empty_like(&self) -> Store {
        Store::new(self.spec.clone(), self.max_series)
    }

    /// Move the contents out, leaving this store empty.
    pub fn take(&mut self) -> Store {
        let empty = self.empty_like();
        std::mem::replace(self, empty)
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.overflowed == 0
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    fn slot(&mut self, metric: Metric, attrs: &[(&'static str, Val)]) -> &mut Value {
        const OVERFLOW: &[(&str, Val)] = &[(OVERFLOW_KEY, Val::Bool(true))];
        let hasher = &self.hasher;
        let hash = hasher.hash_one(SeriesRef { metric, attrs });
        let eq =
            |attrs| move |(k, _): &(SeriesKey, Value)| SeriesRef { metric, attrs }.equivalent(k);
        let mut table = match self.series.find_entry(hash, eq(attrs)) {
            Ok(found) => return &mut found.into_mut().1,
            Err(absent) => absent.into_table(),
        };
        let m = metric as usize;
        let (attrs, hash) = if self.per_metric[m] < self.max_series {
            self.per_metric[m] += 1;
            (attrs, hash)
        } else {
            self.overflowed += 1;
            let hash = hasher.hash_one(SeriesRef {
                metric,
                attrs: OVERFLOW,
            });
            match table.find_entry(hash, eq(OVERFLOW)) {
                Ok(found) => return &mut found.into_mut().1,
                Err(absent) => table = absent.into_table(),
            }
            (OVERFLOW, hash)
        };
        let v = match metric.def().kind {
            Kind::Counter => Value::Counter(0),
            Kind::Histogram => Value::Histogram(self.spec.new_histogram()),
            Kind::Gauge => Value::Gauge(0),
        };
        let key = SeriesKey {
            metric,
            attrs: attrs.to_vec(),
        };
        let rehash = |(k, _): &(SeriesKey, Value)| hasher.hash_one(k);
        &mut table.insert_unique(hash, (key, v), rehash).into_mut().1
    }

    /// Count `n` in the series `metric` + `attrs` (copied only if the series is new).
    pub fn add(&mut self, metric: Metric, attrs: &[(&'static str, Val)], n: u64) {
        if let Value::Counter(c) = self.slot(metric, attrs) {
            *c += n;
        }
    }

    /// Record a duration in the series `metric` + `attrs` (copied only if it is new).
    pub fn observe(&mut self, metric: Metric, attrs: &[(&'static str, Val)], seconds: f64) {
        if let Value::Histogram(h) = self.slot(metric, attrs) {
            h.record(seconds);
        }
    }

    /// Set the gauge `metric` + `attrs` to `v` (copied only if the series is new).
    pub fn set(&mut self, metric: Metric, attrs: &[(&'static str, Val)], v: i64) {
        if let Value::Gauge(g) = self.slot(metric, attrs) {
            *g = v;
        }
    }

    /// Fold `other` into this store (bounded the same way).
    pub fn merge(&mut self, other: Store) {
        self.overflowed += other.overflowed;
        for (k, v) in other.series {
            let is_overflow = k.attrs.len() == 1 && k.attrs[0].0 == OVERFLOW_KEY;
            let before = self.overflowed;
            let slot = self.slot(k.metric, &k.attrs);
            match (slot, &v) {
                (Value::Counter(a), Value::Counter(b)) => *a += b,
                (Value::Histogram(a), Value::Histogram(b)) => a.merge(b),
                // The newer value (deltas are merged in the order they were taken).
                (Value::Gauge(a), Value::Gauge(b)) => *a = *b,
                _ => {}
            }
            // Folding here moves a whole series: count its values, not one. An overflow
            // series of the delta was counted in `other.overflowed` already.
            if self.overflowed != before {
                self.overflowed = if is_overflow {
                    before
                } else {
                    before + v.count()
                };
            }
        }
    }

    /// Keep only the series `keep` accepts (e.g. those of an interface no longer
    /// captured are removed, so pod churn does not pile up dead series).
    pub fn retain(&mut self, mut keep: impl FnMut(&SeriesKey) -> bool) {
        let per_metric = &mut self.per_metric;
        self.series.retain(|(k, _)| {
            let kept = keep(k);
            // The overflow series is not counted against the bound.
            let overflow = k.attrs.len() == 1 && k.attrs[0].0 == OVERFLOW_KEY;
            if !kept && !overflow {
                per_metric[k.metric as usize] -= 1;
            }
            kept
        });
    }

    /// Every series, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &Value)> {
        self.series.iter().map(|(k, v)| (k, v))
    }

    /// Series in a stable order (metric, then attributes).
    pub fn sorted(&self) -> Vec<(&SeriesKey, &Value)> {
        let mut v: Vec<_> = self.series.iter().map(|(k, v)| (k, v)).collect();
        v.sort_by(|a, b| (a.0.metric, &a.0.attrs).cmp(&(b.0.metric, &b.0.attrs)));
        v
    }

    pub fn get(&self, metric: Metric, attrs: &Attrs) -> Option<&Value> {
        let key = SeriesRef { metric, attrs };
        self.series
            .find(self.hasher.hash_one(&key), |(k, _)| key.equivalent(k))
            .map(|(_, v)| v)
    }
}

impl Value {
    /// Values recorded: the counter's total or the histogram's count (a gauge holds
    /// one value).
    pub fn count(&self) -> u64 {
        match self {
            Value::Counter(c) => *c,
            Value::Histogram(h) => h.count,
            Value::Gauge(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store(max: usize) -> Store {
        Store::new(HistogramSpec::Explicit(Arc::from(&[0.1, 1.0][..])), max)
    }

    fn a(route: &str) -> Attrs {
        vec![("http.route", Val::Str(route.into()))]
    }

    #[test]
    fn cardinality_overflow_folds_into_one_series() {
        let mut s = store(2);
        for r in ["/a", "/b", "/c", "/d", "/a"] {
            s.observe(Metric::HttpServerDuration, &a(r), 0.05);
        }
        // Another metric has its own budget.
        s.add(Metric::FlowIo, &a("/z"), 10);
        assert_eq!(s.len(), 4);
        assert_eq!(s.overflowed, 2);
        let overflow = vec![(OVERFLOW_KEY, Val::Bool(true))];
        assert_eq!(
            s.get(Metric::HttpServerDuration, &overflow)
                .unwrap()
                .count(),
            2
        );
        assert_eq!(
            s.get(Metric::HttpServerDuration, &a("/a")).unwrap().count(),
            2
        );
        assert_eq!(s.get(Metric::FlowIo, &a("/z")).unwrap().count(), 10);
    }

    #[test]
    fn merge_adds_and_respects_the_bound() {
        let mut total = store(2);
        let mut d1 = store(2);
        d1.add(Metric::FlowIo, &a("/a"), 5);
        d1.add(Metric::FlowIo, &a("/b"), 1);
        let mut d2 = store(2);
        d2.add(Metric::FlowIo, &a("/a"), 2);
        d2.add(Metric::FlowIo, &a("/c"), 7);
        total.merge(d1);
        total.merge(d2);
        assert_eq!(total.get(Metric::FlowIo, &a("/a")).unwrap().count(), 7);
        let overflow = vec![(OVERFLOW_KEY, Val::Bool(true))];
        assert_eq!(total.get(Metric::FlowIo, &overflow).unwrap().count(), 7);
        assert_eq!(total.overflowed, 7);
    }

    #[test]
    fn a_gauge_keeps_the_newest_value() {
        let mut total = store(4);
        let mut d1 = store(4);
        d1.set(Metric::ProbeUp, &a("/a"), 1);
        let mut d2 = store(4);
        d2.set(Metric::ProbeUp, &a("/a"), 0);
        total.merge(d1);
        assert_eq!(total.get(Metric::ProbeUp, &a("/a")), Some(&Value::Gauge(1)));
        total.merge(d2);
        assert_eq!(total.get(Metric::ProbeUp, &a("/a")), Some(&Value::Gauge(0)));
        // Registering at zero does not overwrite a value.
        total.set(Metric::ProbeUp, &a("/b"), 1);
        total.add(Metric::ProbeUp, &a("/b"), 0);
        assert_eq!(total.get(Metric::ProbeUp, &a("/b")), Some(&Value::Gauge(1)));
    }
}
