use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::conn::{is_websocket_upgrade, read_head, MAX_HEAD_BYTES};
use super::depth_notes::{ConnectionNotes, DepthNotes};
use super::faults::{DropDepth, Inject, SkipTrades};
use super::frames::{FrameSource, Wanted};
use super::read_ahead::{self, Batch, Pace};
use super::rest::{RestIndex, RestResponse};
use super::subscribe;
use crate::market::capture::stream_of;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("capture: {0}")]
    Capture(#[from] crate::market::capture::CaptureError),
    #[error("no capture files given")]
    NoFiles,
    #[error("speed factor must be finite and above 0, got {0}")]
    Speed(f64),
    #[error("replay server thread: {0}")]
    Thread(String),
}

/// How fast captured time passes on replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the client reads.
    Max,
    /// `1.0` is real time, `10.0` ten times faster.
    Factor(f64),
}

impl Speed {
    /// A factor no pace can follow (not finite, or not above 0); `FromStr` refuses them.
    fn bad_factor(self) -> Option<f64> {
        match self {
            Self::Factor(f) if !(f.is_finite() && f > 0.0) => Some(f),
            _ => None,
        }
    }
}

impl FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        let f: f64 = s.trim_end_matches(['x', 'X']).parse().map_err(|_| {
            format!("speed must be \"max\" or a positive factor like 1, 10x; got {s:?}")
        })?;
        if f.is_finite() && f > 0.0 {
            Ok(Self::Factor(f))
        } else {
            Err(format!("speed factor must be > 0, got {s:?}"))
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub speed: Speed,
    /// Binance pings every 20 s ...
    pub ping_interval: Duration,
    /// ... and drops a client that has not answered within a minute.
    pub pong_timeout: Duration,
    pub max_clients: usize,
    /// Captures of what happened before the stream: served by the REST endpoints only.
    pub history: Vec<PathBuf>,
    /// Fault injection: trades of these ID ranges are not streamed (REST still has them).
    pub skip_trades: Vec<SkipTrades>,
    /// Fault injection: these diff-depth updates are not streamed (snapshots include them).
    pub drop_depth: Vec<DropDepth>,
    /// Fault injection: well-formed but impossible events streamed after these trades.
    pub inject: Vec<Inject>,
    /// Serve `wss://` and `https://` with this configuration (certificate and key).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Binance's REST request weight limit, enforced (`replay::rest_limit`); `None`: none.
    pub rest_limit: Option<Arc<super::rest_limit::RestLimit>>,
}

impl ReplayOptions {
    pub fn new(files: Vec<PathBuf>, speed: Speed) -> Self {
        Self {
            files,
            speed,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_clients: 64,
            history: Vec::new(),
            skip_trades: Vec::new(),
            drop_depth: Vec::new(),
            inject: Vec::new(),
            tls: None,
            rest_limit: None,
        }
    }
}

/// What a client asked for through its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `/stream?streams=...` wraps each message in `{"stream","data"}`; `/ws/...` sends `data`.
    pub combined: bool,
    pub streams: HashSet<String>,
}

impl Subscription {
    /// Binance's URL forms: `/ws/<stream>[/<stream>...]` and `/stream?streams=<a>/<b>`.
    pub fn from_uri(path: &str, query: Option<&str>) -> Option<Self> {
        let (combined, list) = if let Some(rest) = path.strip_prefix("/ws/") {
            (false, rest.to_string())
        } else if path == "/stream" || path == "/stream/" {
            let q = query?;
            let v = q.split('&').find_map(|kv| kv.strip_prefix("streams="))?;
            (true, v.to_string())
        } else {
            return None;
        };
        let streams: HashSet<String> = list
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (!streams.is_empty()).then_some(Self { combined, streams })
    }
}

/// A replay server running on its own thread and runtime.
pub struct RunningReplay {
    pub addr: SocketAddr,
    tls: bool,
    rest_limit: Option<Arc<super::rest_limit::RestLimit>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningReplay {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }

    /// The REST weight limit's refusals so far, (429, 418); `None` without a limit.
    pub fn rest_refusals(&self) -> Option<(u64, u64)> {
        self.rest_limit.as_ref().map(|l| l.refusals())
    }
}

