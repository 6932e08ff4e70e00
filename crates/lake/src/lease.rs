//! Lease: one writer at a time on an output root, through `<root>/_lease.json` (and one
//! events compactor at a time, through a lease of its own: the two never write the same files).
//!
//! Invariants:
//! - A run writes nothing before it holds the lease, and holds it by renewing it every third of
//!   its lifetime with a conditional update: a run that fails to renew has lost it and stops.
//! - Taking the lease is atomic: `create` when there is none, or a conditional `update` of one
//!   whose `expires_at` has passed (left by a killed run). A live lease is never taken.
//! - The lease names its holder (run id, host, pid, start) so the refused run can say who holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use attendance_core::chain::Chain;

use crate::store::{Store, StoreError, Version};

/// Where the lease lives in the output root.
pub const LEASE_PATH: &str = "_lease.json";

/// The lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set when its run gave it up at the end; an expired lease without it was left by a run
    /// that died.
    #[serde(default)]
    pub released: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "{location} is held by run {} on {} (pid {}, started {}, lease expires {}): another run is writing here; wait for it, or for the lease to expire if it was killed",
        holder.run_id, holder.host, holder.pid, holder.started_at, holder.expires_at
    )]
    Held {
        location: String,
        holder: LeaseRecord,
    },
    #[error("{location} is not a lease this job wrote: remove it if no run is writing here")]
    Unreadable {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("lost the lease on {location} (another run took it after ours expired): stopping")]
    Lost { location: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A held lease.
pub struct Lease {
    store: Arc<Store>,
    /// The lease object, relative to the root.
    path: &'static str,
    record: Mutex<(LeaseRecord, Version)>,
    ttl: Duration,
    lost: AtomicBool,
    /// Until when the lease is surely ours: the last expiry written, less a margin for clock
    /// skew between hosts. Past it, the run must stop writing even if no renewal said "lost".
    valid_until: std::sync::Mutex<std::time::Instant>,
}

/// This machine's name (`HOSTNAME`, else `/etc/hostname`), for the records that say who wrote
/// them.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

impl Lease {
    /// Takes the lease on `store` for `run_id`, or says who holds it.
    pub async fn acquire(
        store: Arc<Store>,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        Lease::acquire_at(store, LEASE_PATH, run_id, ttl).await
    }

    /// Takes the lease kept at `path` (relative to the root) for `run_id`.
    pub async fn acquire_at(
        store: Arc<Store>,
        path: &'static str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        let location = store.describe(path);
        let started_at = Utc::now();
        for _ in 0..5 {
            let record = LeaseRecord {
                run_id: run_id.to_string(),
                host: host_name(),
                pid: std::process::id(),
                started_at,
                expires_at: Utc::now() + ttl,
                released: false,
            };
            let bytes = serde_json::to_vec_pretty(&record).expect("a lease serializes");
            if store.create(path, bytes.clone()).await? {
                return Lease::held(store, path, record, ttl).await;
            }
            let Some((old, version)) = store.get_versioned(path).await? else {
                continue; // released meanwhile
            };
            let holder: LeaseRecord =
                serde_json::from_slice(&old).map_err(|source| LeaseError::Unreadable {
                    location: location.clone(),
                    source,
                })?;
            if holder.expires_at > Utc::now() && !holder.released {
                return Err(LeaseError::Held { location, holder });
            }
            if store.update(path, bytes, &version).await? {
                if !holder.released {
                    tracing::warn!(expired_run = %holder.run_id, host = %holder.host,
                        "took over an expired lease: its run was killed or lost its way");
                }
                return Lease::held(store, path, record, ttl).await;
            }
        }
        Err(LeaseError::Lost { location })
    }

    async fn held(
        store: Arc<Store>,
        path: &'static str,
        record: LeaseRecord,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        let (bytes, version) =
            store
                .get_versioned(path)
                .await?
                .ok_or_else(|| LeaseError::Lost {
                    location: store.describe(path),
                })?;
        let now: LeaseRecord =
            serde_json::from_slice(&bytes).map_err(|source| LeaseError::Unreadable {
                location: store.describe(path),
                source,
            })?;
        if now.run_id != record.run_id {
            return Err(LeaseError::Lost {
                location: store.describe(path),
            });
        }
        Ok(Lease {
            store,
            path,
            record: Mutex::new((record, version)),
            ttl,
            lost: AtomicBool::new(false),
            valid_until: std::sync::Mutex::new(std::time::Instant::now() + ttl.mul_f64(0.8)),
        })
    }

    /// Pushes the expiry a lifetime ahead, if the lease is still ours.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        let mut held = self.record.lock().await;
        let mut record = held.0.clone();
        let written_at = std::time::Instant::now();
        record.expires_at = Utc::now() + self.ttl;
        let bytes = serde_json::to_vec_pretty(&record).expect("a lease serializes");
        if !self.store.update(self.path, bytes, &held.1).await? {
            self.lost.store(true, Ordering::SeqCst);
            return Err(LeaseError::Lost {
                location: self.store.describe(self.path),
            });
        }
        let version = self
            .store
            .get_versioned(self.path)
            .await?
            .map(|(_, v)| v)
            .ok_or_else(|| LeaseError::Lost {
                location: self.store.describe(self.path),
            })?;
        *held = (record, version);
        *self.valid_until.lock().expect("lease clock lock") = written_at + self.ttl.mul_f64(0.8);
        Ok(())
    }

    /// Renews the lease every third of its lifetime until the returned task is aborted.
    pub fn keep_renewed(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let lease = Arc::clone(self);
        let renew = async move {
            loop {
                tokio::time::sleep(lease.ttl / 3).await;
                if let Err(e) = lease.renew().await {
                    tracing::error!(error = %Chain(&e), "lease renewal failed; the run stops if it cannot renew before the lease may have expired");
                    if matches!(e, LeaseError::Lost { .. }) {
                        return;
                    }
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(
            renew,
            tracing::Span::current(),
        ))
    }

    /// Whether the lease may no longer be ours: another run took it, or renewals failed for so
    /// long that it may have expired.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
            || std::time::Instant::now() > *self.valid_until.lock().expect("lease clock lock")
    }

    /// Runs `work` under the lease at `path` of `store` for `run_id`: taken first, renewed
    /// while `work` runs, given up after it whatever it came to (a failed release is logged:
    /// the lease then expires by itself). `Err` only when the lease could not be taken.
    pub async fn run_under<T>(
        store: &Arc<Store>,
        path: &'static str,
        run_id: &str,
        ttl: Duration,
        work: impl AsyncFnOnce(&Arc<Lease>) -> T,
    ) -> Result<T, LeaseError> {
        let lease = Arc::new(Lease::acquire_at(Arc::clone(store), path, run_id, ttl).await?);
        let renewal = lease.keep_renewed();
        let result = work(&lease).await;
        renewal.abort();
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %Chain(&e), "could not release the lease; it expires by itself");
        }
        Ok(result)
    }

    /// Gives the lease up, if it is still ours: a conditional update to an expired, released
    /// record, so a lease another run has taken meanwhile is never touched. The record stays;
    /// the next run takes it over without a word.
    pub async fn release(&self) -> Result<(), StoreError> {
        let held = self.record.lock().await;
        let mut record = held.0.clone();
        record.expires_at = Utc::now() - chrono::TimeDelta::seconds(1);
        record.released = true;
        let bytes = serde_json::to_vec_pretty(&record).expect("a lease serializes");
        if !self.store.update(self.path, bytes, &held.1).await? {
            tracing::warn!("the lease was no longer ours when releasing it; left as it is");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::Local(dir.to_path_buf()))
    }

    async fn record(store: &Store) -> LeaseRecord {
        serde_json::from_slice(&store.get(LEASE_PATH).await.unwrap().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_live_lease_is_refused_naming_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(60);
        let first = Lease::acquire(store(dir.path()), "run-a", ttl)
            .await
            .unwrap();
        let err = Lease::acquire(store(dir.path()), "run-b", ttl)
            .await
            .err()
            .unwrap();
        match &err {
            LeaseError::Held { holder, .. } => {
                assert_eq!(holder.run_id, "run-a");
                assert_eq!(holder.pid, std::process::id());
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("run-a"), "{err}");
        assert!(!first.is_lost());
    }

    #[tokio::test]
    async fn a_released_or_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = store(dir.path());
        let first = Lease::acquire(Arc::clone(&root), "run-a", Duration::from_secs(60))
            .await
            .unwrap();
        first.release().await.unwrap();
        let released = record(&root).await;
        assert!(released.released && released.expires_at < Utc::now());
        let second = Lease::acquire(Arc::clone(&root), "run-b", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(record(&root).await.run_id, "run-b");
        // run-b dies without releasing: once its lease expires, run-c takes it.
        drop(second);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        Lease::acquire(Arc::clone(&root), "run-c", Duration::from_secs(60))
            .await
            .unwrap();
        let taken = record(&root).await;
        assert_eq!(taken.run_id, "run-c");
        assert!(!taken.released);
    }

    #[tokio::test]
    async fn a_run_whose_lease_was_taken_learns_it_at_its_next_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let root = store(dir.path());
        let first = Lease::acquire(Arc::clone(&root), "run-a", Duration::from_secs(1))
            .await
            .unwrap();
        first.renew().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _second = Lease::acquire(Arc::clone(&root), "run-b", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(first.renew().await, Err(LeaseError::Lost { .. })));
        assert!(first.is_lost());
        // Releasing a lease that is no longer ours leaves the new holder's alone.
        first.release().await.unwrap();
        let now = record(&root).await;
        assert_eq!(now.run_id, "run-b");
        assert!(!now.released);
    }

    #[tokio::test]
    async fn a_lease_file_this_job_did_not_write_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEASE_PATH), b"not a lease").unwrap();
        let err = Lease::acquire(store(dir.path()), "run-a", Duration::from_secs(60))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LeaseError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("_lease.json"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(LEASE_PATH)).unwrap(),
            b"not a lease"
        );
    }
}
