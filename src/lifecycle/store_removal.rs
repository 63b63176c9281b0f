//! Removing a deleted blob store's files. Two rules: no store created meanwhile ever loses a
//! file, and only what is certainly the deleted store's is removed.
//!
//! **Reserved until removed.** The transaction that deletes the store's row also writes a
//! `blob_store_removals` row ([`delete_store`]); until the files are gone no store may be created
//! under the name or over the directory, on any node ([`conflict`], checked again in the
//! create's transaction: [`insert_if_free`]). Without it a store created at the same path between the delete's
//! commit and the removal (on this node or another) would be moved to the trash with the old
//! one. The reservation is a lease ([`REMOVAL_LEASE_MS`]): the owner renews it just before it
//! moves anything, and a node that dies mid-removal is replaced by another that takes the row
//! over once the lease ran out ([`finish_abandoned`], at start and every minute).
//!
//! **Only what is the store's.**
//! - A store under the data directory's blob area (`<data_dir>/blobs/<path>`) is renamed into
//!   the area's trash (`<data_dir>/blobs/.deleted-<trash>`) and then removed. Its path must
//!   resolve (symbolic links followed) to a directory strictly inside the area.
//! - A store at an absolute path of its own: only what wharf writes there (`blobs/`,
//!   `uploads/`) is moved into `<path>/.deleted-<trash>` and removed, then the directory if that
//!   left it empty; a path that holds the data directory is never touched.
//! - A directory another store also uses (the same, one inside it, or one around it) is kept.
//!
//! Moving first makes the part that must not overlap a new store one rename; the slow delete
//! then works on a name no store can have, so a takeover that overlaps a slow owner is harmless.
//! If the files cannot be removed, the store stays deleted and the log says what was left.
//!
//! **An S3 store** is reserved the same way, by name and by location (bucket, endpoint, prefix:
//! an S3 store created meanwhile may not overlap it), and its removal row keeps the store's
//! settings (secrets sealed) so that another node can finish. What is removed is only what
//! wharf writes under its prefix (`blobs/`, `uploads/`, `health/`), a page of objects at a time
//! with the claim renewed before each page, in the background (a large store takes a while).

use std::io;
use std::path::{Component, Path, PathBuf};

use wharf_format::{now_millis, ConfigError};

use super::gc;
use super::store_usage::FileStore;
use crate::db::removals::{self, RemovalRow};
use crate::db::{repos, tasks, AnyConnection, Db, DbError};
use crate::storage::s3::S3Store;

/// Objects an S3 store's removal deletes between two renewals of its claim.
const S3_PAGE: usize = 1000;

/// How long a removal's owner holds it without renewing. Generous: the owner renews right
/// before it moves anything, so this bounds a stall between that renewal and a rename; a
/// removal a dead node left is finished this long after it died.
pub const REMOVAL_LEASE_MS: i64 = 5 * 60_000;

/// Names in the blob area (and in an absolute store's directory) that belong to the trash,
/// never to a store (store paths may not start with a dot).
const TRASH_PREFIX: &str = ".deleted-";

/// What wharf writes in a store's directory.
const STORE_LAYOUT: [&str; 2] = ["blobs", "uploads"];

#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// The store's files are gone.
    Removed,
    /// There was nothing to remove.
    Absent,
    /// Kept, and why.
    Kept(String),
    /// The claim ran out and another node took the removal over: this one touched nothing.
    TakenOver,
}

#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("blocking pool: {0}")]
    Blocking(String),
    #[error(transparent)]
    Blob(#[from] wharf_format::BlobError),
}

/// A removal this node holds: the store, the stores that remain, and the claim on its row.
#[derive(Clone, Debug)]
pub struct Claim {
    pub store: FileStore,
    pub others: Vec<FileStore>,
    trash: String,
    owner: String,
    /// An S3 store: its objects are removed instead of a directory.
    s3: Option<Box<S3Store>>,
}

