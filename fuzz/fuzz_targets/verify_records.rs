#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let mut v = bizra_risk::audit::Verifier::new(&[key]);
    v.push_stream("fuzz", data);
    let _ = v.finish();
});
