//! The REAPI services over real gRPC on loopback, with clients from the same generated code,
//! against a larder-fs store.

use std::net::SocketAddr;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest, Directory, DirectoryNode,
    FileNode, FindMissingBlobsRequest, GetActionResultRequest, GetCapabilitiesRequest,
    GetTreeRequest, OutputDirectory, OutputFile, Tree, UpdateActionResultRequest,
    action_cache_client::ActionCacheClient, batch_update_blobs_request,
    capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient, digest_function,
};
use bazel_remote_apis::google::bytestream::{
    QueryWriteStatusRequest, ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use larder_reapi::{Authorizer, Options, Permission};
use prost::Message;
use sha2::Digest as _;
use tonic::transport::Channel;
use tonic::{Code, Request};

const TOKEN: &str = "0123456789abcdef-token";

/// Writes need `authorization: Bearer TOKEN`; reads are open.
#[derive(Debug)]
struct TokenForWrites;

impl Authorizer for TokenForWrites {
    fn check(&self, headers: &axum::http::HeaderMap, write: bool) -> Permission {
        if !write {
            return Permission::Granted;
        }
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            None => Permission::Unauthenticated,
            Some(v) if v == format!("Bearer {TOKEN}") => Permission::Granted,
            Some(_) => Permission::Denied,
        }
    }
}

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(tweak: impl FnOnce(Options) -> Options) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = larder_fs::FsStore::open(dir.path().join("store"), Default::default())
        .expect("store opens");
    let options = tweak(Options::new(dir.path().join("spool")));
    let routes = larder_reapi::grpc_routes(Arc::new(store), options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("serves");
    });
    Server {
        addr,
        _dir: dir,
        _task: task,
    }
}

impl Server {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects")
    }
    async fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
    async fn bs(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel().await)
    }
    async fn ac(&self) -> ActionCacheClient<Channel> {
        ActionCacheClient::new(self.channel().await)
    }
}

fn sha256(data: &[u8]) -> Digest {
    Digest {
        hash: sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        size_bytes: data.len() as i64,
    }
}

/// Deterministic, incompressible-looking bytes.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64 ^ u64::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn upload(
    cas: &mut ContentAddressableStorageClient<Channel>,
    instance: &str,
    blobs: &[&[u8]],
) {
    let requests = blobs
        .iter()
        .map(|b| batch_update_blobs_request::Request {
            digest: Some(sha256(b)),
            data: b.to_vec(),
            compressor: 0,
        })
        .collect();
    let resp = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: instance.into(),
            requests,
            digest_function: 0,
        })
        .await
        .expect("batch update")
        .into_inner();
    for r in resp.responses {
        assert_eq!(r.status.map(|s| s.code), Some(0), "upload");
    }
}

async fn missing(
    cas: &mut ContentAddressableStorageClient<Channel>,
    instance: &str,
    digests: &[Digest],
) -> Vec<Digest> {
    cas.find_missing_blobs(FindMissingBlobsRequest {
        instance_name: instance.into(),
        blob_digests: digests.to_vec(),
        digest_function: 0,
    })
    .await
    .expect("find missing")
    .into_inner()
    .missing_blob_digests
}

fn write_req(name: &str, offset: usize, data: &[u8], finish: bool) -> WriteRequest {
    WriteRequest {
        resource_name: name.into(),
        write_offset: offset as i64,
        finish_write: finish,
        data: data.to_vec(),
    }
}

async fn read_all(
    bs: &mut ByteStreamClient<Channel>,
    name: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<u8>, usize), tonic::Status> {
    let mut stream = bs
        .read(ReadRequest {
            resource_name: name.into(),
            read_offset: offset,
            read_limit: limit,
        })
        .await?
        .into_inner();
    let (mut out, mut largest) = (Vec::new(), 0);
    while let Some(msg) = stream.message().await? {
        largest = largest.max(msg.data.len());
        out.extend_from_slice(&msg.data);
    }
    Ok((out, largest))
}

