//! `palisade check`: a summary for a good configuration; `file:line:col: message` and exit 1 for broken ones.

use crate::harness::Site;
use crate::two_tenants;

/// Runs check and asserts it fails with a message at `needle`'s line that contains `message`.
fn fails_at(site: &Site, needle: &str, message: &str) {
    let (code, _out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 1, "check should fail:\n{err}");
    let want = format!("palisade.toml:{}:", site.line_of(needle));
    let line = err.lines().find(|l| l.contains(&want)).unwrap_or_else(|| panic!("no {want} in:\n{err}"));
    assert!(line.contains(message), "{line:?} should mention {message:?}");
}

fn one_tenant(body: &str) -> Site {
    let site = Site::new();
    site.write("www/index.html", "x");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\n{body}\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n"
    ));
    site
}

#[test]
fn good_config_prints_a_summary() {
    let site = two_tenants();
    let (code, out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("palisade.toml: ok"), "{out}");
    assert!(
        out.contains(
            "tenant alice (hosts: alice.localhost; memory 16 MiB (total 1 GiB), timeout 1s, cpu_time 10s, \
             max_concurrency 8"
        ),
        "{out}"
    );
    assert!(out.contains("/cgi-bin/probe"), "{out}");
    assert!(out.contains("component"), "{out}");
}

#[test]
fn unknown_key() {
    fails_at(&one_tenant("memroy = \"64 MiB\""), "memroy", "unknown field `memroy`");
}

#[test]
fn bad_size_and_duration() {
    fails_at(&one_tenant("memory = \"64 MiBs\""), "MiBs", "invalid size");
    fails_at(&one_tenant("timeout = \"5 parsecs\""), "parsecs", "invalid duration");
    fails_at(&one_tenant("max_concurrency = 0"), "max_concurrency", "between 1 and");
}

#[test]
fn bad_limits() {
    fails_at(&one_tenant("cpu_time = \"lots\""), "lots", "`cpu_time`: invalid duration");
    fails_at(&one_tenant("cpu_time = \"0s\""), "0s", "`cpu_time` must be longer than zero");
    fails_at(&one_tenant("max_request_body = -1"), "max_request_body", "cannot be negative");
    fails_at(&one_tenant("max_response_body = \"1 XB\""), "XB", "`max_response_body`: invalid size");
    fails_at(&one_tenant("max_stderr = 0"), "max_stderr", "must be larger than zero");
    fails_at(&one_tenant("memory = 1.5"), "1.5", "expected a size: a string with a unit like \"64 MiB\"");
    fails_at(&one_tenant("memory = 99999999999999999999"), "9999", "is too large a size");
    fails_at(&one_tenant("timeout = 30"), "timeout = 30", "expected a duration: a string with a unit like \"30s\"");
    fails_at(&one_tenant("memory = \"5 GiB\""), "5 GiB", "cannot exceed 4 GiB");
    let site = one_tenant("memory = \"64 MiB\"\nmax_total_memory = \"32 MiB\"");
    fails_at(&site, "32 MiB", "must be at least `memory`");
}

#[test]
fn component_data_needs_data_and_a_known_mode() {
    fails_at(&one_tenant("component_data = \"read-only\""), "component_data", "but `data` is not set");
    fails_at(&one_tenant("component_data = \"yes\""), "\"yes\"", "is not one of \"none\", \"read-only\"");
}

#[test]
fn duplicate_host() {
    let site = Site::new();
    site.write("www/index.html", "x");
    site.config(
        "[tenants.a]\nhosts = [\"same.localhost\"]\n[[tenants.a.routes]]\npath = \"/\"\nstatic = \"www\"\n\
         [tenants.b]\nhosts = [\"other.localhost\", \"Same.Localhost\"]\n[[tenants.b.routes]]\npath = \"/\"\nstatic = \"www\"\n",
    );
    fails_at(&site, "Same.Localhost", "already claimed by tenant \"a\"");
}

