//! Server faults for real (issue 16 item 7), against the real `larder serve`: a disk that fills
//! up (a small tmpfs the test mounts), and `SIGKILL` of the server in the middle of 100 uploads,
//! alone and in front of an upstream it replicates to.
//!
//! The clients are plain HTTP/1.1 over loopback sockets (so a test controls how a body is sent:
//! sized, chunked, paced) and tonic for gRPC. A test that cannot mount its tmpfs fails under CI
//! and prints why and returns elsewhere (`larder_testservers::unavailable`).

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{Sandbox, assert_exit};
use larder_core::entry::{Content, Output, OutputKind};
use larder_core::{Digest, Entry};
use larder_reapi::proto::build::bazel::remote::execution::v2 as reapi;
use larder_reapi::proto::google::bytestream;
use larder_reapi::tonic::Code;
use larder_reapi::tonic::transport::Channel;
use sha2::Digest as _;

// ---------------------------------------------------------------------------------------------
// Test data and a small HTTP/1.1 client.

/// `len` incompressible bytes, the same for the same `seed` (xorshift64*).
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut x = u64::from_le_bytes(
        Digest::of(seed.as_bytes()).as_bytes()[..8]
            .try_into()
            .unwrap_or([1; 8]),
    ) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A ccache key (40 hex digits) for `seed`.
fn ccache_key(seed: &str) -> String {
    Digest::of(seed.as_bytes()).to_hex()[..40].to_owned()
}

/// One HTTP request.
#[derive(Clone, Copy)]
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a [u8],
    /// Send the body with `Transfer-Encoding: chunked` (no length announced).
    chunked: bool,
    /// Sleep this long after each 32 KiB of body (an upload that takes a while).
    pace: Option<Duration>,
    /// `X-Larder-Size`, for native blob uploads.
    larder_size: Option<u64>,
}

impl<'a> Req<'a> {
    fn new(method: &'a str, path: &'a str) -> Req<'a> {
        Req {
            method,
            path,
            body: &[],
            chunked: false,
            pace: None,
            larder_size: None,
        }
    }

    fn body(self, body: &'a [u8]) -> Req<'a> {
        Req { body, ..self }
    }
}

/// Send `req` to `addr` on a connection of its own (`Connection: close`) and read the answer:
/// status and body. The body is written by a second thread while the answer is read, so a
/// refusal sent before the body is all in (a 507 or 413) is read, not lost to a broken pipe.
fn send(addr: &str, req: Req<'_>) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        req.method, req.path
    );
    if let Some(size) = req.larder_size {
        head += &format!("X-Larder-Size: {size}\r\n");
    }
    if req.chunked {
        head += "Transfer-Encoding: chunked\r\n";
    } else {
        head += &format!("Content-Length: {}\r\n", req.body.len());
    }
    head += "\r\n";
    let mut writer = stream.try_clone()?;
    std::thread::scope(|scope| {
        scope.spawn(move || -> io::Result<()> {
            writer.write_all(head.as_bytes())?;
            for piece in req.body.chunks(32 << 10) {
                if req.chunked {
                    writer.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                    writer.write_all(piece)?;
                    writer.write_all(b"\r\n")?;
                } else {
                    writer.write_all(piece)?;
                }
                if let Some(p) = req.pace {
                    std::thread::sleep(p);
                }
            }
            if req.chunked {
                writer.write_all(b"0\r\n\r\n")?;
            }
            Ok(())
        });
        let answer = read_answer(&mut stream);
        // Unblocks the writer if the server stopped reading the body.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        answer
    })
}