#[tokio::test]
async fn capabilities_follow_the_caller_and_the_limits() {
    let server = serve(|o| {
        o.with_max_batch_bytes(1 << 20)
            .with_authorizer(Arc::new(TokenForWrites))
    })
    .await;
    let mut caps = CapabilitiesClient::new(server.channel().await);
    let c = caps
        .get_capabilities(GetCapabilitiesRequest::default())
        .await
        .expect("capabilities")
        .into_inner();
    let (low, high) = (
        c.low_api_version.expect("low"),
        c.high_api_version.expect("high"),
    );
    assert_eq!((low.major, low.minor, high.major, high.minor), (2, 0, 2, 3));
    let cache = c.cache_capabilities.expect("cache capabilities");
    assert_eq!(
        cache.digest_functions,
        vec![
            digest_function::Value::Sha256 as i32,
            digest_function::Value::Blake3 as i32
        ]
    );
    assert_eq!(cache.max_batch_total_size_bytes, 1 << 20);
    let update = |c: bazel_remote_apis::build::bazel::remote::execution::v2::ServerCapabilities| {
        c.cache_capabilities
            .and_then(|c| c.action_cache_update_capabilities)
            .map(|u| u.update_enabled)
    };
    assert_eq!(
        cache
            .action_cache_update_capabilities
            .map(|u| u.update_enabled),
        Some(false)
    );
    let mut req = Request::new(GetCapabilitiesRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("ascii"),
    );
    let c = caps.get_capabilities(req).await.expect("caps").into_inner();
    assert_eq!(update(c), Some(true));
}

#[tokio::test]
async fn batches_verify_digests_and_keep_to_their_limit() {
    let server = serve(|o| o.with_max_batch_bytes(64 << 10)).await;
    let mut cas = server.cas().await;
    let small = b"hello".to_vec();
    let large = bytes(20_000, 1);
    let wrong = b"not what the digest says".to_vec();
    let resp = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: vec![
                batch_update_blobs_request::Request {
                    digest: Some(sha256(&small)),
                    data: small.clone(),
                    compressor: 0,
                },
                batch_update_blobs_request::Request {
                    digest: Some(sha256(&large)),
                    data: large.clone(),
                    compressor: 0,
                },
                batch_update_blobs_request::Request {
                    digest: Some(sha256(b"something else")),
                    data: wrong.clone(),
                    compressor: 0,
                },
            ],
            digest_function: 0,
        })
        .await
        .expect("batch update")
        .into_inner();
    let codes: Vec<i32> = resp
        .responses
        .iter()
        .map(|r| r.status.as_ref().map_or(-1, |s| s.code))
        .collect();
    assert_eq!(codes, vec![0, 0, Code::InvalidArgument as i32]);
    // Nothing was stored for the wrong one, under either digest.
    let gone = missing(
        &mut cas,
        "",
        &[
            sha256(&small),
            sha256(&large),
            sha256(b"something else"),
            sha256(&wrong),
        ],
    )
    .await;
    assert_eq!(gone, vec![sha256(b"something else"), sha256(&wrong)]);

    let read = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            instance_name: String::new(),
            digests: vec![
                sha256(&small),
                sha256(&large),
                sha256(b"absent"),
                sha256(b""),
            ],
            acceptable_compressors: vec![],
            digest_function: 0,
        })
        .await
        .expect("batch read")
        .into_inner();
    let got: Vec<(i32, Vec<u8>)> = read
        .responses
        .into_iter()
        .map(|r| (r.status.map_or(-1, |s| s.code), r.data))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, small.clone()),
            (0, large.clone()),
            (Code::NotFound as i32, vec![]),
            (0, vec![])
        ]
    );

    // Over max_batch_total_size_bytes: refused whole, both ways.
    let big = [bytes(40_000, 2), bytes(40_000, 3)];
    let err = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: big
                .iter()
                .map(|b| batch_update_blobs_request::Request {
                    digest: Some(sha256(b)),
                    data: b.clone(),
                    compressor: 0,
                })
                .collect(),
            digest_function: 0,
        })
        .await
        .expect_err("over the batch limit");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            instance_name: String::new(),
            digests: big.iter().map(|b| sha256(b)).collect(),
            acceptable_compressors: vec![],
            digest_function: 0,
        })
        .await
        .expect_err("over the batch limit");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A message over the gRPC limit (batch limit + 1 MiB) is refused before it is buffered.
    let huge = bytes(2 << 20, 4);
    let err = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(sha256(&huge)),
                data: huge,
                compressor: 0,
            }],
            digest_function: 0,
        })
        .await
        .expect_err("over the message limit");
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err}"
    );

    // Malformed digests.
    for d in [
        Digest {
            hash: "abc".into(),
            size_bytes: 1,
        },
        Digest {
            hash: "A".repeat(64),
            size_bytes: 1,
        },
        Digest {
            hash: "a".repeat(64),
            size_bytes: -1,
        },
    ] {
        let err = cas
            .find_missing_blobs(FindMissingBlobsRequest {
                instance_name: String::new(),
                blob_digests: vec![d],
                digest_function: 0,
            })
            .await
            .expect_err("malformed digest");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    }
}

