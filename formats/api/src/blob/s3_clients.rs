//! An S3 store's clients, one per [`ThreadClass`]: a request never reuses a pooled connection
//! that a storage-lifecycle thread opened, and so never waits for that thread to run (why:
//! `crate::thread_class`). The lifecycle's clients are built on first use; every call goes to
//! the client of the calling thread's class.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};

use super::s3::S3Settings;
use super::BlobError;
use crate::thread_class::ThreadClass;

pub(super) struct S3Clients {
    settings: S3Settings,
    normal: Arc<AmazonS3>,
    nice: OnceLock<Arc<AmazonS3>>,
    idle: OnceLock<Arc<AmazonS3>>,
}

impl S3Clients {
    pub(super) fn new(settings: &S3Settings) -> Result<S3Clients, BlobError> {
        Ok(S3Clients { settings: settings.clone(), normal: Arc::new(settings.client()?), nice: OnceLock::new(), idle: OnceLock::new() })
    }

    /// The client for the calling thread.
    pub(super) fn here(&self) -> &AmazonS3 {
        match ThreadClass::current() {
            ThreadClass::Normal => &self.normal,
            ThreadClass::Nice => self.lazily(&self.nice),
            ThreadClass::Idle => self.lazily(&self.idle),
        }
    }

    fn lazily<'a>(&'a self, cell: &'a OnceLock<Arc<AmazonS3>>) -> &'a AmazonS3 {
        cell.get_or_init(|| match self.settings.client() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // The same settings built the normal client, so this does not happen; if it did,
                // sharing the requests' pool is the lesser harm.
                tracing::warn!(store = %self.settings.location(), error = %e, "cannot build the lifecycle's own S3 client; sharing the requests' connections");
                self.normal.clone()
            }
        })
    }

    /// The client that signs URLs (signing makes no connection).
    pub(super) fn signer(&self) -> &AmazonS3 {
        &self.normal
    }
}

impl fmt::Debug for S3Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Clients").field("normal", &self.normal).finish_non_exhaustive()
    }
}

impl fmt::Display for S3Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.normal, f)
    }
}

#[async_trait]
impl ObjectStore for S3Clients {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.here().put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.here().put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.here().get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.here().get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.here().delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.here().list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.here().list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.here().list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.here().copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.here().rename_opts(from, to, options).await
    }
}
