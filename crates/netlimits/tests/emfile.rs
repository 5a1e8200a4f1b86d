//! Out of descriptors, the accept loop backs off instead of spinning: `accept` fails
//! with EMFILE a handful of times per second (not millions), the episode is reported
//! once, and serving resumes by itself when descriptors free up. Its own test binary,
//! because it lowers the process's descriptor limit.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_netlimits::{ConnLimits, ConnStats, Event};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::sync::atomic::Ordering;

/// A descriptor limit under which the process can open exactly `n` more files:
/// descriptors are allocated lowest-first and the limit bounds their number.
fn limit_allowing(n: usize) -> u64 {
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let nth_free = (0..).filter(|fd| !open.contains(fd)).nth(n - 1).unwrap();
    nth_free + 1
}

#[tokio::test(flavor = "current_thread")]
async fn accept_errors_back_off_are_counted_and_reported_once_per_episode() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = {
        let events = events.clone();
        Arc::new(move |e| events.lock().unwrap().push(e))
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = |_| {
        hyper::service::service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(String::from("ok")))
        })
    };
    let server = tokio::spawn(demo_netlimits::serve(
        listener,
        ConnLimits::default(),
        stats.clone(),
        sink,
        service,
        async {
            let _ = stop_rx.await;
        },
        Duration::from_secs(1),
    ));
    // Twenty clients wait in the listen queue; the server may open only a few more files.
    let clients: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let before = getrlimit(Resource::Nofile);
    let tight = limit_allowing(3);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(tight),
            maximum: before.maximum,
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let errors = stats.accept_errors.load(Ordering::Relaxed);
    setrlimit(Resource::Nofile, before).unwrap();
    eprintln!("{errors} failed accepts in 1.5 s at the descriptor limit");
    // 10 ms doubling to 1 s: about 8 failed accepts in 1.5 s; a busy loop makes millions.
    assert!(
        (1..=20).contains(&errors),
        "{errors} failed accepts in 1.5 s"
    );
    // Descriptors are back: the rest of the queue is served without anyone's help.
    let start = std::time::Instant::now();
    while stats.accepted.load(Ordering::Relaxed) < 20 {
        assert!(start.elapsed() < Duration::from_secs(3), "{stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = events.lock().unwrap().clone();
    let failing = seen
        .iter()
        .filter(|e| matches!(e, Event::AcceptFailing { .. }))
        .count();
    assert_eq!(failing, 1, "{seen:?}");
    assert!(
        matches!(seen.last(), Some(Event::AcceptRecovered { errors: n, .. }) if *n == errors),
        "{seen:?}"
    );
    drop(clients);
    stop_tx.send(()).unwrap();
    server.await.unwrap();
}
