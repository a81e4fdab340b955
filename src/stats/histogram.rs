//! Duration histograms: explicit bucket bounds, or OpenTelemetry base-2 exponential
//! buckets that rescale themselves to stay within a bucket budget.
//!
//! Values are seconds (OpenTelemetry duration units). Both kinds merge (worker deltas into
//! the exporter's store), so a worker's tick costs one map merge, not one call per value.

use std::sync::Arc;

/// How histograms bucket their values (one choice for all histograms of an exporter).
#[derive(Clone, Debug, PartialEq)]
pub enum HistogramSpec {
    /// Upper bounds of the buckets, ascending; one more bucket holds everything above.
    Explicit(Arc<[f64]>),
    /// Base-2 exponential buckets: start at `max_scale` and halve the resolution whenever
    /// more than `max_size` buckets would be needed.
    Exponential { max_scale: i32, max_size: usize },
}

impl HistogramSpec {
    pub fn new_histogram(&self) -> Histogram {
        let buckets = match self {
            HistogramSpec::Explicit(b) => Buckets::Explicit {
                bounds: b.clone(),
                counts: vec![0; b.len() + 1],
            },
            HistogramSpec::Exponential {
                max_scale,
                max_size,
            } => Buckets::Exponential(ExpBuckets {
                scale: *max_scale,
                max_size: *max_size,
                zero_count: 0,
                offset: 0,
                counts: Vec::new(),
            }),
        };
        Histogram {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub buckets: Buckets,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Buckets {
    Explicit {
        bounds: Arc<[f64]>,
        counts: Vec<u64>,
    },
    Exponential(ExpBuckets),
}

/// Positive-value base-2 exponential buckets (durations are never negative). Bucket `i`
/// holds values in `(base^i, base^(i+1)]` with `base = 2^(2^-scale)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpBuckets {
    pub scale: i32,
    pub max_size: usize,
    /// Values equal to zero.
    pub zero_count: u64,
    /// Index of `counts[0]`.
    pub offset: i32,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn record(&mut self, v: f64) {
        let v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        match &mut self.buckets {
            Buckets::Explicit { bounds, counts } => {
                // Bounds are inclusive upper limits, as OpenTelemetry and Prometheus define.
                let i = bounds.partition_point(|&b| b < v);
                counts[i] += 1;
            }
            Buckets::Exponential(e) => e.record(v, 1),
        }
    }

    /// Add `other` (same spec) into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        match (&mut self.buckets, &other.buckets) {
            (Buckets::Explicit { counts: a, .. }, Buckets::Explicit { counts: b, .. }) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
            }
            (Buckets::Exponential(a), Buckets::Exponential(b)) => a.merge(b),
            // Specs never change within one exporter; nothing sensible to merge otherwise.
            _ => {}
        }
    }

    /// Cumulative `(upper bound, count <= bound)` pairs ending with `+Inf`, the Prometheus
    /// classic-histogram view (exponential buckets become their boundaries).
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        let mut acc = 0;
        match &self.buckets {
            Buckets::Explicit { bounds, counts } => {
                for (i, c) in counts.iter().enumerate() {
                    acc += c;
                    out.push((bounds.get(i).copied().unwrap_or(f64::INFINITY), acc));
                }
            }
            Buckets::Exponential(e) => {
                acc = e.zero_count;
                out.push((0.0, acc));
                for (i, c) in e.counts.iter().enumerate() {
                    acc += c;
                    out.push((e.upper_bound(e.offset + i as i32), acc));
                }
                out.push((f64::INFINITY, acc));
            }
        }
        out
    }
}

