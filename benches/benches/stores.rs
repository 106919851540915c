//! Every store on one workload, each figure next to a baseline measured in the same run.
//!
//! `cargo xtask bench [--stores fs,http,cmd,s3] [--quick] [--out DIR]` runs this; by hand:
//! `cargo bench -p larder-benches --bench stores -- --stores fs,http --quick --out target/bench`.
//! Under `cargo test` (no `--bench` flag) it runs a smoke-sized workload on fs, http and cmd, to
//! prove every path works; it never fails on speed, only when a store errors.
//!
//! The workload, per store: `small` (1 KiB files), `large` (100 MiB; 16 MiB with `--quick`) and
//! `mixed` (log-normal sizes, median 32 KiB, like a build's object files), each stored as one
//! entry per file through the client library `larder exec` and `larder get` use
//! (`larder_client::Cache`: `collect` + `put`), then restored (`lookup` + `restore`) with a
//! fresh store handle (`get-cold`: new
//! connections, no client state; the page cache stays warm) and again (`get-warm`), at
//! concurrency 1 and 32, plus one `find-missing` over all blob digests and as many absent ones.
//! Baselines, same files and concurrency: `std::fs::copy` (what `cp` does) for fs; nginx
//! serving and accepting (`dav_methods PUT`) the files for http; the bare `cp` command for cmd;
//! plain `aws-sdk-s3` `PutObject`/`GetObject` for s3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use larder_client::{Cache, Declared, Lookup, Restore, Streams};
use larder_core::{Digest, Key, Store, StoreExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

#[derive(Debug, Clone)]
struct Args {
    stores: Vec<String>,
    mode: Mode,
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Smoke,
    Quick,
    Full,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Smoke => "smoke",
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// One set of files.
#[derive(Debug, Clone)]
struct Set {
    name: &'static str,
    files: Vec<(String, u64)>,
}

impl Set {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }
}

/// One measured figure: larder's samples and the baseline's, in seconds.
#[derive(Debug, Clone, serde::Serialize)]
struct Figure {
    store: String,
    set: String,
    op: String,
    concurrency: usize,
    items: usize,
    bytes: u64,
    larder_s: Vec<f64>,
    baseline: Option<String>,
    baseline_s: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut stores = None;
    let mut quick = false;
    let mut out = None;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--stores" => stores = it.next().cloned(),
            "--quick" => quick = true,
            "--out" => out = it.next().map(PathBuf::from),
            _ => {}
        }
    }
    let benching = argv.iter().any(|a| a == "--bench");
    let mode = match (quick, benching) {
        (true, _) => Mode::Quick,
        (false, true) => Mode::Full,
        (false, false) => Mode::Smoke,
    };
    let default = if mode == Mode::Smoke {
        "fs,http,cmd"
    } else {
        "fs,http,cmd,s3"
    };
    Args {
        stores: stores
            .as_deref()
            .unwrap_or(default)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        mode,
        // Under `cargo test` the files go to a temporary directory (see `run`).
        out: out
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench")),
    }
}

/// Deterministic pseudo-random numbers (xorshift), for sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Log-normal with the given median and sigma (Box–Muller).
    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }
}

