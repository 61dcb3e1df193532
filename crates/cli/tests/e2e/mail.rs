//! The "overflowing C mail program" (examples/mail): the same buggy C file that leaks bob's secret when run
//! natively keeps it from alice under palisade, with both exploits, many times over: as a CGI program over
//! mailbox files, and built as a component over mailboxes in each tenant's key-value bucket.

use std::path::Path;

use crate::harness::Site;
use crate::limits::get;

const SECRET: &str = "SECRET-BOB";
/// Fills mail.c's 16-byte display name, so what follows overwrites the mailbox path.
const FILL: &str = "AAAAAAAAAAAAAAAA";

fn mail_site() -> Site {
    let site = Site::new();
    let mail = site.guest("mail.wasm");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mail/tenants");
    for user in ["alice", "bob"] {
        let mbox = std::fs::read(examples.join(format!("{user}/{user}.mbox"))).unwrap();
        site.write(&format!("tenants/{user}/{user}.mbox"), mbox);
    }
    site.config(&format!(
        "[tenants.alice]\nhosts = [\"alice.localhost\"]\ndata = \"tenants/alice\"\nenv = {{ MAIL_USER = \"alice\" }}\n\
         [[tenants.alice.routes]]\npath = \"/mail\"\ncgi = \"{mail}\"\n\
         [tenants.bob]\nhosts = [\"bob.localhost\"]\ndata = \"tenants/bob\"\nenv = {{ MAIL_USER = \"bob\" }}\n\
         [[tenants.bob.routes]]\npath = \"/mail\"\ncgi = \"{mail}\"\n"
    ));
    site
}

/// The same program built as a component (-DMAIL_KV) with each mailbox in its tenant's "mail" bucket, put
/// there by the operator's command.
fn mail_kv_site() -> Site {
    let site = Site::new();
    let mail = site.guest("mail-kv.wasm");
    site.config(&format!(
        "[tenants.alice]\nhosts = [\"alice.localhost\"]\nenv = {{ MAIL_USER = \"alice\" }}\n\
         [[tenants.alice.routes]]\npath = \"/mail\"\ncomponent = \"{mail}\"\n\
         [tenants.bob]\nhosts = [\"bob.localhost\"]\nenv = {{ MAIL_USER = \"bob\" }}\n\
         [[tenants.bob.routes]]\npath = \"/mail\"\ncomponent = \"{mail}\"\n"
    ));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mail/tenants");
    for user in ["alice", "bob"] {
        let mbox = std::fs::read_to_string(examples.join(format!("{user}/{user}.mbox"))).unwrap();
        let key = format!("/data/{user}.mbox");
        let (code, _, err) = site.run(&["kv", "--tenant", user, "--bucket", "mail", "set", &key, &mbox]);
        assert_eq!(code, 0, "{err}");
    }
    site
}

#[tokio::test]
async fn neither_exploit_reaches_bobs_secret() {
    exploits_fail(mail_site()).await;
}

#[tokio::test]
async fn neither_exploit_reaches_bobs_secret_in_key_value_buckets() {
    exploits_fail(mail_kv_site()).await;
}

/// Both exploits against `site`, where alice and bob run the mail program at `/mail`.
async fn exploits_fail(site: Site) {
    let server = site.start();
    let client = server.client(&["alice.localhost", "bob.localhost"]);

    // Both read their own mail.
    let (status, alice, _) = get(&server, &client, "alice.localhost", "/mail?action=list").await;
    assert_eq!(status, 200);
    assert!(alice.contains("1: From bob: lunch at noon?"), "{alice}");
    let (_, bob, _) = get(&server, &client, "bob.localhost", "/mail?action=list").await;
    assert!(bob.contains(SECRET), "bob reads his own secret: {bob}");

    // Bug 1: alice's long display name overwrites her mailbox path with bob's, by every path there is.
    let bob_on_host = site.path("tenants/bob/bob.mbox");
    let targets = ["/data/bob.mbox", "/data/../bob/bob.mbox", "../bob/bob.mbox", &bob_on_host.display().to_string()]
        .map(str::to_string);
    for target in &targets {
        let (status, body, _) = get(&server, &client, "alice.localhost", &format!("/mail?name={FILL}{target}")).await;
        assert!(!body.contains(SECRET), "bug 1 via {target} leaked: {body}");
        assert_eq!(status, 404, "{target}: the overwritten path opens nothing: {body}");
    }
    // The overflow really happened: with alice's own mailbox as the target, it is read from the new path.
    let (_, body, _) = get(&server, &client, "alice.localhost", &format!("/mail?name={FILL}/data/alice.mbox")).await;
    assert!(body.contains("Mail for AAAAAAAAAAAAAAAA/data/alice.mbox"), "{body}");

    // Bug 2: bob reads his secret, then alice over-reads her short message; again and again, so alice's
    // instances reuse the pooled memory that bob's instances used.
    for _ in 0..20 {
        let (_, bob, _) = get(&server, &client, "bob.localhost", "/mail?action=show&n=1").await;
        assert!(bob.contains(SECRET));
        let (status, alice, _) = get(&server, &client, "alice.localhost", "/mail?action=show&n=1&len=400").await;
        assert_eq!(status, 200);
        assert!(alice.contains("From bob: lunch at noon?"), "{alice}");
        assert!(!alice.contains(SECRET) && !alice.contains("vault"), "bug 2 leaked: {alice:?}");
    }

    // Every request's access line is in (the log is written asynchronously), and the secret is in none.
    let requests = 2 + targets.len() + 1 + 2 * 20;
    assert_eq!(server.log_count(" instance_micros=", requests), requests);
    assert!(!server.log().contains(SECRET), "bob's secret is in the log");
    for entry in std::fs::read_dir(site.path("tenants/alice")).into_iter().flatten() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(SECRET), "bob's secret is in alice's data");
    }
}
