//! ByteStream: reads and resumable writes of CAS blobs by resource name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bazel_remote_apis::google::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse, byte_stream_server::ByteStream,
};
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::Ctx;
use crate::cas::{Found, Spool};
use crate::digest::{BlobId, DigestFn, valid_hash};
use crate::error::store_status;
use crate::services::instance;

/// The zstd level of compressed reads: fast, as the spec allows any level.
const ZSTD_LEVEL: i32 = 1;
/// The most bytes one ReadResponse carries: larder-fs's trusted pieces (memory-mapped, sent
/// without being hashed again) are this size, so each becomes one message as it is; half of
/// gRPC's customary 4 MiB receive limit.
const READ_CHUNK: usize = 2 << 20;
/// An upload nobody has written to for this long is dropped (its spool file removed).
const UPLOAD_IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug)]
pub(crate) struct ByteStreamService(pub(crate) Arc<Ctx>);

/// One resumable upload: its spool, once data has arrived.
#[derive(Default)]
struct Upload {
    spool: Option<Spool>,
    touched: Option<Instant>,
}

/// Uploads in progress, by resource name.
#[derive(Default)]
pub(crate) struct Uploads(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>);

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Uploads({n})")
    }
}

impl Uploads {
    fn get_or_create(&self, name: &str) -> Arc<tokio::sync::Mutex<Upload>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(name) {
            // Drop idle uploads whose writers are gone.
            map.retain(|_, u| match u.try_lock() {
                Ok(u) => u.touched.is_some_and(|t| t.elapsed() < UPLOAD_IDLE),
                Err(_) => true,
            });
        }
        Arc::clone(map.entry(name.to_owned()).or_default())
    }

    fn get(&self, name: &str) -> Option<Arc<tokio::sync::Mutex<Upload>>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).cloned()
    }

    fn remove(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(name);
    }
}

/// A WriteRequest whose data is a `Bytes`: decoded by [`crate::read_body`]'s Write route as a
/// slice of the received message, where the generated `WriteRequest` copies it into a `Vec`.
/// The same fields and tags as `google.bytestream.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteMsg {
    #[prost(string, tag = "1")]
    pub(crate) resource_name: String,
    #[prost(int64, tag = "2")]
    pub(crate) write_offset: i64,
    #[prost(bool, tag = "3")]
    pub(crate) finish_write: bool,
    #[prost(bytes = "bytes", tag = "10")]
    pub(crate) data: Bytes,
}

impl From<WriteRequest> for WriteMsg {
    fn from(r: WriteRequest) -> WriteMsg {
        WriteMsg {
            resource_name: r.resource_name,
            write_offset: r.write_offset,
            finish_write: r.finish_write,
            data: Bytes::from(r.data),
        }
    }
}

/// A parsed resource name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) instance: String,
    pub(crate) id: BlobId,
    /// Sent or received zstd-compressed (`compressed-blobs/zstd/...`).
    zstd: bool,
}

/// Check the compressor segment of a `compressed-blobs/{compressor}/...` name.
fn compressor(seg: Option<&&str>) -> Result<(), Status> {
    match seg {
        Some(&"zstd") => Ok(()),
        other => Err(Status::invalid_argument(format!(
            "compressor {:?} is not supported (zstd is)",
            other.copied().unwrap_or_default()
        ))),
    }
}

fn bad_name(name: &str, expected: &str) -> Status {
    Status::invalid_argument(format!("resource name {name:?} is not {expected}"))
}

/// Parse `{function/}{hash}/{size}` (then, for uploads, optional metadata segments).
fn parse_digest(segs: &[&str], allow_rest: bool) -> Option<BlobId> {
    let (func, rest) = match segs.first().and_then(|s| DigestFn::from_segment(s)) {
        Some(f) if segs.get(1).is_some_and(|h| valid_hash(h)) => (f, &segs[1..]),
        _ => (DigestFn::Sha256, segs),
    };
    let [hash, size, tail @ ..] = rest else {
        return None;
    };
    if !tail.is_empty() && !allow_rest {
        return None;
    }
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    BlobId::from_parts(func, hash, size.parse().ok()?).ok()
}