fn make_sets(mode: Mode, root: &Path) -> Res<Vec<Set>> {
    let (small_n, large_n, large_size, mixed_n, mixed_cap) = match mode {
        Mode::Smoke => (20, 1, 1u64 << 20, 20, 1u64 << 20),
        Mode::Quick => (200, 2, 16 << 20, 100, 4 << 20),
        Mode::Full => (2000, 4, 100 << 20, 500, 16 << 20),
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sets = vec![
        Set {
            name: "small",
            files: (0..small_n).map(|i| (format!("small/{i}"), 1024)).collect(),
        },
        Set {
            name: "large",
            files: (0..large_n)
                .map(|i| (format!("large/{i}"), large_size))
                .collect(),
        },
        Set {
            name: "mixed",
            files: Vec::new(),
        },
    ];
    sets[2].files = (0..mixed_n)
        .map(|i| {
            let size = rng
                .log_normal(32.0 * 1024.0, 2.0)
                .clamp(1.0, mixed_cap as f64) as u64;
            (format!("mixed/{i}"), size)
        })
        .collect();
    for set in &sets {
        for (name, size) in &set.files {
            let path = root.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            larder_benches::write_pseudo_random_file(&path, name, *size)?;
        }
    }
    Ok(sets)
}

/// Opens a handle on a store's namespace.
type Opener = Box<dyn Fn(&str) -> Res<Arc<dyn Store>> + Send + Sync>;

/// A store under test, with a way to open a fresh handle to it and its baseline.
struct Subject {
    name: String,
    /// A handle on the store's namespace `ns` (each put round gets its own, so that no round
    /// finds the previous round's blobs already stored).
    open: Opener,
    /// Where the namespaces' local files are (`DIR/<ns>`), removed once a round is measured
    /// so that a full run fits on a small disk.
    ns_dir: Option<PathBuf>,
    baseline: Option<Baseline>,
    /// Kept alive for the store's lifetime (servers, temp dirs).
    _guards: Vec<Box<dyn std::any::Any + Send>>,
}

impl Subject {
    /// Remove namespace `ns`'s local files.
    fn forget(&self, ns: &str) {
        if let Some(dir) = &self.ns_dir {
            let _ = std::fs::remove_dir_all(dir.join(ns));
        }
    }
}

enum Baseline {
    /// `std::fs::copy` into and out of a directory.
    Copy(PathBuf),
    /// The `cp` command into and out of a directory.
    Cp(PathBuf),
    /// nginx: PUT and GET of the same files.
    Nginx {
        base: String,
        client: reqwest::Client,
    },
    /// Plain aws-sdk-s3 calls on the same SeaweedFS.
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
}

impl Baseline {
    fn name(&self) -> &'static str {
        match self {
            Baseline::Copy(_) => "fs::copy",
            Baseline::Cp(_) => "cp command",
            Baseline::Nginx { .. } => "nginx",
            Baseline::S3 { .. } => "aws-sdk-s3",
        }
    }

    async fn put(&self, src: &Path, name: &str) -> Res<()> {
        let flat = name.replace('/', "_");
        match self {
            Baseline::Copy(dir) => {
                let (src, dst) = (src.to_owned(), dir.join(flat));
                tokio::task::spawn_blocking(move || std::fs::copy(src, dst)).await??;
            }
            Baseline::Cp(dir) => {
                let st = tokio::process::Command::new("cp")
                    .arg(src)
                    .arg(dir.join(flat))
                    .status()
                    .await?;
                if !st.success() {
                    return Err(format!("cp failed: {st}").into());
                }
            }
            Baseline::Nginx { base, client } => {
                let stream = larder_core::artifacts::file_stream(src).await?;
                let len = std::fs::metadata(src)?.len();
                let r = client
                    .put(format!("{base}/{flat}"))
                    .header("content-length", len)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("nginx PUT: {}", r.status()).into());
                }
            }
            Baseline::S3 {
                client,
                bucket,
                prefix,
            } => {
                let body = aws_sdk_s3::primitives::ByteStream::from_path(src).await?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{flat}"))
                    .body(body)
                    .send()
                    .await?;
            }
        }
        Ok(())
    }

    async fn get(&self, name: &str, dst: &Path) -> Res<()> {
        let flat = name.replace('/', "_");
        if let Some(parent) = dst.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        match self {
            Baseline::Copy(dir) => {
                let (src, dst) = (dir.join(flat), dst.to_owned());
                tokio::task::spawn_blocking(move || std::fs::copy(src, dst)).await??;
            }
            Baseline::Cp(dir) => {
                let st = tokio::process::Command::new("cp")
                    .arg(dir.join(flat))
                    .arg(dst)
                    .status()
                    .await?;
                if !st.success() {
                    return Err(format!("cp failed: {st}").into());
                }
            }
            Baseline::Nginx { base, client } => {
                use tokio::io::AsyncWriteExt;
                let r = client.get(format!("{base}/{flat}")).send().await?;
                if !r.status().is_success() {
                    return Err(format!("nginx GET: {}", r.status()).into());
                }
                let mut f = tokio::fs::File::create(dst).await?;
                let mut body = r.bytes_stream();
                while let Some(chunk) = body.next().await {
                    f.write_all(&chunk?).await?;
                }
                f.flush().await?;
            }
            Baseline::S3 {
                client,
                bucket,
                prefix,
            } => {
                use tokio::io::AsyncWriteExt;
                let r = client
                    .get_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{flat}"))
                    .send()
                    .await?;
                let mut f = tokio::fs::File::create(dst).await?;
                let mut body = r.body;
                while let Some(chunk) = body.try_next().await? {
                    f.write_all(&chunk).await?;
                }
                f.flush().await?;
            }
        }
        Ok(())
    }
}

