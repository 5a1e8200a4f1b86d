//! Formatting epoch milliseconds the way CloudWatch alarm reasons print
//! datapoint times (`12/05/24 10:01:00`, i.e. dd/MM/yy HH:mm:ss in UTC),
//! through the `time` crate (no hand-written calendar arithmetic).

use time::OffsetDateTime;
use time::macros::format_description;

/// `dd/MM/yy HH:mm:ss` (UTC) for an epoch-milliseconds timestamp; a
/// timestamp outside years -9999..=9999 is printed as `<ms> ms`.
pub(crate) fn reason_time(ms: i64) -> String {
    let format = format_description!("[day]/[month]/[year repr:last_two] [hour]:[minute]:[second]");
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
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
        assert_eq!(reason_time(i64::MAX), format!("{} ms", i64::MAX));
    }
}