#[tokio::test]
async fn bytestream_reads_ranges_and_resumes_writes() {
    let server = serve(|o| o).await;
    let mut bs = server.bs().await;
    let mut cas = server.cas().await;
    let blob = bytes(3 << 20 | 12345, 7);
    let d = sha256(&blob);
    let upload = format!("team/a/uploads/0f1e-2d3c/blobs/{}/{}", d.hash, d.size_bytes);
    let half = blob.len() / 2;

    // The first half, then the client stops without finishing.
    let first: Vec<WriteRequest> = blob[..half]
        .chunks(256 << 10)
        .enumerate()
        .map(|(i, c)| write_req(if i == 0 { &upload } else { "" }, i * (256 << 10), c, false))
        .collect();
    let resp = bs
        .write(futures::stream::iter(first))
        .await
        .expect("partial write")
        .into_inner();
    assert_eq!(resp.committed_size, half as i64);
    let status = bs
        .query_write_status(QueryWriteStatusRequest {
            resource_name: upload.clone(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (status.committed_size, status.complete),
        (half as i64, false)
    );
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&d)).await,
        vec![d.clone()]
    );

    // Resuming anywhere but the committed offset is refused.
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &upload,
            10,
            &blob[10..20],
            false,
        )]))
        .await
        .expect_err("wrong offset");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // The rest from the committed offset.
    let rest: Vec<WriteRequest> = blob[half..]
        .chunks(300 << 10)
        .enumerate()
        .map(|(i, c)| {
            let last = half + (i + 1) * (300 << 10) >= blob.len();
            write_req(&upload, half + i * (300 << 10), c, last)
        })
        .collect();
    let resp = bs
        .write(futures::stream::iter(rest))
        .await
        .expect("resumed write")
        .into_inner();
    assert_eq!(resp.committed_size, blob.len() as i64);
    let status = bs
        .query_write_status(QueryWriteStatusRequest {
            resource_name: upload.clone(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (status.committed_size, status.complete),
        (blob.len() as i64, true)
    );
    // The CAS is shared by instances.
    assert!(
        missing(&mut cas, "", std::slice::from_ref(&d))
            .await
            .is_empty()
    );
    assert!(
        missing(&mut cas, "other", std::slice::from_ref(&d))
            .await
            .is_empty()
    );

    // A second upload of a present blob finishes after its first message.
    let again = format!("uploads/another/blobs/{}/{}", d.hash, d.size_bytes);
    let resp = bs
        .write(futures::stream::iter(vec![write_req(
            &again,
            0,
            &blob[..1000],
            false,
        )]))
        .await
        .expect("early completion")
        .into_inner();
    assert_eq!(resp.committed_size, blob.len() as i64);

    // Reads: whole, in chunks of at most 2 MiB (larder-fs's trusted pieces); a range; past
    // the end; missing.
    let name = format!("blobs/{}/{}", d.hash, d.size_bytes);
    let (all, largest) = read_all(&mut bs, &name, 0, 0).await.expect("read");
    assert!(all == blob, "whole read differs");
    assert!(largest <= 2 << 20 && largest > 0, "chunk of {largest}");
    let (part, _) = read_all(&mut bs, &format!("team/a/{name}"), 1_048_000, 5000)
        .await
        .expect("ranged read");
    assert!(part == blob[1_048_000..1_053_000], "ranged read differs");
    let (tail, _) = read_all(&mut bs, &name, blob.len() as i64 - 10, 100)
        .await
        .expect("tail read");
    assert!(tail == blob[blob.len() - 10..], "tail differs");
    let err = read_all(&mut bs, &name, blob.len() as i64 + 1, 0)
        .await
        .expect_err("past the end");
    assert_eq!(err.code(), Code::OutOfRange, "{err}");
    let absent = sha256(b"absent");
    let err = read_all(
        &mut bs,
        &format!("blobs/{}/{}", absent.hash, absent.size_bytes),
        0,
        0,
    )
    .await
    .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    for bad in [
        "blobs/xyz/1".to_owned(),
        format!("a/../b/blobs/{}/1", d.hash),
        format!("x/blobs/y/blobs/{}/1", d.hash),
        format!("blobs/{}/-1", d.hash),
    ] {
        let err = read_all(&mut bs, &bad, 0, 0).await.expect_err(&bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
    }

    // Bytes that do not hash to the digest: refused, nothing stored.
    let liar = sha256(b"the truth");
    let liar_name = format!("uploads/u2/blobs/{}/{}", liar.hash, liar.size_bytes);
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &liar_name,
            0,
            b"the lies",
            true,
        )]))
        .await
        .expect_err("wrong digest");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&liar)).await,
        vec![liar.clone()]
    );
    // The same with as many bytes as the digest names, in one request (stored from memory).
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &format!("uploads/u2b/blobs/{}/{}", liar.hash, liar.size_bytes),
            0,
            b"the trick",
            true,
        )]))
        .await
        .expect_err("wrong digest of the right size");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&liar)).await,
        vec![liar]
    );
    // Small blobs (kept inline) write and read too.
    let small = b"small blob".to_vec();
    let sd = sha256(&small);
    let resp = bs
        .write(futures::stream::iter(vec![write_req(
            &format!("uploads/u3/blobs/{}/{}", sd.hash, sd.size_bytes),
            0,
            &small,
            true,
        )]))
        .await
        .expect("small write")
        .into_inner();
    assert_eq!(resp.committed_size, small.len() as i64);
    let (got, _) = read_all(
        &mut bs,
        &format!("blobs/{}/{}", sd.hash, sd.size_bytes),
        2,
        3,
    )
    .await
    .expect("small read");
    assert_eq!(got, b"all");
}