impl Claim {
    /// An S3 store's removal: it may take long, so it runs in the background.
    pub fn is_s3(&self) -> bool {
        self.s3.is_some()
    }
}

pub enum Deletion {
    /// Refused: these repositories use the store.
    InUse(Vec<String>),
    /// Refused: this task, scoped to the store (`blobstoreName`), runs: its name and id.
    TaskRunning(String, String),
    NotFound,
    /// The row is gone and its name and files are reserved for this claim (`None`: a store
    /// whose stored settings do not parse, so its objects cannot be reached); the tasks scoped
    /// to it went with it, by name.
    Deleted(Option<Claim>, Vec<String>),
}

/// Deletes the store `name` unless a repository uses it, and in the same transaction reserves
/// its name and directory until its files are gone (run it in [`Db::write`]). `token` must be
/// the same on every run of the transaction (it is retried) and unique: it names the claim and
/// the trash.
pub fn delete_store(conn: &mut AnyConnection, name: &str, token: &str) -> Result<Deletion, DbError> {
    let users = repos::repos_using_blob_store(conn, name)?;
    if !users.is_empty() {
        return Ok(Deletion::InUse(users));
    }
    let stores = repos::list_blob_stores(conn)?;
    let Some(row) = stores.iter().find(|r| r.name == name) else { return Ok(Deletion::NotFound) };
    // Its compaction tasks go with it (a store created later under the name would take them
    // up), every refusal before the first change.
    let scoped = tasks::scoped_to(conn, "blobstoreName", name)?;
    if let Some(t) = scoped.iter().find(|t| t.running(now_millis())) {
        return Ok(Deletion::TaskRunning(t.name.clone(), t.id.clone()));
    }
    let mut unnamed = Vec::new();
    for t in scoped {
        tasks::delete(conn, &t.id)?;
        unnamed.push(t.name);
    }
    let store = FileStore::from_row(row);
    let others = stores.iter().filter(|r| r.name != name && r.kind == "file").map(FileStore::from_row).collect();
    let s3 = match row.kind.as_str() {
        "s3" => match S3Store::from_row(row) {
            Ok(s) => Some(Box::new(s)),
            Err(e) => {
                tracing::warn!(blob_store = %name, error = %e, "deleting an S3 blob store whose settings do not parse: its objects stay");
                repos::delete_blob_store(conn, name)?;
                gc::forget_walks(conn, name)?;
                return Ok(Deletion::Deleted(None, unnamed));
            }
        },
        _ => None,
    };
    repos::delete_blob_store(conn, name)?;
    gc::forget_walks(conn, name)?;
    let now = now_millis();
    let row = RemovalRow {
        name: store.name.clone(),
        path: s3.as_ref().map_or_else(|| store.path.clone(), |s| s.settings.location()),
        trash: token.to_string(),
        owner: token.to_string(),
        claimed_until: now + REMOVAL_LEASE_MS,
        created_at: now,
        kind: row.kind.clone(),
        attributes: if s3.is_some() { row.attributes.clone() } else { String::new() },
    };
    removals::insert(conn, &row)?;
    Ok(Deletion::Deleted(Some(Claim { store, others, trash: row.trash, owner: row.owner, s3 }), unnamed))
}

/// Creates the store unless [`conflict`] says why not (run it in [`Db::write`]); `empty`: its
/// directory held no blobs before it was made (see `gc::walked_at_creation`).
pub fn insert_if_free(conn: &mut AnyConnection, data_dir: &Path, store: &FileStore, empty: bool) -> Result<Option<ConfigError>, DbError> {
    let root = store.root(data_dir);
    // Compared as written here: this runs holding the database's writer, which a hung mount
    // under a store's path must not stall; the check before the transaction resolved them.
    if let Some(refusal) = conflict_as(conn, data_dir, &store.name, &root, |p| p.to_path_buf())? {
        return Ok(Some(refusal));
    }
    repos::insert_blob_store(conn, &store.name, "file", &store.attributes())?;
    if empty {
        super::gc::walked_at_creation(conn, &store.name, &root.display().to_string())?;
    }
    Ok(None)
}