/// Read a whole answer (until the server closes the connection) and parse it.
fn read_answer(stream: &mut TcpStream) -> io::Result<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ended.unwrap_or_else(|| bad("no complete answer head")));
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let rest = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("content-length"))?;
        if rest.len() < len {
            return Err(ended.unwrap_or_else(|| bad("body cut short")));
        }
        rest[..len].to_vec()
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest).ok_or_else(|| bad("chunked body cut short"))?
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    send(addr, Req::new("GET", path)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// What the tests store: values of each protocol, written and read back the same way.

/// One object stored through one protocol.
#[derive(Debug, Clone)]
enum Object {
    /// A native blob and an entry (key `faults/NAME`) naming it.
    Native { key: String, data: Vec<u8> },
    /// A ccache value.
    Ccache { key: String, data: Vec<u8> },
    /// A Bazel CAS object over HTTP.
    BazelCas { data: Vec<u8> },
}

impl Object {
    /// Object `i` of a mix of the three kinds, `len` bytes, named after `seed`.
    fn mixed(seed: &str, i: usize, len: usize) -> Object {
        let name = format!("{seed}-{i}");
        let data = noise(&name, len);
        match i % 3 {
            0 => Object::Native {
                key: format!("faults/{}", name.replace(' ', "-")),
                data,
            },
            1 => Object::Ccache {
                key: ccache_key(&name),
                data,
            },
            _ => Object::BazelCas { data },
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Object::Native { data, .. }
            | Object::Ccache { data, .. }
            | Object::BazelCas { data } => data,
        }
    }

    /// Where the value is read (GET) and, except for native objects, written (PUT).
    fn path(&self) -> String {
        match self {
            Object::Native { key, .. } => format!("/v1/entries/{key}"),
            Object::Ccache { key, .. } => format!("/ccache/{key}"),
            Object::BazelCas { data } => format!("/bazel/cas/{}", sha256_hex(data)),
        }
    }

    /// Store it; the status of the last request (a native object is a blob, then its entry).
    fn store(&self, addr: &str, pace: Option<Duration>) -> io::Result<u16> {
        match self {
            Object::Native { key, data } => {
                let d = Digest::of(data);
                let blob_path = format!("/v1/blobs/{}", d.to_hex());
                let blob = Req {
                    pace,
                    larder_size: Some(data.len() as u64),
                    ..Req::new("PUT", &blob_path).body(data)
                };
                let (status, _) = send(addr, blob)?;
                if !matches!(status, 200 | 201) {
                    return Ok(status);
                }
                let mut entry = Entry::new(key.clone(), "put");
                entry.outputs.push(Output {
                    path: "value.bin".into(),
                    kind: OutputKind::File {
                        content: Content::blob(d, data.len() as u64),
                        executable: false,
                    },
                });
                let bytes = entry.encode().map_err(io::Error::other)?;
                let path = self.path();
                Ok(send(addr, Req::new("PUT", &path).body(&bytes))?.0)
            }
            _ => {
                let path = self.path();
                let req = Req {
                    pace,
                    ..Req::new("PUT", &path).body(self.data())
                };
                Ok(send(addr, req)?.0)
            }
        }
    }

    /// Read it back: `None` when absent (404), else its bytes. A native entry that does not
    /// name exactly one blob of the right size, or whose blob is missing, is a failure: an
    /// entry is only ever published after its blob.
    fn fetch(&self, addr: &str) -> Option<Vec<u8>> {
        let path = self.path();
        let (status, body) = get(addr, &path);
        match (self, status) {
            (_, 404) => None,
            (Object::Native { .. }, 200) => {
                let entry = Entry::decode(&body).expect("a stored entry decodes");
                let [
                    Output {
                        kind: OutputKind::File { content, .. },
                        ..
                    },
                ] = &entry.outputs[..]
                else {
                    panic!("{path}: unexpected outputs {:?}", entry.outputs);
                };
                let d = content.blob_digest().expect("a blob output");
                let (status, blob) = get(addr, &format!("/v1/blobs/{}", d.to_hex()));
                assert_eq!(status, 200, "{path}: the entry's blob {d} is missing");
                Some(blob)
            }
            (_, 200) => Some(body),
            (_, s) => panic!("GET {path}: {s} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Assert it reads back byte for byte.
    #[track_caller]
    fn assert_stored(&self, addr: &str) {
        let got = self.fetch(addr);
        assert!(
            got.as_deref() == Some(self.data()),
            "{}: {}",
            self.path(),
            match got {
                None => "missing".to_owned(),
                Some(g) => format!(
                    "{} bytes that differ from the {} stored",
                    g.len(),
                    self.data().len()
                ),
            }
        );
    }

    /// Assert it is absent or complete, never anything else.
    #[track_caller]
    fn assert_absent_or_complete(&self, addr: &str) -> bool {
        match self.fetch(addr) {
            None => false,
            Some(got) => {
                assert!(
                    got == self.data(),
                    "{}: a damaged value is visible",
                    self.path()
                );
                true
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server, and the disk it runs on.

/// A `larder serve` started by a test, its log in a file; stopped (SIGTERM) on drop.
struct Serve {
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
    log: PathBuf,
}

impl Serve {
    /// `larder serve --dir DIR --listen LISTEN --log-file LOG EXTRA...`, once it listens.
    fn start(sb: &Sandbox, dir: &Path, listen: &str, extra: &[&str]) -> Serve {
        // Beside the sandbox, not in `dir`: that disk may be full.
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let log = sb.root.join(format!("{}.log", name.unwrap_or_default()));
        let mut child = sb
            .larder()
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", listen])
            .arg("--log-file")
            .arg(&log)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting larder serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line);
        let Some((_, url)) = line.trim().rsplit_once(" on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "larder serve did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Serve {
            addr: url.trim_end_matches('/').to_owned(),
            child,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `SIGKILL`, as a crash would, and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    #[track_caller]
    fn assert_running(&mut self) {
        let exited = self.child.try_wait().expect("waiting for the server");
        assert!(
            exited.is_none(),
            "the server exited ({exited:?}):\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        larder_testservers::stop_child(
            &mut self.child,
            "larder serve",
            larder_testservers::StopSignal::Term,
            Duration::from_secs(10),
        );
    }
}

/// A tmpfs of a fixed size mounted for one test; unmounted on drop (lazily if still busy), also
/// when the test panics.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount `size_mib` MiB at `path`, or say why not (`None`: skip; a failure under CI).
    fn mount(path: &Path, size_mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0755")])
            .arg("larder-test-disk")
            .arg(path)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Some(Tmpfs {
                    path: path.to_owned(),
                });
            }
            Ok(o) => format!(
                "`mount -t tmpfs` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        larder_testservers::unavailable(
            "a tmpfs mount",
            &format!("{why} (the disk-full test needs root, or CAP_SYS_ADMIN)"),
        );
        None
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        fs4::available_space(&self.path).expect("statvfs of the tmpfs")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The files in `dir` (recursively), for leftover checks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Temporary files of the server and its store in cache directory `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = files_under(&dir.join("tmp"));
    v.extend(files_under(&dir.join("server-tmp")));
    v
}

// ---------------------------------------------------------------------------------------------
// gRPC (REAPI CAS and ByteStream) on the server's port.

struct Grpc {
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl Grpc {
    fn connect(server: &Serve) -> Grpc {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let channel = rt
            .block_on(Channel::from_shared(server.url()).expect("uri").connect())
            .expect("h2c connection to larder serve");
        Grpc { rt, channel }
    }

    fn digest(data: &[u8]) -> reapi::Digest {
        reapi::Digest {
            hash: sha256_hex(data),
            size_bytes: data.len() as i64,
        }
    }

    /// BatchUpdateBlobs of `blobs`: `Ok` with each blob's status code, or the call's status.
    fn batch_update(&self, blobs: &[Vec<u8>]) -> Result<Vec<i32>, Code> {
        let mut cas =
            reapi::content_addressable_storage_client::ContentAddressableStorageClient::new(
                self.channel.clone(),
            );
        let req = reapi::BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: blobs
                .iter()
                .map(|b| reapi::batch_update_blobs_request::Request {
                    digest: Some(Grpc::digest(b)),
                    data: b.clone(),
                    compressor: 0,
                })
                .collect(),
            digest_function: 0,
        };
        match self.rt.block_on(cas.batch_update_blobs(req)) {
            Ok(r) => Ok(r
                .into_inner()
                .responses
                .iter()
                .map(|r| r.status.as_ref().map_or(0, |s| s.code))
                .collect()),
            Err(s) => Err(s.code()),
        }
    }

    /// ByteStream Write of `data` in 64 KiB messages: the call's status.
    fn write(&self, data: &[u8]) -> Code {
        let mut bs = bytestream::byte_stream_client::ByteStreamClient::new(self.channel.clone());
        let d = Grpc::digest(data);
        let name = format!("uploads/{}/blobs/{}/{}", d.hash, d.hash, d.size_bytes);
        let piece = 64 << 10;
        let reqs: Vec<bytestream::WriteRequest> = data
            .chunks(piece)
            .enumerate()
            .map(|(i, c)| bytestream::WriteRequest {
                resource_name: if i == 0 { name.clone() } else { String::new() },
                write_offset: (i * piece) as i64,
                finish_write: (i + 1) * piece >= data.len(),
                data: c.to_vec(),
            })
            .collect();
        match self.rt.block_on(bs.write(futures::stream::iter(reqs))) {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    }

    /// ByteStream Read: the bytes, or the status.
    fn read(&self, data: &[u8]) -> Result<Vec<u8>, Code> {
        let mut bs = bytestream::byte_stream_client::ByteStreamClient::new(self.channel.clone());
        let d = Grpc::digest(data);
        self.rt.block_on(async {
            let mut stream = bs
                .read(bytestream::ReadRequest {
                    resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
                    read_offset: 0,
                    read_limit: 0,
                })
                .await
                .map_err(|s| s.code())?
                .into_inner();
            let mut out = Vec::new();
            while let Some(m) = stream.message().await.map_err(|s| s.code())? {
                out.extend_from_slice(&m.data);
            }
            Ok(out)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Disk full.

/// Mark every blob of cache `dir` as last written `age` ago. Trims keep a blob whose last entry
/// goes if it was written within the last minute (a concurrent put may just have deduplicated
/// onto it); a cache that filled its disk did so over more than a minute, and this test's
/// seconds stand for that.
fn age_blobs(dir: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    for f in files_under(&dir.join("blobs")) {
        std::fs::File::open(&f)
            .and_then(|file| file.set_modified(then))
            .unwrap_or_else(|e| panic!("backdating {}: {e}", f.display()));
    }
}

/// `o` sent as a PUT with a chunked body (no declared length): the status and body answered.
fn put_chunked(addr: &str, o: &Object) -> (u16, Vec<u8>) {
    let path = o.path();
    send(
        addr,
        Req {
            chunked: true,
            ..Req::new("PUT", &path).body(o.data())
        },
    )
    .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
}

#[test]
fn a_full_disk_refuses_writes_cleanly_serves_reads_and_recovers_after_a_trim() {
    let sb = Sandbox::new();
    let Some(disk) = Tmpfs::mount(&sb.root.join("disk"), 48) else {
        return;
    };
    let dir = disk.path.join("cache");
    let mut server = Serve::start(&sb, &dir, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let grpc = Grpc::connect(&server);
    let slack = 512 << 10; // the index and directories may grow a little
    let at_start = disk.free();

    // 1. Uploads of unknown size (chunked) larger than the disk: the file system runs out of
    //    space while the server spools the body. A clean 507, nothing left.
    {
        let len = 64usize << 20;
        let ccache = Object::Ccache {
            key: ccache_key("too big"),
            data: noise("too big", len),
        };
        let bazel = Object::BazelCas {
            data: noise("too big for bazel", len),
        };
        for o in [&ccache, &bazel] {
            let (path, (status, body)) = (o.path(), put_chunked(&addr, o));
            assert_eq!(
                status,
                507,
                "a {len}-byte chunked PUT {path}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(o.fetch(&addr), None, "a refused {path} is visible");
            assert_eq!(temp_files(&dir), Vec::<PathBuf>::new(), "after {path}");
            assert!(
                disk.free() + slack >= at_start,
                "a refused upload kept disk space: {} free, {at_start} before",
                disk.free()
            );
        }
    }

    // An upload that fits on the disk once but not twice is stored: the spool file it was
    // received into becomes the blob (`Store::put_blob_file`), it is not copied.
    let once = Object::Ccache {
        key: ccache_key("fits once"),
        data: noise("fits once", 30 << 20),
    };
    let (path, (status, body)) = (once.path(), put_chunked(&addr, &once));
    assert!(
        matches!(status, 200 | 201),
        "a 30 MiB chunked PUT {path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    once.assert_stored(&addr);
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new(), "after {path}");
    assert!(
        at_start - disk.free() <= (30 << 20) + slack,
        "a 30 MiB upload took {} bytes of the disk",
        at_start - disk.free()
    );

    // 2. Sized uploads of every protocol, 1 MiB each, until each is refused.
    let mut stored: Vec<Object> = Vec::new();
    let mut grpc_stored: Vec<Vec<u8>> = Vec::new();
    let mut full = [false; 5];
    let mut i = 0;
    while !full.iter().all(|f| *f) {
        assert!(i < 500, "48 MiB never filled up: {full:?}");
        let kind = i % 5;
        i += 1;
        if full[kind] {
            continue;
        }
        let data = noise(&format!("fill {i}"), 1 << 20);
        match kind {
            0..=2 => {
                let o = match kind {
                    0 => Object::Native {
                        key: format!("faults/fill-{i}"),
                        data,
                    },
                    1 => Object::Ccache {
                        key: ccache_key(&format!("fill {i}")),
                        data,
                    },
                    _ => Object::BazelCas { data },
                };
                match o.store(&addr, None).expect("a PUT is answered") {
                    200 | 201 => stored.push(o),
                    507 => {
                        full[kind] = true;
                        assert_eq!(o.fetch(&addr), None, "a refused {} is visible", o.path());
                    }
                    s => panic!("PUT {}: {s}", o.path()),
                }
            }
            3 => {
                let halves = vec![data[..1 << 19].to_vec(), data[1 << 19..].to_vec()];
                match grpc.batch_update(&halves) {
                    Ok(codes) if codes.iter().all(|c| *c == 0) => grpc_stored.extend(halves),
                    Ok(codes) if codes.iter().all(|c| *c == Code::ResourceExhausted as i32) => {
                        full[kind] = true;
                    }
                    Err(Code::ResourceExhausted) => full[kind] = true,
                    other => panic!("BatchUpdateBlobs: {other:?}"),
                }
            }
            _ => match grpc.write(&data) {
                Code::Ok => grpc_stored.push(data),
                Code::ResourceExhausted => full[kind] = true,
                other => panic!("ByteStream Write: {other:?}"),
            },
        }
    }
    assert!(stored.len() >= 6, "only {} objects fit", stored.len());
    assert!(!grpc_stored.is_empty(), "no gRPC upload fit");

    // 3. Another user of the disk takes the rest: the file system is full to the last block.
    let ballast = disk.path.join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).expect("ballast file");
        let block = vec![0x5au8; 64 << 10];
        let err = loop {
            if let Err(e) = f.write_all(&block) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
    assert!(disk.free() < 64 << 10, "{} bytes still free", disk.free());

    // 4. While it is full: writes refused, reads go on, no partial anything.
    assert_eq!(get(&addr, "/healthz").0, 200);
    for b in &grpc_stored {
        assert!(grpc.read(b).as_ref() == Ok(b), "a gRPC blob reads back");
    }
    for o in &stored {
        o.assert_stored(&addr);
    }
    let refused = [
        Object::mixed("while full", 0, 100 << 10),
        Object::mixed("while full", 1, 100 << 10),
        Object::mixed("while full", 2, 100 << 10),
    ];
    for o in &refused {
        assert_eq!(o.store(&addr, None).expect("answered"), 507, "{}", o.path());
        assert_eq!(o.fetch(&addr), None);
    }
    let small = noise("grpc while full", 100 << 10);
    assert_eq!(
        grpc.batch_update(std::slice::from_ref(&small)),
        Err(Code::ResourceExhausted)
    );
    assert_eq!(grpc.write(&small), Code::ResourceExhausted);
    assert_eq!(grpc.read(&small), Err(Code::NotFound));
    assert_eq!(temp_files(&dir), Vec::<PathBuf>::new());
    let (_, metrics) = get(&addr, "/metrics");
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("larder_out_of_space_total") && !l.ends_with(" 0")),
        "507s are counted:\n{metrics}"
    );
    server.assert_running();

    // 5. Clean-up: the ballast goes and a trim brings the cache under 16 MiB (the operator's
    //    `larder trim` on the live server's directory); writes of every kind succeed again.
    std::fs::remove_file(&ballast).expect("removing the ballast");
    // The server writes its index in batches; while the disk was full they waited. Persisted
    // now (`POST /v1/flush`), so that the trim sees every entry.
    let (status, body) = send(&addr, Req::new("POST", "/v1/flush")).expect("flush");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    age_blobs(&dir, Duration::from_secs(600));
    let trim = sb.run([
        "--store",
        dir.to_str().expect("utf-8 path"),
        "trim",
        "--max-size",
        "16M",
    ]);
    assert_exit(&trim, 0);
    assert!(
        disk.free() > 20 << 20,
        "the trim freed too little: {} free",
        disk.free()
    );
    for o in &refused {
        let status = o.store(&addr, None).expect("answered");
        assert!(matches!(status, 200 | 201), "{}: {status}", o.path());
        o.assert_stored(&addr);
    }
    assert_eq!(grpc.batch_update(std::slice::from_ref(&small)), Ok(vec![0]));
    assert_eq!(grpc.read(&small).as_ref(), Ok(&small));
    // What the trim kept is intact, what it evicted is gone whole. The server sees a change
    // made from outside within a second (entries it decoded are trusted that long).
    std::thread::sleep(Duration::from_millis(1500));
    let kept = stored
        .iter()
        .filter(|o| o.assert_absent_or_complete(&addr))
        .count();
    assert!(
        kept > 0,
        "the trim to 16 MiB kept none of the objects read last"
    );
    eprintln!(
        "stored {} objects and {} gRPC blobs before the disk was full; {kept} kept by the trim",
        stored.len(),
        grpc_stored.len()
    );
    server.assert_running();
}

// ---------------------------------------------------------------------------------------------
// SIGKILL in the middle of uploads.

/// Start `objects` uploads to `addr` at once (each paced, starting `stagger` apart); returns a
/// counter of acknowledged uploads to watch, and the join handle giving each upload's outcome.
fn upload_all(
    addr: &str,
    objects: &[Object],
    stagger: Duration,
    acked: &'static AtomicUsize,
) -> Vec<std::thread::JoinHandle<bool>> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let (o, addr) = (o.clone(), addr.to_owned());
            std::thread::spawn(move || {
                std::thread::sleep(stagger * i as u32);
                let ok = matches!(
                    o.store(&addr, Some(Duration::from_millis(3))),
                    Ok(200 | 201)
                );
                if ok {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                ok
            })
        })
        .collect()
}

/// Wait until `counter` reaches `n` (at most `limit`).
fn wait_for(counter: &AtomicUsize, n: usize, limit: Duration) {
    let started = Instant::now();
    while counter.load(Ordering::SeqCst) < n && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_server_killed_during_100_uploads_keeps_each_absent_or_complete() {
    static ACKED: AtomicUsize = AtomicUsize::new(0);
    let sb = Sandbox::new();
    let dir = sb.root.join("served");
    let mut server = Serve::start(&sb, &dir, "127.0.0.1:0", &[]);
    let objects: Vec<Object> = (0..100)
        .map(|i| Object::mixed("killed", i, (256 << 10) + i * 7919))
        .collect();
    let uploads = upload_all(&server.addr, &objects, Duration::from_millis(10), &ACKED);
    wait_for(&ACKED, 40, Duration::from_secs(120));
    server.kill();
    let acked: Vec<bool> = uploads
        .into_iter()
        .map(|u| u.join().expect("upload thread"))
        .collect();
    let n_acked = acked.iter().filter(|a| **a).count();
    assert!(n_acked < 100, "the kill came after every upload");
    let left_by_kill = temp_files(&dir).len();

    let server = Serve::start(&sb, &dir, "127.0.0.1:0", &[]);
    let mut complete = 0;
    for (o, acked) in objects.iter().zip(&acked) {
        if *acked {
            o.assert_stored(&server.addr);
            complete += 1;
        } else if o.assert_absent_or_complete(&server.addr) {
            complete += 1;
        }
    }
    eprintln!(
        "{n_acked} of 100 uploads acknowledged before the kill, {complete} complete after; \
         {left_by_kill} temporary files left by the kill"
    );
    let left = temp_files(&dir);
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "temporary files of the killed server"
    );

    // The cache goes on: what did not make it is uploaded again.
    for (o, acked) in objects.iter().zip(&acked) {
        if !*acked {
            assert!(
                matches!(o.store(&server.addr, None), Ok(200 | 201)),
                "{}",
                o.path()
            );
        }
        o.assert_stored(&server.addr);
    }
}

#[test]
fn a_front_server_killed_with_uploads_queued_loses_none_of_them() {
    static ACKED: AtomicUsize = AtomicUsize::new(0);
    let sb = Sandbox::new();
    let [up_port, front_port] = larder_testservers::free_ports(2)
        .expect("free ports")
        .try_into()
        .expect("two ports");
    let up_listen = format!("127.0.0.1:{up_port}");
    let front_listen = format!("127.0.0.1:{front_port}");
    let (up_dir, front_dir) = (sb.root.join("upstream"), sb.root.join("front"));
    let mut upstream = Serve::start(&sb, &up_dir, &up_listen, &[]);
    let front_args = ["--upstream", &upstream.url(), "--upload-workers", "4"];
    let mut front = Serve::start(&sb, &front_dir, &front_listen, &front_args);

    let objects: Vec<Object> = (0..100)
        .map(|i| Object::mixed("queued", i, (128 << 10) + i * 7919))
        .collect();
    let uploads = upload_all(&front.addr, &objects, Duration::from_millis(10), &ACKED);
    // The upstream crashes first, with uploads to it in flight; then the front, with its
    // queue holding what the upstream has not got.
    wait_for(&ACKED, 20, Duration::from_secs(120));
    upstream.kill();
    wait_for(&ACKED, 60, Duration::from_secs(120));
    front.kill();
    let acked: Vec<bool> = uploads
        .into_iter()
        .map(|u| u.join().expect("upload thread"))
        .collect();
    let n_acked = acked.iter().filter(|a| **a).count();
    let queued = std::fs::read_dir(front_dir.join("upstream-queue"))
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0);
    eprintln!("{n_acked} of 100 acknowledged; {queued} left queued by the killed front server");

    let upstream = Serve::start(&sb, &up_dir, &up_listen, &[]);
    let front = Serve::start(&sb, &front_dir, &front_listen, &front_args);
    // Every acknowledged write reaches the upstream, whole.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (o, acked) in objects.iter().zip(&acked) {
        if !*acked {
            continue;
        }
        while o.fetch(&upstream.addr).is_none() {
            assert!(
                Instant::now() < deadline,
                "{} was acknowledged by the front server but never reached the upstream",
                o.path()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        o.assert_stored(&upstream.addr);
        o.assert_stored(&front.addr);
    }
    // Unacknowledged ones: absent or complete on both.
    for o in objects
        .iter()
        .zip(&acked)
        .filter(|(_, a)| !**a)
        .map(|(o, _)| o)
    {
        o.assert_absent_or_complete(&front.addr);
        o.assert_absent_or_complete(&upstream.addr);
    }
    // The queue drains, and nothing in it was damaged.
    let queue = front_dir.join("upstream-queue");
    while files_under(&queue)
        .iter()
        .any(|f| !f.starts_with(queue.join("damaged")))
    {
        assert!(
            Instant::now() < deadline,
            "the queue never drained: {:?}",
            files_under(&queue)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files_under(&queue.join("damaged")), Vec::<PathBuf>::new());
    assert_eq!(temp_files(&front_dir), Vec::<PathBuf>::new());
    assert_eq!(temp_files(&up_dir), Vec::<PathBuf>::new());
}