fn key_for(store: &str, name: &str) -> Res<Key> {
    Ok(Key::new(format!("bench/{store}/{name}"))?)
}

/// Run `job` on the name of every file of `set`, `conc` at a time; every job runs to its end,
/// then the first error (in file order) is the result.
async fn each_file<'a, F, Fut>(set: &'a Set, conc: usize, job: F) -> Res<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let results: Vec<Res<()>> = futures::stream::iter(set.files.iter())
        .map(|(name, _)| job(name))
        .buffer_unordered(conc)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Store every file of `set` as its own entry, `conc` at a time.
async fn larder_put(
    store: &Arc<dyn Store>,
    src: &Path,
    set: &Set,
    tag: &str,
    conc: usize,
) -> Res<()> {
    let client = &Cache::new(Arc::clone(store));
    each_file(set, conc, |name| async move {
        let key = key_for(tag, name)?;
        let prepared = {
            let (client, src) = (client.clone(), src.to_owned());
            let (names, key) = (vec![name.to_owned()], key.clone());
            tokio::task::spawn_blocking(move || client.collect(&src, &key, &names, "larder-bench"))
                .await??
        };
        client.put(&key, prepared, Streams::default()).await?;
        Ok(())
    })
    .await
}

/// Restore every entry of `set` under `dst`, `conc` at a time.
async fn larder_get(
    store: &Arc<dyn Store>,
    dst: &Path,
    set: &Set,
    tag: &str,
    conc: usize,
) -> Res<()> {
    let client = &Cache::new(Arc::clone(store));
    each_file(set, conc, |name| async move {
        let key = key_for(tag, name)?;
        let Lookup::Found(entry) = client.lookup(&key, &[]).await? else {
            return Err(format!("{key}: a miss right after the put").into());
        };
        match client.restore(&key, &entry, dst, Declared::Entry).await? {
            Restore::Restored => Ok(()),
            Restore::Missing => Err(format!("{key}: a blob went missing").into()),
            Restore::Poisoned { path, reason } => {
                Err(format!("{key}: output {path} {reason}").into())
            }
        }
    })
    .await
}

async fn baseline_run(
    b: &Baseline,
    src: &Path,
    dst: &Path,
    set: &Set,
    put: bool,
    conc: usize,
) -> Res<()> {
    each_file(set, conc, |name| async move {
        if put {
            b.put(&src.join(name), name).await
        } else {
            b.get(name, &dst.join(name)).await
        }
    })
    .await
}

