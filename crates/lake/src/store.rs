//! Store: the output root — a local directory or an object store bucket prefix (S3, GCS, Azure) —
//! and the few operations the sink, the lease and the run records need.
//!
//! Invariants:
//! - Every `put` is atomic: a reader sees the old object or the new one, never part of one. On
//!   S3, GCS and Azure a single PUT is; on a local disk the bytes go to a hidden temporary file
//!   (`.name.tmp-…`), are flushed, and are renamed over the name.
//! - `create` succeeds only if nothing is there, and `update` only if the object is still the
//!   version that was read: the lease is built on these two.
//! - Paths are relative to the root, `/`-separated, and never start with `/`.
//! - On a local disk every file comes into its directory by a rename or a link, after its bytes
//!   are written, so a directory modified before a time holds no file modified after it: a
//!   listing of what changed since then skips such a directory's files without looking at each,
//!   on the filesystems whose directory times are known to follow their entries (Linux's ext4,
//!   XFS, Btrfs, tmpfs). Copying files in with their times kept (`cp -a`, `rsync -a`) or
//!   touching one in place is not a write the store sees.
//! - Credentials come from each cloud's standard environment variables (`AWS_*`, `GOOGLE_*`,
//!   `AZURE_*`); `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) points S3 at an S3-compatible store, and
//!   `AWS_ALLOW_HTTP=true` allows a plain-HTTP one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "--out '{url}' is not usable: {detail} (give a directory, file://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix)"
    )]
    BadUrl { url: String, detail: String },
    #[error("cannot {action} {location}")]
    Io {
        action: &'static str,
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Attempts of a create refused for an object that cannot be read yet (20 ms, doubling: ~1.3 s).
const CREATE_ATTEMPTS: u32 = 7;

/// The version of an object as read, for a conditional update.
#[derive(Debug, Clone)]
pub enum Version {
    /// Local files: the bytes themselves (there is no etag on a plain file).
    Local(Vec<u8>),
    Remote(UpdateVersion),
}

/// The output root.
#[derive(Debug, Clone)]
pub enum Store {
    Local(PathBuf),
    Remote {
        inner: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        url: String,
    },
}

impl Store {
    /// Opens `--out`: a path or `file://` URL is a local directory, `s3://`, `gs://` and `az://`
    /// (also `abfs://`, `azure://`) are object stores configured from the environment.
    pub fn open(out: &str) -> Result<Store, StoreError> {
        Store::open_with(out, &[])
    }

    /// [`Store::open`], with configuration keys of the cloud's builder (e.g. `aws_endpoint`,
    /// `aws_access_key_id`) applied over the environment's.
    pub fn open_with(out: &str, options: &[(&str, &str)]) -> Result<Store, StoreError> {
        let bad = |detail: String| StoreError::BadUrl {
            url: out.to_string(),
            detail,
        };
        let Some((scheme, rest)) = out.split_once("://") else {
            return Ok(Store::Local(PathBuf::from(out)));
        };
        if scheme == "file" {
            return Ok(Store::Local(PathBuf::from(rest)));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        let base = format!("{scheme}://{bucket}");
        let inner: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(&base);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| bad(format!("{e}")))?, *v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            "gs" => {
                let mut b =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(&base);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| bad(format!("{e}")))?, *v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            "az" | "abfs" | "abfss" | "azure" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(&base);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| bad(format!("{e}")))?, *v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            other => return Err(bad(format!("unknown scheme '{other}'"))),
        };
        Ok(Store::Remote {
            inner,
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            url: out.trim_end_matches('/').to_string(),
        })
    }

    /// Where `rel` is, for messages: its path or URL, as an operator (or `--instances`) names it.
    pub fn describe(&self, rel: &str) -> String {
        match self {
            Store::Local(root) => root.join(rel).display().to_string(),
            Store::Remote { url, .. } if rel.is_empty() => url.clone(),
            Store::Remote { url, .. } => format!("{url}/{rel}"),
        }
    }

    /// Makes sure the root exists and can be written (local) or reached (remote).
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Local(root) => {
                std::fs::create_dir_all(root).map_err(|e| self.io("create", "", e))
            }
            // One level, not the whole tree: a root holding years of events answers as fast
            // as an empty one.
            Store::Remote { inner, prefix, .. } => inner
                .list_with_delimiter(Some(prefix))
                .await
                .map(|_| ())
                .map_err(|e| self.io("list", "", e)),
        }
    }

    fn io(
        &self,
        action: &'static str,
        rel: &str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Io {
            action,
            location: self.describe(rel),
            source: e.into(),
        }
    }

    fn object_path(prefix: &ObjectPath, rel: &str) -> ObjectPath {
        let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        ObjectPath::from_iter(parts)
    }

    /// Every file under `dir` (recursively), as paths relative to the root, sorted.
    /// Names starting with `.` (temporary files) are left out.
    pub async fn list_files(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_files_modified(dir)
            .await?
            .into_iter()
            .map(|(rel, _)| rel)
            .collect())
    }

    /// [`Store::list_files`] with each file's last modification (an object's `Last-Modified`):
    /// what the listing itself tells, no read per file on an object store.
    pub async fn list_files_modified(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.list_files_modified_since(dir, None).await
    }

    /// [`Store::list_files_modified`], only the files modified at or after `since` (the others
    /// are never held in memory: a listing of millions of old objects stays small).
    pub async fn list_files_modified_since(
        &self,
        dir: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.list_files_modified_since_keeping(dir, since, Arc::new(|_: &str| true))
            .await
    }

    /// [`Store::list_files_modified_since`], only the files whose path (from the root) `keep`
    /// accepts. On a local disk `keep` is asked before a file's time is looked up, so a file it
    /// refuses costs no `stat`: a listing of millions of which few are wanted looks at the few.
    pub async fn list_files_modified_since_keeping(
        &self,
        dir: &str,
        since: Option<DateTime<Utc>>,
        keep: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let mut files = match self {
            Store::Local(root) => {
                let base = root.join(dir);
                let root = root.clone();
                let dir_owned = dir.to_string();
                tokio::task::spawn_blocking(move || walk(&root, &base, since, &*keep))
                    .await
                    .expect("a directory walk never panics")
                    .map_err(|e| self.io("list", &dir_owned, e))?
            }
            Store::Remote { inner, prefix, .. } => {
                let at = Self::object_path(prefix, dir);
                let listed: Vec<_> = inner
                    .list(Some(&at))
                    .try_filter(|m| {
                        std::future::ready(since.is_none_or(|since| m.last_modified >= since))
                    })
                    .try_collect()
                    .await
                    .map_err(|e| self.io("list", dir, e))?;
                let skip = prefix.parts().count();
                listed
                    .into_iter()
                    .map(|m| {
                        let rel = m
                            .location
                            .parts()
                            .skip(skip)
                            .map(|p| p.as_ref().to_string())
                            .collect::<Vec<_>>()
                            .join("/");
                        (rel, m.last_modified)
                    })
                    .filter(|(rel, _)| keep(rel))
                    .collect()
            }
        };
        files.retain(|(f, _)| !f.rsplit('/').next().unwrap_or("").starts_with('.'));
        files.sort();
        Ok(files)
    }

    /// The bytes of `rel`, or `None` if there is no such object.
    pub async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            // Not through get_versioned: a local version is a copy of the bytes, needless here.
            Store::Local(root) => match std::fs::read(root.join(rel)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io("read", rel, e)),
            },
            Store::Remote { .. } => Ok(self.get_versioned(rel).await?.map(|(bytes, _)| bytes)),
        }
    }

    /// The bytes of `rel` and their version, or `None` if there is no such object.
    pub async fn get_versioned(&self, rel: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        match self {
            Store::Local(root) => match std::fs::read(root.join(rel)) {
                Ok(bytes) => Ok(Some((bytes.clone(), Version::Local(bytes)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io("read", rel, e)),
            },
            Store::Remote { inner, prefix, .. } => {
                match inner.get(&Self::object_path(prefix, rel)).await {
                    Ok(got) => {
                        let version = UpdateVersion {
                            e_tag: got.meta.e_tag.clone(),
                            version: got.meta.version.clone(),
                        };
                        let bytes = got.bytes().await.map_err(|e| self.io("read", rel, e))?;
                        Ok(Some((bytes.to_vec(), Version::Remote(version))))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.io("read", rel, e)),
                }
            }
        }
    }

    /// Writes `rel` atomically, replacing what was there.
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::Local(root) => {
                let path = root.join(rel);
                tokio::task::spawn_blocking(move || write_atomically(&path, &bytes, false))
                    .await
                    .expect("a write never panics")
                    .map(|_| ())
                    .map_err(|e| self.io("write", rel, e))
            }
            Store::Remote { inner, prefix, .. } => inner
                .put(&Self::object_path(prefix, rel), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.io("write", rel, e)),
        }
    }

    /// Writes `rel` only if nothing is there; `false` if something is.
    pub async fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        match self {
            Store::Local(root) => {
                let path = root.join(rel);
                tokio::task::spawn_blocking(move || write_atomically(&path, &bytes, true))
                    .await
                    .expect("a write never panics")
                    .map_err(|e| self.io("create", rel, e))
            }
            Store::Remote { inner, prefix, .. } => {
                let path = Self::object_path(prefix, rel);
                // A refused create means "something is there" only once the object can be
                // read: S3 also refuses (409 ConditionalRequestConflict, which object_store
                // reports as AlreadyExists) while another write of the key is in flight, and
                // that write may still fail. So check, and try again while it is not there.
                let mut wait = std::time::Duration::from_millis(20);
                for _ in 0..CREATE_ATTEMPTS {
                    if self
                        .put_if(inner, &path, rel, bytes.clone(), PutMode::Create, "create")
                        .await?
                    {
                        return Ok(true);
                    }
                    match inner.head(&path).await {
                        Ok(_) => return Ok(false),
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.io("create", rel, e)),
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(self.io(
                    "create",
                    rel,
                    format!(
                        "the store refused {CREATE_ATTEMPTS} creates of an object it does not hold (conflicting writes in flight)"
                    ),
                ))
            }
        }
    }

    /// Replaces `rel` only if it is still at `version`; `false` if it changed meanwhile.
    pub async fn update(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        version: &Version,
    ) -> Result<bool, StoreError> {
        match (self, version) {
            (Store::Local(_), Version::Local(seen)) => {
                // No compare-and-swap on plain files: compare, then rename. The window between
                // the two is microseconds, and local roots are one machine's.
                if self.get(rel).await?.as_deref() != Some(seen.as_slice()) {
                    return Ok(false);
                }
                self.put(rel, bytes).await.map(|()| true)
            }
            (Store::Remote { inner, prefix, .. }, Version::Remote(v)) => {
                let path = Self::object_path(prefix, rel);
                let mode = PutMode::Update(v.clone());
                self.put_if(inner, &path, rel, bytes, mode, "update").await
            }
            _ => Ok(false),
        }
    }

    /// A conditional put on an object store: `false` when its condition does not hold.
    async fn put_if(
        &self,
        inner: &Arc<dyn ObjectStore>,
        path: &ObjectPath,
        rel: &str,
        bytes: Vec<u8>,
        mode: PutMode,
        verb: &'static str,
    ) -> Result<bool, StoreError> {
        match inner
            .put_opts(path, PutPayload::from(bytes), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.io(verb, rel, e)),
        }
    }

    /// Deletes `rel`; nothing there is fine. Local directories left empty are removed.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self {
            Store::Local(root) => {
                let path = root.join(rel);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        if let Some(parent) = path.parent()
                            && parent != root
                        {
                            // Only succeeds when empty; another tool's file stays.
                            let _ = std::fs::remove_dir(parent);
                        }
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io("delete", rel, e)),
                }
            }
            Store::Remote { inner, prefix, .. } => {
                match inner.delete(&Self::object_path(prefix, rel)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.io("delete", rel, e)),
                }
            }
        }
    }
}

