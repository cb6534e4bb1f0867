//! Wall-clock time as Docker prints it (RFC 3339 UTC with nanoseconds). The only place
//! reefd reads the clock for records.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as nanoseconds since the Unix epoch.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// RFC 3339 text of a Unix time in nanoseconds: `2026-11-23T16:42:15.123456789Z`.
pub fn rfc3339(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let frac = (nanos % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parse what `rfc3339` wrote back into Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<u128> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut dp = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut tp = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    let frac_ns: u128 = format!("{frac:0<9}")[..9].parse().ok()?;
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    u128::try_from(secs)
        .ok()
        .map(|s| s * 1_000_000_000 + frac_ns)
}

// Howard Hinnant's days <-> civil date algorithms (public domain), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = 1_795_884_135_123_456_789u128;
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-28T16:42:15.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    }
}
