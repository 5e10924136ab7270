//! A connection's reader thread: reads its frames ahead of the sender, off the async
//! runtime (file I/O and gunzip), and hands them over in batches through a bounded channel.
//!
//! At a paced speed it takes no line from the capture before the line is due within
//! [`PACED_LEAD`]: it looks at the next line's time first and waits. A subscription change
//! filters the lines taken after it, and a stream it adds is read from the captured time
//! the connection has got to, so on an open connection the stream starts at once, as on
//! Binance. Reading ahead by count instead, six batches of 256 lines were over a minute of
//! capture at the start of the bundled one, and a quiet stream was read on to its next
//! frame however far. The lead never splits frames of one captured moment (a batch still
//! ends at 256 lines).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames::{FrameSource, Upcoming};
use super::server::Speed;

/// Lines a connection's reader hands over at once ...
const BATCH_LINES: usize = 256;
/// ... and batches read ahead.
const BATCHES_AHEAD: usize = 4;
/// How long before its due time a paced connection takes a line from the capture.
const PACED_LEAD: Duration = Duration::from_millis(100);
/// The longest the reader waits before checking that its connection is still open and
/// its subscription the same.
const LONGEST_NAP: Duration = Duration::from_millis(50);
/// Captured time is paced no further out than this (about 31 years).
const LONGEST_WAIT_S: f64 = 1e9;

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

    /// When captured time `ns` falls due, the connection's captured time starting at
    /// `first_ns` (the capture's first line); `None` at maximum speed (always due).
    pub(super) fn due(&self, ns: u64, first_ns: u64) -> Option<Instant> {
        self.factor.map(|f| {
            let s = ns.saturating_sub(first_ns) as f64 / 1e9 / f;
            // NaN (a factor no parser lets through) waits longest rather than panics.
            let s = if s.is_nan() {
                LONGEST_WAIT_S
            } else {
                s.clamp(0.0, LONGEST_WAIT_S)
            };
            self.started + Duration::from_secs_f64(s)
        })
    }

    /// The latest captured time due by `at`; `None` at maximum speed (no limit).
    fn due_by(&self, at: Instant, first_ns: u64) -> Option<u64> {
        self.factor.map(|f| {
            let ns = at.saturating_duration_since(self.started).as_secs_f64() * f * 1e9;
            first_ns.saturating_add(ns as u64)
        })
    }
}

/// Start the reader thread of `frames`; its batches arrive on the receiver, which ends
/// after the last one (or when the capture cannot be read).
pub(super) fn spawn(mut frames: FrameSource, pace: Pace) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    std::thread::spawn(move || {
        // Captured time is paced from the capture's first line, wanted or not: a stream
        // whose first frame comes late starts late, and one subscribed before it finds
        // the connection where it should be.
        let first_ns = match frames.peek_ns() {
            Ok(Some(ns)) => ns,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "replay capture read failed");
                return;
            }
        };
        let mut room = Room::default();
        loop {
            // Where the connection was when its subscription changed, if it did: the
            // reader may have noticed only at the end of a nap.
            let now = Instant::now();
            let at = frames.subscription_changed_at().map_or(now, |t| t.min(now));
            if let Some(ns) = pace.due_by(at, first_ns) {
                frames.connection_at(ns);
            }
            let (batch, then) = Batch::read(&mut frames, &pace, first_ns, room);
            room = Room::after(&batch);
            if !batch.lines.is_empty() && tx.blocking_send(batch).is_err() {
                return;
            }
            let next_ns = match then {
                Then::Done => return,
                Then::ReadOn => continue,
                Then::WaitFor(ns) => ns,
            };
            let until = pace
                .due(next_ns, first_ns)
                .and_then(|due| due.checked_sub(PACED_LEAD));
            while let Some(left) = until.map(|u| u.saturating_duration_since(Instant::now())) {
                if left.is_zero() || tx.is_closed() || frames.subscription_changed() {
                    break;
                }
                std::thread::sleep(left.min(LONGEST_NAP));
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// What the reader does after a batch.
enum Then {
    /// Read the next one.
    ReadOn,
    /// Wait until the line at this captured time is due within the lead.
    WaitFor(u64),
    /// The capture is read (or unreadable).
    Done,
}

/// The room a batch starts with: about what the last one used.
#[derive(Clone, Copy)]
struct Room {
    text_bytes: usize,
    lines: usize,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            text_bytes: BATCH_LINES * 200,
            lines: BATCH_LINES,
        }
    }
}

