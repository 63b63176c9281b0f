//! A unit test's own directory, removed when the test ends (pass or fail): `cargo test` run by
//! hand left one in /tmp for every blob store test.

use std::path::Path;

pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        TestDir(tempfile::Builder::new().prefix(prefix).tempdir().expect("a temporary directory"))
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}