fn fresh(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

async fn time<F: std::future::Future<Output = Res<()>>>(f: F) -> Res<f64> {
    let t = Instant::now();
    f.await?;
    Ok(t.elapsed().as_secs_f64())
}

/// The whole workload on one store.
async fn run_subject(
    subject: &Subject,
    sets: &[Set],
    src: &Path,
    work: &Path,
    mode: Mode,
    bar: &indicatif::ProgressBar,
) -> Res<Vec<Figure>> {
    let reps = match mode {
        Mode::Smoke => 1,
        Mode::Quick => 2,
        Mode::Full => 3,
    };
    let concs: &[usize] = if mode == Mode::Smoke {
        &[1, 8]
    } else {
        &[1, 32]
    };
    let mut figures = Vec::new();
    for set in sets {
        for &conc in concs {
            let mut f_put = Vec::new();
            let mut f_cold = Vec::new();
            let mut f_warm = Vec::new();
            let (mut b_put, mut b_get) = (Vec::new(), Vec::new());
            for rep in 0..reps {
                bar.set_message(format!(
                    "{} {} c={conc} rep {}",
                    subject.name,
                    set.name,
                    rep + 1
                ));
                let tag = format!("{}-{}-{conc}-{rep}", subject.name, set.name);
                let store = (subject.open)(&tag)?;
                f_put.push(time(larder_put(&store, src, set, &tag, conc)).await?);
                store.flush().await?;
                drop(store);
                let dst = work.join("restore");
                fresh(&dst)?;
                let cold = (subject.open)(&tag)?;
                f_cold.push(time(larder_get(&cold, &dst, set, &tag, conc)).await?);
                fresh(&dst)?;
                f_warm.push(time(larder_get(&cold, &dst, set, &tag, conc)).await?);
                cold.flush().await?;
                if let Some(b) = &subject.baseline {
                    if let Baseline::Copy(d) | Baseline::Cp(d) = b {
                        fresh(d)?;
                    }
                    b_put.push(time(baseline_run(b, src, &dst, set, true, conc)).await?);
                    fresh(&dst)?;
                    b_get.push(time(baseline_run(b, src, &dst, set, false, conc)).await?);
                }
                bar.inc(1);
                let kept_for_find_missing = conc == concs[concs.len() - 1] && rep == reps - 1;
                if !kept_for_find_missing {
                    subject.forget(&tag);
                }
            }
            let fig = |op: &str, larder_s: Vec<f64>, baseline_s: Vec<f64>| Figure {
                store: subject.name.clone(),
                set: set.name.to_owned(),
                op: op.to_owned(),
                concurrency: conc,
                items: set.files.len(),
                bytes: set.bytes(),
                larder_s,
                baseline: subject.baseline.as_ref().map(|b| b.name().to_owned()),
                baseline_s,
            };
            figures.push(fig("put", f_put, b_put));
            figures.push(fig("get-cold", f_cold, Vec::new()));
            figures.push(fig("get-warm", f_warm, b_get));
        }
        // find-missing: every blob digest of the last put, and as many absent ones.
        let tag = format!(
            "{}-{}-{}-{}",
            subject.name,
            set.name,
            concs[concs.len() - 1],
            reps - 1
        );
        let store = (subject.open)(&tag)?;
        let mut digests: Vec<Digest> = Vec::new();
        for (name, _) in &set.files {
            let key = key_for(&tag, name)?;
            if let Some(e) = store.get_entry(&key).await? {
                digests.extend(e.blob_digests());
            }
        }
        let present = digests.len();
        for i in 0..set.files.len().max(1) {
            digests.push(Digest::of(format!("absent {i}").as_bytes()));
        }
        let mut samples = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let missing = store.find_missing(&digests).await?;
            samples.push(t.elapsed().as_secs_f64());
            if missing.len() < digests.len() - present {
                return Err(format!("{}: find-missing lost absent digests", subject.name).into());
            }
        }
        drop(store);
        subject.forget(&tag);
        figures.push(Figure {
            store: subject.name.clone(),
            set: set.name.to_owned(),
            op: "find-missing".into(),
            concurrency: 1,
            items: digests.len(),
            bytes: 0,
            larder_s: samples,
            baseline: None,
            baseline_s: Vec::new(),
        });
    }
    Ok(figures)
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// nginx on a free port serving and accepting files in `root`, if nginx is installed.
fn start_nginx(tmp: &Path) -> Res<Option<(larder_testservers::ServerProcess, String)>> {
    if larder_testservers::find_program("nginx").is_none() {
        eprintln!("nginx not installed: the http store has no baseline in this run");
        return Ok(None);
    }
    let port = free_port()?;
    let root = tmp.join("www");
    std::fs::create_dir_all(&root)?;
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        "{user}\nworker_processes 2;\ndaemon off;\npid {t}/nginx.pid;\nerror_log {t}/nginx-error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off; sendfile on; client_max_body_size 0;\n client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n server {{ listen 127.0.0.1:{port}; root {r}; location / {{ dav_methods PUT; create_full_put_path on; }} }}\n}}\n",
        t = tmp.display(),
        r = root.display()
    );
    let conf_path = tmp.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = std::process::Command::new("nginx");
    cmd.arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(tmp)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SIGQUIT is nginx's graceful stop (`nginx -s quit`): the master waits for its workers.
    // Killing the master alone would leave the workers running, re-parented to init.
    let guard = larder_testservers::ServerProcess::spawn(
        "nginx",
        &mut cmd,
        larder_testservers::StopSignal::Quit,
        Duration::from_secs(10),
    )?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Some((guard, format!("http://127.0.0.1:{port}"))));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("nginx did not start".into())
}