/// Files under `base`, relative to `root`; temporary files older than a day (left by a run that
/// died before its rename) are removed on the way, in the directories looked into. With
/// `since`, the files of a directory not modified since then are passed over unlooked-at (see
/// the module's invariants): a listing of what is new among millions of old files reads their
/// directories, not each file's metadata.
fn walk(
    root: &Path,
    base: &Path,
    since: Option<DateTime<Utc>>,
    keep: &dyn Fn(&str) -> bool,
) -> std::io::Result<Vec<(String, DateTime<Utc>)>> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // The directory's path from the root, '/'-separated; its files' paths extend it.
        let Ok(rel_dir) = dir.strip_prefix(root) else {
            continue;
        };
        let rel_dir: Vec<String> = rel_dir
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel_dir = rel_dir.join("/");
        let unchanged = match (since, std::fs::metadata(&dir)) {
            (Some(since), Ok(meta)) if directory_times_hold(&dir) => {
                let unchanged = DateTime::<Utc>::from(meta.modified()?) < since;
                if unchanged && without_subdirectories(&meta) {
                    continue;
                }
                unchanged
            }
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            (_, Err(e)) => return Err(e),
            (_, Ok(_)) => false,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
                continue;
            }
            // Its files are older than `since`; its subdirectories are looked at on their own.
            if unchanged {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") && is_stale(&entry) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            if !keep(&rel) {
                continue;
            }
            let modified = match entry.metadata() {
                Ok(meta) => DateTime::<Utc>::from(meta.modified()?),
                // Removed between the listing and the look: not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if since.is_some_and(|since| modified < since) {
                continue;
            }
            out.push((rel, modified));
        }
    }
    Ok(out)
}

