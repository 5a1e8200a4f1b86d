//! Idle upstream connections stay within the budget behind `lb::FDS_PER_CONNECTION`
//! (the client connection limit, across all targets), however many targets a client
//! connection is routed over. Targets are real HTTP servers on loopback that count their open proxied
//! connections.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Seen, Serving, full, hyper_server, load_balancer_with, target};
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

/// A target whose `/burst` requests take 200 ms (so that concurrent ones need
/// connections of their own).
async fn slow_target() -> std::net::SocketAddr {
    hyper_server(|req| async move {
        if req.uri().path() == "/burst" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        hyper::Response::new(full("ok"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extra_connections_of_a_burst_give_their_idle_slots_back_once_stale() {
    use demo_runtime::upstream::IDLE_REUSE;
    let (lb, _changes) = load_balancer_with(ConnLimits::default());
    let s = Serving::start(lb, &[slow_target().await]).await;
    // Five at once: five upstream connections, idle afterwards.
    let mut burst = Vec::new();
    for _ in 0..5 {
        let mut c = s.connect().await;
        burst.push(tokio::spawn(async move { c.get("/burst", &[]).await }));
    }
    for b in burst {
        assert_eq!(b.await.unwrap(), 200);
    }
    assert_eq!(s.lb.idle_upstreams(), 5);
    // Traffic goes on at one request at a time: it keeps reusing the newest connection.
    let mut client = s.connect().await;
    tokio::time::sleep(IDLE_REUSE * 5 / 8).await;
    assert_eq!(client.get("/", &[]).await, 200);
    assert_eq!(s.lb.idle_upstreams(), 5, "the others are not stale yet");
    tokio::time::sleep(IDLE_REUSE / 2).await;
    assert_eq!(client.get("/", &[]).await, 200);
    assert_eq!(
        s.lb.idle_upstreams(),
        1,
        "the burst's other connections, stale by now, are closed as one is put back"
    );
    drop(client);
    s.stop().await;
}