async fn subject(name: &str, tmp: &Path) -> Res<Option<Subject>> {
    let dir = tmp.join(format!("store-{name}"));
    std::fs::create_dir_all(&dir)?;
    Ok(Some(match name {
        "fs" => {
            let root = dir.join("cache");
            Subject {
                name: name.into(),
                ns_dir: Some(root.clone()),
                open: Box::new(move |ns| {
                    Ok(Arc::new(larder_fs::FsStore::open(
                        root.join(ns),
                        larder_fs::FsConfig::default(),
                    )?) as Arc<dyn Store>)
                }),
                baseline: Some(Baseline::Copy(dir.join("baseline"))),
                _guards: Vec::new(),
            }
        }
        "http" => {
            // One in-process `larder serve` per namespace, started on first use.
            type Servers =
                std::collections::HashMap<String, (String, tokio::sync::oneshot::Sender<()>)>;
            let servers: Arc<std::sync::Mutex<Servers>> = Arc::default();
            let mut guards: Vec<Box<dyn std::any::Any + Send>> =
                vec![Box::new(Arc::clone(&servers))];
            let baseline = match start_nginx(&dir.join("nginx"))? {
                Some((nginx, url)) => {
                    guards.push(Box::new(nginx));
                    Some(Baseline::Nginx {
                        base: url,
                        client: reqwest::Client::new(),
                    })
                }
                None => None,
            };
            let root = dir.join("cache");
            Subject {
                name: name.into(),
                ns_dir: Some(root.clone()),
                open: Box::new(move |ns| {
                    let mut map = servers.lock().map_err(|_| "server map poisoned")?;
                    if !map.contains_key(ns) {
                        let config =
                            larder_server::ServerConfig::new(root.join(ns), "127.0.0.1:0".parse()?);
                        let server = tokio::task::block_in_place(|| {
                            tokio::runtime::Handle::current()
                                .block_on(larder_server::Server::bind(config))
                        })?;
                        let base = format!("http://{}/v1", server.local_addr());
                        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                        tokio::spawn(server.run(async move {
                            let _ = stopped.await;
                        }));
                        map.insert(ns.to_owned(), (base, stop));
                    }
                    let base = map.get(ns).map(|(b, _)| b.clone()).unwrap_or_default();
                    Ok(Arc::new(larder_http::HttpStore::new(base)?) as Arc<dyn Store>)
                }),
                baseline,
                _guards: guards,
            }
        }
        "cmd" => {
            let remote = dir.join("remote");
            Subject {
                name: name.into(),
                ns_dir: Some(remote.clone()),
                open: Box::new(move |ns| {
                    let base = remote.join(ns);
                    // `cp` creates no directories: the two the store names objects under.
                    std::fs::create_dir_all(base.join("entries"))?;
                    std::fs::create_dir_all(base.join("blobs"))?;
                    let url = format!(
                        "cmd://{}?copy=cp+%25%7BSRC%7D+%25%7BTGT%7D&exists=test+-e+%25%7BTGT%7D&jobs=32",
                        base.display()
                    );
                    Ok(Arc::new(larder_cmd::CmdStore::from_url(&url)?) as Arc<dyn Store>)
                }),
                baseline: Some(Baseline::Cp(dir.join("baseline"))),
                _guards: Vec::new(),
            }
        }
        "s3" => {
            let Some(s3) = larder_testservers::SeaweedFs::start() else {
                return Ok(None);
            };
            let (bucket, endpoint) = (s3.bucket().to_owned(), s3.endpoint());
            let (ak, sk) = (s3.access_key().to_owned(), s3.secret_key().to_owned());
            let raw = {
                use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
                let conf = aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .endpoint_url(&endpoint)
                    .region(Region::new("us-east-1"))
                    .force_path_style(true)
                    .credentials_provider(Credentials::new(&ak, &sk, None, None, "bench"))
                    .http_client(aws_smithy_http_client::Builder::new().build_http())
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            };
            let b2 = bucket.clone();
            Subject {
                name: name.into(),
                // Objects stay in SeaweedFS's directory until the run ends.
                ns_dir: None,
                open: Box::new(move |ns| {
                    use larder_s3::BucketBuilder;
                    Ok(Arc::new(
                        larder_s3::S3StoreBuilder::new(&b2)
                            .with_endpoint(&endpoint)
                            .with_path_style(true)
                            .with_credentials(&ak, &sk)
                            .with_prefix(format!("bench/{ns}"))?
                            .build()?,
                    ) as Arc<dyn Store>)
                }),
                baseline: Some(Baseline::S3 {
                    client: raw,
                    bucket,
                    prefix: "baseline".into(),
                }),
                _guards: vec![Box::new(s3)],
            }
        }
        other => return Err(format!("unknown store {other:?} (fs, http, cmd, s3)").into()),
    }))
}

