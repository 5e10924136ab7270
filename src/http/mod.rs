//! The engine's HTTP side (`http.bind`, loopback by default). The read-only plane:
//! `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (ready, or which condition
//! fails), and the live risk dashboard at `/` with its data under `/api/`; a slow client
//! never slows the data path. The control plane under `/control/` (`control.rs`) needs a
//! bearer token. Every connection has limits: head within `request_timeout_ms` and
//! `max_header_bytes`, control bodies within `max_body_bytes` and `request_timeout_ms`,
//! idle keep-alive, a cap on connections.

pub mod control;
pub mod dashboard;
pub mod readiness;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::sync::broadcast;

pub use dashboard::DashboardHub;

use crate::metrics::Metrics;

/// The dashboard page: one file, no build step, no fetch beyond this server.
const PAGE: &str = include_str!("dashboard.html");

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.bind {bind:?}: {reason}")]
    Bind { bind: String, reason: String },
}

/// What the endpoints read.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub hub: Arc<DashboardHub>,
    /// The configured symbols (readiness checks each one's models).
    pub symbols: Vec<String>,
    /// A feed silent this long is stale.
    pub stale_after_s: f64,
    /// False when serving a finished run: there is no feed to be ready for.
    pub live: bool,
    /// The control plane, when served.
    pub control: Option<control::ControlPlane>,
}

/// Connection limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: std::time::Duration,
    pub keep_alive: std::time::Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn from_config(c: &crate::config::HttpConfig) -> Self {
        Self {
            request_timeout: std::time::Duration::from_millis(c.request_timeout_ms),
            keep_alive: std::time::Duration::from_secs(c.keep_alive_s),
            max_connections: c.max_connections,
            max_header_bytes: c.max_header_bytes,
        }
    }
}

/// A running server: its address and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl Running {
    /// Stop at once: a dashboard's event stream never ends by itself, so a graceful stop
    /// would wait out its timeout.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Lives as long as its connection: one that ends before a whole request head arrived (a
/// slow client cut by `request_timeout_ms`, or one that gave up) is counted.
struct ConnectionWatch {
    requested: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        if !self.requested.load(std::sync::atomic::Ordering::Relaxed) {
            self.metrics
                .input_limit_breaches_total
                .with_label_values(&["http_request_incomplete"])
                .inc();
        }
    }
}

/// Bind `bind` and serve on the current actix/tokio runtime until stopped.
pub fn start(bind: &str, limits: Limits, state: HttpState) -> Result<Running, HttpError> {
    let err = |reason: String| HttpError::Bind {
        bind: bind.to_string(),
        reason,
    };
    let watch_metrics = state.metrics.clone();
    let state = web::Data::new(state);
    let max_header_bytes = limits.max_header_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                use futures_util::future::{Either, FutureExt};
                if let Some(watch) = req.conn_data::<ConnectionWatch>() {
                    watch
                        .requested
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let head_bytes: usize = req
                    .headers()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len() + 4)
                    .sum::<usize>()
                    + req.uri().to_string().len();
                if head_bytes > max_header_bytes {
                    if let Some(s) = req.app_data::<web::Data<HttpState>>() {
                        s.metrics
                            .input_limit_breaches_total
                            .with_label_values(&["http_header_bytes"])
                            .inc();
                    }
                    let (r, _) = req.into_parts();
                    let response = HttpResponse::build(
                        actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    )
                    .content_type("text/plain")
                    .body("request head over http.max_header_bytes\n");
                    Either::Left(std::future::ready(Ok(
                        actix_web::dev::ServiceResponse::new(r, response),
                    )))
                } else {
                    Either::Right(srv.call(req).map(|r| r.map(|r| r.map_into_boxed_body())))
                }
            })
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/", web::get().to(page))
            .route("/api/history", web::get().to(history))
            .route("/api/status", web::get().to(status))
            .route("/api/optimizer", web::get().to(optimizer))
            .route("/api/stream", web::get().to(stream))
            .route("/control/{rest:.*}", web::route().to(control::handle))
    })
    .on_connect(move |_, extensions| {
        extensions.insert(ConnectionWatch {
            requested: std::sync::atomic::AtomicBool::new(false),
            metrics: watch_metrics.clone(),
        });
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .client_request_timeout(limits.request_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .keep_alive(limits.keep_alive)
    .max_connections(limits.max_connections)
    .bind(bind)
    .map_err(|e| err(e.to_string()))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| err("no address bound".into()))?;
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, "http: /metrics /healthz /readyz, the dashboard at / and /control/");
    Ok(Running { addr, handle })
}

fn now_s() -> f64 {
    crate::clock::system_now_ms() as f64 / 1000.0
}

async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

fn readiness(state: &HttpState) -> readiness::Readiness {
    readiness::check(&state.metrics, &state.symbols, now_s(), state.stale_after_s)
}

async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    if !state.live {
        // Serving a finished run: nothing to wait for.
        return HttpResponse::Ok().json(serde_json::json!({"ready": true, "failing": []}));
    }
    let r = readiness(&state);
    let mut response = if r.ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.json(r)
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"))
        .body(PAGE)
}

async fn history(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.hub.history_json())
}

/// Feed health, readiness and ELF latency for the page's status line.
/// The optimizer's view: settings in force, watch, live recommendations, last changes.
async fn optimizer(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok().json(state.metrics.optimizer.view())
}

async fn status(state: web::Data<HttpState>) -> HttpResponse {
    let m = &state.metrics;
    let quantiles = |layer: &str| {
        let h = m.elf_latency_seconds.with_label_values(&[layer]);
        serde_json::json!({
            "count": h.get_sample_count(),
            "p50_us": histogram_quantile(&h, 0.5).map(|s| s * 1e6),
            "p99_us": histogram_quantile(&h, 0.99).map(|s| s * 1e6),
        })
    };
    let healthy: serde_json::Map<String, serde_json::Value> = state
        .symbols
        .iter()
        .map(|s| {
            let v = m
                .health
                .feed_symbol_healthy
                .with_label_values(&[s.as_str()])
                .get();
            (s.clone(), serde_json::Value::Bool(v > 0))
        })
        .collect();
    let body = serde_json::json!({
        "live": state.live,
        "readiness": state.live.then(|| readiness(&state)),
        "feed_healthy": healthy,
        "elf_latency": { "decide": quantiles("L0_L3"), "sign": quantiles("L4") },
    });
    HttpResponse::Ok().json(body)
}

/// Server-sent events: one `data:` line per new VaR snapshot.
async fn stream(state: web::Data<HttpState>) -> HttpResponse {
    let rx = state.hub.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(json) => {
                    let frame = web::Bytes::from(format!("data: {json}\n\n"));
                    return Some((Ok::<_, actix_web::Error>(frame), rx));
                }
                // The page fell behind: it skips what it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(events)
}

/// The `q` quantile of a histogram by linear interpolation within its buckets (as
/// Prometheus's `histogram_quantile`).
fn histogram_quantile(h: &prometheus::Histogram, q: f64) -> Option<f64> {
    use prometheus::core::Collector;
    let families = h.collect();
    let metric = families.first()?.get_metric().first()?;
    let hist = metric.get_histogram();
    let total = hist.get_sample_count() as f64;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for b in hist.get_bucket() {
        let upper = b.upper_bound();
        let count = b.cumulative_count() as f64;
        if count >= rank {
            let in_bucket = (count - below).max(1.0);
            return Some(lower + (upper - lower) * (rank - below) / in_bucket);
        }
        lower = upper;
        below = count;
    }
    Some(lower)
}