/// The `q` quantile (0..=1) of what `now` recorded since `base` (the same histogram
/// earlier; `None`: since it started), from the buckets: linear within the bucket the rank
/// falls in, as Prometheus' `histogram_quantile` does, then kept within `now`'s min and
/// max. `None` when nothing was recorded in between.
///
/// Works on the cumulative bucket lists, so it also holds when an exponential histogram
/// was downscaled between the two instants: a coarser scale's bounds are a subset of a
/// finer one's, so `base`'s count at each of `now`'s bounds is exact.
pub fn quantile_since(now: &Histogram, base: Option<&Histogram>, q: f64) -> Option<f64> {
    let cum = now.cumulative_buckets();
    let base_cum = base.map(Histogram::cumulative_buckets).unwrap_or_default();
    // `base`'s count up to `bound`: its last bucket list entry not above the bound.
    let base_at = |bound: f64| {
        base_cum
            .iter()
            .take_while(|(b, _)| *b <= bound)
            .last()
            .map_or(0, |(_, c)| *c)
    };
    let delta: Vec<(f64, u64)> = cum
        .iter()
        .map(|&(b, c)| (b, c.saturating_sub(base_at(b))))
        .collect();
    let total = delta.last().map_or(0, |(_, c)| *c);
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let i = delta.iter().position(|(_, c)| *c as f64 >= rank)?;
    let (lower, below) = match i {
        0 => (0.0, 0),
        _ => delta[i - 1],
    };
    let (upper, upto) = delta[i];
    let v = if upper.is_infinite() {
        // The overflow bucket has no upper bound: its lower one, as Prometheus answers.
        lower
    } else if upto == below {
        upper
    } else {
        lower + (upper - lower) * (rank - below as f64) / (upto - below) as f64
    };
    let (lo, hi) = (now.min, now.max);
    Some(if lo <= hi { v.clamp(lo, hi) } else { v })
}

impl ExpBuckets {
    /// Bucket index of `v > 0` at `scale`.
    fn index(v: f64, scale: i32) -> i32 {
        // Exact at powers of two (where float log rounding would misplace the value):
        // 2^k is the upper (inclusive) bound of bucket (k << scale) - 1.
        let (mant, exp) = frexp(v);
        if mant == 0.5 {
            let k = exp - 1;
            return if scale >= 0 {
                (k << scale) - 1
            } else {
                -((-k) >> -scale) - 1
            };
        }
        let factor = (scale as f64).exp2() / std::f64::consts::LN_2;
        (v.ln() * factor).ceil() as i32 - 1
    }

    pub fn upper_bound(&self, index: i32) -> f64 {
        ((index + 1) as f64 * (-self.scale as f64).exp2()).exp2()
    }

    fn record(&mut self, v: f64, n: u64) {
        if v == 0.0 {
            self.zero_count += n;
            return;
        }
        let mut idx = Self::index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        let lo = self.offset.min(idx);
        let hi = (self.offset + self.counts.len() as i32 - 1).max(idx);
        let shift = Self::shift_needed(lo, hi, self.max_size);
        if shift > 0 {
            self.downscale(shift);
            idx = Self::index(v, self.scale);
        }
        self.add_at(idx, n);
    }

    /// How many halvings make `lo..=hi` fit in `max_size` buckets.
    fn shift_needed(mut lo: i32, mut hi: i32, max_size: usize) -> u32 {
        let mut shift = 0;
        while (hi - lo + 1) as usize > max_size.max(1) {
            lo >>= 1;
            hi >>= 1;
            shift += 1;
        }
        shift
    }

    fn downscale(&mut self, shift: u32) {
        if shift == 0 {
            return;
        }
        self.scale -= shift as i32;
        if self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> shift;
        let last = (self.offset + self.counts.len() as i32 - 1) >> shift;
        let mut counts = vec![0u64; (last - new_offset + 1) as usize];
        for (i, c) in self.counts.iter().enumerate() {
            let j = ((self.offset + i as i32) >> shift) - new_offset;
            counts[j as usize] += c;
        }
        self.offset = new_offset;
        self.counts = counts;
    }

