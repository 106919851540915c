//! Shared by the server tests: a server on a free loopback port over a temporary directory,
//! and a plain HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use larder_server::{Server, ServerConfig};

pub struct TestServer {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), larder_server::ServerError>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|c| c).await
    }

    pub async fn start_with(f: impl FnOnce(ServerConfig) -> ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("cache");
        TestServer::start_at(dir, root, f).await
    }

    /// A server over `root` (which outlives it).
    pub async fn start_in(
        root: &std::path::Path,
        f: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer::start_at(dir, root.to_owned(), f).await
    }

    async fn start_at(
        dir: tempfile::TempDir,
        root: PathBuf,
        f: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> TestServer {
        let config = f(ServerConfig::new(
            &root,
            "127.0.0.1:0".parse().expect("addr"),
        ));
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            root,
            client: reqwest::Client::new(),
            _dir: dir,
            stop,
            task,
        }
    }

    /// Stop gracefully and wait until the server has released its directory.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Bytes) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.bytes().await.expect("body"))
    }

    pub async fn head(&self, path: &str) -> u16 {
        let r = self.client.head(self.url(path)).send().await.expect("HEAD");
        r.status().as_u16()
    }

    pub async fn put(&self, path: &str, body: impl Into<Bytes>) -> u16 {
        let body: Bytes = body.into();
        let r = self
            .client
            .put(self.url(path))
            .body(body)
            .send()
            .await
            .expect("PUT");
        r.status().as_u16()
    }

    pub async fn delete(&self, path: &str) -> u16 {
        let r = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        r.status().as_u16()
    }
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored raw blob file holding exactly `bytes` below `dir`.
pub fn find_blob(dir: &std::path::Path, bytes: &[u8]) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let meta = entry.metadata().ok()?;
        if meta.is_dir() {
            if let Some(found) = find_blob(&path, bytes) {
                return Some(found);
            }
        } else if meta.len() == bytes.len() as u64
            && std::fs::read(&path).ok().as_deref() == Some(bytes)
        {
            return Some(path);
        }
    }
    None
}

/// Flip one byte of a stored file through the file system (blob files are read-only).
pub fn flip(path: &std::path::Path, at: usize) {
    let mut perms = std::fs::metadata(path).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).expect("chmod");
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// An h2c gRPC channel to a server on `addr`.
pub async fn grpc_channel(addr: SocketAddr) -> larder_reapi::tonic::transport::Channel {
    larder_reapi::tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("h2c connection")
}

/// The REAPI (SHA-256) digest of `data`.
pub fn reapi_digest(
    data: &[u8],
) -> larder_reapi::proto::build::bazel::remote::execution::v2::Digest {
    larder_reapi::proto::build::bazel::remote::execution::v2::Digest {
        hash: sha256_hex(data),
        size_bytes: data.len() as i64,
    }
}

/// The whole blob `d` read through ByteStream, chunk by chunk.
pub async fn bytestream_read(
    bs: &mut larder_reapi::proto::google::bytestream::byte_stream_client::ByteStreamClient<
        larder_reapi::tonic::transport::Channel,
    >,
    d: &larder_reapi::proto::build::bazel::remote::execution::v2::Digest,
) -> Vec<u8> {
    let mut stream = bs
        .read(larder_reapi::proto::google::bytestream::ReadRequest {
            resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .expect("read")
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.expect("chunk") {
        out.extend_from_slice(&m.data);
    }
    out
}

/// Read from `tcp` until the server closes the connection (or resets it), for at most
/// `patience`; all that was read. Fails the test if the connection is still open then.
pub async fn read_to_close(
    tcp: &mut tokio::net::TcpStream,
    patience: std::time::Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(patience, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    out
}
