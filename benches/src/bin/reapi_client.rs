//! The one client `benches/reapi.py` measures every REAPI server and protocol with, so a ratio
//! between two servers, or between gRPC and HTTP on one server, is not a ratio between clients.
//!
//! ```text
//! reapi-client transfer [--size BYTES] [--reps N] [--read-reps N] [--chunk BYTES] [H2] TARGET...
//! reapi-client find-missing [--digests N] [--calls N] [H2] TARGET...
//! H2: [--window BYTES] [--adaptive-window] [--max-frame BYTES]
//! ```
//!
//! The gRPC channels keep hyper's HTTP/2 defaults unless told otherwise: a 2 MiB stream and
//! 5 MiB connection flow-control window (more than the 1 MiB grpc-java, Bazel's client, starts
//! from before its BDP probing grows it) and 16 KiB frames (SETTINGS_MAX_FRAME_SIZE, what
//! grpc-java and grpc-go advertise). `--window` sets the stream window (the connection's is
//! twice that), `--adaptive-window` probes the BDP instead, `--max-frame` asks for bigger
//! DATA frames: for experiments, the benchmark does not set them.
//!
//! A TARGET is `NAME=grpc://HOST:PORT` (REAPI over h2c: ByteStream, CAS) or, for `transfer`
//! only, `NAME=http://HOST:PORT/PREFIX` (Bazel's HTTP cache protocol: `PUT`/`GET
//! PREFIX/cas/<sha256>`). One connection per target, kept for the whole run, as a build
//! tool keeps its channel.
//!
//! - `transfer`: per repetition, each target (in an order that rotates from one repetition to
//!   the next) takes a write of a `--size` blob of its own: a ByteStream Write in `--chunk`
//!   pieces, or one HTTP PUT. Every blob differs (a server may answer a write of a blob it has
//!   without taking the bytes). Then each target reads its last blob back `--read-reps` times
//!   (ByteStream Read of the whole blob, HTTP GET), rotating likewise. The payloads are built
//!   before the clock starts; what was read is checked against the SHA-256 after it stops.
//! - `find-missing`: `--digests` small blobs go to each target (BatchUpdateBlobs, 500 a call),
//!   then each call asks FindMissingBlobs about all of them (present: none may be missing) or
//!   about as many never-stored digests (absent: all must be), `--calls` times each, rotating
//!   targets.
//!
//! Prints one JSON document: every sample in seconds, per target and operation.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt as _;
use larder_reapi::prost::Message as _;
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest, batch_update_blobs_request,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{
    ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use larder_reapi::tonic::transport::Channel;
use serde_json::{Value, json};
use sha2::Digest as _;

/// gRPC messages up to this size each way (a FindMissingBlobs answer of 10,000 digests is
/// under 1 MiB; the servers' own limits still apply).
const MAX_MESSAGE: usize = 64 << 20;

struct Args {
    command: String,
    size: usize,
    reps: usize,
    read_reps: usize,
    chunk: usize,
    digests: usize,
    calls: usize,
    h2: H2Settings,
    targets: Vec<(String, String)>,
}

/// The HTTP/2 settings of the gRPC channels (`None`: hyper's defaults).
#[derive(Clone, Copy, Default)]
struct H2Settings {
    window: Option<u32>,
    adaptive: bool,
    max_frame: Option<u32>,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it
        .next()
        .context("usage: reapi-client transfer|find-missing [options] NAME=URL...")?;
    let mut a = Args {
        command,
        size: 100 << 20,
        reps: 5,
        read_reps: 5,
        chunk: 1 << 20,
        digests: 10_000,
        calls: 7,
        h2: H2Settings::default(),
        targets: Vec::new(),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--size" => a.size = value("--size")?,
            "--reps" => a.reps = value("--reps")?.max(1),
            "--read-reps" => a.read_reps = value("--read-reps")?.max(1),
            "--chunk" => a.chunk = value("--chunk")?.max(1),
            "--digests" => a.digests = value("--digests")?.max(1),
            "--calls" => a.calls = value("--calls")?.max(1),
            "--window" => a.h2.window = Some(u32::try_from(value("--window")?)?),
            "--adaptive-window" => a.h2.adaptive = true,
            "--max-frame" => a.h2.max_frame = Some(u32::try_from(value("--max-frame")?)?),
            t => {
                let (name, url) = t
                    .split_once('=')
                    .with_context(|| format!("not an option nor NAME=URL: {t}"))?;
                a.targets.push((name.to_owned(), url.to_owned()));
            }
        }
    }
    ensure!(!a.targets.is_empty(), "no targets");
    Ok(a)
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An upload id of UUID shape (some servers parse it as one), distinct per write.
fn upload_id(n: usize) -> String {
    let pid = std::process::id();
    format!("{pid:08x}-0000-4000-8000-{n:012x}")
}

/// One side of a comparison: a gRPC channel or an HTTP base URL.
enum Client {
    Grpc(Channel),
    Http(reqwest::Client, String),
}

impl Client {
    async fn open(url: &str, h2: H2Settings) -> Result<Client> {
        if let Some(rest) = url.strip_prefix("grpc://") {
            let mut endpoint =
                Channel::from_shared(format!("http://{rest}")).context("gRPC address")?;
            if let Some(w) = h2.window {
                endpoint = endpoint
                    .initial_stream_window_size(w)
                    .initial_connection_window_size(w.saturating_mul(2));
            }
            if h2.adaptive {
                endpoint = endpoint.http2_adaptive_window(true);
            }
            if let Some(f) = h2.max_frame {
                endpoint = endpoint.max_frame_size(f);
            }
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {url}"))?;
            Ok(Client::Grpc(channel))
        } else if url.starts_with("http://") {
            Ok(Client::Http(
                reqwest::Client::new(),
                url.trim_end_matches('/').to_owned(),
            ))
        } else {
            bail!("unsupported target URL {url} (grpc:// or http://)")
        }
    }

    fn bytestream(channel: &Channel) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn cas(&self) -> Result<ContentAddressableStorageClient<Channel>> {
        match self {
            Client::Grpc(channel) => Ok(ContentAddressableStorageClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)),
            Client::Http(..) => bail!("find-missing needs a grpc:// target"),
        }
    }
}

