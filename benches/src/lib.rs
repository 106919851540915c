//! Shared helpers for larder's benchmarks: timing with medians, same-run baselines, tables,
//! resident memory, and deterministic test data.
#![warn(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Time `f` `reps` times; returns every sample.
pub fn samples<F: FnMut()>(reps: usize, mut f: F) -> Vec<Duration> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// The median of samples.
pub fn median(s: &[Duration]) -> Duration {
    let mut v = s.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// (min, max) of samples.
pub fn spread(s: &[Duration]) -> (Duration, Duration) {
    let min = s.iter().min().copied().unwrap_or_default();
    let max = s.iter().max().copied().unwrap_or_default();
    (min, max)
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
pub fn peak_rss() -> u64 {
    status_field("VmHWM:")
}

/// Current resident memory (`VmRSS`), in bytes.
pub fn current_rss() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(name)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Write `len` deterministic bytes to `path` in 1 MiB pieces.
pub fn write_pseudo_random_file(path: &Path, seed: &str, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut reader = blake3::Hasher::new_derive_key(seed).finalize_xof();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// One row of a results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// Larder's median.
    pub larder: Duration,
    /// The baseline's median (same run).
    pub baseline: Option<Duration>,
    /// The baseline's name.
    pub baseline_name: String,
    /// Work units per run (entries, bytes) and their name, for a rate column.
    pub units: Option<(f64, &'static str)>,
    /// (min, max) of larder's samples.
    pub spread: (Duration, Duration),
    /// Extra note.
    pub note: String,
}

impl Row {
    /// Baseline time / larder time: above 1 means larder is faster.
    pub fn speed_ratio(&self) -> Option<f64> {
        self.baseline
            .map(|b| b.as_secs_f64() / self.larder.as_secs_f64().max(1e-12))
    }
    /// Larder's rate in units per second.
    pub fn rate(&self) -> Option<String> {
        self.units.map(|(n, unit)| {
            let r = n / self.larder.as_secs_f64().max(1e-12);
            if unit == "B" {
                format!("{:.0} MB/s", r / 1e6)
            } else {
                format!("{r:.0} {unit}/s")
            }
        })
    }
}

/// Print rows as a Markdown table.
pub fn print_table(title: &str, rows: &[Row]) -> String {
    let mut s = format!(
        "\n### {title}\n\n| what | larder (median) | rate | min–max | baseline | baseline (median) | speed vs baseline | note |\n|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {}–{} | {} | {} | {} | {} |\n",
            r.what,
            fmt_d(r.larder),
            r.rate().unwrap_or_default(),
            fmt_d(r.spread.0),
            fmt_d(r.spread.1),
            r.baseline_name,
            r.baseline.map(fmt_d).unwrap_or_default(),
            r.speed_ratio()
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_default(),
            r.note
        ));
    }
    println!("{s}");
    s
}

/// Format a duration compactly.
pub fn fmt_d(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}