/// Whether the filesystem holding `dir` is one whose directory times follow the entries made in
/// them (ext2/3/4, XFS, Btrfs, tmpfs): not a FUSE mount of an object store, a network share or
/// an overlay, whose directory times may not.
#[cfg(target_os = "linux")]
fn directory_times_hold(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TRUSTED: [i64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994];
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a buffer of the size statfs writes.
    if unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs returned 0, so it filled `stat`. `f_type`'s width differs between libcs.
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { stat.assume_init() }.f_type as i64;
    TRUSTED.contains(&kind)
}

#[cfg(not(target_os = "linux"))]
fn directory_times_hold(_: &Path) -> bool {
    false
}

/// Whether a directory is known to hold no directory: its link count is 2 and its
/// subdirectories where the filesystem counts them (ext4, XFS, tmpfs), 1 where it does not.
#[cfg(unix)]
fn without_subdirectories(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::MetadataExt::nlink(meta) == 2
}

#[cfg(not(unix))]
fn without_subdirectories(_: &std::fs::Metadata) -> bool {
    false
}

/// Temporary files older than a day belong to no live run.
fn is_stale(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

/// Writes `path` through a hidden temporary file in the same directory. With `exclusive`, the
/// file is linked into place only if nothing is there (`Ok(false)` otherwise).
fn write_atomically(path: &Path, bytes: &[u8], exclusive: bool) -> std::io::Result<bool> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs_durably(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    let placed = if exclusive {
        // A hard link fails if the name exists: an atomic create with the whole content.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        }
    } else {
        std::fs::rename(&tmp, path)?;
        true
    };
    // The name is durable only once its directory is: an error here is the write's error.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(placed)
}

/// `create_dir_all`, with each directory it creates made durable in its parent (fsync of the
/// parent), so that a file written below survives a crash with its path.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer made it meanwhile; its parent is synced below all the same, since that
        // writer may not have got there yet.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    /// An object store that answers the first `n` creates of every key "already exists"
    /// without storing anything, as S3 answers 409 while another write of the key is in flight.
    #[derive(Debug)]
    struct Conflicting {
        inner: InMemory,
        refusals: std::sync::Mutex<std::collections::HashMap<String, u32>>,
        n: u32,
    }

    impl std::fmt::Display for Conflicting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Conflicting")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Conflicting {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            if matches!(opts.mode, PutMode::Create) {
                let mut refusals = self.refusals.lock().unwrap();
                let seen = refusals.entry(location.to_string()).or_default();
                if *seen < self.n {
                    *seen += 1;
                    return Err(object_store::Error::AlreadyExists {
                        path: location.to_string(),
                        source: "409 ConditionalRequestConflict".into(),
                    });
                }
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn conflicting(n: u32) -> Store {
        Store::Remote {
            inner: Arc::new(Conflicting {
                inner: InMemory::new(),
                refusals: Default::default(),
                n,
            }),
            prefix: ObjectPath::from("root"),
            url: "memory://root".into(),
        }
    }

    #[tokio::test]
    async fn a_create_refused_for_an_object_that_is_not_there_is_tried_again() {
        // Two refusals, then the create goes through: it created the object.
        let store = conflicting(2);
        assert!(
            store
                .create("_events/inbox/ab/e1.json", b"{}".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .get("_events/inbox/ab/e1.json")
                .await
                .unwrap()
                .unwrap(),
            b"{}"
        );
        // Now it is there: a create is refused, and that is a true "already there".
        assert!(
            !store
                .create("_events/inbox/ab/e1.json", b"[]".to_vec())
                .await
                .unwrap()
        );
        // Refused every time and never there: an error, never a false "already there".
        let store = conflicting(u32::MAX);
        let err = store.create("k.json", b"{}".to_vec()).await.unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
    }

    use super::*;

    /// A local root and an object store root (in memory, through the same `ObjectStore` calls
    /// as S3, GCS and Azure), each under a prefix.
    fn roots(dir: &Path) -> [Store; 2] {
        [
            Store::Local(dir.join("root")),
            Store::Remote {
                inner: Arc::new(InMemory::new()),
                prefix: ObjectPath::from("lake/attendance"),
                url: "memory://lake/attendance".into(),
            },
        ]
    }

    #[tokio::test]
    async fn put_get_list_and_delete_behave_alike_on_every_root() {
        let dir = tempfile::tempdir().unwrap();
        for store in roots(dir.path()) {
            store.check().await.unwrap();
            assert_eq!(
                store
                    .get("outs/date=2026-09-01/part-00000.parquet")
                    .await
                    .unwrap(),
                None
            );
            store
                .put("outs/date=2026-09-01/part-00000.parquet", b"one".to_vec())
                .await
                .unwrap();
            store
                .put("outs/date=2026-09-01/part-00000.parquet", b"two".to_vec())
                .await
                .unwrap();
            store.put("_runs/r.json", b"{}".to_vec()).await.unwrap();
            let got = store
                .get("outs/date=2026-09-01/part-00000.parquet")
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(&b"two"[..]), "{store:?}");
            assert_eq!(
                store.list_files("").await.unwrap(),
                ["_runs/r.json", "outs/date=2026-09-01/part-00000.parquet"]
            );
            assert_eq!(store.list_files("outs").await.unwrap().len(), 1);
            assert!(store.list_files("leaves").await.unwrap().is_empty());
            store
                .delete("outs/date=2026-09-01/part-00000.parquet")
                .await
                .unwrap();
            store
                .delete("outs/date=2026-09-01/part-00000.parquet")
                .await
                .unwrap();
            assert_eq!(store.list_files("").await.unwrap(), ["_runs/r.json"]);
        }
        // A local partition directory left empty goes with its last file.
        assert!(!dir.path().join("root/outs/date=2026-09-01").exists());
        assert!(dir.path().join("root").exists());
    }

    #[tokio::test]
    async fn create_and_update_hold_only_while_their_condition_does() {
        let dir = tempfile::tempdir().unwrap();
        for store in roots(dir.path()) {
            assert!(store.create("_lease.json", b"a".to_vec()).await.unwrap());
            assert!(
                !store.create("_lease.json", b"b".to_vec()).await.unwrap(),
                "{store:?}"
            );
            let (bytes, seen) = store.get_versioned("_lease.json").await.unwrap().unwrap();
            assert_eq!(bytes, b"a");
            assert!(
                store
                    .update("_lease.json", b"c".to_vec(), &seen)
                    .await
                    .unwrap()
            );
            // The version read before the update is stale now.
            assert!(
                !store
                    .update("_lease.json", b"d".to_vec(), &seen)
                    .await
                    .unwrap(),
                "{store:?}"
            );
            assert_eq!(
                store.get("_lease.json").await.unwrap().as_deref(),
                Some(&b"c"[..])
            );
        }
    }

    #[tokio::test]
    async fn local_files_are_written_whole_and_hidden_temporaries_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        store.put("outs/a.parquet", vec![7; 1 << 20]).await.unwrap();
        std::fs::write(
            dir.path().join("outs/.a.parquet.tmp-0123456789abcdef"),
            b"half",
        )
        .unwrap();
        assert_eq!(store.list_files("").await.unwrap(), ["outs/a.parquet"]);
        assert_eq!(
            std::fs::read(dir.path().join("outs/a.parquet"))
                .unwrap()
                .len(),
            1 << 20
        );
    }

    #[tokio::test]
    async fn a_local_listing_since_a_time_passes_over_directories_unchanged_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let now = std::time::SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        let set = |rel: &str, at: std::time::SystemTime| {
            std::fs::File::open(dir.path().join(rel))
                .unwrap()
                .set_modified(at)
                .unwrap()
        };
        for rel in [
            "box/aa/old.json",
            "box/aa/sub/new.json",
            "box/bb/new.json",
            "box/cc/old.json",
        ] {
            store.put(rel, b"{}".to_vec()).await.unwrap();
        }
        // `aa` (which holds a directory) and `cc` (which holds none) took their last file two
        // hours ago; `aa`'s subdirectory and `bb` took theirs now.
        for old in ["box/aa/old.json", "box/aa", "box/cc/old.json", "box/cc"] {
            set(old, now - 2 * hour);
        }
        let since = DateTime::<Utc>::from(now - hour);
        // Where directory times are not trusted (a filesystem not known to keep them), every
        // file is looked at, as without `since`.
        let trusted = directory_times_hold(&dir.path().join("box"));
        let listed = |since| {
            let store = &store;
            async move {
                let mut files: Vec<String> = store
                    .list_files_modified_since("box", since)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(rel, _)| rel)
                    .collect();
                files.sort();
                files
            }
        };
        assert_eq!(
            listed(Some(since)).await,
            ["box/aa/sub/new.json", "box/bb/new.json"]
        );
        // A file's time alone does not bring it back where directory times are trusted: the
        // directory vouches for its files, as every file comes into it by a rename or a link (a
        // file touched in place is not one the store wrote).
        set("box/aa/old.json", now);
        set("box/aa", now - 2 * hour);
        let touched: &[&str] = if trusted {
            &["box/aa/sub/new.json", "box/bb/new.json"]
        } else {
            &["box/aa/old.json", "box/aa/sub/new.json", "box/bb/new.json"]
        };
        assert_eq!(listed(Some(since)).await, touched);
        // A file put into it since is listed, as is everything without a time.
        store
            .put("box/aa/later.json", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(
            listed(Some(since)).await,
            [
                "box/aa/later.json",
                "box/aa/old.json",
                "box/aa/sub/new.json",
                "box/bb/new.json"
            ]
        );
        assert_eq!(listed(None).await.len(), 5);
    }

    #[test]
    fn an_output_url_is_read_by_its_scheme_and_a_bad_one_is_named() {
        assert!(
            matches!(Store::open("./warehouse").unwrap(), Store::Local(p) if p == Path::new("./warehouse"))
        );
        assert!(
            matches!(Store::open("file:///data/w").unwrap(), Store::Local(p) if p == Path::new("/data/w"))
        );
        for bad in ["ftp://host/x", "s3:///prefix"] {
            let err = Store::open(bad).unwrap_err();
            assert!(matches!(err, StoreError::BadUrl { .. }), "{bad}");
            let message = err.to_string();
            assert!(
                message.contains(bad) && message.contains("s3://bucket/prefix"),
                "{message}"
            );
        }
        let store = Store::open_with(
            "s3://lake/attendance/",
            &[
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "k"),
                ("aws_secret_access_key", "s"),
            ],
        )
        .unwrap();
        assert_eq!(store.describe("outs"), "s3://lake/attendance/outs");
    }
}
