//! A CGI program's stdout (guest-controlled bytes) parsed into a response.
#![no_main]

libfuzzer_sys::fuzz_target!(|output: &[u8]| {
    let _ = palisade_sandbox::fuzzing::cgi_response(output);
});
