//! Capabilities and ContentAddressableStorage.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionCacheUpdateCapabilities, BatchReadBlobsRequest, BatchReadBlobsResponse,
    BatchUpdateBlobsRequest, BatchUpdateBlobsResponse, CacheCapabilities, Digest, Directory,
    FindMissingBlobsRequest, FindMissingBlobsResponse, GetCapabilitiesRequest, GetTreeRequest,
    GetTreeResponse, ServerCapabilities, SpliceBlobRequest, SpliceBlobResponse, SplitBlobRequest,
    SplitBlobResponse, batch_read_blobs_response, batch_update_blobs_response,
    capabilities_server::Capabilities, compressor,
    content_addressable_storage_server::ContentAddressableStorage, digest_function,
    symlink_absolute_path_strategy,
};
use bazel_remote_apis::build::bazel::semver::SemVer;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use bytes::Bytes;
use futures::stream::BoxStream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::digest::{BlobId, DigestFn};
use crate::layout::check_instance;
use crate::{Ctx, Permission};

/// Directories per GetTree page when the client leaves it to the server.
const DEFAULT_TREE_PAGE: usize = 1000;

/// The services that share [`Ctx`] and have no state of their own.
#[derive(Debug)]
pub(crate) struct Services(pub(crate) Arc<Ctx>);

fn semver(major: i32, minor: i32) -> SemVer {
    SemVer {
        major,
        minor,
        patch: 0,
        prerelease: String::new(),
    }
}

/// INVALID_ARGUMENT for a malformed instance name.
pub(crate) fn instance(name: &str) -> Result<(), Status> {
    check_instance(name).map_err(Status::invalid_argument)
}

pub(crate) fn rpc_status(s: &Status) -> RpcStatus {
    RpcStatus {
        code: s.code() as i32,
        message: s.message().to_owned(),
        details: Vec::new(),
    }
}

fn ok_status() -> RpcStatus {
    RpcStatus {
        code: tonic::Code::Ok as i32,
        message: String::new(),
        details: Vec::new(),
    }
}

#[tonic::async_trait]
impl Capabilities for Services {
    async fn get_capabilities(
        &self,
        request: Request<GetCapabilitiesRequest>,
    ) -> Result<Response<ServerCapabilities>, Status> {
        let ctx = &self.0;
        instance(&request.get_ref().instance_name)?;
        let may_write = ctx.permission(request.metadata(), true) == Permission::Granted;
        let cache = CacheCapabilities {
            digest_functions: vec![
                digest_function::Value::Sha256 as i32,
                digest_function::Value::Blake3 as i32,
            ],
            action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities {
                update_enabled: may_write,
            }),
            cache_priority_capabilities: None,
            max_batch_total_size_bytes: i64::try_from(ctx.opts.max_batch_bytes).unwrap_or(i64::MAX),
            symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Allowed as i32,
            supported_compressors: vec![compressor::Value::Zstd as i32],
            supported_batch_update_compressors: vec![compressor::Value::Zstd as i32],
            max_cas_blob_size_bytes: ctx
                .opts
                .max_blob_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(0),
            blob_split_support: false,
            blob_splice_support: false,
        };
        Ok(Response::new(ServerCapabilities {
            cache_capabilities: Some(cache),
            execution_capabilities: None,
            deprecated_api_version: None,
            low_api_version: Some(semver(2, 0)),
            high_api_version: Some(semver(2, 3)),
        }))
    }
}

impl Services {
    /// Read and decode the directory `id`; `None` when missing.
    pub(crate) async fn directory(&self, id: &BlobId) -> Result<Option<Directory>, Status> {
        let limit = self.0.message_limit() as u64;
        let Some(bytes) = self.0.cas.read_small(id, limit).await? else {
            return Ok(None);
        };
        Directory::decode(bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("directory {id} does not decode: {e}")))
    }
}

/// The blobs a batch request names: its instance checked, each digest parsed with the request's
/// digest function (INVALID_ARGUMENT for any that is malformed).
fn blob_ids(
    instance_name: &str,
    digest_function: i32,
    digests: &[Digest],
) -> Result<Vec<BlobId>, Status> {
    instance(instance_name)?;
    let func = DigestFn::from_field(digest_function)?;
    digests
        .iter()
        .map(|d| BlobId::parse(Some(d), func))
        .collect()
}

