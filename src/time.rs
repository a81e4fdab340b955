//! Packet timestamps.
//!
//! Everything in podtap is timed by the packets themselves (capture timestamps), never by
//! the wall clock, so replaying a file gives the same durations as capturing it live.

use std::fmt;

/// Nanoseconds since the Unix epoch, as stamped on the frame by the capture source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as u64),
        )
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Nanoseconds from `earlier` to `self`; zero when the capture reordered them.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn add_nanos(self, ns: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ns))
    }

    /// The current wall-clock time, for live capture sources that stamp frames themselves.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_secs_nanos(d.as_secs(), d.subsec_nanos())
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-23T03:52:43.123456789Z`.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `bpf_ktime_get_ns` reads, so the XDP
/// program's frame stamps compare with it. A vDSO call, no system call.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut t) };
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// Turns CLOCK_MONOTONIC readings (kernel frame stamps) into wall-clock [`Timestamp`]s.
///
/// The two clocks advance together (NTP's frequency corrections apply to both); they
/// part only when the wall clock is stepped. So the offset between them is measured
/// once and re-measured every [`MonoToWall::REFRESH_NS`] of monotonic time, which picks
/// up a step within that time and costs a few vDSO reads per second, never a system
/// call per frame.
#[derive(Clone, Copy, Debug)]
pub struct MonoToWall {
    /// Wall clock minus monotonic clock, in nanoseconds.
    offset_ns: i64,
    /// Monotonic time of the last measurement.
    measured_at: u64,
}

impl MonoToWall {
    /// How often the offset is measured again.
    pub const REFRESH_NS: u64 = 1_000_000_000;

    /// A converter with the offset measured now.
    pub fn new() -> MonoToWall {
        let mut c = MonoToWall {
            offset_ns: 0,
            measured_at: 0,
        };
        c.measure();
        c
    }

    /// A converter with a known offset (wall minus monotonic) that is never re-measured
    /// before `measured_at + REFRESH_NS`: for tests.
    pub fn with_offset(offset_ns: i64, measured_at: u64) -> MonoToWall {
        MonoToWall {
            offset_ns,
            measured_at,
        }
    }

    pub fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// The wall-clock time of monotonic instant `mono_ns`.
    #[inline]
    pub fn to_wall(&self, mono_ns: u64) -> Timestamp {
        Timestamp(mono_ns.saturating_add_signed(self.offset_ns))
    }

    /// Re-measure the offset when the last measurement is older than `REFRESH_NS` at
    /// monotonic time `now_mono`. Returns whether it measured.
    #[inline]
    pub fn refresh(&mut self, now_mono: u64) -> bool {
        if now_mono.saturating_sub(self.measured_at) < Self::REFRESH_NS {
            return false;
        }
        self.measure();
        true
    }

    /// The wall clock read between two monotonic reads, three times; the tightest pair
    /// brackets the wall reading best (a preemption between the reads spoils only its
    /// own try).
    fn measure(&mut self) {
        let mut best = (u64::MAX, 0i64, 0u64);
        for _ in 0..3 {
            let m1 = monotonic_ns();
            let r = clock_ns(libc::CLOCK_REALTIME);
            let m2 = monotonic_ns();
            let width = m2.saturating_sub(m1);
            if width < best.0 {
                let mid = m1 + width / 2;
                best = (width, r as i64 - mid as i64, m2);
            }
        }
        self.offset_ns = best.1;
        self.measured_at = best.2;
    }
}

impl Default for MonoToWall {
    fn default() -> Self {
        MonoToWall::new()
    }
}

/// Display adapter that formats a timestamp as RFC 3339 without allocating.
pub struct Rfc3339(Timestamp);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.0;
        let secs = ns / 1_000_000_000;
        let nanos = ns % 1_000_000_000;
        let days = (secs / 86_400) as i64;
        let sod = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm, public domain).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanos() {
        assert_eq!(
            Timestamp(0).rfc3339().to_string(),
            "1970-01-01T00:00:00.000000000Z"
        );
        // 2000-02-29 (leap day) 12:34:56.000000789
        let t = Timestamp::from_secs_nanos(951_827_696, 789);
        assert_eq!(t.rfc3339().to_string(), "2000-02-29T12:34:56.000000789Z");
        let t = Timestamp::from_secs_nanos(1_795_405_963, 123_456_789);
        assert_eq!(t.rfc3339().to_string(), "2026-11-23T03:52:43.123456789Z");
    }

    #[test]
    fn monotonic_converts_to_wall_time() {
        let c = MonoToWall::with_offset(1_700_000_000_000_000_000, 5);
        assert_eq!(c.to_wall(0).0, 1_700_000_000_000_000_000);
        assert_eq!(c.to_wall(123_456_789).0, 1_700_000_000_123_456_789);
        // A (theoretical) negative offset never wraps below the epoch.
        assert_eq!(MonoToWall::with_offset(-10, 0).to_wall(3).0, 0);

        // The measured offset turns the monotonic clock into the wall clock: a monotonic
        // reading taken between two wall readings converts to a time between them.
        let c = MonoToWall::new();
        let before = Timestamp::now();
        let t = c.to_wall(monotonic_ns());
        let after = Timestamp::now();
        // The wall clock has microsecond resolution on some systems: allow 1 ms.
        assert!(
            t.0 + 1_000_000 >= before.0 && t.0 <= after.0 + 1_000_000,
            "{before:?} <= {t:?} <= {after:?}"
        );
    }

    #[test]
    fn offset_is_remeasured_only_after_the_refresh_interval() {
        let now = monotonic_ns();
        let mut c = MonoToWall::with_offset(42, now);
        assert!(!c.refresh(now + MonoToWall::REFRESH_NS - 1));
        assert_eq!(c.offset_ns(), 42, "kept between refreshes");
        assert!(c.refresh(now + MonoToWall::REFRESH_NS));
        let real = MonoToWall::new().offset_ns();
        assert!(
            (c.offset_ns() - real).abs() < 1_000_000,
            "re-measured: {} vs {real}",
            c.offset_ns()
        );
    }

    #[test]
    fn since_saturates() {
        assert_eq!(Timestamp(5).since(Timestamp(9)), 0);
        assert_eq!(Timestamp(9).since(Timestamp(5)), 4);
    }
}
