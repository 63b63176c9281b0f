//! An S3 blob store's settings in Nexus's shape (`bucketConfiguration`), as the REST API takes
//! and shows them and as `blob_stores.attributes` keeps them (secrets sealed).

use serde_json::{json, Map, Value};
use wharf_format::{ConfigError, S3Encryption, S3Settings};

use crate::db::repos::BlobStoreRow;
use crate::lifecycle::soft_quota::SoftQuota;
use crate::security::secrets;

/// What GET shows instead of a stored secret; sent back on PUT, it keeps the secret.
pub const PLACEHOLDER: &str = "#~NXRM~PLACEHOLDER~PASSWORD~#";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Store {
    pub name: String,
    pub settings: S3Settings,
    /// Blob downloads answer with a redirect to a presigned URL of the object.
    pub presigned_urls: bool,
    pub soft_quota: Option<SoftQuota>,
}

fn location(name: &str) -> String {
    format!("blobstore:{name}")
}

fn obj<'a>(v: &'a Value, field: &str) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        _ => Err(ConfigError::not_object(field)),
    }
}

fn string(v: &Value, field: &str) -> Result<String, ConfigError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(ConfigError::not_string(field)),
    }
}

/// A secret as sent: the placeholder stands for the stored one.
fn keep(sent: String, old: Option<&str>) -> String {
    if sent == PLACEHOLDER {
        old.unwrap_or_default().to_string()
    } else {
        sent
    }
}

