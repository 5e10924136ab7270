//! Binance REST market data used at start-up: klines (`GET /api/v3/klines`).
//! Parsing is pure; `fetch_klines` is the one blocking HTTP call.

use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("klines response: {0}")]
    Parse(String),
    /// Not sent: Binance's request weight (`market::weight`).
    #[error("GET {url}: {refusal}")]
    RateLimited {
        url: String,
        refusal: super::weight::Refusal,
    },
}

pub use super::binance::Kline;

/// Binance's interval name for a bar length, if Binance has one.
pub fn kline_interval(interval_ms: i64) -> Option<&'static str> {
    const S: i64 = 1000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;
    Some(match interval_ms {
        x if x == S => "1s",
        x if x == M => "1m",
        x if x == 3 * M => "3m",
        x if x == 5 * M => "5m",
        x if x == 15 * M => "15m",
        x if x == 30 * M => "30m",
        x if x == H => "1h",
        x if x == 2 * H => "2h",
        x if x == 4 * H => "4h",
        x if x == 6 * H => "6h",
        x if x == 8 * H => "8h",
        x if x == 12 * H => "12h",
        x if x == D => "1d",
        x if x == 3 * D => "3d",
        x if x == 7 * D => "1w",
        _ => return None,
    })
}

/// Bar length of a Binance interval name (inverse of `kline_interval`).
pub fn interval_ms(name: &str) -> Option<i64> {
    let (n, unit) = name.split_at(name.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let ms = n * match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    (kline_interval(ms) == Some(name)).then_some(ms)
}

/// The REST base URL that belongs to a WebSocket endpoint: the replay server serves both
/// on one port; Binance's live stream host maps to api.binance.com.
pub fn rest_base_for_feed(feed_url: &str) -> String {
    if feed_url.contains("stream.binance.com") {
        return "https://api.binance.com".into();
    }
    let (scheme, rest) = match feed_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", feed_url),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Binance's limit on klines per request.
pub const MAX_KLINES: usize = 1000;

/// Where REST requests go: Binance (or a compatible server) over HTTP, or a capture
/// answered in process. Blocking.
pub trait RestTransport {
    /// `GET <path>?<query>` (e.g. `/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000`):
    /// the body of a 200 answer.
    fn get(&self, target: &str) -> Result<String, RestError>;
}

/// HTTP to `base` (e.g. `https://api.binance.com`), each request bounded by `timeout` and
/// paid from the request weight budget of `base` (`market::weight`).
#[derive(Debug, Clone)]
pub struct Http {
    pub base: String,
    pub timeout: Duration,
    /// The CAs trusted for `https://` (`feed.ca_file`); `None`: the built-in roots.
    roots: Option<std::sync::Arc<super::tls::TrustedRoots>>,
    weight: std::sync::Arc<super::weight::WeightBudget>,
}

impl Http {
    /// `weight_per_minute` (`feed.rest_weight_per_minute`) applies if this is the
    /// process's first client of `base`; later ones share its budget.
    pub fn new(base: &str, timeout: Duration, weight_per_minute: u32) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            weight: super::weight::shared(&base, weight_per_minute),
            base,
            timeout,
            roots: None,
        }
    }

    /// Trust `roots` instead of the built-in roots.
    pub fn with_roots(mut self, roots: Option<std::sync::Arc<super::tls::TrustedRoots>>) -> Self {
        self.roots = roots;
        self
    }
}

impl RestTransport for Http {
    fn get(&self, target: &str) -> Result<String, RestError> {
        let url = format!("{}{target}", self.base);
        let now_ms = crate::clock::system_now_ms();
        if let Err(refusal) = self.weight.admit(now_ms, super::weight::weight_of(target)) {
            return Err(RestError::RateLimited { url, refusal });
        }
        get(&url, self.timeout, self.roots.as_deref(), &self.weight)
    }
}

fn klines_target(symbol: &str, interval: &str, limit: usize) -> String {
    format!(
        "/api/v3/klines?symbol={symbol}&interval={interval}&limit={}",
        limit.clamp(1, MAX_KLINES)
    )
}

/// Open time, open, high, low, close, volume, close time, quote volume, trades, taker
/// buy base, taker buy quote, unused: only the times, the close and the count are kept.
#[derive(Deserialize)]
struct RawKline(
    i64,
    IgnoredAny,
    IgnoredAny,
    IgnoredAny,
    String,
    IgnoredAny,
    i64,
    IgnoredAny,
    u64,
    IgnoredAny,
    IgnoredAny,
    #[serde(default)] IgnoredAny,
);

