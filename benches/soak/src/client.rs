//! The connections: each one a task that sends one request at a time on its own keep-alive
//! connection (HTTP/1.1, or one HTTP/2 connection for gRPC) and checks every answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use hyper::Method;
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest as ProtoDigest, FindMissingBlobsRequest,
    batch_update_blobs_request,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::tonic::transport::Channel;

use crate::http::Conn;

use crate::objects::{ObjectSet, Protocol, Rng};
use crate::stats::{RowKey, Tally};
use crate::{Error, Shared};

/// A request that takes longer than this is an error (and the soak goes on).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// gRPC status codes the soak expects in batch answers.
const GRPC_OK: i32 = 0;
const GRPC_NOT_FOUND: i32 = 5;
/// The most bytes one gRPC batch carries (the server's default limit is 4 MiB).
const GRPC_BATCH_BYTES: usize = 3 << 20;

/// What one connection measured.
pub(crate) type Tallies = HashMap<RowKey, Tally>;

/// What a connection's task hands back: its tallies and how many TCP connections it opened.
pub(crate) type Done = (Tallies, u64);

/// The answer to one request, once checked.
enum Outcome {
    /// The expected answer of a hit (or a stored write).
    Ok { up: u64, down: u64 },
    /// A 404 (or NOT_FOUND) where one may be expected.
    Miss,
}