/// The same directory, or one inside the other, as the file system resolves them (a relative
/// data directory, a symbolic link, `a/./b`: compared as text, `/srv/w/data/blobs/default` and
/// `./data/blobs/default` were two directories).
fn overlaps(a: &Path, b: &Path) -> bool {
    overlap_as(a, b, resolved)
}

fn overlap_as(a: &Path, b: &Path, resolve: impl Fn(&Path) -> PathBuf) -> bool {
    let (a, b) = (resolve(a), resolve(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// `p` absolute, its longest existing ancestor resolved by the file system (a store's directory
/// need not exist yet).
fn resolved(p: &Path) -> PathBuf {
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut tail = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return tail.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// Why a store named `name` may not be created at `root`: a store (other than one of the same
/// name, which the insert refuses itself) or a removal in progress uses the directory, or a
/// removal of a store of that name is not finished. Checked before the directory is made and
/// again in the create's transaction, against a delete or create committed meanwhile.
pub fn conflict(conn: &mut AnyConnection, data_dir: &Path, name: &str, root: &Path) -> Result<Option<ConfigError>, DbError> {
    conflict_as(conn, data_dir, name, root, resolved)
}

/// [`conflict`], with paths compared as `resolve` makes them.
fn conflict_as(conn: &mut AnyConnection, data_dir: &Path, name: &str, root: &Path, resolve: impl Fn(&Path) -> PathBuf) -> Result<Option<ConfigError>, DbError> {
    // The data directory holds the database, the secret key and the caches (whose start-up
    // scans delete what they do not know): a store there is one only in the blob area.
    let (at, data) = (resolve(root), resolve(data_dir));
    if at.starts_with(&data) && !at.starts_with(data.join("blobs")) || data.starts_with(&at) {
        return Ok(Some(ConfigError::new(
            "path",
            format!("{} is in or around the data directory {}: use a directory elsewhere, or a name under its blob area", root.display(), data.display()),
        )));
    }
    for s in repos::list_blob_stores(conn)?.iter().filter(|r| r.kind == "file").map(FileStore::from_row).filter(|s| s.name != name) {
        if overlap_as(&s.root(data_dir), root, &resolve) {
            return Ok(Some(ConfigError::new("path", format!("{} overlaps the directory of blob store {}", root.display(), s.name))));
        }
    }
    for r in removals::list(conn)? {
        if r.name == name {
            return Ok(Some(ConfigError::new("name", format!("blob store {name} was deleted and its files are still being removed; try again later"))));
        }
        if r.kind != "file" {
            continue;
        }
        let gone = FileStore { name: r.name, path: r.path, soft_quota: None };
        if overlap_as(&gone.root(data_dir), root, &resolve) {
            return Ok(Some(ConfigError::new(
                "path",
                format!("{} overlaps the directory of deleted blob store {}, whose files are still being removed; try again later", root.display(), gone.name),
            )));
        }
    }
    Ok(None)
}

/// Removes the claimed store's files (see the module documentation) and then ends the
/// reservation. Nothing is touched unless the claim still holds just before.
pub async fn carry_out(db: &Db, data_dir: &Path, claim: Claim) -> Result<Removal, RemovalError> {
    if let Some(s3) = claim.s3.clone() {
        return remove_objects(db, data_dir, &claim, &s3).await;
    }
    let (name, owner) = (claim.store.name.clone(), claim.owner.clone());
    let held = db.write(move |c| removals::renew(c, &name, &owner, now_millis(), REMOVAL_LEASE_MS)).await?;
    if !held {
        return Ok(Removal::TakenOver);
    }
    let dir = data_dir.to_path_buf();
    let c = claim.clone();
    let removal = tokio::task::spawn_blocking(move || remove_store_files(&dir, &c.store, &c.others, &c.trash))
        .await
        .map_err(|e| RemovalError::Blocking(e.to_string()))?;
    // Released whatever the outcome: what could not be removed is logged, and the name and
    // directory are the administrator's again (a later store there adopts what was left).
    let (name, owner) = (claim.store.name.clone(), claim.owner.clone());
    db.write(move |c| removals::finish(c, &name, &owner)).await?;
    Ok(removal?)
}

/// Removes a deleted S3 store's objects a page at a time, renewing the claim before each page
/// (a node that took the removal over meanwhile finishes it alone), then ends the reservation.
async fn remove_objects(db: &Db, data_dir: &Path, claim: &Claim, s3: &S3Store) -> Result<Removal, RemovalError> {
    let scratch = data_dir.join("tmp").join("s3-removal").join(&claim.trash);
    let store = wharf_format::BlobStore::s3(&s3.name, &s3.settings, &scratch)?;
    let mut removed = 0u64;
    let outcome = loop {
        let (name, owner) = (claim.store.name.clone(), claim.owner.clone());
        if !db.write(move |c| removals::renew(c, &name, &owner, now_millis(), REMOVAL_LEASE_MS)).await? {
            break Ok(Removal::TakenOver);
        }
        match store.remove_objects(S3_PAGE).await {
            Ok(0) => break Ok(if removed > 0 { Removal::Removed } else { Removal::Absent }),
            Ok(n) => removed += n,
            Err(e) => break Err(RemovalError::Blob(e)),
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    if matches!(outcome, Ok(Removal::TakenOver)) {
        return outcome;
    }
    // Released whatever the outcome, as for a file store: what could not be removed is logged.
    let (name, owner) = (claim.store.name.clone(), claim.owner.clone());
    db.write(move |c| removals::finish(c, &name, &owner)).await?;
    outcome
}

/// Takes over and finishes the removals whose owner died (their claim ran out); how many.
pub async fn finish_abandoned(db: &Db, data_dir: &Path) -> usize {
    let owner = uuid::Uuid::new_v4().to_string();
    let taken = db
        .write(move |c| {
            let rows = removals::take_abandoned(c, &owner, now_millis(), REMOVAL_LEASE_MS)?;
            let stores: Vec<FileStore> = repos::list_blob_stores(c)?.iter().filter(|r| r.kind == "file").map(FileStore::from_row).collect();
            Ok(rows.into_iter().map(|r| (r, stores.clone())).collect::<Vec<_>>())
        })
        .await;
    let taken = match taken {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for unfinished blob store removals");
            return 0;
        }
    };
    let mut finished = 0;
    for (row, stores) in taken {
        let s3 = if row.kind == "s3" {
            match S3Store::from_row(&row.as_store_row()) {
                Ok(s) => Some(Box::new(s)),
                Err(e) => {
                    tracing::warn!(blob_store = %row.name, error = %e, "a deleted S3 blob store's settings do not parse: its objects stay");
                    let (name, owner) = (row.name.clone(), row.owner.clone());
                    let _ = db.write(move |c| removals::finish(c, &name, &owner)).await;
                    continue;
                }
            }
        } else {
            None
        };
        let store = FileStore { name: row.name.clone(), path: row.path.clone(), soft_quota: None };
        let others = stores.into_iter().filter(|s| s.name != row.name).collect();
        let claim = Claim { store, others, trash: row.trash, owner: row.owner, s3 };
        log_outcome(&row.name, &carry_out(db, data_dir, claim).await);
        finished += 1;
    }
    finished
}

/// One log line per removal, by outcome.
pub fn log_outcome(name: &str, outcome: &Result<Removal, RemovalError>) {
    match outcome {
        Ok(Removal::Removed) => tracing::info!(blob_store = %name, "removed the deleted blob store's files"),
        Ok(Removal::Absent) => {}
        Ok(Removal::Kept(why)) => tracing::warn!(blob_store = %name, "kept the deleted blob store's directory: {why}"),
        Ok(Removal::TakenOver) => tracing::warn!(blob_store = %name, "another node took the removal of the deleted blob store's files over"),
        Err(e) => tracing::warn!(blob_store = %name, error = %e, "cannot remove the deleted blob store's files"),
    }
}

/// Is `path` (a relative store path) made of plain names only?
fn plain_relative(path: &str) -> bool {
    let p = Path::new(path);
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Removes `store`'s files (see the module documentation); `others` are the stores that remain,
/// `trash` names this removal's trash. Repeatable: a takeover runs it again after a crash.
pub fn remove_store_files(data_dir: &Path, store: &FileStore, others: &[FileStore], trash: &str) -> io::Result<Removal> {
    if !plain_relative(trash) || trash.contains(['/', '\\']) {
        return Ok(Removal::Kept(format!("{trash:?} is not a plain trash name")));
    }
    let trash_name = format!("{TRASH_PREFIX}{trash}");
    let root = store.root(data_dir);
    let absolute = Path::new(&store.path).is_absolute();
    if !root.exists() {
        // Already in the trash (a removal cut short after its rename) or never made.
        if absolute {
            return Ok(Removal::Absent);
        }
        let bin = resolved(&data_dir.join("blobs")).join(&trash_name);
        return Ok(if purge(&bin)? { Removal::Removed } else { Removal::Absent });
    }
    let real_root = resolved(&root);
    for other in others {
        if overlaps(&real_root, &resolved(&other.root(data_dir))) {
            return Ok(Removal::Kept(format!("blob store {} uses {} too", other.name, other.root(data_dir).display())));
        }
    }
    if real_root.starts_with(resolved(data_dir)) || resolved(data_dir).starts_with(&real_root) {
        let area = resolved(&data_dir.join("blobs"));
        if absolute && !real_root.starts_with(&area) {
            return Ok(Removal::Kept(format!("{} holds wharf's data directory", root.display())));
        }
        if !plain_relative(&store.path) && !absolute {
            return Ok(Removal::Kept(format!("{} is not a plain path inside the blob area", store.path)));
        }
        if !real_root.starts_with(&area) || real_root == area {
            return Ok(Removal::Kept(format!("{} is not inside the blob area {}", real_root.display(), area.display())));
        }
        let bin = area.join(&trash_name);
        gone(std::fs::rename(&real_root, &bin))?;
        purge(&bin)?;
        return Ok(Removal::Removed);
    }
    if !absolute {
        // A relative path that resolves outside the data directory: through a link the
        // administrator made; what it points at is not ours to remove.
        return Ok(Removal::Kept(format!("{} resolves outside the blob area, to {}", root.display(), real_root.display())));
    }
    let bin = real_root.join(&trash_name);
    std::fs::create_dir_all(&bin)?;
    for part in STORE_LAYOUT {
        gone(std::fs::rename(real_root.join(part), bin.join(part)))?;
    }
    purge(&bin)?;
    match std::fs::remove_dir(&real_root) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            Ok(Removal::Kept(format!("removed wharf's blobs/ and uploads/; {} holds other files and stays", real_root.display())))
        }
        Err(e) => Err(e),
    }
}

/// Deletes a trash directory; whether there was one.
fn purge(bin: &Path) -> io::Result<bool> {
    if !bin.exists() {
        return Ok(false);
    }
    gone(std::fs::remove_dir_all(bin))?;
    Ok(true)
}

/// A removal that found nothing (or raced another removal of the same trash) succeeded.
fn gone(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Finishes removals that were cut short: what is left in the blob area's trash.
pub fn sweep_trash(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("blobs")) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TRASH_PREFIX) {
            match gone(std::fs::remove_dir_all(e.path())) {
                Ok(()) => removed += 1,
                Err(err) => tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a deleted blob store's files"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, path: &str) -> FileStore {
        FileStore { name: name.into(), path: path.into(), soft_quota: None }
    }

    fn populate(root: &Path) {
        for part in STORE_LAYOUT {
            std::fs::create_dir_all(root.join(part).join("x")).unwrap();
            std::fs::write(root.join(part).join("x/blob"), b"bytes").unwrap();
        }
    }

    #[test]
    fn a_store_in_the_blob_area_is_removed_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        populate(&data.join("blobs/a"));
        assert_eq!(remove_store_files(&data, &store("a", "a"), &[store("b", "b")], "t").unwrap(), Removal::Removed);
        assert!(!data.join("blobs/a").exists());
        assert_eq!(std::fs::read_dir(data.join("blobs")).unwrap().count(), 0, "no trash left");
        assert_eq!(remove_store_files(&data, &store("a", "a"), &[], "t").unwrap(), Removal::Absent);
    }

    #[test]
    fn a_directory_another_store_uses_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        populate(&data.join("blobs/a/b"));
        for (path, other) in [("a", "a"), ("a", "a/b"), ("a/b", "a")] {
            let kept = remove_store_files(&data, &store("x", path), &[store("y", other)], "t").unwrap();
            assert!(matches!(kept, Removal::Kept(ref why) if why.contains("blob store y")), "{path} vs {other}: {kept:?}");
        }
        assert!(data.join("blobs/a/b/blobs/x/blob").exists());
    }

    #[test]
    fn nothing_outside_the_blob_area_is_removed_through_a_relative_path() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("blobs")).unwrap();
        let outside = tmp.path().join("outside");
        populate(&outside);
        std::os::unix::fs::symlink(&outside, data.join("blobs/link")).unwrap();
        assert!(matches!(remove_store_files(&data, &store("l", "link"), &[], "t").unwrap(), Removal::Kept(_)));
        assert!(matches!(remove_store_files(&data, &store("d", "."), &[], "t").unwrap(), Removal::Kept(_)));
        assert!(outside.join("blobs/x/blob").exists());
        assert!(data.join("blobs").exists());
    }

    #[test]
    fn an_absolute_store_loses_only_what_wharf_wrote_and_never_the_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("blobs")).unwrap();
        let own = tmp.path().join("own");
        populate(&own);
        std::fs::write(own.join("notes.txt"), b"the admin's").unwrap();
        let abs = own.to_str().unwrap();
        assert!(matches!(remove_store_files(&data, &store("o", abs), &[], "t").unwrap(), Removal::Kept(ref why) if why.contains("other files")));
        assert!(!own.join("blobs").exists() && !own.join("uploads").exists() && own.join("notes.txt").exists());
        std::fs::remove_file(own.join("notes.txt")).unwrap();
        populate(&own);
        assert_eq!(remove_store_files(&data, &store("o", abs), &[], "t").unwrap(), Removal::Removed);
        assert!(!own.exists());

        for holder in [tmp.path().to_path_buf(), data.clone()] {
            let kept = remove_store_files(&data, &store("h", holder.to_str().unwrap()), &[], "t").unwrap();
            assert!(matches!(kept, Removal::Kept(ref why) if why.contains("data directory")), "{kept:?}");
        }
        assert!(data.join("blobs").exists());
    }

    #[test]
    fn running_a_removal_again_finishes_what_a_crash_left() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        // Moved into the trash, then the process died.
        populate(&data.join("blobs/a"));
        std::fs::rename(data.join("blobs/a"), data.join("blobs/.deleted-t")).unwrap();
        assert_eq!(remove_store_files(&data, &store("a", "a"), &[], "t").unwrap(), Removal::Removed);
        assert_eq!(std::fs::read_dir(data.join("blobs")).unwrap().count(), 0, "no trash left");

        // An absolute store with blobs/ moved aside and uploads/ not yet.
        let own = tmp.path().join("own");
        populate(&own);
        std::fs::create_dir_all(own.join(".deleted-t")).unwrap();
        std::fs::rename(own.join("blobs"), own.join(".deleted-t/blobs")).unwrap();
        assert_eq!(remove_store_files(&data, &store("o", own.to_str().unwrap()), &[], "t").unwrap(), Removal::Removed);
        assert!(!own.exists());
    }
}