    /// Add `n` at `idx`, growing the vector (the caller made sure it fits).
    fn add_at(&mut self, idx: i32, n: u64) {
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = idx;
        }
        let i = (idx - self.offset) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
    }

    fn merge(&mut self, other: &ExpBuckets) {
        self.zero_count += other.zero_count;
        if other.counts.is_empty() {
            return;
        }
        // Bring both to the coarser scale, then coarser still if the union is too wide.
        if other.scale < self.scale {
            self.downscale((self.scale - other.scale) as u32);
        }
        let extra = (other.scale - self.scale) as u32;
        let o_lo = other.offset >> extra;
        let o_hi = (other.offset + other.counts.len() as i32 - 1) >> extra;
        let (lo, hi) = if self.counts.is_empty() {
            (o_lo, o_hi)
        } else {
            (
                self.offset.min(o_lo),
                (self.offset + self.counts.len() as i32 - 1).max(o_hi),
            )
        };
        let shift = Self::shift_needed(lo, hi, self.max_size);
        self.downscale(shift);
        let total_shift = extra + shift;
        if self.counts.is_empty() {
            self.offset = other.offset >> total_shift;
        }
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add_at((other.offset + i as i32) >> total_shift, c);
            }
        }
    }
}

/// `v = mant * 2^exp` with `mant` in [0.5, 1) for positive normal `v`.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 || exp == 0x7ff {
        return (v, 0);
    }
    let mant = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (mant, exp - 1022)
}

