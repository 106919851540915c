//! REAPI FindMissingBlobs throughput through a whole `larder serve` (its layers, the gRPC
//! service, h2c on loopback) over the filesystem store: 10,000 SHA-256 digests per call.
//!
//! `cargo bench -p larder-server --bench find_missing [-- --blobs N --calls N]` (under
//! `cargo test` it is a smoke run of 200 blobs).
//!
//! Rows: the first call after the server starts (nothing of the store in memory), repeated
//! calls, and a call whose digests are all absent. Each figure is digests per second, the
//! median of the calls made.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{TestServer, pseudo_random, sha256_hex};
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest, batch_update_blobs_request,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::tonic::transport::Channel;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn client(s: &TestServer) -> ContentAddressableStorageClient<Channel> {
    let channel = Channel::from_shared(s.url(""))
        .expect("uri")
        .connect()
        .await
        .expect("h2c connection");
    ContentAddressableStorageClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Digests per second of one FindMissingBlobs call over `digests`, and how many were missing.
async fn call(
    cas: &mut ContentAddressableStorageClient<Channel>,
    digests: &[Digest],
) -> (f64, usize) {
    let started = Instant::now();
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: String::new(),
            blob_digests: digests.to_vec(),
            digest_function: 0,
        })
        .await
        .expect("FindMissingBlobs")
        .into_inner()
        .missing_blob_digests
        .len();
    (
        digests.len() as f64 / started.elapsed().as_secs_f64(),
        missing,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) this is a smoke
    // run that checks the answers on a few blobs.
    let full = std::env::args().any(|a| a == "--bench");
    let blobs = arg("--blobs", if full { 10_000 } else { 200 });
    let calls = arg("--calls", if full { 7 } else { 1 }).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("cache");

    // Store `blobs` small blobs (kept inline in their entries, as most of a build's are).
    let bodies: Vec<Vec<u8>> = (0..blobs)
        .map(|i| pseudo_random(&format!("blob {i}"), 200 + i % 300))
        .collect();
    let present: Vec<Digest> = bodies
        .iter()
        .map(|b| Digest {
            hash: sha256_hex(b),
            size_bytes: b.len() as i64,
        })
        .collect();
    let absent: Vec<Digest> = (0..blobs)
        .map(|i| {
            let b = pseudo_random(&format!("absent {i}"), 100);
            Digest {
                hash: sha256_hex(&b),
                size_bytes: 100,
            }
        })
        .collect();
    {
        let s = TestServer::start_in(&root, |c| c).await;
        let mut cas = client(&s).await;
        for (ds, bs) in present.chunks(500).zip(bodies.chunks(500)) {
            let requests = ds
                .iter()
                .zip(bs)
                .map(|(d, b)| batch_update_blobs_request::Request {
                    digest: Some(d.clone()),
                    data: b.clone(),
                    compressor: 0,
                })
                .collect();
            cas.batch_update_blobs(BatchUpdateBlobsRequest {
                instance_name: String::new(),
                requests,
                digest_function: 0,
            })
            .await
            .expect("BatchUpdateBlobs");
        }
        s.stop().await;
    }

    // A new server on the same directory: the first call finds nothing in memory.
    let s = TestServer::start_in(&root, |c| c).await;
    let mut cas = client(&s).await;
    let (first, missing) = call(&mut cas, &present).await;
    assert_eq!(missing, 0, "every stored blob is found");
    let mut repeated = Vec::new();
    for _ in 0..calls {
        let (rate, missing) = call(&mut cas, &present).await;
        assert_eq!(missing, 0);
        repeated.push(rate);
    }
    let mut none = Vec::new();
    for _ in 0..calls {
        let (rate, missing) = call(&mut cas, &absent).await;
        assert_eq!(missing, absent.len(), "absent digests are missing");
        none.push(rate);
    }
    s.stop().await;

    println!("FindMissingBlobs through larder serve, {blobs} SHA-256 digests per call");
    println!("| call | digests/s |");
    println!("|---|---|");
    println!("| first after start | {first:.0} |");
    println!("| repeated (median of {calls}) | {:.0} |", median(repeated));
    println!("| all absent (median of {calls}) | {:.0} |", median(none));
}