#[tonic::async_trait]
impl ContentAddressableStorage for Services {
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), false)?;
        let req = request.into_inner();
        let ids = blob_ids(&req.instance_name, req.digest_function, &req.blob_digests)?;
        let missing = ctx.cas.missing(&ids).await?;
        let mut seen = HashSet::new();
        let missing_blob_digests = ids
            .iter()
            .zip(missing)
            .filter(|(id, gone)| *gone && seen.insert(*id))
            .map(|(id, _)| id.to_proto())
            .collect();
        Ok(Response::new(FindMissingBlobsResponse {
            missing_blob_digests,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), true)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let total: u64 = req.requests.iter().map(|r| r.data.len() as u64).sum();
        if total > ctx.opts.max_batch_bytes {
            return Err(Status::invalid_argument(format!(
                "the batch carries {total} bytes, over max_batch_total_size_bytes {}",
                ctx.opts.max_batch_bytes
            )));
        }
        ctx.admit(total).await?;
        let mut responses = Vec::with_capacity(req.requests.len());
        for r in req.requests {
            let digest = r.digest.clone();
            let result = async {
                let id = BlobId::parse(r.digest.as_ref(), func)?;
                if let Some(max) = ctx.opts.max_blob_bytes
                    && id.size > max
                {
                    return Err(Status::invalid_argument(format!(
                        "blob {id} is over the largest accepted size, {max} bytes"
                    )));
                }
                let data = match compressor::Value::try_from(r.compressor) {
                    Ok(compressor::Value::Identity) => r.data,
                    // At most the digest's size comes out; more is an error.
                    Ok(compressor::Value::Zstd) => {
                        let cap = usize::try_from(id.size).unwrap_or(usize::MAX);
                        zstd::bulk::decompress(&r.data, cap).map_err(|e| {
                            Status::invalid_argument(format!(
                                "blob {id}: does not decompress to its size: {e}"
                            ))
                        })?
                    }
                    _ => {
                        return Err(Status::invalid_argument(format!(
                            "blob {id}: compressor {} is not supported",
                            r.compressor
                        )));
                    }
                };
                ctx.cas.put_bytes(&id, Bytes::from(data)).await
            }
            .await;
            responses.push(batch_update_blobs_response::Response {
                digest,
                status: Some(match result {
                    Ok(()) => ok_status(),
                    Err(s) => rpc_status(&s),
                }),
            });
        }
        Ok(Response::new(BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), false)?;
        let req = request.into_inner();
        let ids = blob_ids(&req.instance_name, req.digest_function, &req.digests)?;
        let total: u64 = ids.iter().map(|id| id.size).sum();
        if total > ctx.opts.max_batch_bytes {
            return Err(Status::invalid_argument(format!(
                "the blobs asked for total {total} bytes, over max_batch_total_size_bytes {}",
                ctx.opts.max_batch_bytes
            )));
        }
        let mut responses = Vec::with_capacity(ids.len());
        for id in ids {
            let (data, status) = match ctx.cas.read_small(&id, ctx.opts.max_batch_bytes).await {
                Ok(Some(b)) => (b.to_vec(), ok_status()),
                Ok(None) => (
                    Vec::new(),
                    rpc_status(&Status::not_found(format!("blob {id} is not in the CAS"))),
                ),
                Err(s) => (Vec::new(), rpc_status(&s)),
            };
            responses.push(batch_read_blobs_response::Response {
                digest: Some(id.to_proto()),
                data,
                compressor: compressor::Value::Identity as i32,
                status: Some(status),
            });
        }
        Ok(Response::new(BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = BoxStream<'static, Result<GetTreeResponse, Status>>;

    /// The tree below a root directory, breadth first, each directory once; directories missing
    /// from the CAS are left out with what is below them. The page token is the number of
    /// directories already sent: a page walks the tree again up to its end (trees are small
    /// next to their files, and the walk needs no state on the server).
    async fn get_tree(
        &self,
        request: Request<GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), false)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let root = BlobId::parse(req.root_digest.as_ref(), func)?;
        let page = match usize::try_from(req.page_size) {
            Ok(0) => DEFAULT_TREE_PAGE,
            Ok(n) => n.min(DEFAULT_TREE_PAGE * 10),
            Err(_) => return Err(Status::invalid_argument("page_size is negative")),
        };
        let skip: usize = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| Status::invalid_argument("page_token was not made by this server"))?
        };
        let mut queue = VecDeque::from([root]);
        let mut seen = HashSet::new();
        let mut index = 0usize;
        let mut directories = Vec::new();
        let mut more = false;
        let mut bytes = 0u64;
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(dir) = self.directory(&id).await? else {
                continue;
            };
            // A page ends at page_size directories, or before it outgrows the batch limit.
            let len = dir.encoded_len() as u64;
            if index >= skip + page || (index > skip && bytes + len > ctx.opts.max_batch_bytes) {
                more = true;
                break;
            }
            if index >= skip {
                bytes += len;
            }
            for child in &dir.directories {
                queue.push_back(BlobId::parse(child.digest.as_ref(), func)?);
            }
            if index >= skip {
                directories.push(dir);
            }
            index += 1;
        }
        let next_page_token = if more {
            (skip + directories.len()).to_string()
        } else {
            String::new()
        };
        let response = GetTreeResponse {
            directories,
            next_page_token,
        };
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(response)
        }))))
    }

    async fn split_blob(
        &self,
        _request: Request<SplitBlobRequest>,
    ) -> Result<Response<SplitBlobResponse>, Status> {
        Err(Status::unimplemented("blob splitting is not supported"))
    }

    async fn splice_blob(
        &self,
        _request: Request<SpliceBlobRequest>,
    ) -> Result<Response<SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("blob splicing is not supported"))
    }
}
