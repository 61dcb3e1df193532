//! Certificate and key files as an operator (or a broken ACME download) might supply them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (cert, key) = data.split_at(split);
    let hosts = ["a.test".to_string(), "*.b.test".to_string()];
    let p = std::path::Path::new("fuzz.pem");
    let _ = palisade_tls::LoadedCert::from_pem(cert, key, &hosts, p, p);
});
