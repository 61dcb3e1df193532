//! A request path decoded into a file path below a static root: never absolute, never `..`.
#![no_main]

libfuzzer_sys::fuzz_target!(|path: &str| {
    palisade_static::fuzzing::relative_path(path);
});
