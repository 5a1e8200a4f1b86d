//! Formatting epoch milliseconds the way CloudWatch alarm reasons print
//! datapoint times (`12/05/24 10:01:00`, i.e. dd/MM/yy HH:mm:ss in UTC),
//! without pulling a date library into a crate that never reads a clock.

/// `dd/MM/yy HH:mm:ss` (UTC) for an epoch-milliseconds timestamp.
pub(crate) fn reason_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{d:02}/{m:02}/{:02} {:02}:{:02}:{:02}",
        y.rem_euclid(100),
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(reason_time(0), "01/01/70 00:00:00");
        // 2024-05-12T10:01:00Z
        assert_eq!(reason_time(1_715_508_060_000), "12/05/24 10:01:00");
        // 2024-02-29T23:59:59.999Z (leap day)
        assert_eq!(reason_time(1_709_251_199_999), "29/02/24 23:59:59");
        assert_eq!(reason_time(-1000), "31/12/69 23:59:59");
        // 2000-03-01 (century leap year rule).
        assert_eq!(reason_time(951_868_800_000), "01/03/00 00:00:00");
    }
}
