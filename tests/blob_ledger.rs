//! The garbage-collection race, step by step instead of by luck: a real blob store on disk, the
//! real ledger in the database (SQLite, and PostgreSQL when `WHARF_TEST_DATABASE_URL` names one),
//! and each interleaving of a writer and a pass played out in order. Whichever comes first, the
//! writer never ends up relying on bytes that go away.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use diesel::RunQueryDsl;
use wharf::db::meta::SqlMeta;
use wharf::db::{blobs, repos, Db};
use wharf_format::{BlobStore, Digest, MetaError, MetaStore, NewAsset, Write};

fn backends() -> Vec<(String, Db, i64)> {
    common::test_databases()
        .into_iter()
        .map(|(n, url)| (n, Db::open(&url, 4).unwrap()))
        .map(|(n, db)| {
            db.run_sync(|c| {
                repos::insert_blob_store(c, "default", "file", "{}")?;
                repos::insert(c, "r1", "docker", "hosted", "default", "{}")
            })
            .unwrap();
            let id = db.run_sync(|c| repos::get(c, "r1")).unwrap().unwrap().id;
            (n, db, id)
        })
        .collect()
}

/// A lease long enough that no takeover happens unless a test ages a mark on purpose.
const LEASE_MS: i64 = 60_000;

fn store(meta: &Arc<SqlMeta>) -> BlobStore {
    let dir = tempfile::tempdir().unwrap().keep();
    BlobStore::filesystem("default", &dir).unwrap().with_ledger(meta.clone(), LEASE_MS)
}

fn link(repo: i64, path: &str, digest: &Digest) -> Write {
    Write::Upsert { repo, asset: NewAsset { path: path.into(), kind: "blob".into(), digest: Some(digest.to_string()), size: 5, ..Default::default() } }
}

/// Makes every row look untouched for an hour (a pass with a one-second grace may take them).
async fn age_all(db: &Db) {
    db.write(|c| {
        diesel::sql_query("UPDATE blobs SET touched_at = touched_at - 3600000").execute(c)?;
        Ok(())
    })
    .await
    .unwrap();
}

async fn mark(db: &Db) -> (Vec<String>, i64) {
    let cutoff = wharf_format::now_millis() - 1000;
    let (found, _) = db.run(move |c| Ok(blobs::candidates(c, "default", cutoff, "", 100)?)).await.unwrap();
    let digests: Vec<String> = found.into_iter().map(|c| c.digest).collect();
    let (marked, at) = db.write(move |c| Ok(blobs::mark(c, "default", cutoff, &digests)?)).await.unwrap();
    (marked.into_iter().map(|m| m.digest).collect(), at)
}

