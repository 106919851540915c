//! The WebDAV tree (as sccache uses it) and waf's netcache protocol, the latter with the seed's
//! own wafcache.py worker as the client.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;
use reqwest::Method;

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method name")
}

async fn send(s: &TestServer, m: &str, path: &str, body: Option<Vec<u8>>) -> (u16, String) {
    let mut req = s.client.request(method(m), s.url(path));
    if m == "PROPFIND" {
        req = req.header("depth", "0");
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn webdav_as_sccache_uses_it() {
    let s = TestServer::start().await;
    // The start-up check: a missing check file is fine.
    assert_eq!(
        send(&s, "GET", "/dav/cache/.sccache_check", None).await.0,
        404
    );
    // The tree's root is a collection too (sccache asks about it before its first write).
    assert_eq!(send(&s, "PROPFIND", "/dav/", None).await.0, 207);
    assert_eq!(send(&s, "PROPFIND", "/dav", None).await.0, 207);
    // A collection answers PROPFIND with one response, and MKCOL succeeds.
    let (status, xml) = send(&s, "PROPFIND", "/dav/cache/", None).await;
    assert_eq!(status, 207);
    assert_eq!(xml.matches("<D:response>").count(), 1, "{xml}");
    assert!(xml.contains("<D:collection/>") && xml.contains("<D:href>/dav/cache/</D:href>"));
    assert!(xml.contains("GMT</D:getlastmodified>"), "{xml}");
    assert_eq!(send(&s, "MKCOL", "/dav/cache/a/", None).await.0, 201);
    // An object: missing, written, then found by GET and PROPFIND.
    let obj = "/dav/cache/a/b/c/abcdef0123456789";
    assert_eq!(send(&s, "GET", obj, None).await.0, 404);
    assert_eq!(send(&s, "PROPFIND", obj, None).await.0, 404);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(send(&s, "PUT", obj, Some(data.clone())).await.0, 201);
    let r = s.client.get(s.url(obj)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
    let (status, xml) = send(&s, "PROPFIND", obj, None).await;
    assert_eq!(status, 207);
    assert!(
        xml.contains("<D:getcontentlength>3000000</D:getcontentlength>"),
        "{xml}"
    );
    // Double slashes name the same object.
    assert_eq!(
        send(&s, "HEAD", "/dav/cache//a/b/c/abcdef0123456789", None)
            .await
            .0,
        200
    );
    // Unsafe paths are refused; other methods are 405 with an Allow header.
    let too_long = format!("/dav/cache/{}", "k".repeat(600));
    assert_eq!(send(&s, "PUT", &too_long, Some(vec![1])).await.0, 400);
    assert_eq!(send(&s, "LOCK", obj, None).await.0, 405);
    assert_eq!(send(&s, "DELETE", obj, None).await.0, 204);
    assert_eq!(send(&s, "GET", obj, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn webdav_writes_are_refused_when_read_only() {
    let s = TestServer::start_with(|c| c.with_read_only(true)).await;
    assert_eq!(send(&s, "MKCOL", "/dav/x/", None).await.0, 403);
    assert_eq!(send(&s, "PUT", "/dav/x/k", Some(vec![1])).await.0, 403);
}

fn seed() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let seed = std::env::var_os("LARDER_WAFCACHE_SEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/seeds/wafcache.py"));
    seed.is_file().then_some(seed)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_wafcache_worker_gets_hits_over_netcache() {
    let Some(seed) = seed() else {
        eprintln!(
            "skipping: the seed wafcache.py is not beside the repository (set LARDER_WAFCACHE_SEED)"
        );
        return;
    };
    let have_python = Command::new("python3")
        .args(["-c", "import urllib3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_python {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with urllib3 is needed for the wafcache test (cargo xtask test installs it)"
        );
        eprintln!("skipping: python3 with urllib3 is not installed");
        return;
    }
    let s = TestServer::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wafcache_client.py");
    // wafcache joins its base and the path with `/`: a base ending in `/` sends `//`.
    let base = s.url("/waf/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(seed)
            .arg(base)
            .output()
            .expect("running python3")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server saw the misses and hits.
    let metrics = String::from_utf8(s.get("/metrics").await.1.to_vec()).expect("utf-8");
    assert!(
        metrics.contains("larder_hits_total{protocol=\"waf\"} 2"),
        "{metrics}"
    );
}
