//! ByteStream on the wire: Read sends each chunk the store hands over to h2 as it is; Write
//! takes each request's data as a slice of the received message.
//!
//! tonic's encoder writes every message into a buffer of its own, and the generated
//! `ReadResponse` holds its data in a `Vec<u8>`: two copies of every byte read, with a fresh
//! buffer (and its page faults) per message. A ReadResponse is a single field (`bytes data = 10`),
//! so its encoding is a short head (tag, length) followed by the data itself. [`ReadBody`] sends
//! each message as two HTTP/2 body frames: the gRPC prefix with that head, then the chunk, a
//! `Bytes` of the store's (a memory-mapped piece of a trusted blob, or the buffer a verifying
//! read filled), which h2 writes to the socket from where it is. A message that fits one
//! 16 KiB frame is copied into one frame with its head instead: the copy costs less than a
//! frame of its own for the client to take in (a build reads many small outputs).
//!
//! The generated `WriteRequest` copies each request's data out of the received message into a
//! `Vec<u8>`; Write is served here with tonic's server and a codec whose requests are
//! [`WriteMsg`]s (the same fields, the data a `Bytes` that shares the message's buffer), so the
//! spool is written from the bytes as they were received.
//!
//! [`ByteStreamRoutes`] routes Read and Write here and everything else (QueryWriteStatus) to
//! the generated service. The request side is tonic's: [`Streaming`] decodes the one
//! ReadRequest and each WriteRequest (refusing compressed messages and messages over the limit,
//! as the generated service does).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bazel_remote_apis::google::bytestream::byte_stream_server::ByteStreamServer;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteResponse};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use http_body::Frame;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Request, Status};

use crate::bytestream::{ByteStreamService, Chunks, WriteMsg};

/// The path of ByteStream's Read method.
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";
/// The path of ByteStream's Write method.
const WRITE_PATH: &str = "/google.bytestream.ByteStream/Write";
/// The protobuf key of `ReadResponse.data`: field 10, length-delimited.
const DATA_KEY: u8 = (10 << 3) | 2;
/// Messages with at most this much data are sent as one frame, head and data together: with
/// its head (at most 8 bytes here) it fits the smallest frame a peer may ask for (16 KiB).
const SMALL_MESSAGE: usize = (16 << 10) - 16;

/// The ByteStream service: Read framed here, the other methods by the generated server.
#[derive(Debug, Clone)]
pub(crate) struct ByteStreamRoutes {
    service: Arc<ByteStreamService>,
    generated: ByteStreamServer<ByteStreamService>,
    /// The largest request message decoded.
    limit: usize,
}

impl ByteStreamRoutes {
    pub(crate) fn new(service: Arc<ByteStreamService>, limit: usize) -> ByteStreamRoutes {
        let generated =
            ByteStreamServer::from_arc(Arc::clone(&service)).max_decoding_message_size(limit);
        ByteStreamRoutes {
            service,
            generated,
            limit,
        }
    }
}