/// An HTTP/1.1 connection: requests over every HTTP protocol until the budget runs out.
pub(crate) async fn http_connection(shared: Arc<Shared>, index: usize) -> Result<Done, Error> {
    // One request at a time on one keep-alive connection for the whole run, unless the
    // server closes it or a request fails on it.
    let authority = shared.url.trim_start_matches("http://");
    let mut client = Conn::new(authority, REQUEST_TIMEOUT);
    let mut rng = Rng::new(shared.seed ^ (index as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
    let mut tallies = Tallies::new();
    while shared.take_request() {
        let protocol = Protocol::ALL[rng.below(Protocol::ALL.len() as u64) as usize];
        let set = shared.universe.set(protocol);
        let roll = rng.below(100);
        let i = rng.below(set.len() as u64) as usize;
        let (op, started, result) = match roll {
            // A fifth of the requests write (the same bytes again once an object is stored,
            // as a client that missed would).
            0..20 => {
                // A native entry names its blob: the blob goes first.
                let (protocol, set) = if protocol == Protocol::NativeEntry
                    && !shared.universe.set(Protocol::NativeBlob).is_stored(i)
                {
                    (
                        Protocol::NativeBlob,
                        shared.universe.set(Protocol::NativeBlob),
                    )
                } else {
                    (protocol, set)
                };
                let started = Instant::now();
                let r = put(&mut client, protocol, set, i).await;
                let key = RowKey {
                    protocol: protocol.name(),
                    op: "PUT",
                };
                let r = r.map_err(|e| format!("{}: {e}", set.objects[i].path));
                shared.finish(&mut tallies, key, started, r);
                continue;
            }
            // A tenth read what was never written: a 404 each.
            20..30 => {
                let path = &set.misses[rng.below(set.misses.len() as u64) as usize];
                let head = rng.below(2) == 0;
                let started = Instant::now();
                let r = expect_miss(&mut client, path, head).await;
                let op = if head { "HEAD" } else { "GET" };
                (op, started, r.map_err(|e| format!("{path}: {e}")))
            }
            30..45 => {
                let stored = set.is_stored(i);
                let started = Instant::now();
                let r = head(&mut client, protocol, set, i, stored).await;
                (
                    "HEAD",
                    started,
                    r.map_err(|e| format!("{}: {e}", set.objects[i].path)),
                )
            }
            _ => {
                let stored = set.is_stored(i);
                let started = Instant::now();
                let r = get(&mut client, protocol, set, i, stored).await;
                (
                    "GET",
                    started,
                    r.map_err(|e| format!("{}: {e}", set.objects[i].path)),
                )
            }
        };
        let key = RowKey {
            protocol: protocol.name(),
            op,
        };
        shared.finish(&mut tallies, key, started, result);
    }
    Ok((tallies, client.opened))
}

async fn put(
    client: &mut Conn,
    protocol: Protocol,
    set: &ObjectSet,
    i: usize,
) -> Result<Outcome, String> {
    let object = &set.objects[i];
    let answer = client
        .send(Method::PUT, &object.path, object.body.clone())
        .await?;
    if !protocol.put_ok(answer.status) {
        return Err(format!(
            "status {}: {}",
            answer.status,
            snippet(&answer.body)
        ));
    }
    set.mark_stored(i);
    Ok(Outcome::Ok {
        up: object.body.len() as u64,
        down: 0,
    })
}

async fn get(
    client: &mut Conn,
    protocol: Protocol,
    set: &ObjectSet,
    i: usize,
    stored: bool,
) -> Result<Outcome, String> {
    let object = &set.objects[i];
    let answer = client.send(Method::GET, &object.path, Bytes::new()).await?;
    let (status, body) = (answer.status, &answer.body);
    match status {
        200 => {
            check_body(body, &object.body)?;
            let size_header = answer.header_u64("x-larder-size");
            if protocol == Protocol::NativeBlob && size_header != Some(object.body.len() as u64) {
                return Err(format!("x-larder-size {size_header:?}"));
            }
            Ok(Outcome::Ok {
                up: 0,
                down: body.len() as u64,
            })
        }
        404 if !stored => Ok(Outcome::Miss),
        404 => Err("404 for an object stored before the request".into()),
        _ => Err(format!("status {status}: {}", snippet(body))),
    }
}

async fn head(
    client: &mut Conn,
    protocol: Protocol,
    set: &ObjectSet,
    i: usize,
    stored: bool,
) -> Result<Outcome, String> {
    let object = &set.objects[i];
    let answer = client
        .send(Method::HEAD, &object.path, Bytes::new())
        .await?;
    let length = answer.header_u64("content-length");
    let (status, body) = (answer.status, &answer.body);
    match status {
        200 => {
            // The value protocols answer a HEAD with the value's length; the native protocol's
            // blob HEAD says only that the blob is there.
            let sized = !matches!(protocol, Protocol::NativeBlob | Protocol::NativeEntry);
            if sized && length != Some(object.body.len() as u64) {
                return Err(format!(
                    "Content-Length {length:?}, expected {}",
                    object.body.len()
                ));
            }
            Ok(Outcome::Ok { up: 0, down: 0 })
        }
        404 if !stored => Ok(Outcome::Miss),
        404 => Err("404 for an object stored before the request".into()),
        _ => Err(format!("status {status}: {}", snippet(body))),
    }
}

async fn expect_miss(client: &mut Conn, path: &str, head: bool) -> Result<Outcome, String> {
    let method = if head { Method::HEAD } else { Method::GET };
    let answer = client.send(method, path, Bytes::new()).await?;
    match answer.status {
        404 => Ok(Outcome::Miss),
        status => Err(format!(
            "status {status} for a path never written: {}",
            snippet(&answer.body)
        )),
    }
}

fn check_body(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "wrong body: {} bytes, expected {}, first difference at byte {first}",
        got.len(),
        want.len()
    ))
}

/// The start of a response body, for an error message.
fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.trim().to_owned()
}

