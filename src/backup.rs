//! `wharf backup --to DIR [--key-to FILE]`: a copy of a single node on SQLite, taken while it
//! serves, that a server started on DIR (as its data directory, with the secret key) restores.
//! The key is never written into DIR: a copy of the database alone reveals no secret
//! (docs/security.md), so the key goes where `--key-to` says, to be kept apart. PostgreSQL has `pg_dump` and S3 its
//! own copies (docs/deploy.md); this is the embedded default's.
//!
//! The database first, as one consistent snapshot (`VACUUM INTO` reads in one transaction and
//! does not stop the server's writers), then the file blob stores. Blobs are immutable and
//! named by content, so every blob the snapshot names and the store still holds is copied whole
//! whatever the server writes meanwhile; one the store lost in between (a compaction deleted
//! what a delete after the snapshot left unreferenced) would be missing, so the copy is checked
//! against the snapshot's assets at the end and the backup fails naming what is missing.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::config::Config;
use crate::db::{repos, AnyConnection};
use crate::lifecycle::store_usage::FileStore;
use crate::security::secrets::KeySource;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the database is not SQLite ({0}): back PostgreSQL up with pg_dump, see docs/deploy.md")]
    NotSqlite(String),
    #[error("{0} exists and is not empty: a backup goes into a new or empty directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("database: {0}")]
    Db(String),
    #[error("{count} blob(s) the copied database names are not in the copy (first: {first}): a compaction ran during the backup; run it again")]
    Incomplete { count: usize, first: String },
    #[error("this wharf is older than the database, which a newer version migrated: back it up with the version that serves it ({0})")]
    Newer(String),
    #[error("no database at {0}: check the configuration (the same as the server's)")]
    NoDatabase(PathBuf),
    #[error("blob store {store}: its directory {path} does not exist (check the configuration's data_dir, the same as the server's)")]
    NoStore { store: String, path: PathBuf },
    #[error("{to} is inside blob store {store}'s directory: a backup would copy itself")]
    InsideStore { to: PathBuf, store: String },
    #[error("--key-to: {0}")]
    Key(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// What a backup copied.
#[derive(Debug)]
pub struct Report {
    pub blobs: u64,
    pub bytes: u64,
    /// Where the database was, when not at `<data dir>/wharf.db` (a restore must put it back
    /// there, or point `database_url` at the copy).
    pub database_elsewhere: Option<PathBuf>,
    /// File stores at an absolute path (their rows name it): (name, where they were, where
    /// the copy is).
    pub moved_stores: Vec<(String, PathBuf, PathBuf)>,
    /// S3 stores, not copied.
    pub s3_stores: Vec<String>,
    /// Where the server reads the secret key from (a file, or the variable that holds it).
    pub secret_key: String,
    /// Where `--key-to` copied it.
    pub key_copy: Option<PathBuf>,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = diesel::sql_types::Text)]
    blob_store: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    digest: String,
}

/// Backs up into `to` (made owner-only, like the data directory: the copy holds password
/// hashes and the audit log). What a failed backup wrote is removed, so that it can simply be
/// run again.
pub fn run(cfg: &Config, to: &Path, key_to: Option<&Path>) -> Result<Report, BackupError> {
    let Some(db_path) = cfg.database_url.strip_prefix("sqlite://") else {
        let scheme = cfg.database_url.split("://").next().unwrap_or_default().to_string();
        return Err(BackupError::NotSqlite(scheme));
    };
    // A wrong path would make SQLite create an empty database, and back that up.
    if !Path::new(db_path).is_file() {
        return Err(BackupError::NoDatabase(PathBuf::from(db_path)));
    }
    if std::fs::read_dir(to).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(BackupError::NotEmpty(to.to_path_buf()));
    }
    crate::bootstrap::owner_only_umask();
    let made = !to.exists();
    std::fs::create_dir_all(to).map_err(io_at(to))?;
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io_at(to))?;
    let done = copy_all(cfg, db_path, to, key_to).and_then(|report| {
        make_durable(to, report.key_copy.as_deref())?;
        Ok(report)
    });
    if done.is_err() && made {
        let _ = std::fs::remove_dir_all(to);
    } else if done.is_err() {
        // It was there, empty: emptied again, not removed (it may be a mount point).
        if let Ok(entries) = std::fs::read_dir(to) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }
    done
}