impl NamedService for ByteStreamRoutes {
    const NAME: &'static str = <ByteStreamServer<ByteStreamService> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for ByteStreamRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == WRITE_PATH {
            let call = WriteCall(Arc::clone(&self.service));
            let mut grpc = tonic::server::Grpc::new(WriteCodec)
                .apply_max_message_size_config(Some(self.limit), None);
            return Box::pin(async move { Ok(grpc.client_streaming(call, request).await) });
        }
        if request.uri().path() != READ_PATH {
            return self.generated.call(request);
        }
        let service = Arc::clone(&self.service);
        let limit = self.limit;
        Box::pin(async move {
            let response = match read_request(request, limit).await {
                Ok(request) => service.open_read(request).await,
                Err(status) => Err(status),
            };
            Ok(match response {
                Ok(chunks) => {
                    let mut response = http::Response::new(Body::new(ReadBody::new(chunks)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                // A trailers-only answer, as tonic gives.
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Decode the one ReadRequest of a call (with its metadata).
async fn read_request(
    request: http::Request<Body>,
    limit: usize,
) -> Result<Request<ReadRequest>, Status> {
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding.as_bytes() != b"identity"
    {
        return Err(Status::unimplemented(format!(
            "request compression {encoding:?} is not supported"
        )));
    }
    let (mut parts, body) = request.into_parts();
    let mut messages = Streaming::new_request(ReadRequestDecoder, body, None, Some(limit));
    let message = messages
        .try_next()
        .await?
        .ok_or_else(|| Status::internal("Missing request message."))?;
    if let Some(trailers) = messages.trailers().await? {
        parts.headers.extend(trailers.into_headers());
    }
    Ok(Request::from_http(http::Request::from_parts(
        parts, message,
    )))
}

/// Decodes ReadRequests with prost.
struct ReadRequestDecoder;

impl Decoder for ReadRequestDecoder {
    type Item = ReadRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<ReadRequest>, Status> {
        ReadRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("a ReadRequest that does not decode: {e}")))
    }
}

/// ByteStream Write's messages: requests decoded as [`WriteMsg`]s (their data a slice of the
/// received message, not a copy), responses encoded with prost.
struct WriteCodec;

impl Codec for WriteCodec {
    type Encode = WriteResponse;
    type Decode = WriteMsg;
    type Encoder = WriteResponseEncoder;
    type Decoder = WriteMsgDecoder;

    fn encoder(&mut self) -> WriteResponseEncoder {
        WriteResponseEncoder
    }

    fn decoder(&mut self) -> WriteMsgDecoder {
        WriteMsgDecoder
    }
}

struct WriteResponseEncoder;

impl Encoder for WriteResponseEncoder {
    type Item = WriteResponse;
    type Error = Status;

    fn encode(&mut self, item: WriteResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a WriteResponse: {e}")))
    }
}

struct WriteMsgDecoder;

impl Decoder for WriteMsgDecoder {
    type Item = WriteMsg;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<WriteMsg>, Status> {
        WriteMsg::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("a WriteRequest that does not decode: {e}")))
    }
}

/// One Write call, served by [`ByteStreamService::write_stream`].
struct WriteCall(Arc<ByteStreamService>);

impl tonic::server::ClientStreamingService<WriteMsg> for WriteCall {
    type Response = WriteResponse;
    type Future = BoxFuture<tonic::Response<WriteResponse>, Status>;

    fn call(&mut self, request: Request<Streaming<WriteMsg>>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            let (meta, _, stream) = request.into_parts();
            service
                .write_stream(&meta, stream)
                .await
                .map(tonic::Response::new)
        })
    }
}

/// The gRPC prefix (uncompressed, length) and the protobuf head of a ReadResponse whose data is
/// `len` bytes: everything of the message before its data.
fn message_head(len: usize) -> Bytes {
    let mut head = BytesMut::with_capacity(16);
    if len == 0 {
        // An empty `data` field is not encoded: an empty message.
        head.put_u8(0);
        head.put_u32(0);
        return head.freeze();
    }
    let message_len = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
    head.put_u8(0);
    // A chunk is at most a few MiB (and a zstd frame of one little more): far below u32::MAX.
    head.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
    head.put_u8(DATA_KEY);
    prost::encoding::encode_varint(len as u64, &mut head);
    head.freeze()
}

/// The trailers that end a call with `status`.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only a message that makes no header value fails; the code alone still goes.
        map = http::HeaderMap::new();
        let _ = Status::new(status.code(), "").add_header(&mut map);
    }
    map
}

/// A Read's response body: per chunk a head frame and the chunk, then the status as trailers.
struct ReadBody {
    chunks: Chunks,
    /// The chunk whose head went out last.
    next: Option<Bytes>,
    done: bool,
}

