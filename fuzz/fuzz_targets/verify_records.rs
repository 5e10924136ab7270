#![no_main]
use bizra_risk::audit::{Verifier, VerifyOptions};
use libfuzzer_sys::fuzz_target;

// Any bytes, as events or checkpoints, batched or strict, anchored or not: no panic.
fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    for (strict, from_genesis) in [(false, true), (true, false)] {
        let mut v = Verifier::with_options(&[key], VerifyOptions { strict, from_genesis, allow_duplicates: true });
        v.push_stream("fuzz", data);
        let _ = v.finish();
    }
});
