//! The S3 side of the tests: a SeaweedFS gateway that tests/run.sh starts on loopback (like its
//! PostgreSQL) and names in `WHARF_TEST_S3_*`. With `WHARF_TEST_BLOB_STORE=s3`, every
//! [`super::TestServer`] keeps its `default` blob store in that bucket, under a prefix of its own.

use std::process::Command;

pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The gateway, if the test command started one (required when `WHARF_TEST_REQUIRE_S3` is set).
pub fn env() -> Option<S3Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("WHARF_TEST_S3_ENDPOINT"), var("WHARF_TEST_S3_BUCKET"), var("WHARF_TEST_S3_ACCESS_KEY"), var("WHARF_TEST_S3_SECRET_KEY")) {
        (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) => Some(S3Env { endpoint, bucket, access_key, secret_key }),
        _ => {
            assert!(std::env::var("WHARF_TEST_REQUIRE_S3").is_err(), "WHARF_TEST_REQUIRE_S3 is set but WHARF_TEST_S3_* do not name a gateway");
            None
        }
    }
}

/// Whether the servers of this run keep their blobs in S3.
pub fn servers_on_s3() -> bool {
    std::env::var("WHARF_TEST_BLOB_STORE").as_deref() == Ok("s3")
}

impl S3Env {
    /// A server's settings for its `default` store in this bucket, under `prefix`.
    pub fn server_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("WHARF_S3__ENDPOINT", self.endpoint.as_str()),
            ("WHARF_S3__BUCKET", &self.bucket),
            ("WHARF_S3__PREFIX", prefix),
            ("WHARF_S3__ACCESS_KEY_ID", &self.access_key),
            ("WHARF_S3__SECRET_ACCESS_KEY", &self.secret_key),
            ("WHARF_S3__FORCE_PATH_STYLE", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Writes an object straight into the bucket (PutObject, signed by curl).
    pub fn put(&self, key: &str, body: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), body).expect("write");
        let url = format!("{}/{}/{}", self.endpoint, self.bucket, key);
        let o = Command::new("curl")
            .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            .arg("-T")
            .arg(file.path())
            .arg(&url)
            .output()
            .expect("curl");
        assert!(o.status.success(), "PUT {url}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Deletes an object straight from the bucket (DeleteObject, signed by curl).
    pub fn delete(&self, key: &str) {
        let url = format!("{}/{}/{}", self.endpoint, self.bucket, key);
        let o = Command::new("curl")
            .args(["-sS", "--fail", "-X", "DELETE", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            .arg(&url)
            .output()
            .expect("curl");
        assert!(o.status.success(), "DELETE {url}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// The keys under `prefix`, straight from the bucket (ListObjectsV2, signed by curl).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{}?list-type=2&prefix={}", self.endpoint, self.bucket, urlencode(prefix));
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let o = Command::new("curl")
                .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
                .arg(format!("{}:{}", self.access_key, self.secret_key))
                .arg(&url)
                .output()
                .expect("curl");
            assert!(o.status.success(), "listing {url}: {}", String::from_utf8_lossy(&o.stderr));
            let xml = String::from_utf8_lossy(&o.stdout).to_string();
            out.extend(between_all(&xml, "<Key>", "</Key>"));
            token = between_all(&xml, "<NextContinuationToken>", "</NextContinuationToken>").into_iter().next();
            if token.is_none() {
                return out;
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn between_all(s: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        out.push(after[..j].replace("&amp;", "&"));
        rest = &after[j + close.len()..];
    }
    out
}