/// Parse a klines response body (an array of 12-element arrays).
pub fn parse_klines(body: &str) -> Result<Vec<Kline>, RestError> {
    let raw: Vec<RawKline> = parse_json(body)?;
    let mut out = Vec::with_capacity(raw.len());
    let mut last_open = i64::MIN;
    for k in raw {
        let close: f64 =
            k.4.parse()
                .map_err(|_| RestError::Parse(format!("close {:?} is not a number", k.4)))?;
        if !(close > 0.0 && close.is_finite()) {
            return Err(RestError::Parse(format!("close {close} is not a price")));
        }
        if k.0 <= last_open {
            return Err(RestError::Parse(format!(
                "open time {} does not increase",
                k.0
            )));
        }
        last_open = k.0;
        out.push(Kline {
            open_time_ms: k.0,
            close_time_ms: k.6,
            close,
            trades: k.8,
        });
    }
    Ok(out)
}

/// One trade from `GET /api/v3/historicalTrades`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoricalTrade {
    pub id: u64,
    pub price: String,
    pub qty: String,
    pub time: i64,
    pub is_buyer_maker: bool,
}

pub fn parse_historical_trades(body: &str) -> Result<Vec<HistoricalTrade>, RestError> {
    parse_json(body)
}

/// Trades of `symbol` from ID `from_id`, at most `limit` (<= 1000), oldest first.
pub fn fetch_historical_trades(
    rest: &impl RestTransport,
    symbol: &str,
    from_id: u64,
    limit: usize,
) -> Result<Vec<HistoricalTrade>, RestError> {
    get_paged(rest, "historicalTrades", symbol, from_id, limit)
}

/// `GET /api/v3/<endpoint>?symbol=..&fromId=..&limit=..` (an ID-paged endpoint), parsed.
fn get_paged<T: serde::de::DeserializeOwned>(
    rest: &impl RestTransport,
    endpoint: &str,
    symbol: &str,
    from_id: u64,
    limit: usize,
) -> Result<Vec<T>, RestError> {
    let target = format!(
        "/api/v3/{endpoint}?symbol={symbol}&fromId={from_id}&limit={}",
        limit.clamp(1, MAX_KLINES)
    );
    rest.get(&target).and_then(|body| parse_json(&body))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, RestError> {
    serde_json::from_str(body).map_err(|e| RestError::Parse(e.to_string()))
}

/// One aggregate trade from `GET /api/v3/aggTrades`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RestAggTrade {
    #[serde(rename = "a")]
    pub agg_id: u64,
    #[serde(rename = "p")]
    pub price: String,
    #[serde(rename = "q")]
    pub qty: String,
    #[serde(rename = "f")]
    pub first_trade_id: u64,
    #[serde(rename = "l")]
    pub last_trade_id: u64,
    #[serde(rename = "T")]
    pub time: i64,
    #[serde(rename = "m")]
    pub is_buyer_maker: bool,
}

/// Aggregate trades of `symbol` from ID `from_id`, at most `limit` (<= 1000), oldest first.
pub fn fetch_agg_trades(
    rest: &impl RestTransport,
    symbol: &str,
    from_id: u64,
    limit: usize,
) -> Result<Vec<RestAggTrade>, RestError> {
    get_paged(rest, "aggTrades", symbol, from_id, limit)
}

/// Binance's accepted `limit` values for `GET /api/v3/depth`.
pub const DEPTH_LIMITS: [usize; 8] = [5, 10, 20, 50, 100, 500, 1000, 5000];

/// The order book snapshot of `symbol`, `limit` levels per side.
pub fn fetch_depth_snapshot(
    rest: &impl RestTransport,
    symbol: &str,
    limit: usize,
) -> Result<crate::market::depth::DepthSnapshot, RestError> {
    rest.get(&format!("/api/v3/depth?symbol={symbol}&limit={limit}"))
        .and_then(|body| parse_json(&body))
}

fn get(
    url: &str,
    timeout: Duration,
    roots: Option<&super::tls::TrustedRoots>,
    weight: &super::weight::WeightBudget,
) -> Result<String, RestError> {
    let http = |reason: String| RestError::Http {
        url: url.to_string(),
        reason,
    };
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false);
    if let Some(roots) = roots {
        config = config.tls_config(roots.rest_tls());
    }
    let agent = config.build().new_agent();
    let mut response = agent.get(url).call().map_err(|e| http(e.to_string()))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let now_ms = crate::clock::system_now_ms();
    if let Some(used) = header("x-mbx-used-weight-1m") {
        weight.observe_used(now_ms, u32::try_from(used).unwrap_or(u32::MAX));
    }
    let status = response.status().as_u16();
    if status == 429 || status == 418 {
        let until_ms = weight.pause(now_ms, header("retry-after"));
        tracing::warn!(
            url,
            status,
            until_ms,
            "REST server asked for a pause; no request to it until then"
        );
        return Err(RestError::RateLimited {
            url: url.to_string(),
            refusal: super::weight::Refusal::Paused { until_ms },
        });
    }
    if !(200..300).contains(&status) {
        return Err(http(format!("http status: {status}")));
    }
    response
        .body_mut()
        .with_config()
        .limit(8 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| http(e.to_string()))
}

