//! `record`: write exactly what a Binance stream sends, one `<local_ns> <json>` line per text
//! frame (the bundled captures' format), gzip files rotated by size and time, so a live
//! session can be replayed later by the replay server. And `import-trades`: the public
//! Binance trades CSV turned into the same capture format.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("connect {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the recording writer stopped")]
    WriterGone,
    #[error("{path}: line {line}: {reason}")]
    BadCsv {
        path: String,
        line: usize,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub url: String,
    pub dir: PathBuf,
    /// File name prefix; rotated files are `<prefix>_<start ns>.gz`.
    pub prefix: String,
    /// Rotate after this many uncompressed bytes ...
    pub rotate_bytes: u64,
    /// ... or after this long, whichever comes first.
    pub rotate_after: Duration,
    /// Stop after this long (None: until the server closes the connection).
    pub duration: Option<Duration>,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct RecordReport {
    pub frames: u64,
    pub bytes: u64,
    pub binary_frames_skipped: u64,
    pub files: Vec<PathBuf>,
    pub ended_by: String,
}

/// One open output file.
struct Output {
    path: PathBuf,
    gz: GzEncoder<BufWriter<File>>,
    bytes: u64,
    opened: Instant,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_output(dir: &Path, prefix: &str, first_ns: u128) -> Result<Output, RecordError> {
    let path = dir.join(format!("{prefix}_{first_ns}.gz"));
    let file = File::create(&path).map_err(io(&path))?;
    Ok(Output {
        gz: GzEncoder::new(BufWriter::new(file), Compression::default()),
        path,
        bytes: 0,
        opened: Instant::now(),
    })
}

fn close_output(out: Output) -> Result<PathBuf, RecordError> {
    let path = out.path;
    let mut inner = out.gz.finish().map_err(io(&path))?;
    inner.flush().map_err(io(&path))?;
    inner.get_ref().sync_all().map_err(io(&path))?;
    Ok(path)
}

/// The writer thread: lines in, rotated gzip files out. Returns the files it wrote.
fn writer(
    rx: mpsc::Receiver<(u128, String)>,
    dir: PathBuf,
    prefix: String,
    rotate_bytes: u64,
    rotate_after: Duration,
) -> Result<Vec<PathBuf>, RecordError> {
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut files = Vec::new();
    let mut out: Option<Output> = None;
    for (ns, text) in rx {
        if out
            .as_ref()
            .is_some_and(|o| o.bytes >= rotate_bytes || o.opened.elapsed() >= rotate_after)
        {
            if let Some(o) = out.take() {
                files.push(close_output(o)?);
            }
        }
        let o = match &mut out {
            Some(o) => o,
            None => out.insert(open_output(&dir, &prefix, ns)?),
        };
        let line = format!("{ns} {text}\n");
        o.gz.write_all(line.as_bytes()).map_err(io(&o.path))?;
        o.bytes += line.len() as u64;
    }
    if let Some(o) = out.take() {
        files.push(close_output(o)?);
    }
    Ok(files)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Record until the server closes the connection or `duration` passes.
pub async fn record(opts: RecordOptions) -> Result<RecordReport, RecordError> {
    let connect = tokio_tungstenite::connect_async(opts.url.as_str());
    let (ws, _) = tokio::time::timeout(opts.connect_timeout, connect)
        .await
        .map_err(|_| RecordError::Connect {
            url: opts.url.clone(),
            reason: "timed out".into(),
        })?
        .map_err(|e| RecordError::Connect {
            url: opts.url.clone(),
            reason: e.to_string(),
        })?;
    // Bounded: a slow disk slows reading the socket instead of growing memory.
    let (tx, rx) = mpsc::sync_channel::<(u128, String)>(4096);
    let (dir, prefix) = (opts.dir.clone(), opts.prefix.clone());
    let (rotate_bytes, rotate_after) = (opts.rotate_bytes, opts.rotate_after);
    let writer = std::thread::spawn(move || writer(rx, dir, prefix, rotate_bytes, rotate_after));
    let mut report = RecordReport::default();
    let (_write, mut read) = ws.split();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    report.ended_by = loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, read.next()).await {
                Ok(m) => m,
                Err(_) => break "duration reached".into(),
            },
            None => read.next().await,
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                report.frames += 1;
                report.bytes += t.len() as u64;
                let line = (now_ns(), t.as_str().to_string());
                match tx.try_send(line) {
                    Ok(()) => {}
                    // The disk is behind: wait for room off the runtime thread.
                    Err(mpsc::TrySendError::Full(line)) => {
                        let tx = tx.clone();
                        let sent = tokio::task::spawn_blocking(move || tx.send(line).is_ok()).await;
                        if !matches!(sent, Ok(true)) {
                            break "writer stopped".into();
                        }
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => break "writer stopped".into(),
                }
            }
            Some(Ok(Message::Binary(_))) => report.binary_frames_skipped += 1,
            Some(Ok(Message::Close(frame))) => {
                break format!(
                    "server close: {}",
                    frame.map(|f| f.reason.to_string()).unwrap_or_default()
                )
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error: {e}"),
            None => break "eof".into(),
        }
    };
    drop(tx);
    report.files = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| RecordError::WriterGone)?
        .map_err(|_| RecordError::WriterGone)??;
    Ok(report)
}

/// Convert a public Binance trades CSV (`id,price,qty,quoteQty,time,isBuyerMaker,
/// isBestMatch`, no header, times in ms or µs) into a gzip capture of `<symbol>@trade`
/// messages, so the replay server can serve it. Returns the trades written.
pub fn import_trades_csv(csv: &Path, symbol: &str, out: &Path) -> Result<u64, RecordError> {
    let symbol = symbol.to_ascii_uppercase();
    let text = std::fs::read_to_string(csv).map_err(io(csv))?;
    let file = File::create(out).map_err(io(out))?;
    let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
    let stream = format!("{}@trade", symbol.to_ascii_lowercase());
    let trades = crate::market::trades_csv::parse(&text).map_err(|e| RecordError::BadCsv {
        path: csv.display().to_string(),
        line: e.line,
        reason: e.reason,
    })?;
    for t in &trades {
        let line = format!(
            "{} {{\"stream\":\"{stream}\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"s\":\"{symbol}\",\"t\":{id},\"p\":\"{p}\",\"q\":\"{q}\",\"T\":{ms},\"m\":{m},\"M\":{best}}}}}\n",
            i128::from(t.time_ms) * 1_000_000,
            ms = t.time_ms,
            id = t.id,
            p = t.price_text,
            q = t.qty_text,
            m = t.buyer_is_maker,
            best = t.best_match,
        );
        gz.write_all(line.as_bytes()).map_err(io(out))?;
    }
    let mut inner = gz.finish().map_err(io(out))?;
    inner.flush().map_err(io(out))?;
    Ok(trades.len() as u64)
}