/// A gRPC connection (one HTTP/2 connection, h2c): REAPI CAS calls on the Bazel CAS objects.
pub(crate) async fn grpc_connection(shared: Arc<Shared>, index: usize) -> Result<Done, Error> {
    let channel = Channel::from_shared(shared.url.clone())
        .map_err(|e| Error::Client(e.to_string()))?
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Error::Client(format!("gRPC connection: {e}")))?;
    let mut cas = ContentAddressableStorageClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let mut rng = Rng::new(shared.seed ^ (index as u64 + 1).wrapping_mul(0xe703_7ed1_a0b4_28db));
    let mut tallies = Tallies::new();
    let set = shared.universe.set(Protocol::BazelCas);
    while shared.take_request() {
        let roll = rng.below(10);
        let started = Instant::now();
        let (op, result) = match roll {
            0..4 => (
                "FindMissingBlobs",
                find_missing(&mut cas, &shared, set, &mut rng).await,
            ),
            4..8 => (
                "BatchReadBlobs",
                batch_read(&mut cas, &shared, set, &mut rng).await,
            ),
            _ => (
                "BatchUpdateBlobs",
                batch_update(&mut cas, set, &mut rng).await,
            ),
        };
        let key = RowKey {
            protocol: "grpc",
            op,
        };
        shared.finish(&mut tallies, key, started, result);
    }
    // A channel reconnects by itself, unseen: one connection is what it was given.
    Ok((tallies, 1))
}

type Cas = ContentAddressableStorageClient<Channel>;

fn proto_digest(hash: &str, size: usize) -> ProtoDigest {
    ProtoDigest {
        hash: hash.to_owned(),
        size_bytes: size as i64,
    }
}

/// Distinct objects of `set` whose bytes add up to at most [`GRPC_BATCH_BYTES`], at most `n`.
fn pick_batch(set: &ObjectSet, rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n * 2 {
        let i = rng.below(set.len() as u64) as usize;
        let len = set.objects[i].body.len();
        if picked.len() == n || picked.contains(&i) || bytes + len > GRPC_BATCH_BYTES {
            continue;
        }
        bytes += len;
        picked.push(i);
    }
    picked
}

/// Eight digests, two of them never written: those two must be missing, and every object
/// stored before the call must not be.
async fn find_missing(
    cas: &mut Cas,
    shared: &Shared,
    set: &ObjectSet,
    rng: &mut Rng,
) -> Result<Outcome, String> {
    let ids: Vec<usize> = (0..6)
        .map(|_| rng.below(set.len() as u64) as usize)
        .collect();
    let stored: Vec<bool> = ids.iter().map(|&i| set.is_stored(i)).collect();
    let mut digests: Vec<ProtoDigest> = ids
        .iter()
        .map(|&i| proto_digest(&set.objects[i].sha256, set.objects[i].body.len()))
        .collect();
    let misses: Vec<ProtoDigest> = (0..2)
        .map(|_| {
            let (hash, size) = &shared.universe.grpc_misses
                [rng.below(shared.universe.grpc_misses.len() as u64) as usize];
            proto_digest(hash, *size as usize)
        })
        .collect();
    digests.extend(misses.iter().cloned());
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: String::new(),
            blob_digests: digests,
            digest_function: 0,
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner()
        .missing_blob_digests;
    for m in &misses {
        if !missing.contains(m) {
            return Err(format!("{} never written, not reported missing", m.hash));
        }
    }
    for (k, &i) in ids.iter().enumerate() {
        let d = proto_digest(&set.objects[i].sha256, set.objects[i].body.len());
        if stored[k] && missing.contains(&d) {
            return Err(format!(
                "{} stored before the call, reported missing",
                d.hash
            ));
        }
    }
    if missing.len() > ids.len() + misses.len() {
        return Err(format!(
            "{} digests missing of {} asked",
            missing.len(),
            ids.len() + 2
        ));
    }
    Ok(Outcome::Ok { up: 0, down: 0 })
}

