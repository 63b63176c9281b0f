//! What the first start on an empty database creates: the `admin` user (no default password
//! exists: it comes from the configuration or is random and written to the data dir), the
//! `default` file blob store, and `docker-hosted`, `pypi-hosted` and `npm-hosted` repositories,
//! so a newcomer can push, upload and publish at once.
//!
//! Also what every start does before serving: the data directory and everything wharf writes in
//! it are owner-only, and the secret key is loaded (or made) and checked against the database.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::json;

use crate::db::{repos, settings, users, Db, DbError};
use crate::security::secrets::{self, KeySource, SecretError};
use crate::security::{ldap, password};

const DONE_KEY: &str = "bootstrap.done";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("writing the admin password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("s3.bucket is set, but this data directory's blob store `default` was created before as a file store: leave [s3] out, and create S3 blob stores with POST /service/rest/v1/blobstores/s3")]
    S3Default,
    #[error("s3.bucket and s3.prefix cannot move the blob store `default`: its content is in bucket {bucket:?} under prefix {prefix:?}. Set them back; to use another bucket, create an S3 blob store with POST /service/rest/v1/blobstores/s3 and move repositories to it")]
    S3Moved { bucket: String, prefix: String },
}

/// The settings row of the token- and session-signing key (sealed).
pub const TOKEN_SECRET_KEY: &str = "token.secret";

/// Files and directories this process creates are owner-only (0600 and 0700): the database and
/// its -wal/-shm, blob and upload files, the admin password file, the secret key.
pub fn owner_only_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Open files a node may need before it is worth a word in the log.
const FEW_OPEN_FILES: u64 = 4096;

/// Raises the soft limit on open files to the hard one, as Go programs (Distribution among
/// them) do on their own and nginx does with `worker_rlimit_nofile`: every connection, staged
/// upload and download holds a descriptor (an upload two), and under the soft limit of 1024 that
/// a shell or a systemd unit gives, a few hundred concurrent uploads made the next ones fail
/// (500, "Too many open files") and new connections wait for the accept loop's pause. The
/// kernel takes no more than `fs.nr_open`, so "unlimited" asks for 2^20.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let wanted = maximum.unwrap_or(1 << 20);
    if current.is_some_and(|c| c < wanted) {
        if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum }) {
            tracing::warn!(error = %e, wanted, "raising the limit on open files failed");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|n| n < FEW_OPEN_FILES) {
        tracing::warn!(
            limit = now,
            "open files are limited to {}: each connection, upload and download holds one; raise the hard limit (LimitNOFILE in a systemd unit, `ulimit -Hn`)",
            now.unwrap_or_default()
        );
    }
}

/// Creates the data directory owner-only, or makes an existing one so. Directories left
/// group/world-readable by older versions get the same for everything in them (once: the next
/// start finds the directory private and skips the walk).
pub fn private_dir(dir: &Path) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::DataDir { path: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        // Not ours to change (a volume root owned by another user): say so, and go on.
        tracing::warn!(dir = %dir.display(), error = %e, "the data directory is readable by others and cannot be made owner-only");
        return Ok(());
    }
    let fixed = make_private_tree(dir);
    tracing::info!(dir = %dir.display(), entries = fixed, "made the data directory and its files owner-only");
    Ok(())
}

/// Takes group and other bits off everything under `dir` (symbolic links are not followed);
/// how many entries changed.
fn make_private_tree(dir: &Path) -> usize {
    let mut fixed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7700)) {
                    Ok(()) => fixed += 1,
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot make owner-only"),
                }
            }
        }
    }
    fixed
}

/// Blob stores with an absolute path live outside the data directory: the same for them.
pub fn private_blob_stores(db: &Db, data_dir: &Path) -> Result<(), BootstrapError> {
    for store in db.run_sync(repos::list_blob_stores)? {
        let path = serde_json::from_str::<serde_json::Value>(&store.attributes).ok().and_then(|v| v.get("path")?.as_str().map(str::to_string));
        let root = crate::state::blob_store_root(data_dir, path.as_deref().unwrap_or(&store.name));
        if root.is_absolute() && !root.starts_with(data_dir) && root.is_dir() {
            private_dir(&root)?;
        }
    }
    Ok(())
}