fn copy_all(cfg: &Config, db_path: &str, to: &Path, key_to: Option<&Path>) -> Result<Report, BackupError> {
    let copy = to.join("wharf.db");
    let db_err = |e: &dyn std::fmt::Display| BackupError::Db(e.to_string());
    {
        let mut conn = SqliteConnection::establish(db_path).map_err(|e| db_err(&e))?;
        conn.batch_execute("PRAGMA busy_timeout = 10000;").map_err(|e| db_err(&e))?;
        let quoted = copy.display().to_string().replace('\'', "''");
        conn.batch_execute(&format!("VACUUM INTO '{quoted}';")).map_err(|e| db_err(&e))?;
    }
    // What the copy names is what must be there: its stores, and (below) the digests of its assets.
    let mut snap = AnyConnection::Sqlite(SqliteConnection::establish(&copy.display().to_string()).map_err(|e| db_err(&e))?);
    // A newer version migrated the database: what it added (a kind of store, a place it keeps
    // data) this version would not know to copy, and the backup would be incomplete without
    // saying so. Read from the snapshot, so that it judges exactly what was copied.
    crate::db::precheck::still_not_newer(&mut snap).map_err(|e| match e {
        crate::db::DbError::Newer(why) => BackupError::Newer(why),
        other => db_err(&other),
    })?;
    let stores = repos::list_blob_stores(&mut snap).map_err(|e| db_err(&e))?;

    let in_data_dir = cfg.data_dir.join("wharf.db");
    let database_elsewhere = (Path::new(db_path) != in_data_dir).then(|| PathBuf::from(db_path));
    let mut report =
        Report { blobs: 0, bytes: 0, database_elsewhere, moved_stores: Vec::new(), s3_stores: Vec::new(), secret_key: String::new(), key_copy: None };
    let mut copied_roots = Vec::new();
    for s in &stores {
        if s.kind != "file" {
            report.s3_stores.push(s.name.clone());
            continue;
        }
        let store = FileStore::from_row(s);
        let from = store.root(&cfg.data_dir);
        if !from.is_dir() {
            return Err(BackupError::NoStore { store: s.name.clone(), path: from });
        }
        if absolute(to).starts_with(absolute(&from)) {
            return Err(BackupError::InsideStore { to: to.to_path_buf(), store: s.name.clone() });
        }
        // A store at a relative path (`<data dir>/blobs/<path>`) is restored where it was,
        // relative to the data directory; one at an absolute path (its row names that path,
        // even inside the data directory) goes under `stores/` and is put back by hand.
        let dest = if Path::new(&store.path).is_absolute() {
            let d = to.join("stores").join(&s.name);
            report.moved_stores.push((s.name.clone(), from.clone(), d.clone()));
            d
        } else {
            to.join("blobs").join(&store.path)
        };
        let (files, bytes) = copy_tree(&from.join("blobs"), &dest.join("blobs"))?;
        report.blobs += files;
        report.bytes += bytes;
        copied_roots.push((s.name.clone(), dest));
    }

    // A page of digests at a time, in the order of the usage index: a million assets are not
    // held in memory at once.
    let mut missing: BTreeSet<String> = BTreeSet::new();
    for (store, root) in &copied_roots {
        let mut after = String::new();
        loop {
            let page: Vec<Named> = diesel::sql_query(
                "SELECT DISTINCT r.blob_store AS blob_store, a.digest AS digest FROM repositories r JOIN assets a ON a.repository_id = r.id \
                 WHERE r.blob_store = ? AND a.digest > ? ORDER BY a.digest LIMIT 10000",
            )
            .bind::<diesel::sql_types::Text, _>(store)
            .bind::<diesel::sql_types::Text, _>(&after)
            .load(&mut snap)
            .map_err(|e| db_err(&e))?;
            let Some(last) = page.last() else { break };
            after = last.digest.clone();
            missing.extend(page.iter().filter_map(|n| {
                let hex = n.digest.strip_prefix("sha256:")?;
                let file = root.join("blobs/sha256").join(hex.get(..2)?).join(hex);
                (!file.is_file()).then(|| format!("{} in blob store {}", n.digest, n.blob_store))
            }));
        }
    }
    drop(snap);
    if let Some(first) = missing.iter().next() {
        return Err(BackupError::Incomplete { count: missing.len(), first: first.clone() });
    }

    // What else of the data directory a restore needs: the CA and certificates `wharf cert`
    // made, and the first start's admin password (there is no other copy of it).
    copy_tree(&cfg.data_dir.join("tls"), &to.join("tls"))?;
    let password = cfg.data_dir.join("admin.password");
    if password.is_file() {
        std::fs::copy(&password, to.join("admin.password")).map_err(io_at(&password))?;
    }
    let source = KeySource::from_config(&cfg.data_dir, &cfg.security.secret_key_file);
    report.secret_key = source.describe();
    if let Some(dest) = key_to {
        let KeySource::File(key) = &source else {
            return Err(BackupError::Key(format!("the key is in {}, not in a file: keep that value apart", source.describe())));
        };
        if absolute(dest).starts_with(absolute(to)) {
            return Err(BackupError::Key("the key goes apart from the backup, not into it".into()));
        }
        std::fs::copy(key, dest).map_err(|e| BackupError::Key(format!("{} -> {}: {e}", key.display(), dest.display())))?;
        std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io_at(dest))?;
        report.key_copy = Some(dest.to_path_buf());
    }
    Ok(report)
}

