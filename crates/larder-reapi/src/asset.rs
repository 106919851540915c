//! Remote Asset (`build.bazel.remote.asset.v1`): names (URIs and qualifiers) for CAS blobs and
//! directories, per instance, as BuildStream keeps its artifact and source references.
//!
//! Only what was pushed is served: Fetch never downloads from the URI. A name is an entry
//! under `reapi-asset/[{instance}/](blob|dir)/<sha256 of the URI and sorted qualifiers>`
//! holding the FetchBlobResponse or FetchDirectoryResponse to answer with (inline, they are
//! small). A Fetch answers NOT_FOUND unless what the name points at is in the CAS (for a
//! directory: the whole tree), or when its `expire_at` has passed.

use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::asset::v1::{
    FetchBlobRequest, FetchBlobResponse, FetchDirectoryRequest, FetchDirectoryResponse,
    PushBlobRequest, PushBlobResponse, PushDirectoryRequest, PushDirectoryResponse, Qualifier,
    fetch_server::Fetch, push_server::Push,
};
use bazel_remote_apis::google::protobuf::Timestamp;
use bytes::Bytes;
use larder_core::{Content, GetOptions, Key, PutOptions};
use prost::Message;
use sha2::Digest as _;
use tonic::{Request, Response, Status};

use crate::Ctx;
use crate::digest::{BlobId, DigestFn};
use crate::error::store_status;
use crate::layout::{value_entry, value_of};
use crate::services::{Services, instance};

#[derive(Debug)]
pub(crate) struct AssetService(pub(crate) Arc<Ctx>);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Blob,
    Dir,
}

/// The key of the name (`uri`, `qualifiers`) in `instance`.
fn asset_key(
    instance_name: &str,
    kind: Kind,
    uri: &str,
    qualifiers: &[Qualifier],
) -> Result<Key, Status> {
    let mut q: Vec<(&str, &str)> = qualifiers
        .iter()
        .map(|q| (q.name.as_str(), q.value.as_str()))
        .collect();
    q.sort_unstable();
    // Lengths first, so that no two names encode alike.
    let mut h = sha2::Sha256::new();
    for part in std::iter::once(uri).chain(q.iter().flat_map(|(n, v)| [*n, *v])) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let kind = match kind {
        Kind::Blob => "blob",
        Kind::Dir => "dir",
    };
    let name = if instance_name.is_empty() {
        format!("reapi-asset/{kind}/{hash}")
    } else {
        format!("reapi-asset/{instance_name}/{kind}/{hash}")
    };
    Key::new(name).map_err(store_status)
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn expired(at: Option<&Timestamp>) -> bool {
    let now = now();
    at.is_some_and(|t| (t.seconds, t.nanos) <= (now.seconds, now.nanos))
}

fn check_uris(uris: &[String]) -> Result<(), Status> {
    if uris.is_empty() || uris.iter().any(String::is_empty) {
        return Err(Status::invalid_argument(
            "at least one non-empty URI is needed",
        ));
    }
    Ok(())
}

impl AssetService {
    async fn load(&self, key: &Key) -> Result<Option<Bytes>, Status> {
        let entry = self
            .0
            .cas
            .store
            .get_entry_opts(key, GetOptions::default())
            .await
            .map_err(store_status)?;
        Ok(entry
            .and_then(value_of)
            .and_then(|c| c.inline)
            .map(|b| Bytes::from(b.into_vec())))
    }

    async fn save(&self, key: &Key, bytes: Vec<u8>) -> Result<(), Status> {
        let entry = value_entry(key, Content::inline(bytes), "reapi-asset");
        self.0
            .cas
            .store
            .put_entry_opts(key, &entry, PutOptions::default())
            .await
            .map_err(store_status)?;
        Ok(())
    }

    /// Whether the tree below directory `root` is all in the CAS.
    async fn tree_present(&self, root: &BlobId) -> Result<bool, Status> {
        let services = Services(Arc::clone(&self.0));
        let mut queue = vec![root.clone()];
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::new();
        while let Some(id) = queue.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(dir) = services.directory(&id).await? else {
                return Ok(false);
            };
            for f in &dir.files {
                files.push(BlobId::parse(f.digest.as_ref(), id.func)?);
            }
            for d in &dir.directories {
                queue.push(BlobId::parse(d.digest.as_ref(), id.func)?);
            }
        }
        Ok(!self.0.cas.missing(&files).await?.into_iter().any(|m| m))
    }
}