#[tokio::test]
async fn blake3_blobs_round_trip() {
    let server = serve(|o| o).await;
    let mut bs = server.bs().await;
    let mut cas = server.cas().await;
    let blob = bytes(10_000, 9);
    let hash = blake3::hash(&blob).to_hex().to_string();
    let name = format!("uploads/b3/blobs/blake3/{hash}/{}", blob.len());
    let resp = bs
        .write(futures::stream::iter(vec![write_req(
            &name, 0, &blob, true,
        )]))
        .await
        .expect("blake3 write")
        .into_inner();
    assert_eq!(resp.committed_size, blob.len() as i64);
    let d = Digest {
        hash: hash.clone(),
        size_bytes: blob.len() as i64,
    };
    let gone = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: String::new(),
            blob_digests: vec![d.clone()],
            digest_function: digest_function::Value::Blake3 as i32,
        })
        .await
        .expect("find missing")
        .into_inner()
        .missing_blob_digests;
    assert!(gone.is_empty());
    // The same hex as a SHA-256 digest is another blob.
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&d)).await,
        vec![d]
    );
    let (got, _) = read_all(
        &mut bs,
        &format!("blobs/blake3/{hash}/{}", blob.len()),
        0,
        0,
    )
    .await
    .expect("blake3 read");
    assert!(got == blob);
}

fn put_result(instance: &str, action: &Digest, result: ActionResult) -> UpdateActionResultRequest {
    UpdateActionResultRequest {
        instance_name: instance.into(),
        action_digest: Some(action.clone()),
        action_result: Some(result),
        results_cache_policy: None,
        digest_function: 0,
    }
}

fn get_result(instance: &str, action: &Digest) -> GetActionResultRequest {
    GetActionResultRequest {
        instance_name: instance.into(),
        action_digest: Some(action.clone()),
        inline_stdout: true,
        inline_stderr: false,
        inline_output_files: vec!["out/a".into()],
        digest_function: 0,
    }
}