impl ReadBody {
    fn new(chunks: Chunks) -> ReadBody {
        ReadBody {
            chunks,
            next: None,
            done: false,
        }
    }
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.next.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.chunks.poll_next_unpin(cx)) {
            // A small message goes out whole in one frame (see the module docs).
            Some(Ok(chunk)) if chunk.len() <= SMALL_MESSAGE => {
                let head = message_head(chunk.len());
                let mut whole = BytesMut::with_capacity(head.len() + chunk.len());
                whole.extend_from_slice(&head);
                whole.extend_from_slice(&chunk);
                Frame::data(whole.freeze())
            }
            Some(Ok(chunk)) => {
                let head = message_head(chunk.len());
                this.next = Some(chunk);
                Frame::data(head)
            }
            Some(Err(status)) => {
                this.done = true;
                Frame::trailers(trailers(&status))
            }
            None => {
                this.done = true;
                Frame::trailers(trailers(&Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.next.is_none()
    }
}

#[cfg(test)]
mod tests {
    use bazel_remote_apis::google::bytestream::ReadResponse;
    use http_body::Body as _;

    use super::*;

    /// The bytes of a body and its trailers.
    async fn collect(mut body: ReadBody) -> (Vec<u8>, http::HeaderMap) {
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(frame) = frame;
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        assert!(body.is_end_stream());
        (data, trailers.expect("the body ends with trailers"))
    }

    /// What tonic's encoder sends for `message`: the uncompressed prefix and prost's encoding.
    fn tonic_framing(message: &ReadResponse) -> Vec<u8> {
        let encoded = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        out.extend_from_slice(&encoded);
        out
    }

    #[tokio::test]
    async fn frames_are_what_prost_and_tonic_would_send() {
        // Lengths whose varints take one, two and three bytes, and the empty message.
        let sizes = [0usize, 1, 127, 128, 16_383, 16_384, 70_000];
        let chunks: Vec<Result<Bytes, Status>> = sizes
            .iter()
            .map(|&n| Ok(Bytes::from((0..n).map(|i| i as u8).collect::<Vec<u8>>())))
            .collect();
        let mut expected = Vec::new();
        for chunk in &chunks {
            let data = chunk.as_ref().map(|c| c.to_vec()).unwrap_or_default();
            expected.extend(tonic_framing(&ReadResponse { data }));
        }
        let (data, trailers) =
            collect(ReadBody::new(Box::pin(futures::stream::iter(chunks)))).await;
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        assert_eq!(data, expected);
    }

    #[tokio::test]
    async fn a_small_message_is_one_frame_and_a_large_one_two() {
        let chunks: Vec<Result<Bytes, Status>> = vec![
            Ok(Bytes::from(vec![7u8; SMALL_MESSAGE])),
            Ok(Bytes::from(vec![8u8; SMALL_MESSAGE + 1])),
        ];
        let mut body = ReadBody::new(Box::pin(futures::stream::iter(chunks)));
        let mut sizes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(frame) = frame;
            if let Ok(data) = frame.into_data() {
                sizes.push(data.len());
            }
        }
        // Prefix (5 bytes), key (1) and a 2-byte varint length, then the data.
        assert_eq!(
            sizes,
            [5 + 1 + 2 + SMALL_MESSAGE, 5 + 1 + 2, SMALL_MESSAGE + 1]
        );
        assert!(sizes[0] <= 16 << 10);
    }

    #[tokio::test]
    async fn an_error_ends_the_body_with_its_status() {
        let chunks: Vec<Result<Bytes, Status>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(Status::data_loss("the blob ended early")),
        ];
        let (data, trailers) =
            collect(ReadBody::new(Box::pin(futures::stream::iter(chunks)))).await;
        // As a client reads them (the message is percent-encoded on the wire).
        let status = Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), tonic::Code::DataLoss);
        assert_eq!(status.message(), "the blob ended early");
        let expected = tonic_framing(&ReadResponse {
            data: b"abc".to_vec(),
        });
        assert_eq!(data, expected);
    }
}
