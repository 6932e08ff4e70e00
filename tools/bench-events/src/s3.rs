//! An S3-protocol server on loopback for tests and benchmarks: s3s-fs (objects as files under a
//! directory, each subdirectory a bucket) behind one change, conditional writes made atomic.
//!
//! s3s-fs checks `If-None-Match` / `If-Match` and then writes, with nothing between the two:
//! two concurrent creates of one key can both succeed. S3 (since 2024), GCS and Azure evaluate
//! the condition atomically with the write, and the event landing and the lease rely on that.
//! Here a conditional PUT holds a lock of its key (one of 64 stripes, by the key's hash) from
//! check to write, which gives the same outcome as those stores; PUTs of other keys and
//! unconditional requests still run concurrently.

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// s3s-fs with atomic conditional PUTs.
pub struct ConditionalFs {
    inner: s3s_fs::FileSystem,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl ConditionalFs {
    pub fn new(root: impl AsRef<std::path::Path>) -> std::io::Result<ConditionalFs> {
        let inner = s3s_fs::FileSystem::new(root.as_ref())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        Ok(ConditionalFs {
            inner,
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    fn stripe(&self, bucket: &str, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut hasher);
        &self.stripes[(hasher.finish() % self.stripes.len() as u64) as usize]
    }
}

/// The impl of `S3`: `put_object` as below, every other method the object stores call handed
/// to s3s-fs. (A macro of the whole impl: `async_trait` must see the methods expanded.)
macro_rules! conditional_fs_impl {
    ($($name:ident: $input:ty => $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for ConditionalFs {
            async fn put_object(
                &self,
                req: S3Request<PutObjectInput>,
            ) -> S3Result<S3Response<PutObjectOutput>> {
                if req.input.if_none_match.is_some() || req.input.if_match.is_some() {
                    let _one_at_a_time = self.stripe(&req.input.bucket, &req.input.key).lock().await;
                    self.inner.put_object(req).await
                } else {
                    self.inner.put_object(req).await
                }
            }
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.inner.$name(req).await
                }
            )*
        }
    };
}

conditional_fs_impl! {
    create_bucket: CreateBucketInput => CreateBucketOutput;
    copy_object: CopyObjectInput => CopyObjectOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    get_object: GetObjectInput => GetObjectOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    head_object: HeadObjectInput => HeadObjectOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part: UploadPartInput => UploadPartOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    list_parts: ListPartsInput => ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
}

/// Serves `dir` over the S3 protocol on `listener` until the task is dropped, accepting one
/// access key and secret.
pub async fn serve(
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
    access_key: &str,
    secret: &str,
) -> std::io::Result<()> {
    let fs = ConditionalFs::new(dir)?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret));
    let service = builder.build();
    let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let conn = http
            .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
