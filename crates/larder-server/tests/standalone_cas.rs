//! SHA-256 CAS objects as standalone blobs (issue 13 item 6): what Bazel's HTTP `/cas/` and
//! REAPI store is a blob under its SHA-256 digest, with no entry, found by FindMissingBlobs and
//! read by ByteStream; objects a cache holds in the older entry layout (`bazel-cas/<sha256>`)
//! are still found and served.

mod common;

use common::{TestServer, pseudo_random, reapi_digest as digest, sha256_hex};
use larder_core::{Content, Digest, Entry, Output, OutputKind};
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    ActionResult, BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest as ProtoDigest,
    FindMissingBlobsRequest, GetActionResultRequest, OutputFile,
    action_cache_client::ActionCacheClient, batch_update_blobs_request,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{ReadRequest, byte_stream_client::ByteStreamClient};
use larder_reapi::tonic::transport::Channel;

use common::bytestream_read as read;

async fn missing(
    cas: &mut ContentAddressableStorageClient<Channel>,
    ds: Vec<ProtoDigest>,
) -> Vec<ProtoDigest> {
    cas.find_missing_blobs(FindMissingBlobsRequest {
        instance_name: String::new(),
        blob_digests: ds,
        digest_function: 0,
    })
    .await
    .expect("find missing")
    .into_inner()
    .missing_blob_digests
}

/// Files under `dir`, recursively.
fn files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Whether `result` (naming `blob`) is a GetActionResult hit.
async fn ac_hit(ac: &mut ActionCacheClient<Channel>, s: &TestServer, blob: &[u8]) -> bool {
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out".into(),
            digest: Some(digest(blob)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let action = digest(&[b"action of ".as_slice(), blob].concat());
    use larder_reapi::prost::Message;
    let path = format!("/bazel/ac/{}", action.hash);
    assert_eq!(s.put(&path, result.encode_to_vec()).await, 200);
    ac.get_action_result(GetActionResultRequest {
        action_digest: Some(action),
        ..Default::default()
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_blob_put_over_http_is_standalone_found_and_read_over_grpc() {
    let s = TestServer::start().await;
    let ch = common::grpc_channel(s.addr).await;
    let mut cas = ContentAddressableStorageClient::new(ch.clone());
    let mut bs = ByteStreamClient::new(ch.clone());
    let mut ac = ActionCacheClient::new(ch);

    let small = pseudo_random("standalone small", 100);
    let large = pseudo_random("standalone large", 3 << 20);
    for b in [&small, &large] {
        let path = format!("/bazel/cas/{}", sha256_hex(b));
        assert_eq!(s.put(&path, b.clone()).await, 200);
    }
    // No entry: each object is one file under sha256/.
    assert_eq!(files(&s.root.join("entries")), 0, "an entry was written");
    assert_eq!(files(&s.root.join("sha256")), 2);

    let absent = digest(b"never uploaded");
    let got = missing(
        &mut cas,
        vec![digest(&small), digest(&large), absent.clone()],
    )
    .await;
    assert_eq!(got, vec![absent]);
    assert!(read(&mut bs, &digest(&small)).await == small);
    assert!(read(&mut bs, &digest(&large)).await == large);
    let (status, body) = s.get(&format!("/bazel/cas/{}", sha256_hex(&large))).await;
    assert!(status == 200 && body[..] == large[..]);
    let head = s
        .client
        .head(s.url(&format!("/bazel/cas/{}", sha256_hex(&small))))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    let length = head.headers().get("content-length").expect("a length");
    assert_eq!(length.to_str().expect("text"), "100");
    // A digest naming another size is not that object.
    let mut wrong = digest(&small);
    wrong.size_bytes += 1;
    assert!(
        bs.read(ReadRequest {
            resource_name: format!("blobs/{}/{}", wrong.hash, wrong.size_bytes),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .is_err()
            || read(&mut bs, &wrong).await.is_empty()
    );

    // The action cache's completeness check sees standalone blobs.
    assert!(ac_hit(&mut ac, &s, &small).await);

    // BatchUpdateBlobs stores standalone blobs too, BatchReadBlobs reads them.
    let batch = pseudo_random("batched", 5000);
    let resp = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(digest(&batch)),
                data: batch.clone(),
                compressor: 0,
            }],
            ..Default::default()
        })
        .await
        .expect("batch update")
        .into_inner();
    assert_eq!(resp.responses[0].status.as_ref().map_or(0, |st| st.code), 0);
    assert_eq!(files(&s.root.join("entries")), 1, "only the action result");
    let read_back = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            digests: vec![digest(&batch)],
            ..Default::default()
        })
        .await
        .expect("batch read")
        .into_inner();
    assert!(read_back.responses[0].data == batch);
    s.stop().await;
}

/// A value entry as the server wrote CAS objects before standalone blobs.
fn old_entry(key: &str, content: Content) -> Vec<u8> {
    let mut e = Entry::new(key, "bazel-cas");
    e.outputs.push(Output {
        path: "value".into(),
        kind: OutputKind::File {
            content,
            executable: false,
        },
    });
    e.encode().expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn cas_objects_in_the_old_entry_layout_are_still_served() {
    let s = TestServer::start().await;
    let ch = common::grpc_channel(s.addr).await;
    let mut cas = ContentAddressableStorageClient::new(ch.clone());
    let mut bs = ByteStreamClient::new(ch.clone());
    let mut ac = ActionCacheClient::new(ch);

    // One inline, one naming a BLAKE3 blob: written as entries through larder's own protocol,
    // as an older server's cache holds them.
    let small = pseudo_random("old small", 300);
    let large = pseudo_random("old large", 200_000);
    let key = |b: &[u8]| format!("bazel-cas/{}", sha256_hex(b));
    let inline = old_entry(&key(&small), Content::inline(small.clone()));
    assert_eq!(
        s.put(&format!("/v1/entries/{}", key(&small)), inline).await,
        201
    );
    let blob = Digest::of(&large);
    assert_eq!(
        s.put(&format!("/v1/blobs/{blob}"), large.clone()).await,
        201
    );
    let named = old_entry(&key(&large), Content::blob(blob, large.len() as u64));
    assert_eq!(
        s.put(&format!("/v1/entries/{}", key(&large)), named).await,
        201
    );
    assert_eq!(files(&s.root.join("sha256")), 0);

    let absent = digest(b"not there either");
    let got = missing(
        &mut cas,
        vec![digest(&small), absent.clone(), digest(&large)],
    )
    .await;
    assert_eq!(got, vec![absent]);
    assert!(read(&mut bs, &digest(&small)).await == small);
    assert!(read(&mut bs, &digest(&large)).await == large);
    for b in [&small, &large] {
        let (status, body) = s.get(&format!("/bazel/cas/{}", sha256_hex(b))).await;
        assert!(status == 200 && body[..] == b[..]);
        assert_eq!(s.head(&format!("/bazel/cas/{}", sha256_hex(b))).await, 200);
    }
    assert!(ac_hit(&mut ac, &s, &large).await);
    s.stop().await;
}
