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
    /// Extra requests per real second on one route, on top of the mix (f64 bits).
    extra_rate: Arc<AtomicU64>,
    /// Index in [`ROUTES`] of the route the extra requests go to.
    extra_route: Arc<AtomicU64>,
    with_reports: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<TrafficStats>,
    handle: tokio::task::JoinHandle<()>,
}

const IN_STOCK: &[u32] = &[
    1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 19, 20, 21, 22, 23, 24,
];
const CATEGORIES: &[&str] = &["accessories", "audio", "displays", "peripherals", "storage"];

/// The routes a scenario may send extra requests to (`route_ramp`), as route templates.
pub const ROUTES: &[&str] = &[
    "/",
    "/api/products",
    "/api/products/{id}",
    "/api/quote",
    "/api/reports/sales",
];

fn request(lb: SocketAddr, with_reports: bool) -> hyper::Request<Full<Bytes>> {
    let roll = fastrand::u32(0..100);
    if with_reports && roll < 3 {
        return route_request(lb, "/api/reports/sales");
    }
    route_request(
        lb,
        match roll {
            0..=39 => "/api/products",
            40..=64 => "/api/products/{id}",
            65..=89 => "/api/quote",
            _ => "/",
        },
    )
}

/// One request of the mix's kind for `route` (one of [`ROUTES`]; anything else is `/`).
fn route_request(lb: SocketAddr, route: &str) -> hyper::Request<Full<Bytes>> {
    let base = format!("http://{lb}");
    let get = |path: String| {
        hyper::Request::get(format!("{base}{path}"))
            .header("user-agent", "scenario-traffic/1.0")
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    };
    match route {
        "/api/reports/sales" => get("/api/reports/sales?days=30".into()),
        "/api/products" => {
            let page = fastrand::u32(1..=3);
            if fastrand::bool() {
                get(format!("/api/products?page={page}&per_page=5"))
            } else {
                let c = CATEGORIES[fastrand::usize(..CATEGORIES.len())];
                get(format!("/api/products?category={c}"))
            }
        }
        "/api/products/{id}" => get(format!("/api/products/{}", fastrand::u32(1..=26))),
        "/api/quote" => {
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
        let extra_rate = Arc::new(AtomicU64::new(0f64.to_bits()));
        let extra_route = Arc::new(AtomicU64::new(0));
        let (r, s, st) = (rate_bits.clone(), stop.clone(), stats.clone());
        let (er, eroute) = (extra_rate.clone(), extra_route.clone());
        let handle = tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(256));
            let start = Instant::now();
            let (mut sent, mut extra) = (0f64, 0f64);
            let mut last = start;
            while !s.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = Instant::now();
                let dt = now.duration_since(last).as_secs_f64();
                sent += f64::from_bits(r.load(Ordering::Acquire)) * dt;
                extra += f64::from_bits(er.load(Ordering::Acquire)) * dt;
                last = now;
                while sent >= 1.0 || extra >= 1.0 {
                    // The mix first, then the extra route's requests.
                    let req = if sent >= 1.0 {
                        sent -= 1.0;
                        request(lb, reports.load(Ordering::Relaxed))
                    } else {
                        extra -= 1.0;
                        let i = eroute.load(Ordering::Relaxed) as usize;
                        route_request(lb, ROUTES.get(i).copied().unwrap_or("/"))
                    };
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        // Saturated: count it as a connection error rather than queue without bound.
                        st.connection_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
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
            extra_rate,
            extra_route,
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
        ramp(self.rate.clone(), self.stop.clone(), to, over)
    }

    /// Sends extra requests to `route` (one of [`ROUTES`]) on top of the mix,
    /// their rate moving linearly from the current extra rate to `to` over
    /// `over` (real time; 0 stops them). Errors on a route not in [`ROUTES`].
    pub fn route_ramp(
        &self,
        route: &str,
        to: f64,
        over: Duration,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        let i = ROUTES
            .iter()
            .position(|r| *r == route)
            .ok_or_else(|| format!("{route:?} is not one of {ROUTES:?}"))?;
        if self.extra_route.swap(i as u64, Ordering::AcqRel) != i as u64 {
            // Another route: its ramp starts from nothing.
            self.extra_rate.store(0f64.to_bits(), Ordering::Release);
        }
        Ok(ramp(self.extra_rate.clone(), self.stop.clone(), to, over))
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

/// Moves `rate` (f64 bits) linearly to `to` over `over`, in steps of at most 100 ms.
fn ramp(
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    to: f64,
    over: Duration,
) -> tokio::task::JoinHandle<()> {
    let from = f64::from_bits(rate.load(Ordering::Acquire));
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
