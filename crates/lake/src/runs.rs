//! Run manifests in the output root: `_runs/<run_id>.json`, what each run did, written by the
//! run at its end. Each source writes its own manifest shape; this module only places it.

use serde::Serialize;

use crate::store::{Store, StoreError};

/// Directory of run manifests.
pub const RUNS_DIR: &str = "_runs";

/// Where the manifest of `run_id` is, relative to the root.
pub fn manifest_path(run_id: &str) -> String {
    format!("{RUNS_DIR}/{run_id}.json")
}

/// Writes the manifest of `run_id` (pretty JSON) and says where it is.
pub async fn write_manifest(
    store: &Store,
    run_id: &str,
    manifest: &impl Serialize,
) -> Result<String, StoreError> {
    let path = manifest_path(run_id);
    let bytes = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    store.put(&path, bytes).await?;
    Ok(store.describe(&path))
}
