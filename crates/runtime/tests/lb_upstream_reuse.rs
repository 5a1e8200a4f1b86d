//! Connection reuse to targets: requests sent through the load balancer reuse one
//! upstream connection per target instead of opening one per request, whichever
//! client connection they come on. Targets are real HTTP servers on loopback that count the
//! connections that carried proxied traffic (health checks open their own).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Seen, Serving, load_balancer, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_reuses_one_upstream_connection_per_target() {
    let (a, b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let targets = [target(a.clone()).await, target(b.clone()).await];
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &targets).await;

    let mut client = s.connect().await;
    for i in 0..20 {
        assert_eq!(client.get(&format!("/work/{i}"), &[]).await, 200);
    }
    assert_eq!(
        a.connections.load(Ordering::Acquire),
        1,
        "one connection to target a"
    );
    assert_eq!(
        b.connections.load(Ordering::Acquire),
        1,
        "one connection to target b"
    );
    // A second client connection takes turns with the first on the same ones (per
    // client connection, as before, each target would have had two).
    let mut second = s.connect().await;
    for i in 0..20 {
        // Two requests each in turn: round robin sends each client connection to both.
        let c = if (i / 2) % 2 == 0 {
            &mut client
        } else {
            &mut second
        };
        assert_eq!(c.get(&format!("/work/{i}"), &[]).await, 200);
    }
    assert_eq!(a.connections.load(Ordering::Acquire), 1);
    assert_eq!(b.connections.load(Ordering::Acquire), 1);
    assert_eq!(s.lb.idle_upstreams(), 2);
    let snapshot = s.lb.counters.take();
    assert_eq!(snapshot.requests, 40);
    assert_eq!(snapshot.target_2xx, 40);
    drop((client, second));
    s.stop().await;
}
