//! The soak's objects: per protocol a fixed set of values whose bytes, sizes and URL paths are
//! a function of the seed, so that every response can be checked byte for byte, and a set of
//! paths nothing ever writes, whose reads must be misses.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use larder_core::{Content, Digest, Entry, Output, OutputKind};
use sha2::{Digest as _, Sha256};

/// The protocols (and, for the native one, the two kinds of object) the soak speaks over
/// HTTP/1.1. gRPC works on the [`Protocol::BazelCas`] objects: it is the same CAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `/v1/blobs/<blake3>`.
    NativeBlob,
    /// `/v1/entries/<key>`: an entry whose first output is the native blob of the same index.
    NativeEntry,
    /// `/ccache/<2 hex>/<38 hex>` (ccache's `subdirs` layout).
    Ccache,
    /// `/bazel/cas/<sha256>`.
    BazelCas,
    /// `/bazel/ac/<sha256>`.
    BazelAc,
    /// `/dav/soak/<a>/<b>/<c>/<key>` (sccache's WebDAV layout).
    Dav,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 6] = [
        Protocol::NativeBlob,
        Protocol::NativeEntry,
        Protocol::Ccache,
        Protocol::BazelCas,
        Protocol::BazelAc,
        Protocol::Dav,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::NativeBlob => "native blob",
            Protocol::NativeEntry => "native entry",
            Protocol::Ccache => "ccache",
            Protocol::BazelCas => "bazel cas",
            Protocol::BazelAc => "bazel ac",
            Protocol::Dav => "webdav",
        }
    }

    /// The status a successful PUT of this protocol answers (the native protocol says 201 for a
    /// new entry or blob and 200 for one it had).
    pub(crate) fn put_ok(self, status: u16) -> bool {
        match self {
            Protocol::NativeBlob | Protocol::NativeEntry => matches!(status, 200 | 201),
            Protocol::Ccache | Protocol::Dav => status == 201,
            Protocol::BazelCas | Protocol::BazelAc => status == 200,
        }
    }
}

/// One value the soak writes and reads.
#[derive(Debug)]
pub(crate) struct Object {
    /// The URL path below the server (`/ccache/ab/...`).
    pub(crate) path: String,
    /// What a PUT sends and a GET must answer.
    pub(crate) body: Bytes,
    /// SHA-256 of `body`, hex (the REAPI digest of the Bazel CAS objects).
    pub(crate) sha256: String,
}

impl Object {
    fn new(path: String, body: Bytes) -> Object {
        Object {
            path,
            sha256: sha256_hex(&body),
            body,
        }
    }
}

/// The objects of one protocol, which of them a PUT has stored, and paths never written.
#[derive(Debug)]
pub(crate) struct ObjectSet {
    pub(crate) objects: Vec<Object>,
    stored: Vec<AtomicBool>,
    /// Paths no request writes: every GET and HEAD of them must be a 404.
    pub(crate) misses: Vec<String>,
}

impl ObjectSet {
    fn new(objects: Vec<Object>, misses: Vec<String>) -> ObjectSet {
        let stored = objects.iter().map(|_| AtomicBool::new(false)).collect();
        ObjectSet {
            objects,
            stored,
            misses,
        }
    }

    /// Whether a PUT of object `i` has been answered with success (from then on every read of
    /// it must hit; before, a read may hit or miss, as a PUT may be in flight).
    pub(crate) fn is_stored(&self, i: usize) -> bool {
        self.stored[i].load(Ordering::Acquire)
    }

    pub(crate) fn mark_stored(&self, i: usize) {
        self.stored[i].store(true, Ordering::Release);
    }

    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }
}

/// Every protocol's objects.
#[derive(Debug)]
pub(crate) struct Universe {
    sets: Vec<ObjectSet>,
    /// SHA-256 digests (hex, size) nothing writes, for gRPC's misses.
    pub(crate) grpc_misses: Vec<(String, i64)>,
}