#[tokio::test]
async fn action_results_are_complete_and_per_instance() {
    let server = serve(|o| o).await;
    let mut cas = server.cas().await;
    let mut ac = server.ac().await;
    let file_a = b"contents of a".to_vec();
    let file_b = bytes(9000, 11);
    let stdout = b"compiled\n".to_vec();
    let in_tree = b"a file inside an output directory".to_vec();
    let tree = Tree {
        root: Some(Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(sha256(&in_tree)),
                is_executable: false,
                node_properties: None,
            }],
            ..Default::default()
        }),
        children: vec![],
    }
    .encode_to_vec();
    let action = sha256(b"an action");
    let result = ActionResult {
        output_files: vec![
            OutputFile {
                path: "out/a".into(),
                digest: Some(sha256(&file_a)),
                ..Default::default()
            },
            OutputFile {
                path: "out/b".into(),
                digest: Some(sha256(&file_b)),
                ..Default::default()
            },
        ],
        output_directories: vec![OutputDirectory {
            path: "out/dir".into(),
            tree_digest: Some(sha256(&tree)),
            ..Default::default()
        }],
        stdout_digest: Some(sha256(&stdout)),
        exit_code: 0,
        ..Default::default()
    };
    ac.update_action_result(put_result("team/a", &action, result.clone()))
        .await
        .expect("update");
    // Stored, but its blobs are not: a miss.
    let err = ac
        .get_action_result(get_result("team/a", &action))
        .await
        .expect_err("incomplete");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    upload(&mut cas, "", &[&file_a, &file_b, &stdout, &tree]).await;
    // The tree is there but a file in it is not: still a miss.
    let err = ac
        .get_action_result(get_result("team/a", &action))
        .await
        .expect_err("a file of a tree is missing");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    upload(&mut cas, "", &[&in_tree]).await;
    let got = ac
        .get_action_result(get_result("team/a", &action))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(got.stdout_raw, stdout, "stdout inlined");
    assert_eq!(
        got.output_files[0].contents, file_a,
        "asked-for file inlined"
    );
    assert!(
        got.output_files[1].contents.is_empty(),
        "other file not inlined"
    );
    // Per instance.
    for other in ["", "team/b", "team"] {
        let err = ac
            .get_action_result(get_result(other, &action))
            .await
            .expect_err("another instance");
        assert_eq!(err.code(), Code::NotFound, "{other}: {err}");
    }
    // Malformed instance names and results.
    for bad in ["a/../b", "x/blobs", "/abs", "a//b"] {
        let err = ac
            .get_action_result(get_result(bad, &action))
            .await
            .expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
    }
    let mut unsafe_path = result.clone();
    unsafe_path.output_files[0].path = "../escape".into();
    let err = ac
        .update_action_result(put_result("", &action, unsafe_path))
        .await
        .expect_err("unsafe path");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let mut bad_digest = result;
    bad_digest.output_files[0].digest = Some(Digest {
        hash: "zz".into(),
        size_bytes: 1,
    });
    let err = ac
        .update_action_result(put_result("", &action, bad_digest))
        .await
        .expect_err("bad digest");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn get_tree_pages_through_a_tree() {
    let server = serve(|o| o).await;
    let mut cas = server.cas().await;
    // root -> d0..d4, each -> its own leaf; one more child of root is missing from the CAS.
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    for i in 0..5u8 {
        let leaf = Directory {
            files: vec![FileNode {
                name: format!("leaf{i}"),
                digest: Some(sha256(&[i])),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let mid = Directory {
            directories: vec![DirectoryNode {
                name: "leaf".into(),
                digest: Some(sha256(&leaf)),
            }],
            ..Default::default()
        }
        .encode_to_vec();
        children.push(DirectoryNode {
            name: format!("d{i}"),
            digest: Some(sha256(&mid)),
        });
        blobs.push(leaf);
        blobs.push(mid);
    }
    children.push(DirectoryNode {
        name: "gone".into(),
        digest: Some(sha256(b"not uploaded")),
    });
    let root = Directory {
        directories: children,
        ..Default::default()
    }
    .encode_to_vec();
    blobs.push(root.clone());
    let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
    upload(&mut cas, "", &refs).await;

    let mut token = String::new();
    let mut pages = Vec::new();
    let mut all = Vec::new();
    loop {
        let mut stream = cas
            .get_tree(GetTreeRequest {
                instance_name: "team/a".into(),
                root_digest: Some(sha256(&root)),
                page_size: 4,
                page_token: token.clone(),
                digest_function: 0,
            })
            .await
            .expect("get tree")
            .into_inner();
        let mut next = String::new();
        let mut n = 0;
        while let Some(page) = stream.message().await.expect("page") {
            n += page.directories.len();
            all.extend(page.directories.into_iter().map(|d| d.encode_to_vec()));
            next = page.next_page_token;
        }
        pages.push(n);
        if next.is_empty() {
            break;
        }
        token = next;
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, vec![4, 4, 3]);
    let mut got = all.clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 11, "each directory once");
    let mut want = blobs.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(all[0], root, "root first");
    let err = cas
        .get_tree(GetTreeRequest {
            instance_name: String::new(),
            root_digest: Some(sha256(&root)),
            page_size: 4,
            page_token: "garbage".into(),
            digest_function: 0,
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn writes_need_the_token() {
    let server = serve(|o| o.with_authorizer(Arc::new(TokenForWrites))).await;
    let mut cas = server.cas().await;
    let mut bs = server.bs().await;
    let mut ac = server.ac().await;
    let blob = b"guarded".to_vec();
    let d = sha256(&blob);
    let batch = || BatchUpdateBlobsRequest {
        instance_name: String::new(),
        requests: vec![batch_update_blobs_request::Request {
            digest: Some(sha256(&blob)),
            data: blob.clone(),
            compressor: 0,
        }],
        digest_function: 0,
    };
    let with = |token: &str, req| {
        let mut r = Request::new(req);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        r
    };
    let err = cas.batch_update_blobs(batch()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = cas
        .batch_update_blobs(with("wrong-token-wrong-token", batch()))
        .await
        .expect_err("wrong token");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let name = format!("uploads/u/blobs/{}/{}", d.hash, d.size_bytes);
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &name, 0, &blob, true,
        )]))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = ac
        .update_action_result(put_result("", &d, ActionResult::default()))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    // Reads stay anonymous; with the token, writes go through.
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&d)).await,
        vec![d.clone()]
    );
    cas.batch_update_blobs(with(TOKEN, batch()))
        .await
        .expect("with the token");
    assert!(missing(&mut cas, "", &[d]).await.is_empty());
}