impl Drop for RunningReplay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind `bind` and serve on a dedicated thread until the returned handle is dropped.
pub fn spawn_in_thread(
    bind: SocketAddr,
    opts: ReplayOptions,
) -> Result<RunningReplay, ReplayError> {
    if opts.files.is_empty() {
        return Err(ReplayError::NoFiles);
    }
    if let Some(f) = opts.speed.bad_factor() {
        return Err(ReplayError::Speed(f));
    }
    let std_listener = std::net::TcpListener::bind(bind)
        .map_err(|source| ReplayError::Bind { addr: bind, source })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|source| ReplayError::Bind { addr: bind, source })?;
    let addr = std_listener
        .local_addr()
        .map_err(|source| ReplayError::Bind { addr: bind, source })?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let tls = opts.tls.is_some();
    let rest_limit = opts.rest_limit.clone();
    let thread = std::thread::Builder::new()
        .name("replay-server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "replay server runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "replay server listener");
                        return;
                    }
                };
                tokio::select! {
                    _ = serve(listener, opts) => {}
                    _ = stop_rx => {}
                }
            });
        })
        .map_err(|e| ReplayError::Thread(e.to_string()))?;
    Ok(RunningReplay {
        addr,
        tls,
        rest_limit,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Accept clients forever; each gets its own pass over the capture.
pub async fn serve(listener: TcpListener, opts: ReplayOptions) {
    if let Some(f) = opts.speed.bad_factor() {
        tracing::error!(error = %ReplayError::Speed(f), "replay server not started");
        return;
    }
    let (history, streamed) = (opts.history.clone(), opts.files.clone());
    let rest = match tokio::task::spawn_blocking(move || RestIndex::build(&history, &streamed))
        .await
    {
        Ok(Ok(index)) => index,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "replay history unreadable; REST endpoints serve nothing");
            RestIndex::default()
        }
        Err(e) => {
            tracing::error!(error = %e, "replay history indexing failed");
            RestIndex::default()
        }
    };
    let rest = Arc::new(rest);
    // The books take the streamed diffs only when a snapshot is asked for.
    let depth = DepthNotes::on_request(rest.clone());
    let opts = Arc::new(opts);
    let slots = Arc::new(Semaphore::new(opts.max_clients));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "replay accept failed");
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "replay server full, refusing client");
            continue;
        };
        let opts = opts.clone();
        let rest = rest.clone();
        let depth = depth.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match opts.tls.clone() {
                Some(tls) => {
                    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(tcp);
                    match tokio::time::timeout(HEAD_TIMEOUT, accept).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, &opts, rest, depth).await,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "replay TLS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "replay TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, &opts, rest, depth).await,
            }
            drop(permit);
        });
    }
}

/// A client has this long to send its request head (and finish a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection: a WebSocket upgrade streams the capture, anything else is a REST call.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    opts: &ReplayOptions,
    rest: Arc<RestIndex>,
    depth: Arc<DepthNotes>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = match read_head(stream, HEAD_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, error = %e, "replay client sent no request");
            return;
        }
    };
    if !is_websocket_upgrade(stream.head()) {
        if let Err(e) = serve_rest(stream, &depth, opts.rest_limit.as_deref()).await {
            tracing::info!(%peer, error = %e, "replay REST client ended");
        }
        return;
    }
    if let Err(e) = serve_client(stream, opts, rest, depth.connection()).await {
        tracing::info!(%peer, error = %e, "replay client ended");
    }
}