fn host_facts() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory": mem,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "git_revision": rev,
        "loadavg": read("/proc/loadavg").trim(),
    })
}

fn rate(f: &Figure, s: f64) -> String {
    if f.op == "find-missing" {
        format!("{:.0} digests/s", f.items as f64 / s)
    } else if f.set == "small" {
        format!("{:.0} entries/s", f.items as f64 / s)
    } else {
        format!("{:.0} MB/s", f.bytes as f64 / 1e6 / s)
    }
}

fn table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| store | set | op | conc | larder (median) | rate | min–max | baseline | baseline rate | larder/baseline |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let m = median(&f.larder_s);
        let lo = f.larder_s.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = f.larder_s.iter().copied().fold(0.0, f64::max);
        let (bname, brate, ratio) = if f.baseline_s.is_empty() {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            let b = median(&f.baseline_s);
            (
                f.baseline.clone().unwrap_or_default(),
                rate(f, b),
                format!("{:.2}×", b / m),
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}–{} | {} | {} | {} |\n",
            f.store,
            f.set,
            f.op,
            f.concurrency,
            larder_benches::fmt_d(Duration::from_secs_f64(m)),
            rate(f, m),
            larder_benches::fmt_d(Duration::from_secs_f64(lo)),
            larder_benches::fmt_d(Duration::from_secs_f64(hi)),
            bname,
            brate,
            ratio
        ));
    }
    out
}

