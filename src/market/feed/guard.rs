//! Plausibility of well-formed market events, checked before anything moves state: a price
//! within a band of the symbol's last good price, a positive quantity, an event time
//! within a window of the stream's clock, and a trade ID within a window of the cursor.
//! What cannot be confirmed is quarantined, never delivered. Pure: times come in.

use crate::fast_hash::FastMap;
use crate::market::Symbol;

/// Why a well-formed event was not believed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Implausible {
    /// A price outside the band around the symbol's last good price, not confirmed.
    Price,
    /// A trade or aggregate of zero quantity.
    ZeroQuantity,
    /// An event time further ahead of the stream's clock than allowed.
    EventTimeAhead,
    /// An event time further behind the stream's clock than allowed.
    EventTimeBehind,
    /// A trade ID further ahead of the cursor than any plausible burst, not confirmed.
    TradeId,
}

impl Implausible {
    pub fn code(self) -> &'static str {
        match self {
            Self::Price => "IMPLAUSIBLE_PRICE",
            Self::ZeroQuantity => "ZERO_QUANTITY",
            Self::EventTimeAhead => "EVENT_TIME_AHEAD",
            Self::EventTimeBehind => "EVENT_TIME_BEHIND",
            Self::TradeId => "IMPLAUSIBLE_TRADE_ID",
        }
    }
}

/// The bounds, as plain values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlausibilitySettings {
    /// Largest relative distance of a price from the symbol's last good price
    /// (0.2 = 20 %) before it must be confirmed.
    pub max_price_deviation: f64,
    /// Largest distance of an event time ahead of / behind the stream's clock (the newest
    /// accepted event time of the connection).
    pub max_event_ahead_ms: i64,
    pub max_event_behind_ms: i64,
    /// Largest trade-ID (or aggregate-ID) jump believed without confirmation.
    pub max_id_jump: u64,
    /// Where REST cannot confirm: this many consistent events in a row make a new price
    /// level or ID range believed (a single injected event never is).
    pub confirm_events: u32,
}

impl Default for PlausibilitySettings {
    fn default() -> Self {
        Self {
            max_price_deviation: 0.2,
            max_event_ahead_ms: 10_000,
            max_event_behind_ms: 60_000,
            max_id_jump: 10_000,
            confirm_events: 3,
        }
    }
}

/// A level not yet believed, and how many consistent events have supported it.
#[derive(Debug, Clone, Copy)]
struct Candidate<T> {
    value: T,
    seen: u32,
}

#[derive(Debug, Clone)]
pub struct Guard {
    settings: PlausibilitySettings,
    /// `ln(1 + max_price_deviation)`: the band in log space, taken once.
    ln_band: f64,
    /// The newest accepted event time of the connection.
    stream_ms: Option<i64>,
    reference_price: FastMap<Symbol, f64>,
    price_candidates: FastMap<Symbol, Candidate<f64>>,
    id_candidates: FastMap<(Symbol, bool), Candidate<u64>>,
}

impl Guard {
    pub fn new(settings: PlausibilitySettings) -> Self {
        Self {
            ln_band: (1.0 + settings.max_price_deviation).ln(),
            settings,
            stream_ms: None,
            reference_price: FastMap::default(),
            price_candidates: FastMap::default(),
            id_candidates: FastMap::default(),
        }
    }

    pub fn settings(&self) -> &PlausibilitySettings {
        &self.settings
    }

    /// The stream's clock: the newest accepted event time.
    pub fn stream_ms(&self) -> Option<i64> {
        self.stream_ms
    }

    /// An event time against the stream's clock; live (`received_ms` given), nothing may
    /// be further ahead of the local receive time either, so even a connection's first
    /// event cannot set the clock into the future.
    pub fn check_time(&self, event_ms: i64, received_ms: Option<i64>) -> Result<(), Implausible> {
        let ahead_of = match (self.stream_ms, received_ms) {
            (Some(s), Some(r)) => Some(s.max(r)),
            (s, r) => s.or(r),
        };
        if ahead_of.is_some_and(|t| event_ms.saturating_sub(t) > self.settings.max_event_ahead_ms) {
            return Err(Implausible::EventTimeAhead);
        }
        if self
            .stream_ms
            .is_some_and(|t| t.saturating_sub(event_ms) > self.settings.max_event_behind_ms)
        {
            return Err(Implausible::EventTimeBehind);
        }
        Ok(())
    }

    /// An accepted event's time: the stream's clock never goes back.
    pub fn accept_time(&mut self, event_ms: i64) {
        self.stream_ms = Some(self.stream_ms.map_or(event_ms, |t| t.max(event_ms)));
    }

    /// Whether `price` lies within the band around the symbol's last good price (always,
    /// before the first).
    pub fn price_in_band(&self, symbol: &str, price: f64) -> bool {
        self.reference_price
            .get(symbol)
            .is_none_or(|r| within(*r, price, self.ln_band))
    }

