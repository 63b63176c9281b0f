//! `wharf backup --to DIR`: a copy of a single node on SQLite, taken while it serves, that a
//! server started on DIR (as its data directory) restores. PostgreSQL has `pg_dump` and S3 its
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
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// What a backup copied.
#[derive(Debug)]
pub struct Report {
    pub blobs: u64,
    pub bytes: u64,
    /// File stores outside the data directory: (name, where they were, where the copy is).
    pub moved_stores: Vec<(String, PathBuf, PathBuf)>,
    /// S3 stores, not copied.
    pub s3_stores: Vec<String>,
    /// Where the secret key was copied to, or why it was not.
    pub secret_key: Result<PathBuf, String>,
}

#[derive(QueryableByName)]
struct StoreRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    attributes: String,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = diesel::sql_types::Text)]
    blob_store: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    digest: String,
}

pub fn run(cfg: &Config, to: &Path) -> Result<Report, BackupError> {
    let Some(db_path) = cfg.database_url.strip_prefix("sqlite://") else {
        let scheme = cfg.database_url.split("://").next().unwrap_or_default().to_string();
        return Err(BackupError::NotSqlite(scheme));
    };
    if std::fs::read_dir(to).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(BackupError::NotEmpty(to.to_path_buf()));
    }
    std::fs::create_dir_all(to).map_err(io_at(to))?;
    let copy = to.join("wharf.db");
    let db_err = |e: &dyn std::fmt::Display| BackupError::Db(e.to_string());
    {
        let mut conn = SqliteConnection::establish(db_path).map_err(|e| db_err(&e))?;
        conn.batch_execute("PRAGMA busy_timeout = 10000;").map_err(|e| db_err(&e))?;
        let quoted = copy.display().to_string().replace('\'', "''");
        conn.batch_execute(&format!("VACUUM INTO '{quoted}';")).map_err(|e| db_err(&e))?;
    }
    // What the copy names is what must be there: its stores and the digests of its assets.
    let mut snap = SqliteConnection::establish(&copy.display().to_string()).map_err(|e| db_err(&e))?;
    let stores: Vec<StoreRow> = diesel::sql_query("SELECT name, kind, attributes FROM blob_stores").load(&mut snap).map_err(|e| db_err(&e))?;
    let named: Vec<Named> = diesel::sql_query(
        "SELECT DISTINCT r.blob_store AS blob_store, a.digest AS digest FROM assets a JOIN repositories r ON r.id = a.repository_id \
         WHERE a.digest IS NOT NULL",
    )
    .load(&mut snap)
    .map_err(|e| db_err(&e))?;
    drop(snap);

    let mut report = Report { blobs: 0, bytes: 0, moved_stores: Vec::new(), s3_stores: Vec::new(), secret_key: Err(String::new()) };
    let mut copied_roots = Vec::new();
    for s in &stores {
        if s.kind != "file" {
            report.s3_stores.push(s.name.clone());
            continue;
        }
        let path = serde_json::from_str::<serde_json::Value>(&s.attributes).ok().and_then(|v| v.get("path")?.as_str().map(str::to_string));
        let from = crate::state::blob_store_root(&cfg.data_dir, path.as_deref().unwrap_or(&s.name));
        // A store inside the data directory is restored where it was, relative to the data
        // directory; one elsewhere goes under `stores/` and is put back by hand.
        let dest = match from.strip_prefix(cfg.data_dir.join("blobs")) {
            Ok(rel) => to.join("blobs").join(rel),
            Err(_) => {
                let d = to.join("stores").join(&s.name);
                report.moved_stores.push((s.name.clone(), from.clone(), d.clone()));
                d
            }
        };
        copy_tree(&from.join("blobs"), &dest.join("blobs"), &mut report)?;
        copied_roots.push((s.name.clone(), dest));
    }

    let missing: BTreeSet<String> = named
        .iter()
        .filter_map(|n| {
            let (_, root) = copied_roots.iter().find(|(name, _)| *name == n.blob_store)?;
            let hex = n.digest.strip_prefix("sha256:")?;
            let file = root.join("blobs/sha256").join(hex.get(..2)?).join(hex);
            (!file.is_file()).then(|| format!("{} in blob store {}", n.digest, n.blob_store))
        })
        .collect();
    if let Some(first) = missing.iter().next() {
        return Err(BackupError::Incomplete { count: missing.len(), first: first.clone() });
    }

    report.secret_key = match KeySource::from_config(&cfg.data_dir, &cfg.security.secret_key_file) {
        KeySource::File(p) if p.is_file() => {
            let dest = to.join("secret.key");
            std::fs::copy(&p, &dest).map_err(io_at(&p))?;
            Ok(dest)
        }
        KeySource::File(p) => Err(format!("{} does not exist", p.display())),
        source => Err(format!("the key is in {}, not in a file", source.describe())),
    };
    Ok(report)
}

/// Copies every file under `from` (a store's `blobs/`) to the same place under `to`. A file
/// that went meanwhile is skipped: if the snapshot names it, the check at the end says so.
fn copy_tree(from: &Path, to: &Path, report: &mut Report) -> Result<(), BackupError> {
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
        } else if entry.file_type().is_file() {
            match std::fs::copy(entry.path(), &dest) {
                Ok(n) => {
                    report.blobs += 1;
                    report.bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackupError::Io { path: entry.path().to_path_buf(), source: e }),
            }
        }
    }
    Ok(())
}
