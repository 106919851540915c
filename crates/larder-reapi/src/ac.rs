//! ActionCache: action results per instance, with the completeness check.

use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, Digest as ProtoDigest, GetActionResultRequest, Tree, UpdateActionResultRequest,
    action_cache_server::ActionCache,
};
use bytes::Bytes;
use futures::TryStreamExt;
use larder_core::{Content, Digest, GetOptions, PutOptions};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::Ctx;
use crate::digest::{BlobId, DigestFn};
use crate::error::store_status;
use crate::layout::{ac_key, inlined, value_entry, value_of};
use crate::services::instance;

#[derive(Debug)]
pub(crate) struct ActionCacheService(pub(crate) Arc<Ctx>);

/// Every CAS blob `result` names directly (not the files inside its trees).
/// What UpdateActionResult checks of a result before storing it: every digest it names is
/// well formed for `func`, and every output path is relative and stays below the output root.
pub(crate) fn validate(result: &ActionResult, func: DigestFn) -> Result<(), Status> {
    for d in direct_blobs(result) {
        BlobId::parse(d, func)?;
    }
    for f in &result.output_files {
        larder_core::key::validate_rel_path(&f.path)
            .map_err(|e| Status::invalid_argument(format!("output file: {e}")))?;
    }
    for d in &result.output_directories {
        if !d.path.is_empty() {
            larder_core::key::validate_rel_path(&d.path)
                .map_err(|e| Status::invalid_argument(format!("output directory: {e}")))?;
        }
    }
    Ok(())
}

fn direct_blobs(result: &ActionResult) -> Vec<Option<&ProtoDigest>> {
    let mut out: Vec<Option<&ProtoDigest>> = result
        .output_files
        .iter()
        .map(|f| f.digest.as_ref())
        .collect();
    out.extend(
        result
            .output_directories
            .iter()
            .map(|d| d.tree_digest.as_ref()),
    );
    out.extend(result.stdout_digest.as_ref().map(Some));
    out.extend(result.stderr_digest.as_ref().map(Some));
    out
}

