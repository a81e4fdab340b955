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
    fn since_saturates() {
        assert_eq!(Timestamp(5).since(Timestamp(9)), 0);
        assert_eq!(Timestamp(9).since(Timestamp(5)), 4);
    }
}