    /// Every price of `prices` is within the band.
    pub fn prices_in_band(&self, symbol: &str, mut prices: impl Iterator<Item = f64>) -> bool {
        match self.reference_price.get(symbol) {
            None => true,
            Some(r) => prices.all(|p| within(*r, p, self.ln_band)),
        }
    }

    /// A book level on the side `bid` that does not cross the market by more than the
    /// band: no bid far above the last good price, no ask far below it.
    pub fn level_plausible(&self, symbol: &str, price: f64, bid: bool) -> bool {
        let band = 1.0 + self.settings.max_price_deviation;
        self.reference_price.get(symbol).is_none_or(|r| {
            if bid {
                price <= r * band
            } else {
                price >= r / band
            }
        })
    }

    /// A good price: the band moves with it.
    pub fn accept_price(&mut self, symbol: &str, price: f64) {
        if !self.price_candidates.is_empty() {
            self.price_candidates.remove(symbol);
        }
        match self.reference_price.get_mut(symbol) {
            Some(r) => *r = price,
            None => {
                self.reference_price.insert(symbol.into(), price);
            }
        }
    }

    /// An out-of-band price that REST could not confirm: true once `confirm_events`
    /// consecutive such prices agree with one another (the market really moved).
    pub fn price_by_consensus(&mut self, symbol: &str, price: f64) -> bool {
        let ln_band = self.ln_band;
        let need = self.settings.confirm_events.max(1);
        let c = self
            .price_candidates
            .entry(symbol.into())
            .and_modify(|c| {
                if within(c.value, price, ln_band) {
                    c.seen += 1;
                    c.value = price;
                } else {
                    *c = Candidate {
                        value: price,
                        seen: 1,
                    };
                }
            })
            .or_insert(Candidate {
                value: price,
                seen: 1,
            });
        c.seen >= need
    }

    /// An ID beyond the jump window that REST could not confirm: true once
    /// `confirm_events` such IDs follow one another within the window.
    pub fn id_by_consensus(&mut self, symbol: &str, aggregate: bool, id: u64) -> bool {
        let window = self.settings.max_id_jump;
        let need = self.settings.confirm_events.max(1);
        let c = self
            .id_candidates
            .entry((symbol.into(), aggregate))
            .and_modify(|c| {
                if id > c.value && id - c.value <= window {
                    c.seen += 1;
                    c.value = id;
                } else {
                    *c = Candidate { value: id, seen: 1 };
                }
            })
            .or_insert(Candidate { value: id, seen: 1 });
        c.seen >= need
    }

    /// An ID was accepted: any half-believed jump is forgotten.
    pub fn accept_id(&mut self, symbol: &str, aggregate: bool) {
        if !self.id_candidates.is_empty() {
            self.id_candidates.remove(&(symbol.into(), aggregate));
        }
    }
}

/// `price` within a relative distance of `reference` whose logarithm is `ln_band`, measured
/// in log space so the band is symmetric for rises and falls.
fn within(reference: f64, price: f64, ln_band: f64) -> bool {
    (price / reference).ln().abs() <= ln_band
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_windows_and_consensus() {
        let mut g = Guard::new(PlausibilitySettings::default());
        assert!(g.price_in_band("BTC", 1e308), "no reference yet");
        g.accept_price("BTC", 60_000.0);
        assert!(g.price_in_band("BTC", 66_000.0));
        assert!(!g.price_in_band("BTC", 1e308));
        assert!(!g.price_in_band("BTC", 40_000.0));
        assert!(!g.price_by_consensus("BTC", 40_000.0));
        assert!(
            !g.price_by_consensus("BTC", 1e308),
            "an outlier restarts the count"
        );
        assert!(!g.price_by_consensus("BTC", 40_000.0));
        assert!(!g.price_by_consensus("BTC", 40_100.0));
        assert!(g.price_by_consensus("BTC", 40_050.0));

        assert_eq!(g.check_time(i64::MAX, None), Ok(()), "no clock yet");
        g.accept_time(1_000_000);
        assert_eq!(
            g.check_time(1_000_000 + 3_600_000, None),
            Err(Implausible::EventTimeAhead)
        );
        assert_eq!(
            g.check_time(1_000_000 - 86_400_000, None),
            Err(Implausible::EventTimeBehind)
        );
        assert_eq!(
            g.check_time(i64::MIN, None),
            Err(Implausible::EventTimeBehind)
        );
        assert_eq!(g.check_time(1_005_000, None), Ok(()));
        g.accept_time(900_000);
        assert_eq!(g.stream_ms(), Some(1_000_000), "the clock never goes back");

        assert!(!g.id_by_consensus("BTC", false, 10_000_000_000_000));
        assert!(!g.id_by_consensus("BTC", false, 500_000));
        assert!(!g.id_by_consensus("BTC", false, 500_001));
        assert!(g.id_by_consensus("BTC", false, 500_003));
    }
}