/// `[{instance}/](blobs|compressed-blobs/zstd)/{digest}`.
pub(crate) fn parse_read(name: &str) -> Result<Resource, Status> {
    const EXPECTED: &str = "[{instance}/]blobs/{hash}/{size}";
    let segs: Vec<&str> = name.split('/').collect();
    let i = segs
        .iter()
        .position(|s| *s == "blobs" || *s == "compressed-blobs")
        .ok_or_else(|| bad_name(name, EXPECTED))?;
    let instance_name = segs[..i].join("/");
    instance(&instance_name)?;
    let zstd = segs[i] == "compressed-blobs";
    let rest = if zstd {
        compressor(segs.get(i + 1))?;
        i + 2
    } else {
        i + 1
    };
    let id = parse_digest(segs.get(rest..).unwrap_or_default(), false)
        .ok_or_else(|| bad_name(name, EXPECTED))?;
    Ok(Resource {
        instance: instance_name,
        id,
        zstd,
    })
}

/// `[{instance}/]uploads/{uuid}/(blobs|compressed-blobs/zstd)/{digest}[/{metadata}]`.
pub(crate) fn parse_write(name: &str) -> Result<Resource, Status> {
    const EXPECTED: &str = "[{instance}/]uploads/{uuid}/blobs/{hash}/{size}";
    let segs: Vec<&str> = name.split('/').collect();
    let i = segs
        .iter()
        .position(|s| *s == "uploads")
        .ok_or_else(|| bad_name(name, EXPECTED))?;
    let instance_name = segs[..i].join("/");
    instance(&instance_name)?;
    let (zstd, rest) = match segs.get(i + 1..i + 3) {
        Some([uuid, "blobs"]) if !uuid.is_empty() => (false, i + 3),
        Some([uuid, "compressed-blobs"]) if !uuid.is_empty() => {
            compressor(segs.get(i + 3))?;
            (true, i + 4)
        }
        _ => return Err(bad_name(name, EXPECTED)),
    };
    let id = parse_digest(segs.get(rest..).unwrap_or_default(), true)
        .ok_or_else(|| bad_name(name, EXPECTED))?;
    Ok(Resource {
        instance: instance_name,
        id,
        zstd,
    })
}

/// The data of a Read's responses, one message each.
pub(crate) type Chunks = BoxStream<'static, Result<Bytes, Status>>;

/// State of a read: the blob's chunks, where they are, and the range to send.
struct Reading {
    inner: larder_core::ByteStream,
    pos: u64,
    start: u64,
    end: u64,
    size: u64,
    pending: Bytes,
}

/// The bytes `start..end` of a blob, one ReadResponse's data per item: the store's chunks as
/// they are (slices of them at the range's ends, or when bigger than [`READ_CHUNK`]).
fn read_stream(found: Found, start: u64, end: u64) -> Chunks {
    let (inner, size): (larder_core::ByteStream, u64) = match found {
        Found::Inline(b) => {
            let size = b.len() as u64;
            (Box::pin(futures::stream::once(async move { Ok(b) })), size)
        }
        Found::Blob(read) => (read.stream, read.size),
    };
    let state = Reading {
        inner,
        pos: 0,
        start,
        end,
        size,
        pending: Bytes::new(),
    };
    Box::pin(futures::stream::try_unfold(state, |mut st| async move {
        loop {
            if !st.pending.is_empty() {
                let data = if st.pending.len() <= READ_CHUNK {
                    std::mem::take(&mut st.pending)
                } else {
                    st.pending.split_to(READ_CHUNK)
                };
                return Ok(Some((data, st)));
            }
            if st.pos >= st.end && st.end < st.size {
                return Ok(None);
            }
            match st.inner.try_next().await.map_err(store_status)? {
                // A whole read ends with the store's verdict on the blob.
                None if st.pos == st.size => return Ok(None),
                None => return Err(Status::data_loss("the blob ended early")),
                Some(chunk) => {
                    let chunk_start = st.pos;
                    st.pos += chunk.len() as u64;
                    let lo = chunk_start.max(st.start);
                    let hi = st.pos.min(st.end);
                    if lo == chunk_start && hi == st.pos {
                        st.pending = chunk;
                    } else if lo < hi {
                        st.pending =
                            chunk.slice((lo - chunk_start) as usize..(hi - chunk_start) as usize);
                    }
                }
            }
        }
    }))
}