/// Bars of warm-get and put throughput (MB/s, log scale) per store and set, at the highest
/// concurrency, with the baseline beside each.
fn chart(figures: &[Figure]) -> String {
    let conc = figures.iter().map(|f| f.concurrency).max().unwrap_or(1);
    let bars: Vec<(String, f64, bool)> = figures
        .iter()
        .filter(|f| f.concurrency == conc && (f.op == "put" || f.op == "get-warm"))
        .flat_map(|f| {
            let mb = |s: f64| f.bytes as f64 / 1e6 / s;
            let mut v = vec![(
                format!("{} {} {}", f.store, f.set, f.op),
                mb(median(&f.larder_s)),
                false,
            )];
            if !f.baseline_s.is_empty() {
                v.push((
                    format!("  {} (baseline)", f.baseline.clone().unwrap_or_default()),
                    mb(median(&f.baseline_s)),
                    true,
                ));
            }
            v
        })
        .collect();
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let (w, row, left) = (900.0, 18.0, 300.0);
    let h = 40.0 + row * bars.len() as f64;
    let scale = |x: f64| ((x.max(0.01)).log10() + 2.0) / (max.log10() + 2.0) * (w - left - 80.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"18\" font-size=\"13\">MB/s (log scale), concurrency {conc}: larder (blue) and its same-run baseline (grey)</text>\n"
    );
    for (i, (label, v, base)) in bars.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let color = if *base { "#999" } else { "#36c" };
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{:.0}\">{}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{v:.0}</text>\n",
            y + 12.0,
            label.replace('&', "&amp;").replace('<', "&lt;"),
            scale(*v),
            row - 4.0,
            left + scale(*v) + 4.0,
            y + 12.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Write the JSON (host facts and every sample), the Markdown table and the SVG chart.
fn write_out(args: &Args, out: &Path, figures: &[Figure]) -> Res<()> {
    let json = serde_json::json!({
        "mode": args.mode.name(),
        "stores": args.stores,
        "host": host_facts(),
        "figures": figures,
    });
    std::fs::write(
        out.join("stores.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(out.join("stores.md"), table(figures))?;
    std::fs::write(out.join("stores.svg"), chart(figures))?;
    std::fs::write(
        out.join("stores.result.json"),
        serde_json::to_string_pretty(&result_rows(args, figures))?,
    )?;
    Ok(())
}

/// The rows of BENCHMARKS.md's stores table (the schema in xtask/src/bench_report.rs): put and
/// warm get of every store and set at the highest concurrency, each against its baseline; and
/// the chart. No targets: this table says which store suits which size.
fn result_rows(args: &Args, figures: &[Figure]) -> serde_json::Value {
    let conc = figures.iter().map(|f| f.concurrency).max().unwrap_or(1);
    let rows: Vec<serde_json::Value> = figures
        .iter()
        .filter(|f| f.concurrency == conc && (f.op == "put" || f.op == "get-warm"))
        .map(|f| {
            let m = median(&f.larder_s);
            let (baseline, ratio) = if f.baseline_s.is_empty() {
                (String::new(), None)
            } else {
                let b = median(&f.baseline_s);
                (
                    format!("{}, {}", f.baseline.clone().unwrap_or_default(), rate(f, b)),
                    Some(b / m),
                )
            };
            serde_json::json!({
                "what": format!("{}: {} {} (concurrency {conc})", f.store, f.set, f.op),
                "larder": rate(f, m), "baseline": baseline, "ratio": ratio,
                "target": "", "met": null,
                "headline": f.store == "http" && f.set == "large" && f.op == "get-warm",
            })
        })
        .collect();
    serde_json::json!({
        "area": "stores",
        "settings": format!("{} mode, stores {}", args.mode.name(), args.stores.join(", ")),
        "rows": rows,
        "charts": [{"file": "stores.svg",
                    "caption": "MB/s per store and size, larder and its baseline"}],
    })
}

async fn run(args: Args) -> Res<()> {
    let tmp = tempfile::Builder::new().prefix("larder-bench-").tempdir()?;
    let src = tmp.path().join("src");
    let sets = make_sets(args.mode, &src)?;
    let reps = match args.mode {
        Mode::Smoke => 1,
        Mode::Quick => 2,
        Mode::Full => 3,
    };
    let steps = (args.stores.len() * sets.len() * 2 * reps) as u64;
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let out = if args.mode == Mode::Smoke {
        tmp.path().join("out")
    } else {
        args.out.clone()
    };
    std::fs::create_dir_all(&out)?;
    let mut figures = Vec::new();
    for name in &args.stores {
        let Some(subject) = subject(name, tmp.path()).await? else {
            bar.println(format!("{name}: its server is not available; skipped"));
            bar.inc((sets.len() * 2 * reps) as u64);
            continue;
        };
        let work = tmp.path().join(format!("work-{name}"));
        let figs = run_subject(&subject, &sets, &src, &work, args.mode, &bar).await;
        let _ = std::fs::remove_dir_all(&work);
        drop(subject);
        match figs {
            Ok(figs) => figures.extend(figs),
            Err(e) => {
                // Keep what the other stores measured, then fail.
                bar.finish_and_clear();
                write_out(&args, &out, &figures)?;
                return Err(format!("store {name}: {e}").into());
            }
        }
        // Written after every store: a long run that fails late keeps what it measured.
        write_out(&args, &out, &figures)?;
    }
    bar.finish_and_clear();
    let t = table(&figures);
    println!(
        "\nlarder stores benchmark ({} mode)\n\n{t}",
        args.mode.name()
    );
    println!(
        "wrote {}/stores.json, stores.md and stores.svg",
        out.display()
    );
    Ok(())
}

fn main() {
    let args = parse_args();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stores bench: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("stores bench: {e}");
        std::process::exit(1);
    }
}
