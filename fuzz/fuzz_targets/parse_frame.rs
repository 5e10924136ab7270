#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bizra_risk::market::parse_combined(text);
        let _ = bizra_risk::market::capture::parse_line(text);
    }
});
