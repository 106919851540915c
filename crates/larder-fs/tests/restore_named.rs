//! The restore scenarios of `restore.rs`, and entry writes, with unnamed files turned off, as
//! on a system that refuses `O_TMPFILE` or linking by descriptor: the named temporary files
//! and renames must give the same results. (Its own test binary: the switch is per process.)

mod common;

use common::*;
use larder_core::StoreExt;
use larder_fs::FsConfig;

#[tokio::test]
async fn named_temporary_files_give_the_same_results() {
    larder_core::unnamed::disable();
    restore_cases::small_outputs_land_whole_over_what_was_there().await;
    restore_cases::a_miss_writes_no_small_output().await;

    let (dir, store) = temp_store(FsConfig::default());
    let k = key("named");
    for value in [&b"first"[..], b"second"] {
        let e = inline_entry(&k, value);
        store.put_entry(&k, &e).await.unwrap();
        assert_eq!(store.get_entry(&k).await.unwrap(), Some(e));
    }
    let tmp = std::fs::read_dir(dir.path().join("cache/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "temporary files left in the store's tmp/");
}
