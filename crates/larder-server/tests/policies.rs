//! The server's policy hooks: admission on every protocol's put (refusals counted in
//! `/metrics`), and the access trace.

mod common;

use std::sync::Arc;

use common::{TestServer, pseudo_random};
use larder_core::admission::{AdmissionCandidate, AdmissionPolicy};
use larder_core::trace::{TraceLog, TraceOp};

/// Admits entries of at most `max` bytes.
#[derive(Debug)]
struct SizeCap {
    max: u64,
}

impl AdmissionPolicy for SizeCap {
    fn name(&self) -> &str {
        "test size cap"
    }
    fn admit(&self, candidate: AdmissionCandidate, _now_ms: u64) -> bool {
        candidate.size <= self.max
    }
}

const SMALL: &str = "/ccache/0123456789abcdef0123456789abcdef01234567";
const LARGE: &str = "/ccache/89abcdef0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn refused_entries_are_not_stored_and_accesses_are_traced() {
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("server.trace");
    let trace = Arc::new(TraceLog::open(&trace_path).unwrap());
    let s = TestServer::start_with(|c| {
        c.with_admission(Arc::new(SizeCap { max: 4096 }))
            .with_trace(trace)
    })
    .await;

    assert_eq!(s.get(SMALL).await.0, 404);
    assert_eq!(s.put(SMALL, pseudo_random("small", 1000)).await, 201);
    // Refused: the client is not told off, the value is simply not there.
    assert_eq!(s.put(LARGE, pseudo_random("large", 100_000)).await, 201);
    assert_eq!(s.get(SMALL).await.0, 200);
    assert_eq!(s.get(LARGE).await.0, 404);

    let (status, metrics) = s.get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.contains("larder_admission_refused_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("larder_admission_refused_bytes_total 100000\n"),
        "{metrics}"
    );
    s.stop().await;

    let text = std::fs::read_to_string(&trace_path).unwrap();
    let ops: Vec<TraceOp> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            TraceOp::GetMiss,
            TraceOp::Put,
            TraceOp::GetHit,
            TraceOp::GetMiss
        ],
        "{text}"
    );
}