/// Answer one REST request (`GET <target> HTTP/1.1`) and close.
async fn serve_rest<S>(
    mut tcp: S,
    rest: &Arc<DepthNotes>,
    limit: Option<&super::rest_limit::RestLimit>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            break;
        }
        let n = tcp.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    use super::rest_limit::Verdict;
    let mut extra = String::new();
    let response = match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => {
            let verdict = limit.map(|l| l.judge(target, crate::clock::system_now_ms()));
            match verdict {
                None => answer(rest, target).await,
                Some(Verdict::Serve { used }) => {
                    extra = format!("X-MBX-USED-WEIGHT-1M: {used}\r\n");
                    answer(rest, target).await
                }
                Some(
                    verdict @ (Verdict::TooMany {
                        retry_after_s,
                        used,
                    }
                    | Verdict::Banned {
                        retry_after_s,
                        used,
                    }),
                ) => {
                    extra =
                        format!("X-MBX-USED-WEIGHT-1M: {used}\r\nRetry-After: {retry_after_s}\r\n");
                    let (status, msg) = match verdict {
                        Verdict::TooMany { .. } => (429, "Too much request weight used."),
                        _ => (418, "Way too much request weight used; IP banned."),
                    };
                    RestResponse {
                        status,
                        body: format!("{{\"code\":-1003,\"msg\":\"{msg}\"}}"),
                    }
                }
            }
        }
        _ => RestResponse {
            status: 405,
            body: "{\"code\":-1000,\"msg\":\"Only GET is supported.\"}".into(),
        },
    };
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.body.len(),
        response.body
    );
    tcp.write_all(out.as_bytes()).await?;
    tcp.shutdown().await
}

/// A REST answer, off the connections' threads: a depth snapshot may first read capture
/// files again to bring its book up to the stream (`replay::depth_notes`).
async fn answer(rest: &Arc<DepthNotes>, target: &str) -> RestResponse {
    let (rest, target) = (rest.clone(), target.to_string());
    tokio::task::spawn_blocking(move || rest.answer(&target))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "replay REST answer failed");
            RestResponse {
                status: 500,
                body: "{\"code\":-1000,\"msg\":\"An unknown error occurred while processing the request.\"}".into(),
            }
        })
}

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("capture: {0}")]
    Capture(#[from] crate::market::capture::CaptureError),
    #[error("client did not answer pings for {0:?}")]
    PongTimeout(Duration),
}