/// Decompress `data` with `decoder` into `spool`, refusing more than `size` bytes in all.
async fn inflate(
    decoder: &mut zstd::stream::raw::Decoder<'static>,
    data: &[u8],
    spool: &mut Spool,
    id: &BlobId,
) -> Result<(), Status> {
    use zstd::stream::raw::Operation as _;
    let mut input = data;
    let mut out = vec![0u8; 128 << 10];
    loop {
        let st = decoder
            .run_on_buffers(input, &mut out)
            .map_err(|e| Status::invalid_argument(format!("blob {id}: not zstd data: {e}")))?;
        input = &input[st.bytes_read..];
        if spool.written + st.bytes_written as u64 > id.size {
            return Err(Status::invalid_argument(format!(
                "more bytes than the {} of blob {id}",
                id.size
            )));
        }
        if st.bytes_written > 0 {
            spool
                .append(Bytes::copy_from_slice(&out[..st.bytes_written]))
                .await?;
        }
        if input.is_empty() && st.bytes_written < out.len() {
            return Ok(());
        }
        if st.bytes_read == 0 && st.bytes_written == 0 {
            return Err(Status::invalid_argument(format!(
                "blob {id}: the zstd stream makes no progress"
            )));
        }
    }
}

impl ByteStreamService {
    /// Receive the rest of an upload into its spool; the committed size when done.
    ///
    /// A zstd upload starts a new zstd stream at an uncompressed offset (0, or where a broken
    /// upload stopped); later requests' offsets count compressed bytes from there, as the spec
    /// has it, and the committed size reported is that same sum.
    async fn receive(
        &self,
        name: &str,
        res: &Resource,
        first: WriteMsg,
        stream: &mut (impl futures::Stream<Item = Result<WriteMsg, Status>> + Unpin),
    ) -> Result<i64, Status> {
        let ctx = &self.0;
        let id = &res.id;
        let upload = ctx.uploads.get_or_create(name);
        let mut upload = upload.lock().await;
        upload.touched = Some(Instant::now());
        // What a call that ended without settling left in flight.
        if let Some(spool) = upload.spool.as_mut()
            && spool.settle().await.is_err()
        {
            upload.spool = None;
        }
        let mut msg = first;
        let mut decoder = None;
        // For zstd: the uncompressed offset this stream started at, and compressed bytes since.
        let (mut base, mut received) = (0u64, 0u64);
        let mut is_first = true;
        loop {
            if !msg.resource_name.is_empty() && msg.resource_name != name {
                return Err(Status::invalid_argument(
                    "the resource name changed in the middle of a write",
                ));
            }
            let committed = upload.spool.as_ref().map_or(0, |s| s.written);
            let expected = if res.zstd && !is_first {
                base + received
            } else {
                committed
            };
            if msg.write_offset != expected as i64 {
                if msg.write_offset != 0 || !is_first {
                    return Err(Status::invalid_argument(format!(
                        "write_offset {} but {expected} is expected",
                        msg.write_offset
                    )));
                }
                upload.spool = None;
            }
            if is_first && res.zstd {
                base = upload.spool.as_ref().map_or(0, |s| s.written);
                decoder =
                    Some(zstd::stream::raw::Decoder::new().map_err(|e| {
                        Status::internal(format!("cannot start a zstd decoder: {e}"))
                    })?);
            }
            is_first = false;
            let spool = match &mut upload.spool {
                Some(s) => s,
                None => upload.spool.insert(ctx.cas.spool(id).await?),
            };
            let appended = match &mut decoder {
                Some(d) => {
                    received += msg.data.len() as u64;
                    inflate(d, &msg.data, spool, id).await
                }
                None if spool.written + msg.data.len() as u64 > id.size => {
                    Err(Status::invalid_argument(format!(
                        "more bytes than the {} of blob {id}",
                        id.size
                    )))
                }
                None => spool.append(std::mem::take(&mut msg.data)).await,
            };
            if let Err(e) = appended {
                upload.spool = None;
                ctx.uploads.remove(name);
                return Err(e);
            }
            upload.touched = Some(Instant::now());
            if msg.finish_write {
                let spool = upload.spool.take();
                ctx.uploads.remove(name);
                let Some(spool) = spool else {
                    return Err(Status::internal("the upload vanished"));
                };
                if spool.written != id.size {
                    return Err(Status::invalid_argument(format!(
                        "finished after {} bytes of blob {id}",
                        spool.written
                    )));
                }
                let spool = spool.finish().await?;
                let got = &spool.hash_hex;
                if *got != id.hash {
                    return Err(Status::invalid_argument(format!(
                        "blob {id}: the bytes hash to {got}"
                    )));
                }
                ctx.cas.put_spool(id, spool).await?;
                return Ok(if res.zstd {
                    (base + received) as i64
                } else {
                    id.size as i64
                });
            }
            match stream.try_next().await? {
                Some(next) => msg = next,
                // The client stopped without finishing: what arrived stays, for a resumed write.
                None => {
                    let Some(spool) = upload.spool.as_mut() else {
                        return Ok(0);
                    };
                    if let Err(e) = spool.settle().await {
                        upload.spool = None;
                        ctx.uploads.remove(name);
                        return Err(e);
                    }
                    return Ok(spool.written as i64);
                }
            }
        }
    }
}

