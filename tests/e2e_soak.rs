//! A short soak of the real `larder serve` (the `larder-soak` tool's engine, issue 16 item 8):
//! 16 keep-alive connections over every protocol the server speaks, every answer checked byte
//! for byte. The full soak (64 connections, 5 minutes, release build) is `larder-soak`'s
//! default run, recorded in RELIABILITY.md; this one checks in seconds that nothing fails.

use std::time::Duration;

use larder_soak::{Bound, Options};

/// A server binary built for this test run.
const LARDER: &str = env!("CARGO_BIN_EXE_larder");

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_answers_every_request_of_every_protocol_correctly() {
    let mut opts = Options::quick(LARDER);
    opts.bound = Bound::Requests(3000);
    opts.objects = 32;
    // A few seconds of a debug build say nothing about memory growth: the full soak checks it.
    opts.rss_growth_bytes = u64::MAX;
    opts.progress = Some(Duration::from_secs(5));
    let report = larder_soak::run(&opts).await.expect("the soak ran");
    let text = report.render();
    eprintln!("{text}");
    assert_eq!(report.errors, 0, "{text}");
    assert_eq!(report.requests, 3000, "every request answered\n{text}");
    assert_eq!(report.failures(), Vec::<String>::new(), "{text}");
    // The server kept every keep-alive connection open: each was opened once.
    assert_eq!(
        report.http_connections_opened,
        (opts.connections - opts.grpc_connections) as u64,
        "{text}"
    );
    // Every protocol and operation was exercised, and reads both hit and missed.
    let ops = |p: &str| report.rows.iter().filter(|r| r.protocol == p).count();
    for p in [
        "native blob",
        "native entry",
        "ccache",
        "bazel cas",
        "bazel ac",
        "webdav",
        "grpc",
    ] {
        assert_eq!(
            ops(p),
            3,
            "{p}: GET, HEAD and PUT (or gRPC's three calls)\n{text}"
        );
    }
    for r in report.rows.iter().filter(|r| r.op == "GET") {
        assert!(r.misses > 0 && r.misses < r.requests, "{text}");
        assert!(r.bytes_down > 0, "{text}");
    }
}