#[tokio::test]
async fn zstd_reads_and_writes() {
    let server = serve(|o| o).await;
    let mut bs = server.bs().await;
    let mut cas = server.cas().await;
    // Compressible and over one read chunk.
    let blob: Vec<u8> = (0..(2 << 20) + 500).map(|i| (i % 251) as u8 / 8).collect();
    let d = sha256(&blob);
    let z = zstd::bulk::compress(&blob, 3).expect("compress");
    assert!(z.len() < blob.len() / 4);
    let name = format!(
        "uploads/z1/compressed-blobs/zstd/{}/{}",
        d.hash, d.size_bytes
    );
    let reqs: Vec<WriteRequest> = z
        .chunks(50_000)
        .enumerate()
        .map(|(i, c)| WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: (i * 50_000) as i64,
            finish_write: (i + 1) * 50_000 >= z.len(),
            data: c.to_vec(),
        })
        .collect();
    let committed = bs
        .write(futures::stream::iter(reqs))
        .await
        .expect("compressed write")
        .into_inner()
        .committed_size;
    assert_eq!(committed, z.len() as i64);
    let (plain, _) = read_all(&mut bs, &format!("blobs/{}/{}", d.hash, d.size_bytes), 0, 0)
        .await
        .expect("plain read");
    assert!(plain == blob, "stored uncompressed");
    // Compressed reads, whole and from an (uncompressed) offset.
    let zname = format!("compressed-blobs/zstd/{}/{}", d.hash, d.size_bytes);
    let (got, _) = read_all(&mut bs, &zname, 0, 0)
        .await
        .expect("compressed read");
    assert!(got.len() < blob.len() / 4, "sent compressed");
    let back = zstd::stream::decode_all(&got[..]).expect("decodes");
    assert!(back == blob);
    let (got, _) = read_all(&mut bs, &zname, 1_500_000, 0)
        .await
        .expect("compressed read from an offset");
    assert!(zstd::stream::decode_all(&got[..]).expect("decodes") == blob[1_500_000..]);
    let err = read_all(&mut bs, &zname, 0, 10)
        .await
        .expect_err("read_limit with compression");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = read_all(
        &mut bs,
        &format!("compressed-blobs/brotli/{}/{}", d.hash, d.size_bytes),
        0,
        0,
    )
    .await
    .expect_err("unsupported compressor");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // A present blob: the compressed write finishes at once with -1.
    let again = format!(
        "uploads/z2/compressed-blobs/zstd/{}/{}",
        d.hash, d.size_bytes
    );
    let committed = bs
        .write(futures::stream::iter(vec![write_req(
            &again,
            0,
            &z[..100],
            false,
        )]))
        .await
        .expect("early completion")
        .into_inner()
        .committed_size;
    assert_eq!(committed, -1);
    // Data that decompresses to something else, or to more than the digest says: refused.
    let other = bytes(5000, 21);
    let od = sha256(&other);
    let lie = zstd::bulk::compress(&bytes(5000, 22), 1).expect("compress");
    let name = format!(
        "uploads/z3/compressed-blobs/zstd/{}/{}",
        od.hash, od.size_bytes
    );
    let err = bs
        .write(futures::stream::iter(vec![write_req(&name, 0, &lie, true)]))
        .await
        .expect_err("wrong digest");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 1).expect("compress");
    let name = format!(
        "uploads/z4/compressed-blobs/zstd/{}/{}",
        od.hash, od.size_bytes
    );
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &name, 0, &bomb, true,
        )]))
        .await
        .expect_err("more than the digest's size");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_eq!(
        missing(&mut cas, "", std::slice::from_ref(&od)).await,
        vec![od.clone()]
    );
    // Batch updates take zstd too.
    let resp = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(od.clone()),
                data: zstd::bulk::compress(&other, 1).expect("compress"),
                compressor: 1,
            }],
            digest_function: 0,
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(resp.responses[0].status.as_ref().map(|s| s.code), Some(0));
    let (got, _) = read_all(
        &mut bs,
        &format!("blobs/{}/{}", od.hash, od.size_bytes),
        0,
        0,
    )
    .await
    .expect("read");
    assert!(got == other);
}