// The handshake callback's error type is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn serve_client<S>(
    tcp: S,
    opts: &ReplayOptions,
    rest: Arc<RestIndex>,
    depth: ConnectionNotes,
) -> Result<(), ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut subscription = None;
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        match Subscription::from_uri(req.uri().path(), req.uri().query()) {
            Some(s) => {
                subscription = Some(s);
                Ok(resp)
            }
            None => {
                let mut err = ErrorResponse::new(Some(
                    "expected /ws/<stream> or /stream?streams=<a>/<b>".to_string(),
                ));
                *err.status_mut() = StatusCode::NOT_FOUND;
                Err(err)
            }
        }
    })
    .await?;
    let Some(subscription) = subscription else {
        return Ok(());
    };
    tracing::info!(
        streams = subscription.streams.len(),
        combined = subscription.combined,
        "replay client subscribed"
    );

    let wanted = Wanted::new(subscription.streams.clone());
    let mut combined = subscription.combined;
    let mut frames = FrameSource::open_shared(opts, rest, wanted.clone(), depth.clone())?;
    // The diffs it passes over are noted here, in turn with those sent.
    frames.notes_in_turn();
    let pace = Pace::new(opts.speed);
    let mut rx = read_ahead::spawn(frames, pace);

    let (mut sink, mut incoming) = ws.split();
    // The client's half is read by a task of its own, polled only when the client sends:
    // polled beside every frame sent, tungstenite zeroed its read buffer each time.
    let (from_client, mut client_messages) = mpsc::channel(8);
    let reader = tokio::spawn(async move {
        while let Some(msg) = incoming.next().await {
            let failed = msg.is_err();
            if from_client.send(msg).await.is_err() || failed {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut ping = tokio::time::interval(opts.ping_interval);
    ping.tick().await;
    let mut last_pong = Instant::now();
    let mut ping_seq: u64 = 0;
    let mut pending = Batch::default();
    let mut capture_done = false;
    // Binance closes a connection that sends more than 5 messages in a second.
    let (mut rate_second, mut rate_count) = (0u64, 0u32);
    // Every batch carries where the connection's captured time starts.
    let due_at = |ns: u64, first: u64| pace.due(ns, first).map(Instant::from_std);

    loop {
        let due = pending
            .lines
            .front()
            .and_then(|line| due_at(line.local_ns, pending.first_ns));
        tokio::select! {
            biased;
            msg = client_messages.recv() => {
                // Requests and pings count; pongs answer the server's own pings.
                if matches!(msg, Some(Ok(Message::Text(_) | Message::Ping(_)))) {
                    let second = pace.started().elapsed().as_secs();
                    if second != rate_second {
                        (rate_second, rate_count) = (second, 0);
                    }
                    rate_count += 1;
                    if rate_count > subscribe::MAX_MESSAGES_PER_S {
                        let frame = CloseFrame { code: CloseCode::Policy, reason: "too many messages".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        return Ok(());
                    }
                }
                match msg {
                    Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                    Some(Ok(Message::Text(request))) => {
                        let reply = subscribe::answer(request.as_str(), &wanted, &mut combined);
                        sink.send(Message::text(reply)).await?;
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > opts.pong_timeout {
                    let frame = CloseFrame { code: CloseCode::Policy, reason: "pong timeout".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return Err(ClientError::PongTimeout(opts.pong_timeout));
                }
                ping_seq += 1;
                sink.send(Message::Ping(ping_seq.to_be_bytes().to_vec().into())).await?;
            }
            batch = rx.recv(), if pending.lines.is_empty() && !capture_done => match batch {
                Some(b) => pending = b,
                None => {
                    capture_done = true;
                    sink.flush().await?;
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "end of capture".into() };
                    sink.send(Message::Close(Some(frame))).await?;
                }
            },
            _ = async { if let Some(d) = due { sleep_until(d).await } }, if !pending.lines.is_empty() => {
                // Every line due by now goes out, then one flush: frames of one moment
                // share a write.
                let now = due.map(|_| Instant::now());
                // An UNSUBSCRIBE takes effect at once, not after the lines read ahead.
                let changed = wanted.version() != pending.version;
                while let Some(line) = pending.lines.front() {
                    if let Some(now) = now {
                        if due_at(line.local_ns, pending.first_ns).is_some_and(|d| d > now) {
                            break;
                        }
                    }
                    let Some(line) = pending.lines.pop_front() else { break };
                    let json = pending.json(&line);
                    let stream = stream_of(json);
                    if stream.is_some_and(|s| s.contains("@depth")) {
                        depth.note(json);
                    }
                    if line.passed {
                        continue;
                    }
                    if changed && stream.is_some_and(|s| !wanted.contains(s)) && !is_agg_or_poison(stream) {
                        continue;
                    }
                    sink.feed(Message::Text(pending.frame(&line, combined))).await?;
                }
                sink.flush().await?;
            }
        }
    }
}

/// Ends the client reader task when the connection's handler returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Frames the source builds (aggregate trades) or injects are subscribed by their own
/// stream; they are filtered when built.
fn is_agg_or_poison(stream: Option<&str>) -> bool {
    stream.is_none_or(|s| s.ends_with("@aggTrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binance_url_forms() {
        let s = Subscription::from_uri("/stream", Some("streams=btcusdt@trade/ethusdt@bookTicker"))
            .unwrap();
        assert!(s.combined);
        assert!(s.streams.contains("btcusdt@trade") && s.streams.contains("ethusdt@bookTicker"));
        let w = Subscription::from_uri("/ws/btcusdt@trade", None).unwrap();
        assert!(!w.combined);
        assert_eq!(w.streams.len(), 1);
        assert!(Subscription::from_uri("/other", None).is_none());
        assert!(Subscription::from_uri("/stream", None).is_none());
        assert!(Subscription::from_uri("/stream", Some("streams=")).is_none());
    }

    #[test]
    fn parses_speed() {
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert_eq!("10x".parse::<Speed>().unwrap(), Speed::Factor(10.0));
        assert_eq!("1".parse::<Speed>().unwrap(), Speed::Factor(1.0));
        assert!("0".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
        assert_eq!(Speed::Factor(-1.0).bad_factor(), Some(-1.0));
        assert!(Speed::Factor(f64::NAN).bad_factor().is_some());
        assert_eq!(Speed::Factor(0.5).bad_factor(), None);
        assert_eq!(Speed::Max.bad_factor(), None);
    }
}
