//! What the connections measured: per protocol and operation, requests, misses, errors and
//! latencies, merged into the report's rows.

use std::time::Duration;

use serde::Serialize;

/// A protocol and operation the report has a row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RowKey {
    pub(crate) protocol: &'static str,
    pub(crate) op: &'static str,
}

/// What one connection measured for one [`RowKey`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Latencies in microseconds, one per request: the time from sending the request to
    /// having read its whole response.
    pub(crate) micros: Vec<u32>,
    /// Requests answered "not found" (404, or gRPC NOT_FOUND / a missing digest).
    pub(crate) misses: u64,
    pub(crate) errors: u64,
    pub(crate) bytes_up: u64,
    pub(crate) bytes_down: u64,
}

impl Tally {
    pub(crate) fn record(&mut self, took: Duration) {
        self.micros
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.micros.extend(other.micros);
        self.misses += other.misses;
        self.errors += other.errors;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `native blob`, `ccache`, `grpc` ...
    pub protocol: String,
    /// `GET`, `HEAD`, `PUT`, or the gRPC method.
    pub op: String,
    /// Requests sent (each counted once, whatever its answer).
    pub requests: u64,
    /// Requests answered "not found".
    pub misses: u64,
    /// Requests answered wrongly: an unexpected status, a wrong body, a transport error.
    pub errors: u64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest request, milliseconds.
    pub max_ms: f64,
    /// Request body bytes sent.
    pub bytes_up: u64,
    /// Response body bytes received.
    pub bytes_down: u64,
}

impl Row {
    pub(crate) fn new(protocol: &str, op: &str, mut t: Tally) -> Row {
        t.micros.sort_unstable();
        Row {
            protocol: protocol.to_owned(),
            op: op.to_owned(),
            requests: t.micros.len() as u64,
            misses: t.misses,
            errors: t.errors,
            p50_ms: percentile(&t.micros, 0.50),
            p99_ms: percentile(&t.micros, 0.99),
            max_ms: t.micros.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
            bytes_up: t.bytes_up,
            bytes_down: t.bytes_down,
        }
    }
}

/// The `q` quantile of sorted `micros`, in milliseconds (nearest rank).
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7000], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