#[tonic::async_trait]
impl Fetch for AssetService {
    async fn fetch_blob(
        &self,
        request: Request<FetchBlobRequest>,
    ) -> Result<Response<FetchBlobResponse>, Status> {
        self.0.require(request.metadata(), false)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        check_uris(&req.uris)?;
        for uri in &req.uris {
            let key = asset_key(&req.instance_name, Kind::Blob, uri, &req.qualifiers)?;
            let Some(bytes) = self.load(&key).await? else {
                continue;
            };
            let Ok(found) = FetchBlobResponse::decode(bytes) else {
                continue;
            };
            if expired(found.expires_at.as_ref()) {
                continue;
            }
            let func = DigestFn::from_field(found.digest_function)?;
            let id = BlobId::parse(found.blob_digest.as_ref(), func)?;
            if self.0.cas.contains(&id).await? {
                return Ok(Response::new(found));
            }
        }
        Err(Status::not_found(
            "no pushed blob under these URIs and qualifiers",
        ))
    }

    async fn fetch_directory(
        &self,
        request: Request<FetchDirectoryRequest>,
    ) -> Result<Response<FetchDirectoryResponse>, Status> {
        self.0.require(request.metadata(), false)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        check_uris(&req.uris)?;
        for uri in &req.uris {
            let key = asset_key(&req.instance_name, Kind::Dir, uri, &req.qualifiers)?;
            let Some(bytes) = self.load(&key).await? else {
                continue;
            };
            let Ok(found) = FetchDirectoryResponse::decode(bytes) else {
                continue;
            };
            if expired(found.expires_at.as_ref()) {
                continue;
            }
            let func = DigestFn::from_field(found.digest_function)?;
            let id = BlobId::parse(found.root_directory_digest.as_ref(), func)?;
            if self.tree_present(&id).await? {
                return Ok(Response::new(found));
            }
        }
        Err(Status::not_found(
            "no pushed directory under these URIs and qualifiers",
        ))
    }
}

#[tonic::async_trait]
impl Push for AssetService {
    async fn push_blob(
        &self,
        request: Request<PushBlobRequest>,
    ) -> Result<Response<PushBlobResponse>, Status> {
        self.0.require(request.metadata(), true)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        check_uris(&req.uris)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let id = BlobId::parse(req.blob_digest.as_ref(), func)?;
        for d in req
            .references_blobs
            .iter()
            .chain(&req.references_directories)
        {
            BlobId::parse(Some(d), func)?;
        }
        if !self.0.cas.contains(&id).await? {
            return Err(Status::failed_precondition(format!(
                "blob {id} is not in the CAS: upload it first"
            )));
        }
        for uri in &req.uris {
            let key = asset_key(&req.instance_name, Kind::Blob, uri, &req.qualifiers)?;
            let value = FetchBlobResponse {
                status: None,
                uri: uri.clone(),
                qualifiers: req.qualifiers.clone(),
                expires_at: req.expire_at,
                blob_digest: Some(id.to_proto()),
                digest_function: req.digest_function,
            };
            self.save(&key, value.encode_to_vec()).await?;
        }
        Ok(Response::new(PushBlobResponse {}))
    }

    async fn push_directory(
        &self,
        request: Request<PushDirectoryRequest>,
    ) -> Result<Response<PushDirectoryResponse>, Status> {
        self.0.require(request.metadata(), true)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        check_uris(&req.uris)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let id = BlobId::parse(req.root_directory_digest.as_ref(), func)?;
        for d in req
            .references_blobs
            .iter()
            .chain(&req.references_directories)
        {
            BlobId::parse(Some(d), func)?;
        }
        if !self.tree_present(&id).await? {
            return Err(Status::failed_precondition(format!(
                "the tree below directory {id} is not all in the CAS: upload it first"
            )));
        }
        for uri in &req.uris {
            let key = asset_key(&req.instance_name, Kind::Dir, uri, &req.qualifiers)?;
            let value = FetchDirectoryResponse {
                status: None,
                uri: uri.clone(),
                qualifiers: req.qualifiers.clone(),
                expires_at: req.expire_at,
                root_directory_digest: Some(id.to_proto()),
                digest_function: req.digest_function,
            };
            self.save(&key, value.encode_to_vec()).await?;
        }
        Ok(Response::new(PushDirectoryResponse {}))
    }
}
