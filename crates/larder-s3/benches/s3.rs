//! larder-s3 against plain `aws-sdk-s3` calls on the same local SeaweedFS, in one run
//! (issue 4's targets): 100 MiB blobs up and down, 1 KiB entries with 32 requests in flight, and
//! the peak resident memory while moving a 2 GiB blob.
//!
//! `cargo bench -p larder-s3 --bench s3` (skips without `weed`). Sizes can be lowered for a
//! quick run: `LARDER_BENCH_QUICK=1`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream as S3Body;
use bytes::Bytes;
use futures::StreamExt;
use larder_core::digest::DigestWriter;
use larder_core::store::CHUNK_SIZE;
use larder_core::{ByteStream, Content, Digest, Entry, Key, Output, OutputKind, Store, StoreExt};
use larder_s3::BucketBuilder;
use larder_testservers::SeaweedFs;

fn rss(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

fn stream_of(bytes: Bytes) -> ByteStream {
    let chunks: Vec<larder_core::Result<Bytes>> = (0..bytes.len())
        .step_by(CHUNK_SIZE)
        .map(|i| Ok(bytes.slice(i..(i + CHUNK_SIZE).min(bytes.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn generated(seed: &'static str, len: u64) -> ByteStream {
    let reader = blake3::Hasher::new_derive_key(seed).finalize_xof();
    Box::pin(futures::stream::unfold(
        (reader, 0u64),
        move |(mut r, done)| async move {
            if done >= len {
                return None;
            }
            let n = (len - done).min(CHUNK_SIZE as u64) as usize;
            let mut buf = vec![0u8; n];
            r.fill(&mut buf);
            Some((Ok(Bytes::from(buf)), (r, done + n as u64)))
        },
    ))
}

fn digest_of_generated(seed: &str, len: u64) -> Digest {
    let mut r = blake3::Hasher::new_derive_key(seed).finalize_xof();
    let mut h = DigestWriter::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK_SIZE as u64) as usize;
        r.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        done += n as u64;
    }
    h.finish()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not move gigabytes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("s3 bench: run it with `cargo bench -p larder-s3 --bench s3`");
        return;
    }
    let Some(s3) = SeaweedFs::start() else {
        return;
    };
    let quick = std::env::var_os("LARDER_BENCH_QUICK").is_some();
    let store = Arc::new(
        common::builder(&s3)
            .with_prefix("bench")
            .expect("prefix")
            .build()
            .expect("store"),
    );
    let plain = common::raw_client(&s3);
    let bucket = s3.bucket().to_owned();

    // 1. Peak RSS moving a 2 GiB blob (first, while the process is small).
    let big: u64 = if quick { 256 << 20 } else { 2 << 30 };
    let seed = "larder s3 bench big";
    let d = digest_of_generated(seed, big);
    let before = rss("VmRSS:");
    let t = Instant::now();
    store
        .put_blob(&d, big, generated(seed, big))
        .await
        .expect("put big");
    let up = t.elapsed();
    let t = Instant::now();
    let read = store.get_blob(&d).await.expect("get").expect("present");
    let mut s = read.stream;
    let mut n = 0u64;
    while let Some(c) = s.next().await {
        n += c.expect("chunk").len() as u64;
    }
    assert_eq!(n, big);
    let down = t.elapsed();
    let peak = rss("VmHWM:");
    println!(
        "big blob {} MiB: put {:.0} MiB/s, get {:.0} MiB/s; RSS before {} MiB, peak {} MiB",
        big >> 20,
        mib_s(big, up),
        mib_s(big, down),
        before >> 20,
        peak >> 20
    );

    // 2. 100 MiB blobs: larder-s3 vs plain PutObject/GetObject, alternating, 5 rounds.
    let len = if quick { 32 << 20 } else { 100 << 20 };
    let rounds = if quick { 3 } else { 7 };
    let (mut l_put, mut l_get, mut p_put, mut p_get) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let mut data = vec![0u8; len];
        blake3::Hasher::new_derive_key(&format!("round {round}"))
            .finalize_xof()
            .fill(&mut data);
        let data = Bytes::from(data);
        let d = Digest::of(&data);

        let t = Instant::now();
        store
            .put_blob(&d, len as u64, stream_of(data.clone()))
            .await
            .expect("larder put");
        l_put.push(mib_s(len as u64, t.elapsed()));
        let t = Instant::now();
        let read = store.get_blob(&d).await.expect("get").expect("present");
        let mut s = read.stream;
        while let Some(c) = s.next().await {
            c.expect("chunk");
        }
        l_get.push(mib_s(len as u64, t.elapsed()));

        let key = format!("plain/{round}");
        let t = Instant::now();
        plain
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(S3Body::from(data.clone()))
            .send()
            .await
            .expect("plain put");
        p_put.push(mib_s(len as u64, t.elapsed()));
        let t = Instant::now();
        let mut body = plain
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("plain get")
            .body;
        // Plain read, plus the same BLAKE3 larder does, for a like-for-like "verified" read.
        let mut h = DigestWriter::new();
        while let Some(c) = body.try_next().await.expect("chunk") {
            h.update(&c);
        }
        assert_eq!(h.finish(), d);
        p_get.push(mib_s(len as u64, t.elapsed()));
    }
    let (lp, lg, pp, pg) = (median(l_put), median(l_get), median(p_put), median(p_get));
    println!(
        "{} MiB blobs, median of {rounds}: put larder {lp:.0} MiB/s vs plain {pp:.0} MiB/s ({:.2}x); get larder {lg:.0} MiB/s vs plain+blake3 {pg:.0} MiB/s ({:.2}x)",
        len >> 20,
        lp / pp,
        lg / pg
    );

    // 3. 1 KiB entries, 32 requests in flight: alternating rounds, medians (the machine is
    // shared, so single runs swing).
    let n = if quick { 100 } else { 320 };
    let rounds = if quick { 3 } else { 21 };
    let payload = vec![7u8; 1024];
    let body = Bytes::from(vec![7u8; 1100]);
    let (mut lp, mut lg, mut pp, mut pg) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let entries: Vec<(Key, Entry)> = (0..n)
            .map(|i| {
                let key = Key::new(format!("bench/small/{round}/{i}")).expect("key");
                let mut e = Entry::new(key.as_str(), "bench");
                e.outputs.push(Output {
                    path: "f".into(),
                    kind: OutputKind::File {
                        content: Content::inline(payload.clone()),
                        executable: false,
                    },
                });
                (key, e)
            })
            .collect();
        let t = Instant::now();
        futures::stream::iter(entries.iter())
            .for_each_concurrent(32, |(k, e)| {
                let store = store.clone();
                async move {
                    store.put_entry(k, e).await.expect("put entry");
                }
            })
            .await;
        lp.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(32, |i| {
                let (plain, bucket, body) = (plain.clone(), bucket.clone(), body.clone());
                async move {
                    plain
                        .put_object()
                        .bucket(bucket)
                        .key(format!("plain/small/{round}/{i}"))
                        .body(S3Body::from(body))
                        .send()
                        .await
                        .expect("plain small put");
                }
            })
            .await;
        pp.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        futures::stream::iter(entries.iter())
            .for_each_concurrent(32, |(k, _)| {
                let store = store.clone();
                async move {
                    assert!(store.get_entry(k).await.expect("get entry").is_some());
                }
            })
            .await;
        lg.push(n as f64 / t.elapsed().as_secs_f64());
        store.flush().await.expect("flush");
        let t = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(32, |i| {
                let (plain, bucket) = (plain.clone(), bucket.clone());
                async move {
                    let out = plain
                        .get_object()
                        .bucket(bucket)
                        .key(format!("plain/small/{round}/{i}"))
                        .send()
                        .await
                        .expect("plain small get");
                    out.body.collect().await.expect("body");
                }
            })
            .await;
        pg.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let (lp, lg, pp, pg) = (median(lp), median(lg), median(pp), median(pg));
    println!(
        "1 KiB entries, {rounds} rounds of {n}, 32 in flight, medians: put larder {lp:.0}/s vs plain {pp:.0}/s ({:.2}x); get larder {lg:.0}/s vs plain {pg:.0}/s ({:.2}x)",
        lp / pp,
        lg / pg
    );
}