impl ByteStreamService {
    /// A Write: the checks of its first request, then the upload (see [`Self::receive`]).
    pub(crate) async fn write_stream(
        &self,
        meta: &MetadataMap,
        mut stream: impl futures::Stream<Item = Result<WriteMsg, Status>> + Unpin,
    ) -> Result<WriteResponse, Status> {
        let ctx = &self.0;
        ctx.require(meta, true)?;
        let first = stream
            .try_next()
            .await?
            .ok_or_else(|| Status::invalid_argument("a write with no request"))?;
        let name = first.resource_name.clone();
        let res = parse_write(&name)?;
        let id = &res.id;
        if let Some(max) = ctx.opts.max_blob_bytes
            && id.size > max
        {
            return Err(Status::invalid_argument(format!(
                "blob {id} is over the largest accepted size, {max} bytes"
            )));
        }
        // Finished early when the blob is there already (the empty blob always is).
        if ctx.cas.contains(id).await? {
            ctx.uploads.remove(&name);
            let committed_size = if res.zstd { -1 } else { id.size as i64 };
            return Ok(WriteResponse { committed_size });
        }
        // A whole blob in one request (a build's small outputs) is checked and stored from
        // memory, with no spool file: it is in memory already, within the message limit.
        if !res.zstd
            && first.finish_write
            && first.write_offset == 0
            && first.data.len() as u64 == id.size
            && ctx.uploads.get(&name).is_none()
        {
            ctx.admit(id.size).await?;
            ctx.cas.put_bytes(id, first.data).await?;
            return Ok(WriteResponse {
                committed_size: id.size as i64,
            });
        }
        // Spooled, then stored: room for it twice.
        ctx.admit(id.size.saturating_mul(2)).await?;
        let committed_size = self.receive(&name, &res, first, &mut stream).await?;
        Ok(WriteResponse { committed_size })
    }

