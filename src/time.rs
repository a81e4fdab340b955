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

/// Formats timestamps as RFC 3339 bytes (the same text as [`Rfc3339`]) for the JSON lines
/// writer, which stamps two per record. Records arrive in bursts within one second, so the
/// date and time of day, which take divisions and a calendar computation, are kept for the
/// last second seen; a timestamp in that second only formats its nanoseconds.
#[derive(Clone, Debug)]
pub struct Rfc3339Cache {
    /// Whole seconds since the epoch of `prefix`.
    secs: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `secs`.
    prefix: [u8; 20],
}

impl Default for Rfc3339Cache {
    fn default() -> Self {
        Rfc3339Cache {
            secs: 0,
            prefix: *b"1970-01-01T00:00:00.",
        }
    }
}

impl Rfc3339Cache {
    /// Length of every formatted timestamp: years stay within four digits for all u64
    /// nanosecond values (the last is in 2554).
    pub const LEN: usize = 30;

    /// `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    #[inline]
    pub fn format(&mut self, t: Timestamp) -> [u8; Self::LEN] {
        let secs = t.0 / 1_000_000_000;
        let nanos = (t.0 % 1_000_000_000) as u32;
        if secs != self.secs {
            self.set_second(secs);
        }
        let mut out = [0u8; Self::LEN];
        out[..20].copy_from_slice(&self.prefix);
        // Nine digits: one, then four pairs.
        let (hi, lo) = (nanos / 100_000_000, nanos % 100_000_000);
        out[20] = b'0' + hi as u8;
        let (a, b) = (lo / 10_000, lo % 10_000);
        out[21..23].copy_from_slice(digits2(a / 100));
        out[23..25].copy_from_slice(digits2(a % 100));
        out[25..27].copy_from_slice(digits2(b / 100));
        out[27..29].copy_from_slice(digits2(b % 100));
        out[29] = b'Z';
        out
    }

    #[cold]
    fn set_second(&mut self, secs: u64) {
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let sod = (secs % 86_400) as u32;
        let p = &mut self.prefix;
        let y = y as u32; // 1970..=2554
        p[0..2].copy_from_slice(digits2(y / 100));
        p[2..4].copy_from_slice(digits2(y % 100));
        p[5..7].copy_from_slice(digits2(m));
        p[8..10].copy_from_slice(digits2(d));
        p[11..13].copy_from_slice(digits2(sod / 3600));
        p[14..16].copy_from_slice(digits2(sod / 60 % 60));
        p[17..19].copy_from_slice(digits2(sod % 60));
        self.secs = secs;
    }
}

/// "00" to "99".
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// The two decimal digits of `n` (below 100).
#[inline(always)]
pub fn digits2(n: u32) -> &'static [u8; 2] {
    let i = n as usize * 2;
    DIGIT_PAIRS[i..i + 2].try_into().expect("two bytes")
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

    /// Reference: the civil date of a day count by walking years and months one by one
    /// (no shared code with the formatter).
    fn leap(y: u64) -> bool {
        (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
    }

    fn naive_date(mut days: u64) -> (u64, u64, u64) {
        let mut y = 1970;
        loop {
            let n = if leap(y) { 366 } else { 365 };
            if days < n {
                break;
            }
            days -= n;
            y += 1;
        }
        let months = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut m = 0;
        while days >= months[m] {
            days -= months[m];
            m += 1;
        }
        (y, m as u64 + 1, days + 1)
    }

    fn reference(ns: u64) -> String {
        let secs = ns / 1_000_000_000;
        let (y, mo, d) = naive_date(secs / 86_400);
        let sod = secs % 86_400;
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            ns % 1_000_000_000
        )
    }

    #[test]
    fn cached_format_matches_the_reference_across_boundaries() {
        let mut c = Rfc3339Cache::default();
        let mut check = |ns: u64| {
            let got = c.format(Timestamp(ns));
            let want = reference(ns);
            assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{ns}");
            assert_eq!(Timestamp(ns).rfc3339().to_string(), want, "{ns}");
        };
        const S: u64 = 1_000_000_000;
        const DAY: u64 = 86_400 * S;
        // The epoch, the first value the cache holds, and the largest timestamp.
        check(0);
        check(999_999_999);
        check(S);
        check(u64::MAX);
        check(u64::MAX - 999_999_999);
        // Around midnight of every day boundary of interest: month ends, leap days
        // (2000 and 2024 are leap years, 2100 is not, 2400 is), year ends.
        let days_to = |y: u64, m: u64, d: u64| {
            let mut n: u64 = (1970..y).map(|y| if leap(y) { 366 } else { 365 }).sum();
            let feb = if leap(y) { 29 } else { 28 };
            n += [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][..m as usize - 1]
                .iter()
                .sum::<u64>();
            let n = n + d - 1;
            assert_eq!(naive_date(n), (y, m, d));
            n
        };
        for (y, m, d) in [
            (1970, 1, 1),
            (1972, 2, 29),
            (1972, 3, 1),
            (1999, 12, 31),
            (2000, 2, 28),
            (2000, 2, 29),
            (2000, 3, 1),
            (2023, 12, 31),
            (2024, 2, 29),
            (2024, 3, 1),
            (2024, 12, 31),
            (2025, 1, 1),
            (2026, 11, 30),
            (2100, 2, 28),
            (2100, 3, 1),
            (2400, 2, 29),
        ] {
            let day = days_to(y, m, d) * DAY;
            for ns in [
                day.saturating_sub(1),
                day.saturating_sub(S),
                day,
                day + 1,
                day + 999_999_999,
                day + S,
                day + DAY - 1,
                day + 3_723 * S + 45_006_007, // 01:02:03.045006007
            ] {
                check(ns);
            }
        }
        // Forwards and backwards through a day in uneven steps: the cache is replaced,
        // reused and replaced again, including going back to an earlier second.
        let start = days_to(2024, 2, 28) * DAY;
        let mut ns = start;
        while ns < start + 2 * DAY {
            check(ns);
            check(ns.saturating_sub(S + 7));
            ns += 997 * S + 123_457;
        }
        // Every second of one minute crossing a leap day's end, twice each.
        let end = days_to(2024, 3, 1) * DAY;
        for s in 0..120 {
            check(end - 60 * S + s * S / 2);
        }
    }

    #[test]
    fn digit_pairs() {
        for n in 0..100 {
            assert_eq!(digits2(n), format!("{n:02}").as_bytes());
        }
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
