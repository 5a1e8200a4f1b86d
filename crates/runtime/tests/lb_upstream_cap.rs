//! Idle upstream connections stay within the budget behind `lb::FDS_PER_CONNECTION`
//! (the client connection limit, across all targets), however many targets a client
//! connection is routed over. Targets are real HTTP servers on loopback that count their open proxied
//! connections.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Seen, Serving, load_balancer_with, target};
use demo_runtime::lb::{ConnLimits, FDS_PER_CONNECTION};

const TARGETS: usize = 11;

async fn targets(seen: &Arc<Seen>) -> Vec<std::net::SocketAddr> {
    let mut addrs = Vec::new();
    for _ in 0..TARGETS {
        addrs.push(target(seen.clone()).await);
    }
    addrs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_stay_within_the_client_connection_limit() {
    assert_eq!(FDS_PER_CONNECTION, 3);
    const LIMIT: usize = 4;
    let seen = Arc::new(Seen::default());
    let addrs = targets(&seen).await;
    let (lb, _changes) = load_balancer_with(ConnLimits {
        max_connections: LIMIT,
        ..ConnLimits::default()
    });
    let s = Serving::start(lb, &addrs).await;
    // Three rounds over every target on one client connection: past the fourth target
    // no idle slot is free, so those connections close when their response ends.
    let mut client = s.connect().await;
    let mut most = 0;
    for i in 0..3 * TARGETS {
        assert_eq!(
            client.get(&format!("/work/{i}"), &[]).await,
            200,
            "request {i}"
        );
        assert!(
            s.lb.idle_upstreams() <= LIMIT,
            "{} idle",
            s.lb.idle_upstreams()
        );
        // A target sees a close a moment after the load balancer made it: give it that
        // moment (bounded; without the budget the count would stay above it).
        let settle = Instant::now();
        while seen.open.load(Ordering::Acquire) > LIMIT as u64 + 1
            && settle.elapsed() < Duration::from_millis(500)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most = most.max(seen.open.load(Ordering::Acquire));
    }
    assert!(
        most <= LIMIT as u64 + 1,
        "{most} upstream connections open at once: the limit's idle ones and one in use"
    );
    assert_eq!(s.lb.idle_upstreams(), LIMIT, "every idle slot was used");
    // The idle ones were reused round after round; the others were opened anew each time.
    let opened = seen.connections.load(Ordering::Acquire);
    assert_eq!(opened, (LIMIT + 3 * (TARGETS - LIMIT)) as u64);
    drop(client);
    s.stop().await;
}
