//! Restoring many small (inline) outputs: the first ones are staged as unnamed files and linked
//! into place, the rest under temporary names; both replace what is there, keep the executable
//! bit, create missing directories, and leave no temporary file behind. A miss writes nothing.

mod common;

use common::restore_cases;

#[tokio::test]
async fn small_outputs_land_whole_over_what_was_there() {
    restore_cases::small_outputs_land_whole_over_what_was_there().await;
}

#[tokio::test]
async fn a_miss_writes_no_small_output() {
    restore_cases::a_miss_writes_no_small_output().await;
}