#[tokio::test]
async fn remote_assets_name_blobs_and_directories_per_instance() {
    use bazel_remote_apis::build::bazel::remote::asset::v1::{
        FetchBlobRequest, FetchDirectoryRequest, PushBlobRequest, PushDirectoryRequest, Qualifier,
        fetch_client::FetchClient, push_client::PushClient,
    };
    let server = serve(|o| o).await;
    let mut cas = server.cas().await;
    let mut fetch = FetchClient::new(server.channel().await);
    let mut push = PushClient::new(server.channel().await);
    let q = |v: &str| {
        vec![Qualifier {
            name: "buildstream.artifact".into(),
            value: v.into(),
        }]
    };
    let fetch_blob = |instance: &str, uri: &str, qualifiers| FetchBlobRequest {
        instance_name: instance.into(),
        uris: vec!["urn:other".into(), uri.into()],
        qualifiers,
        ..Default::default()
    };
    let artifact = b"an artifact proto".to_vec();
    let ad = sha256(&artifact);
    let push_blob = PushBlobRequest {
        instance_name: "team/a".into(),
        uris: vec!["urn:artifact:proj/el/abc".into()],
        qualifiers: q("1"),
        blob_digest: Some(ad.clone()),
        ..Default::default()
    };
    // Pushing a name for a blob the CAS lacks is refused.
    let err = push
        .push_blob(push_blob.clone())
        .await
        .expect_err("blob not uploaded");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    upload(&mut cas, "", &[&artifact]).await;
    push.push_blob(push_blob).await.expect("push blob");
    let got = fetch
        .fetch_blob(fetch_blob("team/a", "urn:artifact:proj/el/abc", q("1")))
        .await
        .expect("fetch blob")
        .into_inner();
    assert_eq!(got.blob_digest, Some(ad.clone()));
    assert_eq!(got.uri, "urn:artifact:proj/el/abc");
    for (instance, qualifiers) in [("team/a", q("2")), ("", q("1")), ("team/a", vec![])] {
        let err = fetch
            .fetch_blob(fetch_blob(instance, "urn:artifact:proj/el/abc", qualifiers))
            .await
            .expect_err("another name");
        assert_eq!(err.code(), Code::NotFound, "{instance}: {err}");
    }

    // Directories: found only while their whole tree is in the CAS.
    let file = b"a source file".to_vec();
    let root = Directory {
        files: vec![FileNode {
            name: "f".into(),
            digest: Some(sha256(&file)),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let rd = sha256(&root);
    upload(&mut cas, "", &[&root]).await;
    let push_dir = PushDirectoryRequest {
        instance_name: String::new(),
        uris: vec!["https://example.invalid/src.tar.gz".into()],
        root_directory_digest: Some(rd.clone()),
        ..Default::default()
    };
    let err = push
        .push_directory(push_dir.clone())
        .await
        .expect_err("a file is missing");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    upload(&mut cas, "", &[&file]).await;
    push.push_directory(push_dir).await.expect("push directory");
    let got = fetch
        .fetch_directory(FetchDirectoryRequest {
            uris: vec!["https://example.invalid/src.tar.gz".into()],
            ..Default::default()
        })
        .await
        .expect("fetch directory")
        .into_inner();
    assert_eq!(got.root_directory_digest, Some(rd));
    let err = fetch
        .fetch_blob(FetchBlobRequest {
            uris: vec![],
            ..Default::default()
        })
        .await
        .expect_err("no URI");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn health_check_says_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = serve(|o| o).await;
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

/// Room on the disk, switched by the test.
#[derive(Debug, Default)]
struct Room(std::sync::atomic::AtomicBool);

impl larder_reapi::Admission for Room {
    fn room_for(&self, _bytes: u64) -> futures::future::BoxFuture<'_, bool> {
        let room = self.0.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { room })
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_and_serves_reads() {
    let room = Arc::new(Room::default());
    room.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let r2 = Arc::clone(&room);
    let server = serve(move |o| o.with_admission(r2)).await;
    let mut cas = server.cas().await;
    let mut bs = server.bs().await;
    let kept = bytes(10_000, 31);
    upload(&mut cas, "", &[&kept]).await;
    room.0.store(false, std::sync::atomic::Ordering::SeqCst);
    let blob = bytes(10_000, 32);
    let d = sha256(&blob);
    let err = bs
        .write(futures::stream::iter(vec![write_req(
            &format!("uploads/f/blobs/{}/{}", d.hash, d.size_bytes),
            0,
            &blob,
            true,
        )]))
        .await
        .expect_err("disk full");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let err = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(d.clone()),
                data: blob.clone(),
                compressor: 0,
            }],
            digest_function: 0,
        })
        .await
        .expect_err("disk full");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let kd = sha256(&kept);
    let (got, _) = read_all(
        &mut bs,
        &format!("blobs/{}/{}", kd.hash, kd.size_bytes),
        0,
        0,
    )
    .await
    .expect("reads go on");
    assert!(got == kept);
    // A blob already there still completes at once.
    let committed = bs
        .write(futures::stream::iter(vec![write_req(
            &format!("uploads/g/blobs/{}/{}", kd.hash, kd.size_bytes),
            0,
            &kept,
            true,
        )]))
        .await
        .expect("present blob")
        .into_inner()
        .committed_size;
    assert_eq!(committed, kept.len() as i64);
}