    /// A Read: the checks of its request, then the data of its responses, one message each.
    ///
    /// [`crate::read_body`] frames them for the wire without copying them; the generated
    /// service's [`ByteStream::read`] wraps them in `ReadResponse`s.
    pub(crate) async fn open_read(&self, request: Request<ReadRequest>) -> Result<Chunks, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), false)?;
        let req = request.into_inner();
        let res = parse_read(&req.resource_name)?;
        let id = res.id;
        if res.zstd && req.read_limit != 0 {
            return Err(Status::invalid_argument(
                "read_limit must be 0 when reading compressed-blobs",
            ));
        }
        let offset = u64::try_from(req.read_offset)
            .map_err(|_| Status::out_of_range("read_offset is negative"))?;
        let limit = u64::try_from(req.read_limit)
            .map_err(|_| Status::invalid_argument("read_limit is negative"))?;
        if offset > id.size {
            return Err(Status::out_of_range(format!(
                "read_offset {offset} is past the end of blob {id}"
            )));
        }
        let end = if limit == 0 {
            id.size
        } else {
            id.size.min(offset.saturating_add(limit))
        };
        let Some(found) = ctx.cas.open(&id).await? else {
            return Err(Status::not_found(format!("blob {id} is not in the CAS")));
        };
        let stream = read_stream(found, offset, end);
        if !res.zstd {
            return Ok(stream);
        }
        // Each chunk becomes one zstd frame: a concatenation of frames is one zstd stream.
        if offset == end {
            let data = zstd::bulk::compress(&[], ZSTD_LEVEL)
                .map_err(|e| Status::internal(format!("zstd: {e}")))?;
            return Ok(Box::pin(futures::stream::once(async move {
                Ok(Bytes::from(data))
            })));
        }
        Ok(Box::pin(stream.and_then(|chunk| async move {
            zstd::bulk::compress(&chunk, ZSTD_LEVEL)
                .map(Bytes::from)
                .map_err(|e| Status::internal(format!("zstd: {e}")))
        })))
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = BoxStream<'static, Result<ReadResponse, Status>>;

    /// Served by [`crate::read_body`] on larder's routes; this is the generated service's
    /// path, which copies each chunk into its message.
    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let chunks = self.open_read(request).await?;
        Ok(Response::new(Box::pin(
            chunks.map_ok(|data| ReadResponse { data: data.into() }),
        )))
    }

    /// Served by [`crate::read_body`]'s Write route on larder's routes (which decodes the data
    /// without copying it); this is the generated service's path.
    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let (meta, _, stream) = request.into_parts();
        self.write_stream(&meta, stream.map_ok(WriteMsg::from))
            .await
            .map(Response::new)
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        let ctx = &self.0;
        ctx.require(request.metadata(), true)?;
        let name = request.into_inner().resource_name;
        let Resource { id, .. } = parse_write(&name)?;
        if ctx.cas.contains(&id).await? {
            return Ok(Response::new(QueryWriteStatusResponse {
                committed_size: id.size as i64,
                complete: true,
            }));
        }
        let committed = match ctx.uploads.get(&name) {
            Some(u) => {
                let mut u = u.lock().await;
                let settled = match u.spool.as_mut() {
                    Some(spool) => spool.settle().await.map(|()| spool.written),
                    None => Ok(0),
                };
                settled.unwrap_or_else(|_| {
                    u.spool = None;
                    0
                })
            }
            None => 0,
        };
        Ok(Response::new(QueryWriteStatusResponse {
            committed_size: committed as i64,
            complete: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        let h = "0".repeat(64);
        let r = parse_read(&format!("blobs/{h}/12")).unwrap();
        assert_eq!((r.instance.as_str(), r.id.size), ("", 12));
        let r = parse_read(&format!("team/a/blobs/blake3/{h}/3")).unwrap();
        assert_eq!(
            (r.instance.as_str(), r.id.func),
            ("team/a", DigestFn::Blake3)
        );
        let w = parse_write(&format!("x/uploads/u-1/blobs/{h}/5/meta/data")).unwrap();
        assert_eq!((w.instance.as_str(), w.id.size), ("x", 5));
        for bad in [
            format!("blobs/{h}"),
            format!("blobs/{h}/-1"),
            format!("blobs/{h}/+1"),
            format!("blobs/{}/1", "A".repeat(64)),
            format!("blobs/{h}/1/extra"),
            format!("../blobs/{h}/1"),
            "nothing".into(),
        ] {
            assert!(parse_read(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("uploads/blobs/{h}/1"),
            format!("uploads//blobs/{h}/1"),
            format!("blobs/{h}/1"),
        ] {
            assert!(parse_write(&bad).is_err(), "{bad}");
        }
    }
}