/// Loads the secret key (making one on the first start), checks that it is the key the
/// database's secrets are sealed with, installs it, and seals secrets older versions stored in
/// plaintext. A missing or different key is an error naming it: a new key would make every
/// stored secret unreadable.
pub fn secret_key(db: &Db, data_dir: &Path, key_file: &str) -> Result<(), BootstrapError> {
    let source = KeySource::from_config(data_dir, key_file);
    let expected = db.run_sync(|c| settings::get(c, secrets::KEY_ID_SETTING))?;
    let key = source.load(expected.is_none())?;
    let id = key.id().to_string();
    let stored = db.run_sync(|c| settings::get_or_init(c, secrets::KEY_ID_SETTING, || id.clone()))?;
    if stored != id {
        return Err(SecretError::WrongKey { origin: source.describe(), found: id, expected: stored }.into());
    }
    secrets::install(key);
    let (token, ldap_servers, repositories) =
        db.run_sync(|c| Ok((settings::seal_in_place(c, TOKEN_SECRET_KEY)?, ldap::seal_stored_secrets(c)?, repos::seal_stored_secrets(c)?)))?;
    let sealed = token || ldap_servers || repositories > 0;
    if sealed {
        tracing::info!(token, ldap_servers, repositories, "sealed secrets that an older version stored in plaintext or without their place (enc:v1)");
    }
    // Before any repository opens: its settings refuse such a URL.
    let moved = db.run_sync(repos::move_remote_credentials)?;
    if !moved.is_empty() {
        tracing::warn!(
            repositories = %moved.join(", "),
            "moved credentials out of proxy.remoteUrl into httpClient.authentication, where they are stored encrypted and never shown (a remoteUrl with credentials is refused now)"
        );
    }
    if (sealed || !moved.is_empty()) && db.backend == crate::db::Backend::Sqlite {
        // The replaced plaintext stays in freed pages and in the WAL until rewritten: rebuild
        // the file and empty the WAL, so that no copy of the file holds it.
        db.run_sync(|c| {
            use diesel::connection::SimpleConnection as _;
            Ok(c.batch_execute("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?)
        })?;
    }
    Ok(())
}

pub fn first_start(db: &Db, data_dir: &Path, admin_password: &str, s3: &crate::config::S3Config) -> Result<(), BootstrapError> {
    if db.run_sync(|c| settings::get(c, DONE_KEY))?.is_some() {
        return default_s3_store(db, s3);
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
    if db.run_sync(repos::list_blob_stores)?.is_empty() && !s3.bucket.is_empty() {
        let attrs = s3_store(s3).attributes()?;
        db.run_sync(|c| repos::insert_blob_store(c, "default", "s3", &attrs))?;
        tracing::info!(bucket = %s3.bucket, "created blob store default in S3 ([s3] in the configuration)");
    }
    if db.run_sync(repos::list_blob_stores)?.is_empty() {
        let root = crate::state::blob_store_root(data_dir, "default");
        let empty = crate::lifecycle::gc::holds_no_blobs(&root);
        std::fs::create_dir_all(&root).ok();
        db.run_sync(|c| {
            repos::insert_blob_store(c, "default", "file", &json!({"path": "default"}).to_string())?;
            if empty {
                crate::lifecycle::gc::walked_at_creation(c, "default", &root.display().to_string())?;
            }
            Ok(())
        })?;
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

/// The `[s3]` section as the `default` blob store's settings.
fn s3_store(s3: &crate::config::S3Config) -> crate::storage::s3::S3Store {
    let settings = wharf_format::S3Settings {
        bucket: s3.bucket.clone(),
        region: s3.region.clone(),
        prefix: s3.prefix.clone(),
        endpoint: s3.endpoint.clone(),
        force_path_style: s3.force_path_style,
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
        ..Default::default()
    };
    crate::storage::s3::S3Store { name: "default".into(), settings, presigned_urls: false, soft_quota: None }
}

/// On a later start, `[s3]` is still the `default` store's settings for what it names: a changed
/// endpoint, region or key is written to it. The bucket and prefix may not change (the store's
/// content is there: every asset would point at nothing, and the new place, if another store's,
/// would be walked and its objects collected), and what only the API sets (encryption, the pool
/// size, presigned URLs, the soft quota) stays as set. A bucket named for a data directory whose
/// `default` store holds files is refused (its content would be left behind).
fn default_s3_store(db: &Db, s3: &crate::config::S3Config) -> Result<(), BootstrapError> {
    if s3.bucket.is_empty() {
        return Ok(());
    }
    let stored = db.run_sync(repos::list_blob_stores)?.into_iter().find(|r| r.name == "default");
    match stored {
        Some(row) if row.kind == "s3" => {
            let wanted = s3_store(s3);
            let Ok(current) = crate::storage::s3::S3Store::from_row(&row) else {
                let attrs = wanted.attributes()?;
                db.run_sync(|c| repos::update_blob_store(c, "default", &attrs))?;
                return Ok(());
            };
            let (was, now) = (&current.settings, &wanted.settings);
            if was.bucket != now.bucket || was.prefix_segments() != now.prefix_segments() {
                return Err(BootstrapError::S3Moved { bucket: was.bucket.clone(), prefix: was.prefix.clone() });
            }
            let settings = wharf_format::S3Settings {
                endpoint: now.endpoint.clone(),
                region: now.region.clone(),
                force_path_style: now.force_path_style,
                access_key_id: now.access_key_id.clone(),
                secret_access_key: now.secret_access_key.clone(),
                ..current.settings.clone()
            };
            if settings != current.settings {
                let attrs = crate::storage::s3::S3Store { settings, ..current }.attributes()?;
                db.run_sync(|c| repos::update_blob_store(c, "default", &attrs))?;
                tracing::info!(bucket = %s3.bucket, "blob store default: settings from [s3] in the configuration");
            }
            Ok(())
        }
        _ => Err(BootstrapError::S3Default),
    }
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