/// Fetch the latest `limit` klines of `symbol`.
pub fn fetch_klines(
    rest: &impl RestTransport,
    symbol: &str,
    interval: &str,
    limit: usize,
) -> Result<Vec<Kline>, RestError> {
    rest.get(&klines_target(symbol, interval, limit))
        .and_then(|body| parse_klines(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP server answering each request with the next of `answers` (status
    /// line and headers); returns its base URL and the count of requests it received.
    fn server(
        answers: Vec<&'static str>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for (stream, head) in listener.incoming().zip(answers) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = "[]";
                let _ = write!(
                    stream,
                    "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (base, count)
    }

    /// Wait out the last 5 s of a minute, so that what a test asks falls in one minute of
    /// the weight budget's.
    fn away_from_a_minute_turn() {
        let into_minute = crate::clock::system_now_ms().rem_euclid(super::super::weight::MINUTE_MS);
        if into_minute > 55_000 {
            std::thread::sleep(Duration::from_millis((60_100 - into_minute) as u64));
        }
    }

    #[test]
    fn a_429_pauses_every_request_to_its_server_for_its_retry_after() {
        let (base, count) = server(vec![
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30",
            "HTTP/1.1 200 OK",
        ]);
        let a = Http::new(&base, Duration::from_secs(5), 6000);
        let b = Http::new(&base, Duration::from_secs(5), 6000);
        let first = a.get("/api/v3/depth?symbol=BTCUSDT&limit=1000");
        assert!(
            matches!(first, Err(RestError::RateLimited { .. })),
            "{first:?}"
        );
        // Another client of the same server is paused too, and nothing reaches it.
        let second = b.get("/api/v3/aggTrades?symbol=BTCUSDT&fromId=1");
        assert!(
            matches!(
                second,
                Err(RestError::RateLimited {
                    refusal: super::super::weight::Refusal::Paused { .. },
                    ..
                })
            ),
            "{second:?}"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_server_s_weight_count_stops_requests_that_would_exceed_the_minute() {
        let (base, count) = server(vec![
            "HTTP/1.1 200 OK\r\nX-MBX-USED-WEIGHT-1M: 5990",
            "HTTP/1.1 200 OK",
        ]);
        let http = Http::new(&base, Duration::from_secs(5), 6000);
        away_from_a_minute_turn();
        assert_eq!(
            http.get("/api/v3/klines?symbol=X&interval=1s").unwrap(),
            "[]"
        );
        let next = http.get("/api/v3/depth?symbol=X&limit=1000");
        assert!(
            matches!(
                next,
                Err(RestError::RateLimited {
                    refusal: super::super::weight::Refusal::Spent { .. },
                    ..
                })
            ),
            "{next:?}"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn other_error_statuses_are_http_errors() {
        let (base, _) = server(vec!["HTTP/1.1 404 Not Found"]);
        let http = Http::new(&base, Duration::from_secs(5), 6000);
        let err = http.get("/api/v3/klines?symbol=X").unwrap_err();
        assert!(err.to_string().ends_with("http status: 404"), "{err}");
    }

    #[test]
    fn intervals_round_trip() {
        for ms in [1000, 60_000, 3_600_000, 86_400_000] {
            let name = kline_interval(ms).unwrap();
            assert_eq!(interval_ms(name), Some(ms));
        }
        assert_eq!(kline_interval(1500), None);
        assert_eq!(interval_ms("2s"), None);
        assert_eq!(interval_ms(""), None);
    }

    #[test]
    fn rest_base_follows_the_feed() {
        assert_eq!(
            rest_base_for_feed("wss://stream.binance.com:9443"),
            "https://api.binance.com"
        );
        assert_eq!(
            rest_base_for_feed("ws://127.0.0.1:9443/stream"),
            "http://127.0.0.1:9443"
        );
    }

    #[test]
    fn parses_binance_klines() {
        let body = r#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100",
            "148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397",
            "28.46694368","0"],[1499040001000,"1","1","1","0.02","1",1499040001999,"1",1,"1","1","0"]]"#;
        let k = parse_klines(body).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].close, 0.015771);
        assert_eq!(k[0].trades, 308);
        assert!(parse_klines("[[1,\"a\"]]").is_err());
        assert!(parse_klines(r#"[[1,"1","1","1","-1","1",2,"1",1,"1","1","0"]]"#).is_err());
    }
}
