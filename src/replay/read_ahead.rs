//! A connection's reader thread: reads its frames ahead of the sender, off the async
//! runtime (file I/O and gunzip), and hands them over in batches through a bounded channel.
//!
//! At a paced speed it reads no further than [`PACED_LEAD`] ahead of the frames' due time.
//! A subscription change filters the lines read after it, so a stream subscribed on an
//! open connection starts within that lead, as on Binance, not after every frame already
//! read ahead (at 256 lines a batch, that was over a minute of a quiet capture).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames::FrameSource;
use super::server::Speed;

/// Lines a connection's reader hands over at once ...
const BATCH_LINES: usize = 256;
/// ... and batches read ahead.
const BATCHES_AHEAD: usize = 4;
/// How far ahead of their due time a paced connection reads its frames.
const PACED_LEAD: Duration = Duration::from_millis(100);
/// The longest the reader sleeps before checking that its connection is still open.
const LONGEST_NAP: Duration = Duration::from_millis(250);

/// When captured time falls due on a connection: captured time passes `factor` times
/// faster than real time from `started` on; at maximum speed every frame is due at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    started: Instant,
    factor: Option<f64>,
}

impl Pace {
    pub(super) fn new(speed: Speed) -> Self {
        Self {
            started: Instant::now(),
            factor: match speed {
                Speed::Factor(f) => Some(f),
                Speed::Max => None,
            },
        }
    }

    pub(super) fn started(&self) -> Instant {
        self.started
    }

    /// When captured time `ns` falls due, the connection's first frame being at `first_ns`;
    /// `None` at maximum speed (always due).
    pub(super) fn due(&self, ns: u64, first_ns: u64) -> Option<Instant> {
        self.factor.map(|f| {
            self.started + Duration::from_secs_f64(ns.saturating_sub(first_ns) as f64 / 1e9 / f)
        })
    }
}

/// Start the reader thread of `frames`; its batches arrive on the receiver, which ends
/// after the last one (or when the capture cannot be read).
pub(super) fn spawn(mut frames: FrameSource, pace: Pace) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    std::thread::spawn(move || {
        let mut first_ns = None;
        loop {
            let mut due = |ns: u64| pace.due(ns, *first_ns.get_or_insert(ns));
            let (batch, done) = Batch::read(&mut frames, |ns| {
                due(ns).is_some_and(|d| d > Instant::now() + PACED_LEAD)
            });
            let last_due = batch.lines.back().and_then(|line| due(line.local_ns));
            if (!batch.lines.is_empty() && tx.blocking_send(batch).is_err()) || done {
                return;
            }
            // The next line is read once the last one read falls due within the lead.
            if let Some(until) = last_due.and_then(|d| d.checked_sub(PACED_LEAD)) {
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || tx.is_closed() {
                        break;
                    }
                    std::thread::sleep(left.min(LONGEST_NAP));
                }
                if tx.is_closed() {
                    return;
                }
            }
        }
    });
    rx
}

/// Lines read ahead for one connection, filtered under subscription `version`: their text
/// back to back in one buffer, so handing a batch over and freeing it costs one
/// allocation, not one per frame.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) version: u64,
    text: Utf8Bytes,
    pub(super) lines: VecDeque<BatchLine>,
}

/// A line of a batch: its capture time and where its JSON lies in the batch's text.
pub(super) struct BatchLine {
    pub(super) local_ns: u64,
    span: std::ops::Range<usize>,
}

impl Batch {
    /// Up to `BATCH_LINES` frames of `frames`, ending early after a line whose capture time
    /// `far_ahead` says is far enough; `true` once they are all read (or unreadable).
    /// Stamped with the oldest subscription version its lines were filtered under: lines
    /// the source had queued before a change come first.
    fn read(frames: &mut FrameSource, mut far_ahead: impl FnMut(u64) -> bool) -> (Self, bool) {
        let version = frames.filtered_under();
        let mut text = String::with_capacity(BATCH_LINES * 200);
        let mut lines = VecDeque::with_capacity(BATCH_LINES);
        let mut done = false;
        while lines.len() < BATCH_LINES {
            match frames.next_frame() {
                Ok(Some(line)) => {
                    let start = text.len();
                    text.push_str(&line.json);
                    lines.push_back(BatchLine {
                        local_ns: line.local_ns,
                        span: start..text.len(),
                    });
                    let ahead = far_ahead(line.local_ns);
                    frames.recycle(line);
                    if ahead {
                        break;
                    }
                }
                Ok(None) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay capture read failed");
                    done = true;
                    break;
                }
            }
        }
        let batch = Self {
            version,
            text: text.into(),
            lines,
        };
        (batch, done)
    }

    pub(super) fn json(&self, line: &BatchLine) -> &str {
        self.text
            .as_str()
            .get(line.span.clone())
            .unwrap_or_default()
    }

    /// The frame of `line`: the combined envelope as captured, or only its `data` for
    /// `/ws/` clients; a view of the batch's text, not a copy.
    pub(super) fn frame(&self, line: &BatchLine, combined: bool) -> Utf8Bytes {
        let span = if combined {
            line.span.clone()
        } else {
            let data = data_span(self.json(line));
            line.span.start + data.start..line.span.start + data.end
        };
        let bytes: &bytes::Bytes = self.text.as_ref();
        // A span of a valid string cut at ASCII boundaries: the check cannot fail.
        Utf8Bytes::try_from(bytes.slice(span)).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Where a combined envelope's `data` lies in it (the whole envelope if it has none).
fn data_span(json: &str) -> std::ops::Range<usize> {
    match serde_json::from_str::<Envelope<'_>>(json) {
        Ok(env) => {
            let data = env.data.get();
            let start = data.as_ptr() as usize - json.as_ptr() as usize;
            start..start + data.len()
        }
        Err(_) => 0..json.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_clients_get_data_only() {
        let envelope = r#"{"stream":"a@trade","data":{"x":1}}"#;
        let batch = Batch {
            version: 0,
            text: format!("{envelope}{envelope}").into(),
            lines: VecDeque::new(),
        };
        let second = BatchLine {
            local_ns: 1,
            span: envelope.len()..2 * envelope.len(),
        };
        assert_eq!(batch.frame(&second, false).as_str(), r#"{"x":1}"#);
        assert_eq!(batch.frame(&second, true).as_str(), envelope);
        assert_eq!(data_span("not json"), 0..8);
    }

    #[test]
    fn paced_frames_fall_due_at_the_speed_and_all_at_once_at_max() {
        let paced = Pace::new(Speed::Factor(2.0));
        assert_eq!(
            paced.due(3_000_000_000, 1_000_000_000),
            Some(paced.started() + Duration::from_secs(1))
        );
        assert_eq!(paced.due(5, 9), Some(paced.started()));
        assert_eq!(Pace::new(Speed::Max).due(3_000_000_000, 1), None);
    }
}
