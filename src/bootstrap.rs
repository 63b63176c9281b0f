//! What the first start on an empty database creates: the `admin` user (no default password
//! exists: it comes from the configuration or is random and written to the data dir), the
//! `default` file blob store, and `docker-hosted`, `pypi-hosted` and `npm-hosted` repositories,
//! so a newcomer can push, upload and publish at once.

use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use crate::db::{repos, settings, users, Db, DbError};
use crate::security::password;

const DONE_KEY: &str = "bootstrap.done";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("writing the admin password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
}

pub fn first_start(db: &Db, data_dir: &Path, admin_password: &str) -> Result<(), BootstrapError> {
    if db.run_sync(|c| settings::get(c, DONE_KEY))?.is_some() {
        return Ok(());
    }
    if db.run_sync(users::count)? == 0 {
        let password = if admin_password.is_empty() {
            let p = password::random();
            let path = data_dir.join("admin.password");
            write_secret(&path, &p).map_err(|source| BootstrapError::PasswordFile { path: path.display().to_string(), source })?;
            tracing::warn!(file = %path.display(), "created user admin with a random password; it is in this file (readable by this user only)");
            p
        } else {
            tracing::info!("created user admin with the configured password");
            admin_password.to_string()
        };
        let hash = password::hash(&password);
        db.run_sync(|c| users::insert(c, "admin", &hash, true))?;
    }
    if db.run_sync(repos::list_blob_stores)?.is_empty() {
        std::fs::create_dir_all(data_dir.join("blobs").join("default")).ok();
        db.run_sync(|c| repos::insert_blob_store(c, "default", "file", &json!({"path": "default"}).to_string()))?;
    }
    if db.run_sync(repos::list)?.is_empty() {
        let config = json!({
            "name": "docker-hosted",
            "online": true,
            "storage": { "blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "allow", "latestPolicy": false },
            "anonymousRead": false,
            "docker": { "v1Enabled": false, "forceBasicAuth": false, "httpPort": null, "httpsPort": null, "subdomain": null },
        });
        db.run_sync(|c| repos::insert(c, "docker-hosted", "docker", "hosted", "default", &config.to_string()))?;
        let pypi = json!({
            "name": "pypi-hosted",
            "online": true,
            "storage": { "blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "allow_once", "latestPolicy": false },
            "anonymousRead": false,
        });
        db.run_sync(|c| repos::insert(c, "pypi-hosted", "pypi", "hosted", "default", &pypi.to_string()))?;
        let npm = json!({
            "name": "npm-hosted",
            "online": true,
            "storage": { "blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "allow_once", "latestPolicy": false },
            "anonymousRead": false,
            "npm": { "uploadMaxSize": 256 },
        });
        db.run_sync(|c| repos::insert(c, "npm-hosted", "npm", "hosted", "default", &npm.to_string()))?;
    }
    db.run_sync(|c| settings::get_or_init(c, DONE_KEY, || "1".into()))?;
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}
