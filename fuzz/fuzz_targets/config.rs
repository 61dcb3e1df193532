//! `palisade.toml` parsing and validation: any text gives a Config or located diagnostics, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Err(palisade_config::ConfigError::Invalid(problems)) =
        palisade_config::Config::parse(std::path::Path::new("/nonexistent/fuzz.toml"), text)
    {
        for p in problems {
            assert!(p.location.line >= 1 && p.location.column >= 1);
        }
    }
});