/// Up to three objects and one digest never written: each object's bytes exactly (or NOT_FOUND
/// if it was not stored before the call), NOT_FOUND for the other.
async fn batch_read(
    cas: &mut Cas,
    shared: &Shared,
    set: &ObjectSet,
    rng: &mut Rng,
) -> Result<Outcome, String> {
    let ids = pick_batch(set, rng, 3);
    let stored: Vec<bool> = ids.iter().map(|&i| set.is_stored(i)).collect();
    let (miss_hash, miss_size) =
        &shared.universe.grpc_misses[rng.below(shared.universe.grpc_misses.len() as u64) as usize];
    let mut digests: Vec<ProtoDigest> = ids
        .iter()
        .map(|&i| proto_digest(&set.objects[i].sha256, set.objects[i].body.len()))
        .collect();
    digests.push(proto_digest(miss_hash, *miss_size as usize));
    let responses = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            instance_name: String::new(),
            digests: digests.clone(),
            acceptable_compressors: Vec::new(),
            digest_function: 0,
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner()
        .responses;
    if responses.len() != digests.len() {
        return Err(format!(
            "{} answers to {} digests",
            responses.len(),
            digests.len()
        ));
    }
    let mut down = 0;
    for (k, r) in responses.iter().enumerate() {
        let code = r.status.as_ref().map_or(GRPC_OK, |s| s.code);
        if r.digest.as_ref() != Some(&digests[k]) {
            return Err(format!("answer {k} is for another digest"));
        }
        match ids.get(k) {
            Some(&i) => match code {
                GRPC_OK => {
                    check_body(&r.data, &set.objects[i].body)?;
                    down += r.data.len() as u64;
                }
                GRPC_NOT_FOUND if !stored[k] => {}
                _ => return Err(format!("{}: status {code}", digests[k].hash)),
            },
            None if code == GRPC_NOT_FOUND => {}
            None => return Err(format!("{} never written: status {code}", digests[k].hash)),
        }
    }
    Ok(Outcome::Ok { up: 0, down })
}

/// Up to two objects uploaded in one batch; each must be answered OK.
async fn batch_update(cas: &mut Cas, set: &ObjectSet, rng: &mut Rng) -> Result<Outcome, String> {
    let ids = pick_batch(set, rng, 2);
    let requests = ids
        .iter()
        .map(|&i| batch_update_blobs_request::Request {
            digest: Some(proto_digest(
                &set.objects[i].sha256,
                set.objects[i].body.len(),
            )),
            data: set.objects[i].body.to_vec(),
            compressor: 0,
        })
        .collect();
    let responses = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests,
            digest_function: 0,
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner()
        .responses;
    if responses.len() != ids.len() {
        return Err(format!(
            "{} answers to {} uploads",
            responses.len(),
            ids.len()
        ));
    }
    let mut up = 0;
    for (r, &i) in responses.iter().zip(&ids) {
        let code = r.status.as_ref().map_or(GRPC_OK, |s| s.code);
        if code != GRPC_OK {
            let msg = r
                .status
                .as_ref()
                .map(|s| s.message.clone())
                .unwrap_or_default();
            return Err(format!(
                "upload of {}: status {code} {msg}",
                set.objects[i].sha256
            ));
        }
        set.mark_stored(i);
        up += set.objects[i].body.len() as u64;
    }
    Ok(Outcome::Ok { up, down: 0 })
}

impl Shared {
    /// Record a checked request in `tallies` (and an error in the shared list).
    fn finish(
        &self,
        tallies: &mut Tallies,
        key: RowKey,
        started: Instant,
        result: Result<Outcome, String>,
    ) {
        let took = started.elapsed();
        let t = tallies.entry(key).or_default();
        t.record(took);
        match result {
            Ok(Outcome::Ok { up, down }) => {
                t.bytes_up += up;
                t.bytes_down += down;
            }
            Ok(Outcome::Miss) => t.misses += 1,
            Err(e) => {
                t.errors += 1;
                self.error(format!("{} {}: {e}", key.protocol, key.op));
            }
        }
        self.completed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_differing_in_one_byte_or_its_length_is_wrong() {
        assert!(check_body(b"abc", b"abc").is_ok());
        let e = check_body(b"abd", b"abc").unwrap_err();
        assert!(e.contains("first difference at byte 2"), "{e}");
        let e = check_body(b"ab", b"abc").unwrap_err();
        assert!(e.contains("2 bytes, expected 3"), "{e}");
    }
}
