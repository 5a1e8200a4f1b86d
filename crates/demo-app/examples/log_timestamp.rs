//! Measures the log timestamp (`log::write_rfc3339_ms`, calendar from the `time`
//! crate) against the hand-written calendar it replaced (H. Hinnant's
//! `civil_from_days`, kept here only as the reference), in the same run:
//! - every call in the same second (what a busy service does: the cached prefix);
//! - every call in a new second (the worst case: the calendar runs each time).
//!
//! Usage: `cargo run --release -p demo-app --example log_timestamp [CALLS]`

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use demo_app::log::write_rfc3339_ms;

/// The replaced formatting, uncached (its cache was the same as today's).
fn reference(buf: &mut Vec<u8>, secs: u64, ms: u32) {
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        buf,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
}

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

fn per_call(calls: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..calls {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("CALLS must be a number"))
        .unwrap_or(2_000_000);
    let base = 1_700_000_000u64;
    let mut buf = Vec::with_capacity(64);
    let same_second = per_call(calls, |i| {
        buf.clear();
        write_rfc3339_ms(
            &mut buf,
            UNIX_EPOCH + Duration::from_millis(base * 1000 + i % 1000),
        );
        black_box(&buf);
    });
    let new_second = per_call(calls, |i| {
        buf.clear();
        write_rfc3339_ms(&mut buf, UNIX_EPOCH + Duration::from_secs(base + i));
        black_box(&buf);
    });
    let reference_new_second = per_call(calls, |i| {
        buf.clear();
        reference(&mut buf, base + i, 0);
        black_box(&buf);
    });
    // The two must agree before their speed means anything.
    for s in [0, 951_782_400, base, 4_102_444_799] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_rfc3339_ms(&mut a, UNIX_EPOCH + Duration::from_secs(s));
        reference(&mut b, s, 0);
        assert_eq!(a, b, "timestamps differ at {s}");
    }
    println!("calls per case: {calls}");
    println!("same second (cached prefix, time crate): {same_second:.1} ns/call");
    println!("new second each call, time crate:        {new_second:.1} ns/call");
    println!("new second each call, replaced calendar: {reference_new_second:.1} ns/call");
}
