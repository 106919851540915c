//! gRPC (REAPI v2 and ByteStream) on the server's own port, next to the HTTP protocols: one CAS
//! and one action cache for Bazel's HTTP cache and gRPC, and the same `--auth-file` tokens.

mod common;

use common::{TestServer, grpc_channel, pseudo_random, reapi_digest as digest, sha256_hex};
use larder_reapi::prost::Message;
use larder_reapi::proto::build::bazel::remote::execution::v2::{
    ActionResult, BatchUpdateBlobsRequest, FindMissingBlobsRequest, GetActionResultRequest,
    GetCapabilitiesRequest, OutputFile, UpdateActionResultRequest,
    action_cache_client::ActionCacheClient, batch_update_blobs_request,
    capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use larder_reapi::proto::google::bytestream::{WriteRequest, byte_stream_client::ByteStreamClient};
use larder_reapi::tonic::{Code, Request};

use common::bytestream_read as read;

#[tokio::test(flavor = "multi_thread")]
async fn http_and_grpc_share_the_cas_and_action_cache() {
    let s = TestServer::start().await;
    let ch = grpc_channel(s.addr).await;
    let mut cas = ContentAddressableStorageClient::new(ch.clone());
    let mut bs = ByteStreamClient::new(ch.clone());
    let mut ac = ActionCacheClient::new(ch);

    // HTTP uploads (one kept inline, one a blob) are found and read over gRPC.
    let small = pseudo_random("http small", 100);
    let large = pseudo_random("http large", 3 << 20);
    for b in [&small, &large] {
        assert_eq!(
            s.put(&format!("/bazel/cas/{}", sha256_hex(b)), b.clone())
                .await,
            200
        );
    }
    let absent = digest(b"never uploaded");
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: "team-a".into(),
            blob_digests: vec![digest(&small), digest(&large), absent.clone()],
            digest_function: 0,
        })
        .await
        .expect("find missing")
        .into_inner()
        .missing_blob_digests;
    assert_eq!(missing, vec![absent]);
    assert!(read(&mut bs, &digest(&small)).await == small);
    assert!(read(&mut bs, &digest(&large)).await == large);

    // gRPC uploads are served over HTTP.
    let up = pseudo_random("grpc upload", (1 << 20) + 77);
    let d = digest(&up);
    let name = format!("uploads/1234/blobs/{}/{}", d.hash, d.size_bytes);
    let reqs: Vec<WriteRequest> = up
        .chunks(64 << 10)
        .enumerate()
        .map(|(i, c)| WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: (i * (64 << 10)) as i64,
            finish_write: (i + 1) * (64 << 10) >= up.len(),
            data: c.to_vec(),
        })
        .collect();
    let committed = bs
        .write(futures::stream::iter(reqs))
        .await
        .expect("write")
        .into_inner()
        .committed_size;
    assert_eq!(committed, up.len() as i64);
    let (status, body) = s.get(&format!("/bazel/cas/{}", d.hash)).await;
    assert_eq!(status, 200);
    assert!(body[..] == up[..]);

    // An action result put over HTTP under an instance is a gRPC hit in that instance, once
    // its blobs are there; one put over gRPC is served over HTTP.
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out".into(),
            digest: Some(digest(&small)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let action = digest(b"action 1");
    assert_eq!(
        s.put(
            &format!("/bazel/team-a/ac/{}", action.hash),
            result.encode_to_vec()
        )
        .await,
        200
    );
    let got = ac
        .get_action_result(GetActionResultRequest {
            instance_name: "team-a".into(),
            action_digest: Some(action.clone()),
            ..Default::default()
        })
        .await
        .expect("hit")
        .into_inner();
    assert_eq!(got, result);
    let err = ac
        .get_action_result(GetActionResultRequest {
            instance_name: String::new(),
            action_digest: Some(action),
            ..Default::default()
        })
        .await
        .expect_err("another instance");
    assert_eq!(err.code(), Code::NotFound);
    let action2 = digest(b"action 2");
    ac.update_action_result(UpdateActionResultRequest {
        instance_name: "team-a".into(),
        action_digest: Some(action2.clone()),
        action_result: Some(result.clone()),
        ..Default::default()
    })
    .await
    .expect("update");
    let (status, body) = s.get(&format!("/bazel/team-a/ac/{}", action2.hash)).await;
    assert_eq!(status, 200);
    assert_eq!(ActionResult::decode(body).expect("decodes"), result);
    // The HTTP protocols are still served on the same port.
    assert_eq!(s.get("/healthz").await.0, 200);
    s.stop().await;
}

fn bearer<T>(token: &str, mut r: Request<T>) -> Request<T> {
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_writes_need_the_auth_file_token() {
    let token = "0123456789abcdef0123";
    let access = larder_server::Access::open().with_token(token);
    let s = TestServer::start_with(|c| c.with_access(access)).await;
    let ch = grpc_channel(s.addr).await;
    let mut cas = ContentAddressableStorageClient::new(ch.clone());
    let mut caps = CapabilitiesClient::new(ch);
    let blob = b"guarded blob".to_vec();
    let batch = || BatchUpdateBlobsRequest {
        instance_name: String::new(),
        requests: vec![batch_update_blobs_request::Request {
            digest: Some(digest(&blob)),
            data: blob.clone(),
            compressor: 0,
        }],
        digest_function: 0,
    };
    let err = cas.batch_update_blobs(batch()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = cas
        .batch_update_blobs(bearer("not-the-token-at-all", Request::new(batch())))
        .await
        .expect_err("wrong token");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let update_enabled =
        |c: larder_reapi::proto::build::bazel::remote::execution::v2::ServerCapabilities| {
            c.cache_capabilities
                .and_then(|c| c.action_cache_update_capabilities)
                .is_some_and(|u| u.update_enabled)
        };
    let anon = caps
        .get_capabilities(GetCapabilitiesRequest::default())
        .await
        .expect("anonymous capabilities")
        .into_inner();
    assert!(!update_enabled(anon));
    let with = caps
        .get_capabilities(bearer(
            token,
            Request::new(GetCapabilitiesRequest::default()),
        ))
        .await
        .expect("capabilities")
        .into_inner();
    assert!(update_enabled(with));
    cas.batch_update_blobs(bearer(token, Request::new(batch())))
        .await
        .expect("with the token");
    // Reads stay anonymous.
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: String::new(),
            blob_digests: vec![digest(&blob)],
            digest_function: 0,
        })
        .await
        .expect("anonymous read")
        .into_inner()
        .missing_blob_digests;
    assert!(missing.is_empty());
    s.stop().await;
}
