//! Bringing your own guest: `palisade run`, clear link errors, and what `check` says about each app.

use std::ffi::OsStr;

use crate::harness::{Running, Site, guest};
use crate::two_tenants;

#[tokio::test]
async fn run_serves_a_component_without_config() {
    let hello = guest("hello.wasm");
    let server = Running::spawn(&["run".as_ref(), hello.as_os_str(), "--listen".as_ref(), "127.0.0.1:0".as_ref()]);
    let r = server.client(&[]).get(format!("http://{}/any/path?q=1", server.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from a wasi:http component! You asked for /any/path?q=1\n");
    assert!(server.log_contains("component; imports"), "run prints what the app imports");
}

#[tokio::test]
async fn run_serves_a_cgi_program_with_env_and_dir() {
    let site = Site::new();
    let dir = site.mkdir("shared");
    let cgi = guest("probe-cgi.wasm");
    let dir_arg = format!("{}:/data", dir.display());
    let args: [&OsStr; 8] = [
        "run".as_ref(),
        cgi.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--env".as_ref(),
        "GREETING=from-run".as_ref(),
        "--dir".as_ref(),
        dir_arg.as_ref(),
    ];
    let server = Running::spawn(&args);
    let client = server.client(&[]);
    let env = client.get(format!("http://{}/env", server.addr)).send().await.unwrap().text().await.unwrap();
    assert!(env.contains("GREETING=from-run\n"), "{env}");
    assert!(env.contains("PATH_INFO=/env\n"), "{env}");
    let r = client.get(format!("http://{}/data-write?via-run", server.addr)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "written\n");
    assert_eq!(std::fs::read_to_string(dir.join("note.txt")).unwrap(), "via-run");
}

#[test]
fn check_lists_every_missing_import_with_route_and_file() {
    let site = Site::new();
    site.write(
        "apps/needs-kv.wasm",
        r#"(component
             (import "wasi:keyvalue/store@0.2.0-draft" (instance))
             (import "wasi:http/types@0.2.3" (instance))
             (import "acme:billing/charge@1.0.0" (instance)))"#,
    );
    site.write(
        "apps/native.wasm",
        r#"(module (import "env" "open_socket" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    site.config(
        "[tenants.t]\nhosts = [\"t.localhost\"]\n\
         [[tenants.t.routes]]\npath = \"/kv\"\ncomponent = \"apps/needs-kv.wasm\"\n\
         [[tenants.t.routes]]\npath = \"/native\"\ncgi = \"apps/native.wasm\"\n",
    );
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 1, "{err}");
    let kv = err.lines().find(|l| l.contains("needs-kv.wasm")).unwrap_or_else(|| panic!("{err}"));
    assert!(kv.starts_with(&format!("palisade.toml:{}:", site.line_of("needs-kv.wasm"))), "{kv}");
    assert!(kv.contains("route \"/kv\""), "{kv}");
    assert!(kv.contains("acme:billing/charge@1.0.0"), "{kv}");
    assert!(
        !kv.contains("wasi:http/types") && !kv.contains("wasi:keyvalue/store"),
        "provided imports are not listed as missing: {kv}"
    );
    let native = err.lines().find(|l| l.contains("native.wasm")).unwrap_or_else(|| panic!("{err}"));
    assert!(native.contains("route \"/native\"") && native.contains("env::open_socket"), "{native}");
}

#[test]
fn check_prints_imports_and_exports_per_app() {
    let site = two_tenants();
    let (code, out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("component; imports wasi:cli/environment@0.2.12"), "{out}");
    assert!(out.contains("exports wasi:http/incoming-handler@0.2.12"), "{out}");
    assert!(out.contains("CGI module; imports wasi_snapshot_preview1 ("), "{out}");
}

#[tokio::test]
async fn component_exit_without_response_is_500() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(crate::HOSTS);
    let r = client.get(server.url("alice.localhost", "/app/exit")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // Components see no filesystem unless configured: the probe's /data is not there.
    let r = client.get(server.url("alice.localhost", "/app/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Components from third-party toolchains (componentize-py, ComponentizeJS) run unchanged: they import
/// wasi:cli, wasi:filesystem and wasi:sockets at other 0.2.x patch releases than palisade's, and see the
/// original request line, headers and body.
#[tokio::test]
async fn python_and_javascript_components_run_unchanged() {
    let site = Site::new();
    let python = site.guest("hello-python.wasm");
    let js = site.guest("hello-js.wasm");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\nenv = {{ GREETING = \"from the tenant\" }}\n\
         [[tenants.t.routes]]\npath = \"/py\"\ncomponent = \"{python}\"\n\
         [[tenants.t.routes]]\npath = \"/js\"\ncomponent = \"{js}\"\n"
    ));
    let (code, out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wasi:sockets/tcp@0.2.9"), "componentize-py's imports are listed: {out}");
    assert!(out.contains("exports wasi:http/incoming-handler@0.2.10"), "ComponentizeJS's export: {out}");

    let server = site.start();
    let client = server.client(&["t.localhost"]);
    for (lang, greeting) in [("python", "hello from Python! (from the tenant)"), ("js", "hello from JavaScript!")] {
        let prefix = if lang == "python" { "/py" } else { "/js" };
        let r = client
            .post(server.url("t.localhost", &format!("{prefix}/some/path?q=1&r=two")))
            .header("x-test", "abc")
            .body("hello body")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{lang}");
        assert_eq!(r.headers()["x-lang"], lang);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let body = r.text().await.unwrap();
        assert_eq!(
            body,
            format!("{greeting}\nmethod=POST\npath={prefix}/some/path?q=1&r=two\nx-test=abc\nbody=hello body\n"),
            "{lang}"
        );
    }
}