/// A pass reads the ledger a window at a time, so a read never walks a long ledger of live
/// blobs; candidates before, inside and after windows full of referenced or young rows are all
/// found, and a page ends early when `limit` candidates are found.
#[tokio::test]
async fn candidates_are_found_a_window_at_a_time() {
    let rows = 2 * blobs::WINDOW + 10;
    for (backend, db, _) in backends() {
        db.write(move |c| {
            for i in 0..rows {
                blobs::touch(c, "default", &format!("d{i:06}"), 1)?;
            }
            diesel::sql_query("UPDATE blobs SET touched_at = 0 WHERE digest IN ('d000000', 'd004100', 'd004101', 'd008201')").execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
        let cutoff = wharf_format::now_millis() - 60_000;
        let (mut found, mut pages) = (Vec::new(), 0);
        let mut after = Some(String::new());
        while let Some(from) = after.take() {
            let (page, next) = db.run(move |c| Ok(blobs::candidates(c, "default", cutoff, &from, 1)?)).await.unwrap();
            assert!(page.len() <= 1, "{backend}");
            found.extend(page.into_iter().map(|c| c.digest));
            after = next;
            pages += 1;
        }
        assert_eq!(found, ["d000000", "d004100", "d004101", "d008201"], "{backend}");
        // One page per candidate (the limit), plus the windows in between without one.
        assert!((4..=8).contains(&pages), "{backend}: {pages} pages");
    }
}

#[tokio::test]
async fn a_writer_that_touches_first_keeps_its_blob_from_the_pass() {
    for (backend, db, repo) in backends() {
        let meta = Arc::new(SqlMeta::new(db.clone()));
        let store = store(&meta);
        let d = store.put_bytes(Bytes::from_static(b"layer")).await.unwrap();
        age_all(&db).await;
        // The writer finds the blob already stored (a deduplicated upload), which touches it...
        assert_eq!(store.put_bytes(Bytes::from_static(b"layer")).await.unwrap(), d);
        // ...so a pass deciding right now leaves it, though nothing names it yet.
        let (marked, _) = mark(&db).await;
        assert!(!marked.contains(&d.to_string()), "{backend}: a touched blob was marked");
        meta.commit(vec![], vec![link(repo, "img/blobs/1", &d)]).await.unwrap();
        assert_eq!(store.size(&d).await.unwrap(), Some(5), "{backend}");
    }
}

#[tokio::test]
async fn a_writer_that_comes_after_the_mark_waits_and_writes_the_bytes_afresh() {
    for (backend, db, repo) in backends() {
        let meta = Arc::new(SqlMeta::new(db.clone()));
        let store = Arc::new(store(&meta));
        let d = store.put_bytes(Bytes::from_static(b"layer")).await.unwrap();
        age_all(&db).await;
        let (marked, at) = mark(&db).await;
        assert_eq!(marked, vec![d.to_string()], "{backend}");
        // The pass has marked it and not deleted it yet: a writer that wants the same content
        // must not take the bytes it sees for stored.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { store.put_bytes(Bytes::from_static(b"layer")).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!writer.is_finished(), "{backend}: the writer went ahead while the blob was being deleted");
        // A commit naming it now is refused: it would point at bytes about to go.
        let res = meta.commit(vec![], vec![link(repo, "img/blobs/1", &d)]).await;
        assert!(matches!(res, Err(MetaError::BlobGone(_))), "{backend}: {res:?}");
        // The pass deletes the object, then the row; the writer then writes the bytes again.
        store.delete(&d).await.unwrap();
        let key = d.to_string();
        db.write(move |c| Ok(blobs::forget(c, "default", &key, at)?)).await.unwrap();
        let again = tokio::time::timeout(Duration::from_secs(30), writer).await.expect("the writer goes on once the deletion is done").unwrap().unwrap();
        assert_eq!(again, d);
        assert_eq!(store.size(&d).await.unwrap(), Some(5), "{backend}: the bytes are there again");
        meta.commit(vec![], vec![link(repo, "img/blobs/1", &d)]).await.unwrap();
        let (marked, _) = mark(&db).await;
        assert!(marked.is_empty(), "{backend}: a named, freshly touched blob is not marked: {marked:?}");
    }
}

#[tokio::test]
async fn a_writer_finishes_a_deletion_that_a_dead_pass_left_and_keeps_its_bytes() {
    for (backend, db, _repo) in backends() {
        let meta = Arc::new(SqlMeta::new(db.clone()));
        let store = store(&meta);
        let d = store.put_bytes(Bytes::from_static(b"layer")).await.unwrap();
        age_all(&db).await;
        let (marked, _) = mark(&db).await;
        assert_eq!(marked, vec![d.to_string()], "{backend}");
        // The pass died after marking; its mark is older than the lease now.
        db.write(|c| {
            diesel::sql_query(format!("UPDATE blobs SET marked_at = marked_at - {}", 2 * LEASE_MS)).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
        let again =
            tokio::time::timeout(Duration::from_secs(30), store.put_bytes(Bytes::from_static(b"layer"))).await.expect("no wait for a dead pass").unwrap();
        assert_eq!(again, d);
        assert_eq!(store.size(&d).await.unwrap(), Some(5), "{backend}");
        let state: Vec<(String,)> =
            db.run(|c| Ok(diesel::sql_query("SELECT state FROM blobs").load::<StateRow>(c)?.into_iter().map(|r| (r.state,)).collect())).await.unwrap();
        assert_eq!(state, vec![("live".to_string(),)], "{backend}: the row is live again");
    }
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
}