impl ActionCacheService {
    /// The stored bytes of the action result under `key`, if any.
    async fn stored(&self, key: &larder_core::Key) -> Result<Option<Bytes>, Status> {
        let store = &self.0.cas.store;
        let entry = store
            .get_entry_opts(key, GetOptions::default())
            .await
            .map_err(store_status)?;
        let Some(content) = entry.and_then(value_of) else {
            return Ok(None);
        };
        if let Some(bytes) = content.inline {
            return Ok(Some(Bytes::from(bytes.into_vec())));
        }
        let limit = self.0.message_limit() as u64;
        if content.size > limit {
            tracing::warn!(
                "larder-reapi: {key}: an action result of {} bytes",
                content.size
            );
            return Ok(None);
        }
        let Some(read) = store
            .get_blob(&content.digest)
            .await
            .map_err(store_status)?
        else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(read.size as usize);
        let mut stream = read.stream;
        while let Some(chunk) = stream.try_next().await.map_err(store_status)? {
            out.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(out)))
    }

    /// Whether every blob `result` names, the files of its output trees included, is in the
    /// CAS (one bulk lookup for the trees, one for everything else).
    async fn complete(&self, result: &ActionResult, func: DigestFn) -> Result<bool, Status> {
        let cas = &self.0.cas;
        let mut ids = Vec::new();
        for d in direct_blobs(result) {
            match BlobId::parse(d, func) {
                Ok(id) => ids.push(id),
                Err(_) => return Ok(false),
            }
        }
        for dir in &result.output_directories {
            let Ok(tree_id) = BlobId::parse(dir.tree_digest.as_ref(), func) else {
                return Ok(false);
            };
            let Some(bytes) = cas
                .read_small(&tree_id, self.0.message_limit() as u64)
                .await?
            else {
                return Ok(false);
            };
            let Ok(tree) = Tree::decode(bytes) else {
                return Ok(false);
            };
            for d in tree.root.iter().chain(&tree.children) {
                for f in &d.files {
                    match BlobId::parse(f.digest.as_ref(), func) {
                        Ok(id) => ids.push(id),
                        Err(_) => return Ok(false),
                    }
                }
            }
        }
        ids.sort_by(|a, b| a.hash.cmp(&b.hash));
        ids.dedup();
        Ok(!cas.missing(&ids).await?.into_iter().any(|gone| gone))
    }

    /// Fill in the inline contents the request asked for, within the message limit.
    async fn inline(
        &self,
        result: &mut ActionResult,
        req: &GetActionResultRequest,
        func: DigestFn,
    ) -> Result<(), Status> {
        let cas = &self.0.cas;
        let mut budget =
            (self.0.message_limit() as u64).saturating_sub(result.encoded_len() as u64);
        let mut take = async |d: Option<&ProtoDigest>| -> Result<Option<Vec<u8>>, Status> {
            let Ok(id) = BlobId::parse(d, func) else {
                return Ok(None);
            };
            if id.size > budget {
                return Ok(None);
            }
            let bytes = cas.read_small(&id, budget).await?;
            if let Some(b) = &bytes {
                budget -= b.len() as u64;
            }
            Ok(bytes.map(|b| b.to_vec()))
        };
        if req.inline_stdout
            && result.stdout_raw.is_empty()
            && let Some(b) = take(result.stdout_digest.as_ref()).await?
        {
            result.stdout_raw = b;
        }
        if req.inline_stderr
            && result.stderr_raw.is_empty()
            && let Some(b) = take(result.stderr_digest.as_ref()).await?
        {
            result.stderr_raw = b;
        }
        for f in &mut result.output_files {
            if f.contents.is_empty()
                && req.inline_output_files.contains(&f.path)
                && let Some(b) = take(f.digest.as_ref()).await?
            {
                f.contents = b;
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ActionCache for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        self.0.require(request.metadata(), false)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let action = BlobId::parse(req.action_digest.as_ref(), func)?;
        let key = ac_key(func, &req.instance_name, &action.hash).map_err(store_status)?;
        let miss = || Status::not_found(format!("no action result for {action}"));
        let Some(bytes) = self.stored(&key).await? else {
            return Err(miss());
        };
        let Ok(mut result) = ActionResult::decode(bytes) else {
            tracing::warn!("larder-reapi: {key} does not decode as an ActionResult");
            return Err(miss());
        };
        if !self.complete(&result, func).await? {
            return Err(Status::not_found(format!(
                "the action result for {action} names blobs that are not in the CAS"
            )));
        }
        self.inline(&mut result, &req, func).await?;
        Ok(Response::new(result))
    }

    async fn update_action_result(
        &self,
        request: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        self.0.require(request.metadata(), true)?;
        let req = request.into_inner();
        instance(&req.instance_name)?;
        let func = DigestFn::from_field(req.digest_function)?;
        let action = BlobId::parse(req.action_digest.as_ref(), func)?;
        let result = req
            .action_result
            .ok_or_else(|| Status::invalid_argument("action_result is missing"))?;
        validate(&result, func)?;
        let key = ac_key(func, &req.instance_name, &action.hash).map_err(store_status)?;
        let bytes = result.encode_to_vec();
        let size = bytes.len() as u64;
        let store = &self.0.cas.store;
        let content = if inlined(size) {
            Content::inline(bytes)
        } else {
            let digest = Digest::of(&bytes);
            let data = Bytes::from(bytes);
            store
                .put_blob(
                    &digest,
                    size,
                    Box::pin(futures::stream::once(async move { Ok(data) })),
                )
                .await
                .map_err(store_status)?;
            Content::blob(digest, size)
        };
        let entry = value_entry(&key, content, "bazel-ac");
        store
            .put_entry_opts(&key, &entry, PutOptions::default())
            .await
            .map_err(store_status)?;
        Ok(Response::new(result))
    }
}
