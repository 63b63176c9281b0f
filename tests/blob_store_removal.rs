//! Deleting a blob store while another node creates one at the same path, step by step instead
//! of by luck: the real database (SQLite, and PostgreSQL when `WHARF_TEST_DATABASE_URL` names
//! one), the real directories, and the same functions the admin API runs for a delete and a
//! create, played out in the order that used to lose a store's files.

mod common;

use std::path::{Path, PathBuf};

use diesel::RunQueryDsl;
use wharf::db::{removals, repos, Db};
use wharf::lifecycle::store_removal::{self, Claim, Deletion, Removal};
use wharf::lifecycle::store_usage::FileStore;
use wharf_format::now_millis;

fn backends() -> Vec<(String, Db, PathBuf)> {
    common::test_databases()
        .into_iter()
        .map(|(n, url)| {
            let data = tempfile::tempdir().unwrap().keep().join("data");
            (n, Db::open(&url, 4).unwrap(), data)
        })
        .collect()
}

fn file_store(name: &str, path: &str) -> FileStore {
    FileStore { name: name.into(), path: path.into(), soft_quota: None }
}

/// The admin API's create: the checks and the insert in one transaction, then a blob written.
/// `Err` is the refusal's message.
async fn create(db: &Db, data: &Path, name: &str, path: &str, blob: &str) -> Result<(), String> {
    let (store, dir) = (file_store(name, path), data.to_path_buf());
    let root = store.root(data);
    if let Some(refusal) = db.write(move |c| store_removal::insert_if_free(c, &dir, &store, false)).await.unwrap() {
        return Err(refusal.message);
    }
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::write(root.join("blobs").join(blob), b"bytes").unwrap();
    Ok(())
}

/// The admin API's delete, up to its commit.
async fn delete(db: &Db, name: &str, token: &str) -> Claim {
    let (n, t) = (name.to_string(), token.to_string());
    match db.write(move |c| store_removal::delete_store(c, &n, &t)).await.unwrap() {
        Deletion::Deleted(claim, _) => claim.expect("a file store's removal"),
        Deletion::InUse(users) => panic!("{name} is used by {users:?}"),
        Deletion::NotFound => panic!("{name} not found"),
        Deletion::TaskRunning(task, _) => panic!("{name}: task {task} runs"),
    }
}

/// Node A deletes s1 and commits; node B creates s1 again at the same path before A removed the
/// files; then A removes them. B's store must keep its files, so B's create must wait.
#[tokio::test]
async fn a_store_created_while_a_deleted_one_is_removed_keeps_its_files() {
    for (backend, db, data) in backends() {
        create(&db, &data, "s1", "s1", "old").await.unwrap();
        let claim = delete(&db, "s1", "node-a").await;

        let created = create(&db, &data, "s1", "s1", "new").await;
        let new_blob = data.join("blobs/s1/blobs/new");
        assert_eq!(store_removal::carry_out(&db, &data, claim).await.unwrap(), Removal::Removed, "{backend}");
        if created.is_ok() {
            assert!(new_blob.exists(), "{backend}: the store created meanwhile lost its files to the old one's removal");
        }
        let refusal = created.expect_err("a create under the name of a store being removed is refused");
        assert!(refusal.contains("still being removed"), "{backend}: {refusal}");
        assert!(!data.join("blobs/s1").exists(), "{backend}: the deleted store's files are gone");

        // Once they are, the name and the path are free again, and nothing removes the new store.
        create(&db, &data, "s1", "s1", "new").await.unwrap();
        assert!(new_blob.exists(), "{backend}");
    }
}

/// While a removal is unfinished, its directory is taken for every name: the same path, one
/// inside it and one around it.
#[tokio::test]
async fn a_removal_in_progress_reserves_its_directory_for_every_name() {
    for (backend, db, data) in backends() {
        create(&db, &data, "outer", "a/b", "x").await.unwrap();
        let claim = delete(&db, "outer", "node-a").await;
        for path in ["a/b", "a/b/c", "a"] {
            let refusal = create(&db, &data, "other", path, "y").await.expect_err(path);
            assert!(refusal.contains("deleted blob store outer") && refusal.contains("still being removed"), "{backend} {path}: {refusal}");
        }
        create(&db, &data, "elsewhere", "a/c", "z").await.expect("a path that does not overlap is free");
        assert_eq!(store_removal::carry_out(&db, &data, claim).await.unwrap(), Removal::Removed, "{backend}");
        create(&db, &data, "other", "a/b", "y").await.unwrap();
    }
}

/// Node A deletes and then stalls (or dies) before it removes anything. Once its claim ran out,
/// node B takes the removal over (and stalls in turn), then node C; C finishes it and creates
/// the store again. When A wakes up it must touch nothing: neither while B holds the removal,
/// nor once a new store lives at the path.
#[tokio::test]
async fn a_removal_is_taken_over_once_its_owner_stalled_and_the_owner_then_touches_nothing() {
    async fn age(db: &Db) {
        db.write(|c| Ok(diesel::sql_query("UPDATE blob_store_removals SET claimed_until = 0").execute(c)?)).await.unwrap();
    }
    for (backend, db, data) in backends() {
        create(&db, &data, "s1", "s1", "old").await.unwrap();
        let stalled = delete(&db, "s1", "node-a").await;
        assert_eq!(store_removal::finish_abandoned(&db, &data).await, 0, "{backend}: a live claim is not taken over");

        age(&db).await;
        let taken = db.write(|c| removals::take_abandoned(c, "node-b", now_millis(), store_removal::REMOVAL_LEASE_MS)).await.unwrap();
        assert_eq!(taken.len(), 1, "{backend}");
        assert_eq!(store_removal::carry_out(&db, &data, stalled.clone()).await.unwrap(), Removal::TakenOver, "{backend}");
        assert!(data.join("blobs/s1/blobs/old").exists(), "{backend}: the owner that lost its claim moved nothing");

        age(&db).await;
        assert_eq!(store_removal::finish_abandoned(&db, &data).await, 1, "{backend}");
        assert!(!data.join("blobs/s1").exists(), "{backend}: the last taker removed the files");
        create(&db, &data, "s1", "s1", "new").await.expect("free once the taker finished");

        assert_eq!(store_removal::carry_out(&db, &data, stalled).await.unwrap(), Removal::TakenOver, "{backend}");
        assert!(data.join("blobs/s1/blobs/new").exists(), "{backend}: the stalled owner left the new store alone");
        let stores = db.run(repos::list_blob_stores).await.unwrap();
        assert_eq!(stores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["s1"], "{backend}");
    }
}
