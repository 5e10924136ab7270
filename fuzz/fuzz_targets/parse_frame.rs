#![no_main]
use bizra_risk::market::{compact, depth::DepthUpdate, BookTicker, Trade};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bizra_risk::market::parse_combined(text);
        let _ = bizra_risk::market::capture::parse_line(text);
        // The one-pass reader accepts only what serde reads as the same value.
        let shown = |v: &dyn std::fmt::Debug| format!("{v:?}");
        if let Some(t) = compact::trade(text) {
            let general = serde_json::from_str::<Trade>(text).ok();
            assert_eq!(Some(shown(&t)), general.map(|g| shown(&g)), "{text}");
        }
        if let Some(b) = compact::book_ticker(text) {
            let general = serde_json::from_str::<BookTicker>(text).ok();
            assert_eq!(Some(shown(&b)), general.map(|g| shown(&g)), "{text}");
        }
        if let Some(d) = compact::depth_update(text) {
            let general = serde_json::from_str::<DepthUpdate>(text).ok();
            assert_eq!(Some(shown(&d)), general.map(|g| shown(&g)), "{text}");
        }
        if let Some(d) = compact::depth_text(text) {
            let general = serde_json::from_str::<compact::DepthText<'_>>(text).ok();
            assert_eq!(Some(shown(&d)), general.map(|g| shown(&g)), "{text}");
        }
    }
});
