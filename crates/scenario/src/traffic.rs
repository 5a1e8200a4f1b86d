//! Realistic background traffic through the load balancer: browsing,
//! product lookups (a few for ids that don't exist), price quotes of one to
//! four products, the service root — and, in the `with-reports` mix, the
//! slow sales report. Bounded: requests in flight are capped, and it stops
//! when told to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

#[derive(Debug, Default)]
pub struct TrafficStats {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub connection_errors: AtomicU64,
}

impl TrafficStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent.load(Ordering::Relaxed),
            "ok": self.ok.load(Ordering::Relaxed),
            "client_errors": self.client_errors.load(Ordering::Relaxed),
            "server_errors": self.server_errors.load(Ordering::Relaxed),
            "connection_errors": self.connection_errors.load(Ordering::Relaxed),
        })
    }
}

pub struct Traffic {
    /// Requests per second, real time; stored as f64 bits so it can change while running.
    rate: Arc<AtomicU64>,
    with_reports: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<TrafficStats>,
    handle: tokio::task::JoinHandle<()>,
}

const IN_STOCK: &[u32] = &[
    1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 19, 20, 21, 22, 23, 24,
];
const CATEGORIES: &[&str] = &["accessories", "audio", "displays", "peripherals", "storage"];

fn request(lb: SocketAddr, with_reports: bool) -> hyper::Request<Full<Bytes>> {
    let roll = fastrand::u32(0..100);
    let base = format!("http://{lb}");
    let get = |path: String| {
        hyper::Request::get(format!("{base}{path}"))
            .header("user-agent", "scenario-traffic/1.0")
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    };
    if with_reports && roll < 3 {
        return get("/api/reports/sales?days=30".into());
    }
    match roll {
        0..=39 => {
            let page = fastrand::u32(1..=3);
            if fastrand::bool() {
                get(format!("/api/products?page={page}&per_page=5"))
            } else {
                let c = CATEGORIES[fastrand::usize(..CATEGORIES.len())];
                get(format!("/api/products?category={c}"))
            }
        }
        40..=64 => get(format!("/api/products/{}", fastrand::u32(1..=26))),
        65..=89 => {
            let mut ids = IN_STOCK.to_vec();
            fastrand::shuffle(&mut ids);
            let n = fastrand::usize(1..=4);
            let items: Vec<String> = ids[..n]
                .iter()
                .map(|id| {
                    format!(
                        r#"{{"product_id":{id},"quantity":{}}}"#,
                        fastrand::u32(1..=3)
                    )
                })
                .collect();
            hyper::Request::post(format!("{base}/api/quote"))
                .header("content-type", "application/json")
                .header("user-agent", "scenario-traffic/1.0")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"items":[{}]}}"#,
                    items.join(",")
                ))))
                .expect("valid request")
        }
        _ => get("/".into()),
    }
}

impl Traffic {
    /// Starts sending `rate` requests per second to the load balancer.
    pub fn start(lb: SocketAddr, rate: f64, mix: &str) -> Traffic {
        let rate_bits = Arc::new(AtomicU64::new(rate.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(TrafficStats::default());
        let with_reports = Arc::new(AtomicBool::new(mix == "with-reports"));
        let reports = with_reports.clone();
        // Idle connections are dropped well before the load balancer's 60 s idle
        // timeout (as ALB asks of its clients): a connection the server closes just
        // as it is reused would otherwise count as a connection error.
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .build_http();
        let (r, s, st) = (rate_bits.clone(), stop.clone(), stats.clone());
        let handle = tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(256));
            let start = Instant::now();
            let mut sent = 0f64;
            let mut last = start;
            while !s.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = Instant::now();
                sent += f64::from_bits(r.load(Ordering::Acquire))
                    * now.duration_since(last).as_secs_f64();
                last = now;
                while sent >= 1.0 {
                    sent -= 1.0;
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        // Saturated: count it as a connection error rather than queue without bound.
                        st.connection_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let req = request(lb, reports.load(Ordering::Relaxed));
                    let (client, st) = (client.clone(), st.clone());
                    st.sent.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _permit = permit;
                        match tokio::time::timeout(Duration::from_secs(30), client.request(req))
                            .await
                        {
                            Ok(Ok(resp)) => {
                                let status = resp.status().as_u16();
                                let _ = resp.into_body().collect().await;
                                let c = match status {
                                    200..=399 => &st.ok,
                                    400..=499 => &st.client_errors,
                                    _ => &st.server_errors,
                                };
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                st.connection_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
            // Let requests in flight finish before reporting: stopping must not cut them off.
            let _ =
                tokio::time::timeout(Duration::from_secs(35), in_flight.acquire_many(256)).await;
        });
        Traffic {
            rate: rate_bits,
            with_reports,
            stop,
            stats,
            handle,
        }
    }

    pub fn set_rate(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Ordering::Release);
    }

    /// The current rate, requests per real second.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Acquire))
    }

    /// Moves the rate linearly from the current one to `to` over `over`
    /// (real time), in steps of at most 100 ms; ends by itself.
    pub fn ramp(&self, to: f64, over: Duration) -> tokio::task::JoinHandle<()> {
        let (rate, stop, from) = (self.rate.clone(), self.stop.clone(), self.rate());
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                let f = (start.elapsed().as_secs_f64() / over.as_secs_f64().max(1e-3)).min(1.0);
                rate.store((from + (to - from) * f).to_bits(), Ordering::Release);
                if f >= 1.0 || stop.load(Ordering::Acquire) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    pub fn set_mix(&self, mix: &str) {
        self.with_reports
            .store(mix == "with-reports", Ordering::Release);
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.await;
    }
}
