//! Parts of [`larder_core::Store`] that every bucket store answers the same way, over its own
//! object requests.

use std::future::Future;

use futures::{Stream, StreamExt, TryStreamExt};
use larder_core::{Digest, Result, StoreStats};

/// [`larder_core::Store::find_missing`]: `present(digest)` for each digest, `concurrency` at a
/// time; the digests it answers `false` for, in order. The first error is the result.
///
/// # Errors
/// The first error `present` returns.
pub async fn find_missing<F, Fut>(
    digests: &[Digest],
    concurrency: usize,
    present: F,
) -> Result<Vec<Digest>>
where
    F: Fn(Digest) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let checked: Vec<(Digest, bool)> = futures::stream::iter(digests.iter().copied())
        .map(|d| {
            let there = present(d);
            async move { Ok::<_, larder_core::Error>((d, there.await?)) }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(checked
        .into_iter()
        .filter_map(|(d, there)| (!there).then_some(d))
        .collect())
}

/// [`larder_core::Store::stats`] from listings: an entry per object of `entries`, and the bytes
/// of those and of every object of `blobs` (sizes).
///
/// # Errors
/// The first listing error.
pub async fn stats_from_listings(
    entries: impl Stream<Item = Result<u64>>,
    blobs: impl Stream<Item = Result<u64>>,
) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut entries = std::pin::pin!(entries);
    while let Some(size) = entries.next().await {
        stats.entries += 1;
        stats.bytes += size?;
    }
    let mut blobs = std::pin::pin!(blobs);
    while let Some(size) = blobs.next().await {
        stats.bytes += size?;
    }
    Ok(stats)
}
