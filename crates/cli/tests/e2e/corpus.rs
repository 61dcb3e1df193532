//! The differential HTTP/1.1 corpus (`tests/http-corpus/requests.tsv`): every tricky request gets exactly the
//! answer the corpus records for palisade. `scripts/http-differential.sh` sends the same requests to nginx and
//! h2o for comparison.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Site, read_until_closed};

/// One corpus entry.
pub struct Case {
    pub id: String,
    pub expected: String,
    pub request: Vec<u8>,
}

/// Decodes the corpus's escapes (`\r \n \t \\ \xNN`) and expands the size placeholders.
fn decode(text: &str) -> Vec<u8> {
    let expanded = text
        .replace("LONG_URI", &"a".repeat(9000))
        .replace("MANY_HEADERS", &(0..150).map(|i| format!("X-H{i}: v")).collect::<Vec<_>>().join("\\r\\n"))
        .replace("HUGE_VALUE", &"h".repeat(70 << 10));
    let bytes = expanded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

pub fn load() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/http-corpus/requests.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.splitn(3, '\t');
            let (id, expected, request) = (cols.next().unwrap(), cols.next().unwrap(), cols.next().unwrap());
            Case { id: id.into(), expected: expected.into(), request: decode(request) }
        })
        .collect()
}

/// Sends `request` on a new connection and returns the final status of every response, comma-separated
/// (`-` if the server closed without answering).
fn answer(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(request);
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = text
        .split('\n')
        .filter_map(|line| line.strip_prefix("HTTP/1.1 ").or_else(|| line.strip_prefix("HTTP/1.0 ")))
        .filter_map(|rest| rest.get(..3))
        .filter(|code| !code.starts_with('1'))
        .collect();
    if statuses.is_empty() { "-".into() } else { statuses.join(",") }
}

#[test]
fn every_corpus_request_gets_the_recorded_answer() {
    let site = Site::new();
    site.write("www/index.html", "ok\n");
    site.config_with(
        "listen = [\"127.0.0.1:0\"]\ndata_dir = \"data\"",
        "[tenants.any]\nhosts = [\"*\"]\n\n[[tenants.any.routes]]\npath = \"/\"\nstatic = \"www\"\n",
    );
    let server = site.start();
    let cases = load();
    assert!(cases.len() >= 60, "the corpus has {} requests", cases.len());
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = answer(server.addr, &c.request);
            (got != c.expected).then(|| format!("{:28} expected {:8} got {got}", c.id, c.expected))
        })
        .collect();
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), cases.len(), mismatches.join("\n"));
    assert!(server.log_contains("palisade listening"), "server alive");
}
