//! W3C Trace Context (`traceparent`, <https://www.w3.org/TR/trace-context/>)
//! for the two HTTP hops of this project: the load balancer and `demo-app`.
//! Each hop honours an incoming `traceparent` (keeps its trace id and flags,
//! becomes a child span) or starts a trace when there is none or it is
//! invalid, and forwards the result. Shared so both hops accept exactly the
//! same headers. No dependency on OpenTelemetry: the ids are what the logs
//! carry (`trace_id`, `span_id`), which OpenTelemetry's log data model names
//! the same way.

#![forbid(unsafe_code)]

/// The header name.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion header, forwarded unchanged.
pub const TRACESTATE: &str = "tracestate";

/// One hop's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// This hop's span.
    pub span_id: u64,
    /// The caller's span, when the trace came in.
    pub parent_id: Option<u64>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex(s: &str, len: usize) -> Option<&str> {
    (s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(s)
}

/// The caller's context from a `traceparent` value, or `None` if it is not a
/// valid one (then the hop starts a new trace, as the spec says).
pub fn parse(value: &str) -> Option<(u128, u64, u8)> {
    let mut parts = value.trim().split('-');
    let version = hex(parts.next()?, 2)?;
    let trace = hex(parts.next()?, 32)?;
    let parent = hex(parts.next()?, 16)?;
    let flags = hex(parts.next()?, 2)?;
    // Version ff is invalid; version 00 has exactly four fields (later versions may add more).
    if version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some((trace_id, parent_id, u8::from_str_radix(flags, 16).ok()?))
}

fn span_id() -> u64 {
    fastrand::u64(1..)
}

impl TraceContext {
    /// This hop's context: a child of `incoming` when it is a valid
    /// `traceparent`, else the root of a new (sampled) trace.
    pub fn continue_or_start(incoming: Option<&str>) -> TraceContext {
        match incoming.and_then(parse) {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id: span_id(),
                parent_id: Some(parent),
                flags,
            },
            None => TraceContext {
                trace_id: fastrand::u128(1..),
                span_id: span_id(),
                parent_id: None,
                flags: 1,
            },
        }
    }

    /// The `traceparent` to send downstream (this hop as the parent).
    pub fn header(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }

    /// [`header`](Self::header) in a stack buffer: the same 55 bytes without a `String`
    /// (for a hot path such as the load balancer's per-request rewrite).
    pub fn header_bytes(&self) -> [u8; 55] {
        fn put_hex(out: &mut [u8], mut v: u128) {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            for b in out.iter_mut().rev() {
                *b = DIGITS[(v & 0xf) as usize];
                v >>= 4;
            }
        }
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put_hex(&mut buf[3..35], self.trace_id);
        put_hex(&mut buf[36..52], u128::from(self.span_id));
        put_hex(&mut buf[53..55], u128::from(self.flags));
        buf
    }

    /// 32 lowercase hex digits, as logged.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// 16 lowercase hex digits, as logged.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_header_is_the_w3c_form_of_its_ids() {
        for (trace_id, span_id, flags) in [
            (1u128, 2u64, 0u8),
            (u128::MAX, u64::MAX, 0xff),
            (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1),
        ] {
            let t = TraceContext {
                trace_id,
                span_id,
                parent_id: None,
                flags,
            };
            let want = format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}");
            assert_eq!(t.header(), want);
            assert_eq!(&t.header_bytes()[..], want.as_bytes());
        }
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let c = TraceContext::continue_or_start(Some(EXAMPLE));
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id, Some(0x00f0_67aa_0ba9_02b7));
        assert_ne!(c.span_id, 0x00f0_67aa_0ba9_02b7);
        let h = c.header();
        assert!(h.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{h}");
        assert!(h.ends_with("-01"));
        assert_eq!(parse(&h).unwrap().0, c.trace_id);
    }

    #[test]
    fn invalid_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
            let c = TraceContext::continue_or_start(Some(bad));
            assert_eq!((c.parent_id, c.flags), (None, 1), "{bad:?}");
            assert_ne!(c.trace_id, 0);
        }
        // A future version may carry more fields: its first four are honoured.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz").is_some());
        let a = TraceContext::continue_or_start(None);
        let b = TraceContext::continue_or_start(None);
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.trace_id_hex().len(), 32);
        assert_eq!(a.span_id_hex().len(), 16);
    }
}
