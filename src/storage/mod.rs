//! Blob store settings beyond a directory: S3 buckets.

pub mod s3;