#[tokio::test]
async fn get_tree_pages_stay_within_the_batch_limit() {
    let server = serve(|o| o.with_max_batch_bytes(300)).await;
    let mut cas = server.cas().await;
    let leaves: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            Directory {
                files: vec![FileNode {
                    name: format!("{}{i}", "a-long-file-name-".repeat(5)),
                    digest: Some(sha256(&[i])),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let root = Directory {
        directories: leaves
            .iter()
            .enumerate()
            .map(|(i, l)| DirectoryNode {
                name: format!("d{i}"),
                digest: Some(sha256(l)),
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec();
    for b in &leaves {
        upload(&mut cas, "", &[b]).await;
    }
    // The root is over the batch limit: through ByteStream.
    let rd = sha256(&root);
    server
        .bs()
        .await
        .write(futures::stream::iter(vec![write_req(
            &format!("uploads/r/blobs/{}/{}", rd.hash, rd.size_bytes),
            0,
            &root,
            true,
        )]))
        .await
        .expect("root upload");
    let (mut token, mut seen, mut pages) = (String::new(), 0, 0);
    loop {
        let mut stream = cas
            .get_tree(GetTreeRequest {
                instance_name: String::new(),
                root_digest: Some(sha256(&root)),
                page_size: 0,
                page_token: token.clone(),
                digest_function: 0,
            })
            .await
            .expect("get tree")
            .into_inner();
        let mut next = String::new();
        while let Some(page) = stream.message().await.expect("page") {
            let size: usize = page.directories.iter().map(|d| d.encoded_len()).sum();
            assert!(
                page.directories.len() == 1 || size <= 300,
                "page of {size} bytes"
            );
            seen += page.directories.len();
            next = page.next_page_token;
        }
        pages += 1;
        if next.is_empty() {
            break;
        }
        token = next;
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(seen, 7);
    assert!(pages >= 3, "{pages} pages");
}
