//! Removing a deleted blob store's files. The rule: remove only what is certainly the store's.
//!
//! - A store under the data directory's blob area (`<data_dir>/blobs/<path>`) is renamed into
//!   the area's trash (`<data_dir>/blobs/.deleted-<uuid>`) and then removed; a removal cut short
//!   (a crash) is finished by [`sweep_trash`] at the next start. Its path must resolve (symbolic
//!   links followed) to a directory strictly inside the area.
//! - A store at an absolute path of its own: only what wharf writes there (`blobs/`,
//!   `uploads/`) is removed, then the directory if that left it empty; a path that holds the
//!   data directory is never touched.
//! - A directory another store also uses (the same, one inside it, or one around it) is kept.
//!
//! This runs after the store's row is gone (the database decides that the store is unused); if
//! the files cannot be removed, the store stays deleted and the log says what was left.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::store_usage::FileStore;

/// Names in the blob area that belong to the trash, never to a store (store paths may not start
/// with a dot).
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
}

/// The same directory, or one inside the other.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `path` with symbolic links resolved as far as it exists (a store's directory may not exist).
fn resolved(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Is `path` (a relative store path) made of plain names only?
fn plain_relative(path: &str) -> bool {
    let p = Path::new(path);
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Removes `store`'s files (see the module documentation); `others` are the stores that remain.
pub fn remove_store_files(data_dir: &Path, store: &FileStore, others: &[FileStore]) -> io::Result<Removal> {
    let root = store.root(data_dir);
    if !root.exists() {
        return Ok(Removal::Absent);
    }
    let real_root = resolved(&root);
    for other in others {
        if overlaps(&real_root, &resolved(&other.root(data_dir))) {
            return Ok(Removal::Kept(format!("blob store {} uses {} too", other.name, other.root(data_dir).display())));
        }
    }
    if real_root.starts_with(resolved(data_dir)) || resolved(data_dir).starts_with(&real_root) {
        let area = resolved(&data_dir.join("blobs"));
        if Path::new(&store.path).is_absolute() && !real_root.starts_with(&area) {
            return Ok(Removal::Kept(format!("{} holds wharf's data directory", root.display())));
        }
        if !plain_relative(&store.path) && !Path::new(&store.path).is_absolute() {
            return Ok(Removal::Kept(format!("{} is not a plain path inside the blob area", store.path)));
        }
        if !real_root.starts_with(&area) || real_root == area {
            return Ok(Removal::Kept(format!("{} is not inside the blob area {}", real_root.display(), area.display())));
        }
        let trash = area.join(format!("{TRASH_PREFIX}{}", uuid::Uuid::new_v4()));
        std::fs::rename(&real_root, &trash)?;
        gone(std::fs::remove_dir_all(&trash))?;
        return Ok(Removal::Removed);
    }
    if !Path::new(&store.path).is_absolute() {
        // A relative path that resolves outside the data directory: through a link the
        // administrator made; what it points at is not ours to remove.
        return Ok(Removal::Kept(format!("{} resolves outside the blob area, to {}", root.display(), real_root.display())));
    }
    for part in STORE_LAYOUT {
        gone(std::fs::remove_dir_all(real_root.join(part)))?;
    }
    match std::fs::remove_dir(&real_root) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            Ok(Removal::Kept(format!("removed wharf's blobs/ and uploads/; {} holds other files and stays", real_root.display())))
        }
        Err(e) => Err(e),
    }
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
        assert_eq!(remove_store_files(&data, &store("a", "a"), &[store("b", "b")]).unwrap(), Removal::Removed);
        assert!(!data.join("blobs/a").exists());
        assert_eq!(std::fs::read_dir(data.join("blobs")).unwrap().count(), 0, "no trash left");
        assert_eq!(remove_store_files(&data, &store("a", "a"), &[]).unwrap(), Removal::Absent);
    }

    #[test]
    fn a_directory_another_store_uses_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        populate(&data.join("blobs/a/b"));
        for (path, other) in [("a", "a"), ("a", "a/b"), ("a/b", "a")] {
            let kept = remove_store_files(&data, &store("x", path), &[store("y", other)]).unwrap();
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
        assert!(matches!(remove_store_files(&data, &store("l", "link"), &[]).unwrap(), Removal::Kept(_)));
        assert!(matches!(remove_store_files(&data, &store("d", "."), &[]).unwrap(), Removal::Kept(_)));
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
        assert!(matches!(remove_store_files(&data, &store("o", abs), &[]).unwrap(), Removal::Kept(ref why) if why.contains("other files")));
        assert!(!own.join("blobs").exists() && !own.join("uploads").exists() && own.join("notes.txt").exists());
        std::fs::remove_file(own.join("notes.txt")).unwrap();
        populate(&own);
        assert_eq!(remove_store_files(&data, &store("o", abs), &[]).unwrap(), Removal::Removed);
        assert!(!own.exists());

        for holder in [tmp.path().to_path_buf(), data.clone()] {
            let kept = remove_store_files(&data, &store("h", holder.to_str().unwrap()), &[]).unwrap();
            assert!(matches!(kept, Removal::Kept(ref why) if why.contains("data directory")), "{kept:?}");
        }
        assert!(data.join("blobs").exists());
    }
}