/// A blob ready to send: its digest and its payload cut the way its protocol sends it.
enum Payload {
    Grpc(Vec<WriteRequest>),
    Http(bytes::Bytes),
}

fn payload(client: &Client, blob: Vec<u8>, hash: &str, chunk: usize, n: usize) -> Payload {
    match client {
        Client::Grpc(_) => {
            let name = format!("uploads/{}/blobs/{hash}/{}", upload_id(n), blob.len());
            let count = blob.len().div_ceil(chunk);
            let requests = blob
                .chunks(chunk)
                .enumerate()
                .map(|(i, piece)| WriteRequest {
                    // Only the first message names the resource, as Bazel's uploader does.
                    resource_name: if i == 0 { name.clone() } else { String::new() },
                    write_offset: (i * chunk) as i64,
                    finish_write: i + 1 == count,
                    data: piece.to_vec(),
                })
                .collect();
            Payload::Grpc(requests)
        }
        Client::Http(..) => Payload::Http(bytes::Bytes::from(blob)),
    }
}

/// Send one prepared blob; returns the seconds it took.
async fn write(client: &Client, hash: &str, size: usize, payload: Payload) -> Result<f64> {
    let started = Instant::now();
    match (client, payload) {
        (Client::Grpc(channel), Payload::Grpc(requests)) => {
            let committed = Client::bytestream(channel)
                .write(futures::stream::iter(requests))
                .await
                .context("ByteStream Write")?
                .into_inner()
                .committed_size;
            ensure!(
                committed == size as i64,
                "ByteStream Write committed {committed} of {size} bytes"
            );
        }
        (Client::Http(http, base), Payload::Http(body)) => {
            let status = http
                .put(format!("{base}/cas/{hash}"))
                .body(body)
                .send()
                .await
                .context("HTTP PUT")?
                .status();
            ensure!(status.is_success(), "HTTP PUT answered {status}");
        }
        _ => bail!("payload prepared for another protocol"),
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Read a whole blob; returns the seconds it took. The bytes are checked after the clock stops.
async fn read(client: &Client, hash: &str, size: usize) -> Result<f64> {
    let mut pieces: Vec<bytes::Bytes> = Vec::new();
    let started = Instant::now();
    match client {
        Client::Grpc(channel) => {
            let mut grpc =
                tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
            grpc.ready().await.context("ByteStream Read: channel")?;
            let request = tonic::Request::new(ReadRequest {
                resource_name: format!("blobs/{hash}/{size}"),
                read_offset: 0,
                read_limit: 0,
            });
            let mut stream = grpc
                .server_streaming(request, READ_PATH.parse()?, ReadCodec)
                .await
                .context("ByteStream Read")?
                .into_inner();
            while let Some(data) = stream.message().await.context("ByteStream Read")? {
                pieces.push(data);
            }
        }
        Client::Http(http, base) => {
            let response = http
                .get(format!("{base}/cas/{hash}"))
                .send()
                .await
                .context("HTTP GET")?;
            ensure!(
                response.status().is_success(),
                "HTTP GET answered {}",
                response.status()
            );
            let mut body = response.bytes_stream();
            while let Some(piece) = body.next().await {
                pieces.push(piece.context("HTTP GET body")?);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut h = sha2::Sha256::new();
    let mut got = 0;
    for p in &pieces {
        h.update(p);
        got += p.len();
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    ensure!(
        got == size && hex == hash,
        "read {got} bytes hashing to {hex}, expected {size} bytes of {hash}"
    );
    Ok(seconds)
}

/// ByteStream Read's method path.
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";

/// ByteStream Read with each message's data decoded as a `Bytes` split off tonic's receive
/// buffer, where the generated `ReadResponse` (`data: Vec<u8>`) copies every byte once more
/// into a new allocation: the client a throughput-minded REAPI client would be (prost decodes
/// `bytes` fields this way when generated with `bytes = "bytes"`), so the figure is the
/// server's, and it matches the HTTP side, whose body arrives as `Bytes`.
struct ReadCodec;

impl tonic::codec::Codec for ReadCodec {
    type Encode = ReadRequest;
    type Decode = bytes::Bytes;
    type Encoder = ReadCodec;
    type Decoder = ReadCodec;

    fn encoder(&mut self) -> ReadCodec {
        ReadCodec
    }

    fn decoder(&mut self) -> ReadCodec {
        ReadCodec
    }
}

impl tonic::codec::Encoder for ReadCodec {
    type Item = ReadRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: ReadRequest,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding a ReadRequest: {e}")))
    }
}

impl tonic::codec::Decoder for ReadCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    /// A ReadResponse's `data` (field 10); other fields are skipped.
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use larder_reapi::prost::bytes::Buf as _;
        use larder_reapi::prost::encoding::{DecodeContext, decode_key, skip_field};
        let bad = |e: larder_reapi::prost::DecodeError| {
            tonic::Status::internal(format!("a ReadResponse that does not decode: {e}"))
        };
        let mut data = bytes::Bytes::new();
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(buf).map_err(bad)?;
            if tag == 10 {
                larder_reapi::prost::encoding::bytes::merge(
                    wire_type,
                    &mut data,
                    buf,
                    DecodeContext::default(),
                )
            } else {
                skip_field(wire_type, tag, buf, DecodeContext::default())
            }
            .map_err(bad)?;
        }
        Ok(Some(data))
    }
}

/// Targets in the order of repetition `rep`: rotated by one each time.
fn rotation<T>(items: &[T], rep: usize) -> impl Iterator<Item = (usize, &T)> {
    let n = items.len();
    (0..n).map(move |i| {
        let k = (i + rep) % n;
        (k, &items[k])
    })
}

async fn transfer(a: &Args) -> Result<Value> {
    let mut clients = Vec::new();
    for (name, url) in &a.targets {
        clients.push((name.clone(), Client::open(url, a.h2).await?));
    }
    let base = larder_benches::pseudo_random("reapi transfer", a.size);
    let mut writes = vec![Vec::new(); clients.len()];
    let mut last: Vec<Option<String>> = vec![None; clients.len()];
    let mut n = 0usize;
    for rep in 0..a.reps {
        for (k, (name, client)) in rotation(&clients, rep) {
            // A blob of its own: the base with its first bytes made unique.
            let mut blob = base.clone();
            let tag = format!("{rep}/{k}/{}/", std::process::id());
            let len = tag.len().min(blob.len());
            blob[..len].copy_from_slice(&tag.as_bytes()[..len]);
            let hash = sha256_hex(&blob);
            n += 1;
            let p = payload(client, blob, &hash, a.chunk, n);
            let s = write(client, &hash, a.size, p)
                .await
                .with_context(|| format!("{name}: write"))?;
            writes[k].push(s);
            last[k] = Some(hash);
        }
    }
    let mut reads = vec![Vec::new(); clients.len()];
    for rep in 0..a.read_reps {
        for (k, (name, client)) in rotation(&clients, rep) {
            let hash = last[k].as_deref().context("nothing written")?;
            let s = read(client, hash, a.size)
                .await
                .with_context(|| format!("{name}: read"))?;
            reads[k].push(s);
        }
    }
    let targets: Vec<Value> = clients
        .iter()
        .enumerate()
        .map(|(k, (name, _))| json!({"name": name, "write": writes[k], "read": reads[k]}))
        .collect();
    Ok(json!({"bytes": a.size, "chunk": a.chunk, "targets": targets}))
}

fn digests(seed: &str, count: usize) -> (Vec<Vec<u8>>, Vec<Digest>) {
    let bodies: Vec<Vec<u8>> = (0..count)
        .map(|i| larder_benches::pseudo_random(&format!("{seed} {i}"), 200 + i % 300))
        .collect();
    let ds = bodies
        .iter()
        .map(|b| Digest {
            hash: sha256_hex(b),
            size_bytes: b.len() as i64,
        })
        .collect();
    (bodies, ds)
}

/// One FindMissingBlobs call; returns its seconds and how many digests it said were missing.
async fn find_missing(
    cas: &mut ContentAddressableStorageClient<Channel>,
    ds: &[Digest],
) -> Result<(f64, usize)> {
    let request = FindMissingBlobsRequest {
        instance_name: String::new(),
        blob_digests: ds.to_vec(),
        digest_function: 0,
    };
    let started = Instant::now();
    let missing = cas
        .find_missing_blobs(request)
        .await
        .context("FindMissingBlobs")?
        .into_inner()
        .missing_blob_digests
        .len();
    Ok((started.elapsed().as_secs_f64(), missing))
}

async fn find_missing_bench(a: &Args) -> Result<Value> {
    let (bodies, present) = digests("reapi present", a.digests);
    let (_, absent) = digests("reapi absent", a.digests);
    let mut cas = Vec::new();
    for (name, url) in &a.targets {
        let mut c = Client::open(url, a.h2).await?.cas()?;
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
            let answer = c
                .batch_update_blobs(BatchUpdateBlobsRequest {
                    instance_name: String::new(),
                    requests,
                    digest_function: 0,
                })
                .await
                .with_context(|| format!("{name}: BatchUpdateBlobs"))?
                .into_inner();
            for r in answer.responses {
                let code = r.status.map_or(0, |s| s.code);
                ensure!(
                    code == 0,
                    "{name}: BatchUpdateBlobs refused a blob: code {code}"
                );
            }
        }
        cas.push((name.clone(), c));
    }
    let mut found = vec![Vec::new(); cas.len()];
    let mut none = vec![Vec::new(); cas.len()];
    for rep in 0..a.calls {
        let order: Vec<usize> = rotation(&cas, rep).map(|(k, _)| k).collect();
        for k in order {
            let (name, c) = &mut cas[k];
            let (s, missing) = find_missing(c, &present).await?;
            ensure!(missing == 0, "{name}: {missing} stored blobs said missing");
            found[k].push(s);
            let (s, missing) = find_missing(c, &absent).await?;
            ensure!(
                missing == absent.len(),
                "{name}: {missing} of {} absent blobs said missing",
                absent.len()
            );
            none[k].push(s);
        }
    }
    let targets: Vec<Value> = cas
        .iter()
        .enumerate()
        .map(|(k, (name, _))| json!({"name": name, "present": found[k], "absent": none[k]}))
        .collect();
    Ok(json!({"digests": a.digests, "targets": targets}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let out = match a.command.as_str() {
        "transfer" => transfer(&a).await?,
        "find-missing" => find_missing_bench(&a).await?,
        other => bail!("unknown command {other} (transfer, find-missing)"),
    };
    println!("{out}");
    Ok(())
}
