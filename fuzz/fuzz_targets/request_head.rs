//! What palisade checks in a request head outside hyper: the fuzz input is split into a method, a target
//! and Host headers; whatever `http` accepts goes through the strict checks, host extraction and routing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == b'\n');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let mut builder = http::Request::builder().method(method).uri(target);
    for host in parts.by_ref().take(3) {
        builder = builder.header(http::header::HOST, host);
    }
    let route_path = parts.next().and_then(|p| std::str::from_utf8(p).ok()).unwrap_or("/");
    if let Ok(req) = builder.body(()) {
        palisade_server::fuzzing::request_head(&req, route_path);
    }
});