impl Universe {
    /// `count` objects per protocol, sizes from `min_size` to `max_size` (most small, a tenth
    /// in the top decade), all derived from `seed`.
    pub(crate) fn new(
        seed: u64,
        count: usize,
        min_size: usize,
        max_size: usize,
    ) -> larder_core::Result<Universe> {
        let sizes = Sizes::new(min_size, max_size);
        let mut sets = Vec::with_capacity(Protocol::ALL.len());
        let mut native_blobs: Vec<(Digest, u64)> = Vec::new();
        for (p, protocol) in Protocol::ALL.into_iter().enumerate() {
            let mut rng = Rng::new(seed ^ (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut objects = Vec::with_capacity(count);
            for i in 0..count {
                let object = match protocol {
                    Protocol::NativeEntry => native_entry(i, &native_blobs, &mut rng)?,
                    Protocol::NativeBlob => {
                        let body = value(&mut rng, &sizes);
                        let d = Digest::of(&body);
                        native_blobs.push((d, body.len() as u64));
                        Object::new(format!("/v1/blobs/{}", d.to_hex()), body)
                    }
                    Protocol::Ccache => {
                        let k = key_hex(seed, "ccache", i);
                        let body = value(&mut rng, &sizes);
                        Object::new(format!("/ccache/{}/{}", &k[..2], &k[2..40]), body)
                    }
                    Protocol::BazelCas => {
                        let body = value(&mut rng, &sizes);
                        Object::new(format!("/bazel/cas/{}", sha256_hex(&body)), body)
                    }
                    Protocol::BazelAc => {
                        let body = value(&mut rng, &sizes);
                        let action = format!("soak action {seed} {i}");
                        Object::new(format!("/bazel/ac/{}", sha256_hex(action.as_bytes())), body)
                    }
                    Protocol::Dav => {
                        let k = key_hex(seed, "dav", i);
                        let body = value(&mut rng, &sizes);
                        let (a, b, c) = (&k[..1], &k[1..2], &k[2..3]);
                        Object::new(format!("/dav/soak/{a}/{b}/{c}/{k}"), body)
                    }
                };
                objects.push(object);
            }
            let misses = (0..count).map(|i| miss_path(protocol, seed, i)).collect();
            sets.push(ObjectSet::new(objects, misses));
        }
        let grpc_misses = (0..count)
            .map(|i| {
                let label = format!("grpc miss {seed} {i}");
                (sha256_hex(label.as_bytes()), label.len() as i64)
            })
            .collect();
        Ok(Universe { sets, grpc_misses })
    }

    pub(crate) fn set(&self, p: Protocol) -> &ObjectSet {
        &self.sets[p as usize]
    }

    /// Bytes held by every object (what the server's disk will hold once all are written).
    pub(crate) fn total_bytes(&self) -> u64 {
        self.sets
            .iter()
            .flat_map(|s| &s.objects)
            .map(|o| o.body.len() as u64)
            .sum()
    }
}

/// The native entry `i`: its first output is native blob `i` (already in `blobs`, as the
/// native protocol makes a client upload blobs before the entry naming them), then a small
/// inline output and captured stdout, as `larder exec` stores a compile.
fn native_entry(i: usize, blobs: &[(Digest, u64)], rng: &mut Rng) -> larder_core::Result<Object> {
    let key = format!("soak/entry/{i}");
    let (digest, size) = blobs[i];
    let small_len = 64 + rng.below(2000) as usize;
    let mut entry = Entry::new(key.clone(), "soak");
    entry.created_ms = 1_700_000_000_000 + i as u64;
    entry.cost_ms = 10 + i as u64;
    entry.exit_code = Some(0);
    entry.stdout = Some(Content::inline(format!("compiled {i}\n").into_bytes()));
    entry.outputs = vec![
        Output {
            path: "out/object.o".into(),
            kind: OutputKind::File {
                content: Content::blob(digest, size),
                executable: false,
            },
        },
        Output {
            path: "out/deps.d".into(),
            kind: OutputKind::File {
                content: Content::inline(random_bytes(rng, small_len).to_vec()),
                executable: i % 2 == 1,
            },
        },
    ];
    Ok(Object::new(
        format!("/v1/entries/{key}"),
        Bytes::from(entry.encode()?),
    ))
}

fn miss_path(protocol: Protocol, seed: u64, i: usize) -> String {
    let label = format!("miss {} {seed} {i}", protocol.name());
    let sha = sha256_hex(label.as_bytes());
    match protocol {
        Protocol::NativeBlob => format!("/v1/blobs/{}", Digest::of(label.as_bytes()).to_hex()),
        Protocol::NativeEntry => format!("/v1/entries/soak/miss/{i}"),
        Protocol::Ccache => format!("/ccache/{}/{}", &sha[..2], &sha[2..40]),
        Protocol::BazelCas => format!("/bazel/cas/{sha}"),
        Protocol::BazelAc => format!("/bazel/ac/{sha}"),
        Protocol::Dav => format!("/dav/soak/miss/{sha}"),
    }
}

/// 64 hex digits naming object `i` of `what`.
fn key_hex(seed: u64, what: &str, i: usize) -> String {
    blake3::hash(format!("{what} {seed} {i}").as_bytes())
        .to_hex()
        .to_string()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A value of a size from `sizes`.
fn value(rng: &mut Rng, sizes: &Sizes) -> Bytes {
    let len = sizes.pick(rng);
    random_bytes(rng, len)
}

/// `len` pseudo-random bytes (incompressible, so the server's zstd gains nothing and every
/// byte crosses the disk).
fn random_bytes(rng: &mut Rng, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// Object sizes: six in ten within the first eighth of the decades between the bounds (1-8 KiB
/// with the defaults), three in ten up to the top decade, one in ten in the top decade
/// (128 KiB-1 MiB), log-uniform within each band: mostly small values, as ccache's and Bazel's
/// are, with large ones often enough to keep the blob path busy.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    min: f64,
    low: f64,
    high: f64,
    max: f64,
}

impl Sizes {
    fn new(min: usize, max: usize) -> Sizes {
        let (min, max) = (min.max(1) as f64, max.max(min.max(1)) as f64);
        Sizes {
            min,
            low: (min * 8.0).min(max),
            high: (max / 8.0).max(min),
            max,
        }
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        let (a, b) = match rng.below(10) {
            0..=5 => (self.min, self.low),
            6..=8 => (self.low.min(self.high), self.high.max(self.low)),
            _ => (self.high, self.max),
        };
        let t = rng.unit();
        (a.ln() + t * (b.ln() - a.ln())).exp().round() as usize
    }
}

/// SplitMix64: small, fast and reproducible from a seed; the soak needs no better randomness.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_reproducible_and_within_bounds() {
        let a = Universe::new(7, 40, 1024, 1 << 20).unwrap();
        let b = Universe::new(7, 40, 1024, 1 << 20).unwrap();
        for p in Protocol::ALL {
            for (x, y) in a.set(p).objects.iter().zip(&b.set(p).objects) {
                assert_eq!((&x.path, &x.body), (&y.path, &y.body));
                if p != Protocol::NativeEntry {
                    assert!((1024..=1 << 20).contains(&x.body.len()), "{}", x.body.len());
                }
            }
            assert!(!a.set(p).is_stored(0));
        }
        let entry = Entry::decode(&a.set(Protocol::NativeEntry).objects[3].body).unwrap();
        let blob = &a.set(Protocol::NativeBlob).objects[3];
        let OutputKind::File { content, .. } = &entry.outputs[0].kind else {
            panic!("a file output")
        };
        assert_eq!(blob.path, format!("/v1/blobs/{}", content.digest.to_hex()));
    }

    #[test]
    fn sizes_cover_the_range() {
        let s = Sizes::new(1024, 1 << 20);
        let mut rng = Rng::new(1);
        let picks: Vec<usize> = (0..10_000).map(|_| s.pick(&mut rng)).collect();
        assert!(picks.iter().all(|&n| (1024..=1 << 20).contains(&n)));
        assert!(picks.iter().filter(|&&n| n <= 8 << 10).count() > 5000);
        assert!(picks.iter().any(|&n| n > 512 << 10));
    }
}
