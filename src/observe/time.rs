//! Timestamps for log lines without a date library: HAProxy's
//! `22/Nov/2026:05:01:02.123` and the syslog forms, all in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub micros: u32,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's civil_from_days).
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

impl Civil {
    pub fn from_system(t: SystemTime) -> Civil {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() as i64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400) as u32;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            min: rem / 60 % 60,
            sec: rem % 60,
            micros: d.subsec_micros(),
        }
    }

    fn mon(&self) -> &'static str {
        MONTHS[(self.month.clamp(1, 12) - 1) as usize]
    }

    /// HAProxy's accept date: `22/Nov/2026:05:01:02.123`.
    pub fn haproxy(&self) -> String {
        format!(
            "{:02}/{}/{}:{:02}:{:02}:{:02}.{:03}",
            self.day,
            self.mon(),
            self.year,
            self.hour,
            self.min,
            self.sec,
            self.micros / 1000
        )
    }

    /// RFC 3164: `Nov 22 05:01:02` (day space-padded).
    pub fn rfc3164(&self) -> String {
        format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            self.mon(),
            self.day,
            self.hour,
            self.min,
            self.sec
        )
    }

    /// RFC 5424 / RFC 3339: `2026-11-22T05:01:02.123456+00:00`.
    pub fn rfc5424(&self) -> String {
        format!(
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            self.year, self.month, self.day, self.hour, self.min, self.sec, self.micros
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_323_662_123);
        let c = Civil::from_system(t);
        assert_eq!(c.haproxy(), "22/Nov/2026:05:01:02.123");
        assert_eq!(c.rfc3164(), "Nov 22 05:01:02");
        assert_eq!(c.rfc5424(), "2026-11-22T05:01:02.123000+00:00");
        let leap = Civil::from_system(UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let epoch = Civil::from_system(UNIX_EPOCH);
        assert_eq!(epoch.rfc3164(), "Jan  1 00:00:00");
    }
}