/// Default bucket bounds (seconds): the OpenTelemetry HTTP semantic conventions'
/// recommendation (0.005 … 10) with eight finer bounds below it (10 µs … 2.5 ms). Calls
/// between pods of one node take 5 µs to 2 ms on the wire: with the semconv list alone
/// every one of them lands in the first bucket, and any quantile over them reads as
/// ~2.5 ms (the middle of 0..5 ms), hiding a 100x difference.
pub const DEFAULT_BOUNDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, // sub-ms: node-local
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit() -> HistogramSpec {
        HistogramSpec::Explicit(Arc::from(&[0.1, 0.5, 1.0][..]))
    }

    #[test]
    fn explicit_bounds_are_inclusive_upper_limits() {
        let mut h = explicit().new_histogram();
        for v in [0.05, 0.1, 0.2, 0.5, 0.7, 1.0, 3.0, 0.0] {
            h.record(v);
        }
        let Buckets::Explicit { counts, .. } = &h.buckets else {
            panic!()
        };
        assert_eq!(counts, &[3, 2, 2, 1]);
        assert_eq!(h.count, 8);
        assert!((h.sum - 5.55).abs() < 1e-9);
        assert_eq!((h.min, h.max), (0.0, 3.0));
        assert_eq!(
            h.cumulative_buckets(),
            [(0.1, 3), (0.5, 5), (1.0, 7), (f64::INFINITY, 8)]
        );
    }

    #[test]
    fn quantiles_over_all_and_since_an_earlier_instant() {
        let mut h = explicit().new_histogram();
        assert_eq!(quantile_since(&h, None, 0.5), None);
        for _ in 0..10 {
            h.record(0.05);
        }
        // All ten in (0, 0.1]: the median interpolates to the middle, kept within min/max.
        assert_eq!(quantile_since(&h, None, 0.5), Some(0.05));
        let base = h.clone();
        for _ in 0..4 {
            h.record(0.8);
        }
        // Since `base`: four values in (0.5, 1.0], clamped to the max seen (0.8).
        let p50 = quantile_since(&h, Some(&base), 0.5).unwrap();
        assert!((0.5..=0.8).contains(&p50), "{p50}");
        assert_eq!(quantile_since(&h, Some(&h), 0.5), None, "nothing since");
        // Over everything, the median is still in the first bucket, the p99 in the third.
        assert!(quantile_since(&h, None, 0.5).unwrap() <= 0.1);
        assert!(quantile_since(&h, None, 0.99).unwrap() > 0.5);
        // Beyond the last bound: its lower bound, raised to the least value seen.
        let mut slow = explicit().new_histogram();
        slow.record(3.0);
        slow.record(2.0);
        assert_eq!(quantile_since(&slow, None, 0.99), Some(2.0));
    }

    #[test]
    fn quantiles_since_survive_an_exponential_downscale() {
        let spec = HistogramSpec::Exponential {
            max_scale: 20,
            max_size: 8,
        };
        let mut h = spec.new_histogram();
        h.record(0.001);
        let base = h.clone();
        for _ in 0..9 {
            h.record(2.0);
        }
        h.record(0.001);
        let Buckets::Exponential(e) = &h.buckets else {
            panic!()
        };
        assert!(e.scale < 20, "downscaled since base");
        let p50 = quantile_since(&h, Some(&base), 0.5).unwrap();
        assert!((1.0..=2.0).contains(&p50), "{p50}");
    }

    #[test]
    fn explicit_merge_adds_counts() {
        let mut a = explicit().new_histogram();
        let mut b = explicit().new_histogram();
        a.record(0.2);
        b.record(0.2);
        b.record(2.0);
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.cumulative_buckets()[1], (0.5, 2));
        assert_eq!(a.max, 2.0);
    }

    #[test]
    fn exponential_indexes_match_the_definition() {
        // Scale 0: base 2, bucket i = (2^i, 2^(i+1)].
        assert_eq!(ExpBuckets::index(1.0, 0), -1);
        assert_eq!(ExpBuckets::index(1.5, 0), 0);
        assert_eq!(ExpBuckets::index(2.0, 0), 0);
        assert_eq!(ExpBuckets::index(2.1, 0), 1);
        assert_eq!(ExpBuckets::index(0.25, 0), -3);
        // Scale 1: base sqrt(2).
        assert_eq!(ExpBuckets::index(2.0, 1), 1);
        assert_eq!(ExpBuckets::index(1.2, 1), 0);
        assert_eq!(ExpBuckets::index(1.5, 1), 1);
        for scale in [-2, 0, 3, 8, 20] {
            for v in [1e-6, 0.003, 0.7, 1.0, 13.0, 1e4] {
                let e = ExpBuckets {
                    scale,
                    max_size: 160,
                    zero_count: 0,
                    offset: 0,
                    counts: vec![],
                };
                let i = ExpBuckets::index(v, scale);
                let (lo, hi) = (e.upper_bound(i - 1), e.upper_bound(i));
                assert!(
                    lo < v * (1.0 + 1e-12) && v <= hi * (1.0 + 1e-12),
                    "{v} {scale}"
                );
            }
        }
    }

    #[test]
    fn exponential_downscales_to_stay_within_max_size() {
        let spec = HistogramSpec::Exponential {
            max_scale: 20,
            max_size: 4,
        };
        let mut h = spec.new_histogram();
        h.record(1.5);
        let Buckets::Exponential(e) = &h.buckets else {
            panic!()
        };
        assert_eq!(e.scale, 20, "one value keeps the finest scale");
        for v in [0.001, 1000.0, 3.0, 0.0] {
            h.record(v);
        }
        let Buckets::Exponential(e) = &h.buckets else {
            panic!()
        };
        assert!(e.counts.len() <= 4, "{e:?}");
        assert_eq!(e.zero_count, 1);
        assert_eq!(e.counts.iter().sum::<u64>(), 4);
        // Every value still lies in the bucket that counts it.
        for v in [0.001, 1.5, 3.0, 1000.0] {
            let i = ExpBuckets::index(v, e.scale);
            assert!(i >= e.offset && i < e.offset + e.counts.len() as i32);
            assert!(e.counts[(i - e.offset) as usize] > 0);
        }
        assert_eq!(*h.cumulative_buckets().last().unwrap(), (f64::INFINITY, 5));
    }

    #[test]
    fn exponential_merge_equals_recording_everything_in_one() {
        let spec = HistogramSpec::Exponential {
            max_scale: 10,
            max_size: 20,
        };
        let values_a = [0.002, 0.004, 0.01, 0.3];
        let values_b = [0.5, 2.0, 40.0, 0.0, 0.003];
        let mut a = spec.new_histogram();
        let mut b = spec.new_histogram();
        let mut all = spec.new_histogram();
        for v in values_a {
            a.record(v);
            all.record(v);
        }
        for v in values_b {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        let (Buckets::Exponential(m), Buckets::Exponential(x)) = (&a.buckets, &all.buckets) else {
            panic!()
        };
        assert_eq!(m.scale, x.scale);
        assert_eq!(m.zero_count, 1);
        // Same scale, same counts per value bucket.
        let dense = |e: &ExpBuckets| {
            e.counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (e.offset + i as i32, *c))
                .collect::<Vec<_>>()
        };
        assert_eq!(dense(m), dense(x));
        assert_eq!(a.count, 9);
    }
}
