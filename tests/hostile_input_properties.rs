//! The parsers behind ingest and `verify` never panic, whatever bytes arrive
//! (the same entry points as the cargo-fuzz targets in fuzz/).

use bizra_risk::audit::Verifier;
use bizra_risk::market::{capture::parse_line, parse_combined};
use proptest::prelude::*;

const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":2,"p":"1.5","q":"0.1","T":1,"m":true,"M":true}}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_parser_never_panics(s in ".{0,300}") {
        let _ = parse_combined(&s);
        let _ = parse_line(&s);
    }

    #[test]
    fn mutated_trades_never_panic(pos in 0usize..TRADE.len(), byte in any::<u8>()) {
        let mut b = TRADE.as_bytes().to_vec();
        b[pos] = byte;
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = parse_combined(s);
        }
    }

    #[test]
    fn verifier_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let mut v = Verifier::new(&[key]);
        v.push_stream("prop", &bytes);
        let r = v.finish();
        prop_assert!(!r.ok(), "random bytes never verify");
    }
}