impl S3Store {
    /// A create (`name` in the body) or update (`name` from the path; a body's must agree)
    /// body. `old` is the stored store on update: a secret sent as the placeholder keeps it.
    pub fn parse(body: &Value, path_name: Option<&str>, old: Option<&S3Store>) -> Result<S3Store, ConfigError> {
        let top = obj(body, "body")?.ok_or_else(|| ConfigError::not_object("body"))?;
        let mut name = path_name.map(str::to_string);
        let mut soft_quota = None;
        let mut config = None;
        for (k, v) in top {
            match k.as_str() {
                "name" => {
                    let n = string(v, "name")?;
                    if path_name.is_some_and(|p| p != n) {
                        return Err(ConfigError::new("name", "must be the name in the path (a blob store cannot be renamed)"));
                    }
                    name = Some(n);
                }
                "softQuota" => soft_quota = SoftQuota::parse(v)?,
                "bucketConfiguration" => config = obj(v, "bucketConfiguration")?,
                // Read-only in Nexus's answers; harmless when a script sends a GET back.
                "type" | "blobCount" | "totalSizeInBytes" | "availableSpaceInBytes" | "unavailable" => {}
                _ => return Err(ConfigError::unknown_field(k.clone())),
            }
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| ConfigError::required("name"))?;
        let config = config.ok_or_else(|| ConfigError::required("bucketConfiguration"))?;
        let mut s = S3Settings::default();
        let mut presigned_urls = false;
        for (k, v) in config {
            let at = format!("bucketConfiguration.{k}");
            match k.as_str() {
                "bucket" => {
                    for (k2, v2) in obj(v, &at)?.into_iter().flatten() {
                        let f = format!("{at}.{k2}");
                        match k2.as_str() {
                            "name" => s.bucket = string(v2, &f)?,
                            "region" => s.region = string(v2, &f)?,
                            "prefix" => s.prefix = string(v2, &f)?,
                            // Nexus expires soft-deleted blobs after N days; wharf deletes what
                            // garbage collection frees (after gc.grace_secs), so only "never" fits.
                            "expiration" => {
                                if !(v2.is_null() || v2.as_i64() == Some(-1)) {
                                    return Err(ConfigError::new(
                                        f,
                                        "is not supported: wharf frees blobs by garbage collection (gc.grace_secs); send -1 or leave it out",
                                    ));
                                }
                            }
                            _ => return Err(ConfigError::unknown_field(f)),
                        }
                    }
                }
                "bucketSecurity" => {
                    for (k2, v2) in obj(v, &at)?.into_iter().flatten() {
                        let f = format!("{at}.{k2}");
                        match k2.as_str() {
                            "accessKeyId" => s.access_key_id = string(v2, &f)?,
                            "secretAccessKey" => s.secret_access_key = keep(string(v2, &f)?, old.map(|o| o.settings.secret_access_key.as_str())),
                            "sessionToken" => s.session_token = keep(string(v2, &f)?, old.map(|o| o.settings.session_token.as_str())),
                            "role" => {
                                if !string(v2, &f)?.is_empty() {
                                    return Err(ConfigError::new(f, "is not supported: give keys, or run wharf with the role (instance profile, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)"));
                                }
                            }
                            _ => return Err(ConfigError::unknown_field(f)),
                        }
                    }
                }
                "encryption" => {
                    let (mut kind, mut key) = (String::new(), String::new());
                    for (k2, v2) in obj(v, &at)?.into_iter().flatten() {
                        let f = format!("{at}.{k2}");
                        match k2.as_str() {
                            "encryptionType" => kind = string(v2, &f)?,
                            "encryptionKey" => key = string(v2, &f)?,
                            _ => return Err(ConfigError::unknown_field(f)),
                        }
                    }
                    s.encryption = match kind.as_str() {
                        "" | "none" if key.is_empty() => S3Encryption::BucketDefault,
                        "s3ManagedEncryption" if key.is_empty() => S3Encryption::S3Managed,
                        "kmsManagedEncryption" => S3Encryption::Kms { key_id: key },
                        "s3ManagedEncryption" | "" | "none" => return Err(ConfigError::new(format!("{at}.encryptionKey"), "is only for kmsManagedEncryption")),
                        _ => return Err(ConfigError::new(format!("{at}.encryptionType"), "must be s3ManagedEncryption or kmsManagedEncryption")),
                    };
                }
                "advancedBucketConnection" => {
                    for (k2, v2) in obj(v, &at)?.into_iter().flatten() {
                        let f = format!("{at}.{k2}");
                        match k2.as_str() {
                            "endpoint" => s.endpoint = string(v2, &f)?,
                            "forcePathStyle" => s.force_path_style = v2.as_bool().ok_or_else(|| ConfigError::not_boolean(f))?,
                            "maxConnectionPoolSize" => {
                                s.max_connection_pool_size = match v2 {
                                    Value::Null => 0,
                                    v => v
                                        .as_u64()
                                        .filter(|n| (1..=10_000).contains(n))
                                        .ok_or_else(|| ConfigError::new(f, "must be a whole number from 1 to 10000"))?
                                        as usize,
                                }
                            }
                            // Signature V4 is what every S3-compatible service takes.
                            "signerType" => {
                                if !matches!(string(v2, &f)?.as_str(), "" | "DEFAULT" | "AWSS3V4SignerType") {
                                    return Err(ConfigError::new(f, "only signature V4 is supported (DEFAULT or AWSS3V4SignerType)"));
                                }
                            }
                            _ => return Err(ConfigError::unknown_field(f)),
                        }
                    }
                }
                "preSignedUrlEnabled" => presigned_urls = v.as_bool().ok_or_else(|| ConfigError::not_boolean(at))?,
                // Nexus Pro's replication settings: wharf has no failover bucket.
                "failoverBuckets" | "activeRegion" => {
                    if !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)) {
                        return Err(ConfigError::new(at, "is not supported"));
                    }
                }
                _ => return Err(ConfigError::unknown_field(at)),
            }
        }
        if s.bucket.is_empty() {
            return Err(ConfigError::required("bucketConfiguration.bucket.name"));
        }
        if s.access_key_id.is_empty() != s.secret_access_key.is_empty() {
            return Err(ConfigError::new(
                "bucketConfiguration.bucketSecurity",
                "give both accessKeyId and secretAccessKey, or neither (credentials from the environment)",
            ));
        }
        if !s.endpoint.is_empty() {
            let ok = url::Url::parse(&s.endpoint).ok().is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError::new("bucketConfiguration.advancedBucketConnection.endpoint", "must be an http:// or https:// URL"));
            }
        }
        if s.prefix.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(ConfigError::new("bucketConfiguration.bucket.prefix", "may not contain '.' or '..' segments"));
        }
        Ok(S3Store { name, settings: s, presigned_urls, soft_quota })
    }

    /// The stored form: the API's shape, with the secrets sealed.
    pub fn attributes(&self) -> Result<String, secrets::SecretError> {
        let mut v = self.to_json(false);
        let security = &mut v["bucketConfiguration"]["bucketSecurity"];
        if !self.settings.secret_access_key.is_empty() {
            security["secretAccessKey"] = json!(secrets::seal(&self.settings.secret_access_key, &location(&self.name))?);
        }
        if !self.settings.session_token.is_empty() {
            security["sessionToken"] = json!(secrets::seal(&self.settings.session_token, &location(&self.name))?);
        }
        Ok(v.to_string())
    }

    pub fn from_row(row: &BlobStoreRow) -> Result<S3Store, String> {
        let mut v: Value = serde_json::from_str(&row.attributes).map_err(|e| format!("stored settings do not parse: {e}"))?;
        let mut secret = |field: &str| -> Result<(), String> {
            let slot = &mut v["bucketConfiguration"]["bucketSecurity"][field];
            if let Some(stored) = slot.as_str().filter(|s| !s.is_empty()) {
                *slot = json!(secrets::open(stored, &location(&row.name)).map_err(|e| format!("{field}: {e}"))?);
            }
            Ok(())
        };
        secret("secretAccessKey")?;
        secret("sessionToken")?;
        if let Some(sec) = v["bucketConfiguration"].get_mut("bucketSecurity") {
            if sec.as_object().is_some_and(Map::is_empty) {
                *sec = Value::Null;
            }
        }
        v["name"] = json!(row.name);
        S3Store::parse(&v, Some(&row.name), None).map_err(|e| e.to_string())
    }

    /// A setting the API refuses (a store saved with it before still loads): a bucket has no
    /// free space to fall below, so `spaceRemainingQuota` could never warn.
    pub fn check_soft_quota(&self) -> Result<(), ConfigError> {
        if self.soft_quota.is_some_and(|q| q.kind == crate::lifecycle::soft_quota::SoftQuotaKind::SpaceRemaining) {
            return Err(ConfigError::new("softQuota.type", "spaceRemainingQuota needs free space to measure, which a bucket has not: use spaceUsedQuota"));
        }
        Ok(())
    }

    /// Nexus's model; with `redact`, secrets are the placeholder.
    pub fn to_json(&self, redact: bool) -> Value {
        let s = &self.settings;
        let secret = |v: &str| if redact && !v.is_empty() { PLACEHOLDER.to_string() } else { v.to_string() };
        let mut config = json!({
            "bucket": { "name": s.bucket, "region": s.region, "prefix": s.prefix, "expiration": -1 },
            "preSignedUrlEnabled": self.presigned_urls,
        });
        if !s.access_key_id.is_empty() || !s.session_token.is_empty() {
            config["bucketSecurity"] =
                json!({ "accessKeyId": s.access_key_id, "secretAccessKey": secret(&s.secret_access_key), "sessionToken": secret(&s.session_token) });
        }
        match &s.encryption {
            S3Encryption::BucketDefault => {}
            S3Encryption::S3Managed => config["encryption"] = json!({ "encryptionType": "s3ManagedEncryption" }),
            S3Encryption::Kms { key_id } => config["encryption"] = json!({ "encryptionType": "kmsManagedEncryption", "encryptionKey": key_id }),
        }
        if !s.endpoint.is_empty() || s.force_path_style || s.max_connection_pool_size > 0 {
            let mut adv = json!({ "endpoint": s.endpoint, "forcePathStyle": s.force_path_style });
            if s.max_connection_pool_size > 0 {
                adv["maxConnectionPoolSize"] = json!(s.max_connection_pool_size);
            }
            config["advancedBucketConnection"] = adv;
        }
        let mut v = json!({ "name": self.name, "type": "S3", "bucketConfiguration": config });
        if let Some(q) = &self.soft_quota {
            v["softQuota"] = q.to_json();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unsupported_settings_are_refused_by_name() {
        let base = json!({"name": "s", "bucketConfiguration": {"bucket": {"name": "b", "region": "us-east-1"}}});
        assert!(S3Store::parse(&base, None, None).is_ok());
        for (patch, field) in [
            (json!({"bucket": {"name": "b", "expiration": 3}}), "bucketConfiguration.bucket.expiration"),
            (json!({"bucket": {"name": "b"}, "bucketSecurity": {"role": "arn:aws:iam::1:role/x"}}), "bucketConfiguration.bucketSecurity.role"),
            (
                json!({"bucket": {"name": "b"}, "advancedBucketConnection": {"signerType": "S3SignerType"}}),
                "bucketConfiguration.advancedBucketConnection.signerType",
            ),
            (json!({"bucket": {"name": "b"}, "advancedBucketConnection": {"endpoint": "ftp://x"}}), "bucketConfiguration.advancedBucketConnection.endpoint"),
            (json!({"bucket": {"name": "b"}, "bucketSecurity": {"accessKeyId": "k"}}), "bucketConfiguration.bucketSecurity"),
            (json!({"bucket": {"name": "b"}, "colour": "blue"}), "bucketConfiguration.colour"),
            (json!({"bucket": {"region": "x"}}), "bucketConfiguration.bucket.name"),
        ] {
            let body = json!({"name": "s", "bucketConfiguration": patch});
            let err = S3Store::parse(&body, None, None).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn a_placeholder_keeps_the_stored_secret() {
        let old = S3Store::parse(
            &json!({"name": "s", "bucketConfiguration": {"bucket": {"name": "b"}, "bucketSecurity": {"accessKeyId": "k", "secretAccessKey": "real"}}}),
            None,
            None,
        )
        .unwrap();
        let shown = old.to_json(true);
        assert_eq!(shown["bucketConfiguration"]["bucketSecurity"]["secretAccessKey"], PLACEHOLDER);
        let again = S3Store::parse(&shown, Some("s"), Some(&old)).unwrap();
        assert_eq!(again.settings.secret_access_key, "real");
        assert_eq!(again, old);
    }
}
