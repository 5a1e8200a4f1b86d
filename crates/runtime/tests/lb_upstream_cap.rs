//! The descriptor bound behind the load balancer's budget: a client connection routed
//! over more targets than `upstream::MAX_PER_CLIENT` never holds more upstream
//! connections than that (the least recently used is closed before another opens).
//! Targets are real HTTP servers on loopback that count their open proxied connections.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Seen, Serving, load_balancer, target};
use demo_runtime::lb::FDS_PER_CONNECTION;
use demo_runtime::upstream::MAX_PER_CLIENT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_holds_at_most_max_per_client_upstream_connections() {
    assert_eq!(FDS_PER_CONNECTION, 1 + MAX_PER_CLIENT as u64);
    let targets = MAX_PER_CLIENT + 3;
    // One record for all targets: `open` counts proxied connections across them.
    let seen = Arc::new(Seen::default());
    let mut addrs = Vec::new();
    for _ in 0..targets {
        addrs.push(target(seen.clone()).await);
    }
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &addrs).await;

    // Three rounds over every target on one client connection: round robin routes
    // each request to the next target, so every request past the eighth needs a
    // connection this client connection does not hold.
    let mut client = s.connect().await;
    let mut most = 0;
    for i in 0..3 * targets {
        assert_eq!(
            client.get(&format!("/work/{i}"), &[]).await,
            200,
            "request {i}"
        );
        // The load balancer closes the evicted connection before opening the new one,
        // but its target sees the close a moment later: give it that moment (bounded;
        // without the cap the count would stay above it and the assertion below fails).
        let settle = Instant::now();
        while seen.open.load(Ordering::Acquire) > MAX_PER_CLIENT as u64
            && settle.elapsed() < Duration::from_millis(500)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most = most.max(seen.open.load(Ordering::Acquire));
    }
    assert!(
        most <= MAX_PER_CLIENT as u64,
        "{most} upstream connections open at once for one client connection"
    );
    // All the cap allows was used: eight connections were open together.
    assert_eq!(most, MAX_PER_CLIENT as u64);
    let snapshot = s.lb.counters.take();
    assert_eq!(snapshot.target_2xx, 3 * targets as u64);
    drop(client);
    s.stop().await;
}