impl Room {
    fn after(batch: &Batch) -> Self {
        let text = batch.text.as_str().len();
        Self {
            text_bytes: (text + text / 4).clamp(1 << 10, BATCH_LINES * 200),
            lines: (batch.lines.len() * 2).clamp(16, BATCH_LINES),
        }
    }
}

/// Lines read ahead for one connection, filtered under subscription `version`: their text
/// back to back in one buffer, so handing a batch over and freeing it costs one
/// allocation, not one per frame.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) version: u64,
    /// Where the connection's captured time starts (the same in every batch).
    pub(super) first_ns: u64,
    text: Utf8Bytes,
    pub(super) lines: VecDeque<BatchLine>,
}

/// A line of a batch: its capture time and where its JSON lies in the batch's text.
pub(super) struct BatchLine {
    pub(super) local_ns: u64,
    span: std::ops::Range<usize>,
    /// A depth diff passed over or left out of the stream: noted in its turn, not sent.
    pub(super) passed: bool,
}

fn push(
    text: &mut String,
    lines: &mut VecDeque<BatchLine>,
    frames: &mut FrameSource,
    line: crate::market::capture::CaptureLine,
    passed: bool,
) {
    let start = text.len();
    text.push_str(&line.json);
    lines.push_back(BatchLine {
        local_ns: line.local_ns,
        span: start..text.len(),
        passed,
    });
    frames.recycle(line);
}

impl Batch {
    /// Up to `BATCH_LINES` frames of `frames`, at a paced speed only those due within the
    /// lead (`first_ns`: where the connection's captured time starts).
    /// Stamped with the oldest subscription version its lines were filtered under: lines
    /// the source had queued before a change come first.
    fn read(frames: &mut FrameSource, pace: &Pace, first_ns: u64, room: Room) -> (Self, Then) {
        let version = frames.filtered_under();
        let horizon = pace
            .due_by(Instant::now() + PACED_LEAD, first_ns)
            .unwrap_or(u64::MAX);
        let mut text = String::with_capacity(room.text_bytes);
        let mut lines = VecDeque::with_capacity(room.lines);
        let mut then = Then::ReadOn;
        while lines.len() < BATCH_LINES {
            match frames.next_frame_by(horizon) {
                Ok(Upcoming::Frame(line)) => push(&mut text, &mut lines, frames, line, false),
                Ok(Upcoming::Passed(line)) => push(&mut text, &mut lines, frames, line, true),
                Ok(Upcoming::After(ns)) => {
                    then = Then::WaitFor(ns);
                    break;
                }
                Ok(Upcoming::End) => {
                    then = Then::Done;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay capture read failed");
                    then = Then::Done;
                    break;
                }
            }
        }
        let batch = Self {
            version,
            first_ns,
            text: text.into(),
            lines,
        };
        (batch, then)
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
            first_ns: 0,
            text: format!("{envelope}{envelope}").into(),
            lines: VecDeque::new(),
        };
        let second = BatchLine {
            local_ns: 1,
            span: envelope.len()..2 * envelope.len(),
            passed: false,
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
        assert_eq!(
            paced.due_by(paced.started() + Duration::from_secs(1), 1_000_000_000),
            Some(3_000_000_000)
        );
        let max = Pace::new(Speed::Max);
        assert_eq!(max.due(3_000_000_000, 1), None);
        assert_eq!(max.due_by(max.started(), 1), None);
        // A speed far below real time paces a far-out frame without overflowing.
        let slow = Pace::new(Speed::Factor(1e-300));
        assert!(slow.due(u64::MAX, 0).is_some());
    }
}