#[test]
fn missing_files() {
    let site = Site::new();
    site.config("[tenants.t]\nhosts = [\"t.localhost\"]\n[[tenants.t.routes]]\npath = \"/\"\ncomponent = \"apps/missing.wasm\"\n");
    fails_at(&site, "missing.wasm", "not found");
    let site = one_tenant("data = \"no-such-dir\"");
    fails_at(&site, "no-such-dir", "directory");
}

#[test]
fn invalid_and_mismatched_wasm() {
    let site = Site::new();
    site.write("apps/garbage.wasm", "this is not WebAssembly");
    let cgi = site.guest("probe-cgi.wasm");
    let component = site.guest("probe-component.wasm");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\n\
         [[tenants.t.routes]]\npath = \"/a\"\ncomponent = \"apps/garbage.wasm\"\n\
         [[tenants.t.routes]]\npath = \"/b\"\ncomponent = \"{cgi}\"\n\
         [[tenants.t.routes]]\npath = \"/c\"\ncgi = \"{component}\"\n"
    ));
    fails_at(&site, "garbage.wasm", "not a valid WebAssembly component");
    fails_at(&site, "component = \"apps/probe-cgi", "is a core WebAssembly module, not a component");
    fails_at(&site, "cgi = \"apps/probe-component", "is a WebAssembly component, not a preview1 command module");
}

#[test]
fn route_problems() {
    fails_at(&one_tenant("[[tenants.t.routes]]\npath = \"nope\"\nstatic = \"www\""), "\"nope\"", "must start with '/'");
    let site = one_tenant("[[tenants.t.routes]]\npath = \"/x\"\nstatic = \"www\"\ncgi = \"www/index.html\"");
    fails_at(&site, "cgi = \"www/index.html\"", "more than one");
    let site = one_tenant("[[tenants.t.routes]]\npath = \"/x\"\nproxy = \"http://127.0.0.1:1\"\ndotfiles = true");
    fails_at(&site, "dotfiles", "applies to `static` routes only");
}

#[test]
fn missing_config_file() {
    let site = Site::new();
    let (code, _, err) = site.run(&["check", "--config", "nowhere.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("nowhere.toml: cannot read configuration"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "the reason once: {err}");
}

#[test]
fn serve_refuses_a_broken_config_too() {
    let site = one_tenant("timeout = \"forever\"");
    let (code, _, err) = site.run(&["serve", "--config", "palisade.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("palisade.toml:{}:", site.line_of("forever"))), "{err}");
}

#[test]
fn help_and_version() {
    let site = Site::new();
    let (code, out, _) = site.run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("palisade "), "{out}");
    let (code, out, _) = site.run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("check") && out.contains("--log-format"), "{out}");
}

#[test]
fn check_refuses_what_serve_would_refuse() {
    let cases: [(&str, &str, &str); 4] = [
        ("[admin]\nlisten = \"0.0.0.0:9901\"\n\n", "", "would be open to the network"),
        ("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"blank.token\"\n\n", "", "the admin token file is empty"),
        ("[admin]\nlisten = \"127.0.0.1:18555\"\n\n", "listen = [\"127.0.0.1:18555\"]", "a port of its own"),
        ("", "data_dir = \"a-file\"", "is not a directory"),
    ];
    for (admin, server, message) in cases {
        let site = Site::new();
        site.write("www/index.html", "x");
        site.write("blank.token", "  \n");
        site.write("a-file", "not a directory");
        let server = if server.is_empty() { "listen = [\"127.0.0.1:0\"]" } else { server };
        site.config_with(
            server,
            &format!(
                "{admin}[tenants.t]\nhosts = [\"t.localhost\"]\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n"
            ),
        );
        for command in ["check", "serve"] {
            let (code, _, err) = site.run(&[command, "--config", "palisade.toml"]);
            assert_eq!(code, 1, "{command} should refuse ({message}):\n{err}");
            assert!(err.contains(message), "{command}: {err}");
        }
    }
}