/// Flushes the copy to stable storage before the backup reports success: nothing of it is
/// synced on the way (SQLite does not sync what `VACUUM INTO` writes, nor `std::fs::copy` what
/// it copies), and an administrator who then deletes the old data on the strength of a backup
/// that a power cut half-lost would have none. One `syncfs` of the backup's file system
/// instead of a sync per blob file (a sync each is a disk flush each: minutes for a store of
/// small blobs); the key, which may be on another file system, is synced with its directory.
fn make_durable(to: &Path, key_copy: Option<&Path>) -> Result<(), BackupError> {
    let dir = std::fs::File::open(to).map_err(io_at(to))?;
    rustix::fs::syncfs(&dir).map_err(|e| BackupError::Io { path: to.to_path_buf(), source: e.into() })?;
    if let Some(key) = key_copy {
        std::fs::File::open(key).and_then(|f| f.sync_all()).map_err(io_at(key))?;
        let parent = absolute(key).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        std::fs::File::open(&parent).and_then(|f| f.sync_all()).map_err(io_at(&parent))?;
    }
    Ok(())
}

/// `p` from the root (the working directory's, for a relative path), to compare places.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Copies every file under `from` (a store's `blobs/`) to the same place under `to`. A file
/// that went meanwhile is skipped: if the snapshot names it, the check at the end says so. So
/// is a file being written (`<name>#<n>`, renamed into place once whole).
/// Answers how many files and bytes it copied.
fn copy_tree(from: &Path, to: &Path) -> Result<(u64, u64), BackupError> {
    let (mut files, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(from) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.io_error().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => continue,
            Err(e) => return Err(BackupError::Io { path: e.path().unwrap_or(from).to_path_buf(), source: e.into() }),
        };
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_at(&dest))?;
        } else if entry.file_type().is_file() && !entry.file_name().to_string_lossy().contains('#') {
            match std::fs::copy(entry.path(), &dest) {
                Ok(n) => {
                    files += 1;
                    bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackupError::Io { path: entry.path().to_path_buf(), source: e }),
            }
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_and_the_key_are_flushed_or_the_backup_fails_naming_what() {
        let tmp = tempfile::tempdir().unwrap();
        let to = tmp.path().join("b");
        std::fs::create_dir(&to).unwrap();
        std::fs::write(to.join("wharf.db"), b"x").unwrap();
        let key = tmp.path().join("key");
        std::fs::write(&key, b"k").unwrap();
        make_durable(&to, Some(&key)).unwrap();
        match make_durable(&to, Some(&tmp.path().join("gone"))) {
            Err(BackupError::Io { path, .. }) => assert_eq!(path, tmp.path().join("gone")),
            other => panic!("a key copy that is not there must fail the backup, got {other:?}"),
        }
        match make_durable(&tmp.path().join("nowhere"), None) {
            Err(BackupError::Io { path, .. }) => assert_eq!(path, tmp.path().join("nowhere")),
            other => panic!("got {other:?}"),
        }
    }
}
