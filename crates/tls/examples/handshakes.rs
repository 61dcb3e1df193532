//! A TLS handshake load generator for the benchmarks: `CONNS` tasks, each opening a TCP connection, completing
//! a TLS 1.3 handshake (X25519, so every server negotiates the same key exchange), sending one `HEAD PATH` with
//! `Connection: close` and reading to the end (which is also when the client receives its session tickets),
//! for `SECS` seconds. With `resume`, every task resumes the session its previous connection got.
//!
//! `cargo run --release -p palisade-tls --example handshakes -- ADDR SNI CA.pem CONNS SECS [full|resume] [PATH]`
//! prints `connections/s`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, sni, ca, conns, secs, rest @ ..] = args.as_slice() else {
        return Err("usage: handshakes ADDR SNI CA.pem CONNS SECS [full|resume] [PATH]".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let conns: usize = conns.parse()?;
    let duration = Duration::from_secs(secs.parse()?);
    let resume = rest.first().is_some_and(|m| m == "resume");
    let path = rest.get(1).map_or("/", String::as_str);

    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let name = ServerName::try_from(sni.clone())?;
    let request: Arc<str> = format!("HEAD {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").into();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let end = Instant::now() + duration;
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (done, failed, name, request) = (done.clone(), failed.clone(), name.clone(), request.clone());
            // Without resumption each task gets a config with an empty session store, so nothing is resumed.
            let config = if resume {
                Arc::new((*config).clone())
            } else {
                let mut c = (*config).clone();
                c.resumption = rustls::client::Resumption::disabled();
                Arc::new(c)
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let ok = async {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        let mut tls = connector.connect(name.clone(), tcp).await?;
                        tls.write_all(request.as_bytes()).await?;
                        let mut response = Vec::new();
                        tls.read_to_end(&mut response).await?;
                        if response.starts_with(b"HTTP/1.1 200") {
                            Ok(())
                        } else {
                            Err(std::io::Error::other("not 200"))
                        }
                    };
                    let counter = if ok.await.is_ok() { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("{failed} handshakes failed");
    }
    println!("{:.0}", done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64());
    Ok(())
}
