//! Download tracking's writes on both backends (SQLite, and PostgreSQL when
//! `WHARF_TEST_DATABASE_URL` names a server): a flush writes every count in chunks and never
//! moves a last download back in time; a database that fails keeps counts in memory only up to
//! the cap, counting what it drops; two nodes flushing the same assets at once lose nothing.

mod common;

use std::sync::Arc;

use diesel::prelude::*;
use wharf::db::meta::SqlMeta;
use wharf::db::schema::assets;
use wharf::db::{blobs, repos, Db};
use wharf::lifecycle::downloads::{DownloadLog, CHUNK};
use wharf_format::{Downloads, MetaStore, NewAsset, Write};

/// A database per backend with one repository holding `n` assets `a/00000` ... (all linking
/// one blob); the URL too, for a second node.
async fn backends(n: usize) -> Vec<(String, String, Db, i64)> {
    let mut out = Vec::new();
    for (backend, url) in common::test_databases() {
        let db = Db::open(&url, 4).unwrap();
        db.run_sync(|c| {
            repos::insert_blob_store(c, "default", "file", "{}")?;
            repos::insert(c, "r1", "docker", "hosted", "default", "{}")?;
            blobs::touch(c, "default", "sha256:d", 1)?;
            Ok(())
        })
        .unwrap();
        let repo = db.run_sync(|c| repos::get(c, "r1")).unwrap().unwrap().id;
        let meta = SqlMeta::new(db.clone());
        let writes: Vec<Write> = (0..n)
            .map(|i| Write::Upsert {
                repo,
                asset: NewAsset { path: path(i), kind: "blob".into(), digest: Some("sha256:d".into()), size: 1, ..Default::default() },
            })
            .collect();
        for chunk in writes.chunks(500) {
            meta.commit(vec![], chunk.to_vec()).await.unwrap();
        }
        out.push((backend, url, db, repo));
    }
    out
}

fn path(i: usize) -> String {
    format!("a/{i:05}")
}

/// Every asset's (path, download count, last download), in path order.
fn counts(db: &Db, repo: i64) -> Vec<(String, i64, Option<i64>)> {
    db.run_sync(move |c| {
        Ok(assets::table
            .filter(assets::repository_id.eq(repo))
            .order(assets::path.asc())
            .select((assets::path, assets::download_count, assets::last_downloaded))
            .load(c)?)
    })
    .unwrap()
}

#[tokio::test]
async fn a_flush_writes_every_count_in_chunks_and_never_moves_a_last_download_back() {
    let n = 2 * CHUNK + 17;
    for (backend, _, db, repo) in backends(n).await {
        // Another node recorded a download of asset 0 in the future of this one's.
        let future = wharf_format::now_millis() + 3_600_000;
        db.run_sync(move |c| {
            diesel::update(assets::table.filter(assets::repository_id.eq(repo).and(assets::path.eq(path(0)))))
                .set(assets::last_downloaded.eq(future))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
        let log = DownloadLog::new(db.clone());
        let before = wharf_format::now_millis();
        for i in 0..n {
            for _ in 0..(i % 3 + 1) {
                log.record(repo, &path(i));
            }
        }
        log.record(repo, "not/an/asset");
        assert_eq!(log.flush().await.unwrap(), n + 1, "{backend}");
        assert_eq!(log.pending(), 0, "{backend}");
        for (i, (p, count, last)) in counts(&db, repo).into_iter().enumerate() {
            assert_eq!((p.as_str(), count), (path(i).as_str(), (i % 3 + 1) as i64), "{backend}");
            if i == 0 {
                assert_eq!(last, Some(future), "{backend}: never moved back");
            } else {
                assert!(last.is_some_and(|l| l >= before), "{backend}: {p} {last:?}");
            }
        }
        // Written once: a second flush has nothing to add.
        assert_eq!(log.flush().await.unwrap(), 0, "{backend}");
        assert_eq!(counts(&db, repo)[1].1, 2, "{backend}");
    }
}

#[tokio::test]
async fn a_failing_database_keeps_counts_up_to_the_cap_and_counts_what_it_drops() {
    for (backend, _, db, repo) in backends(12).await {
        let log = DownloadLog::with_capacity(db.clone(), 10);
        for i in 0..8 {
            log.record(repo, &path(i));
        }
        // The table is gone for a while: every write fails.
        let rename = |from: &'static str, to: &'static str| {
            db.run_sync(move |c| {
                diesel::sql_query(format!("ALTER TABLE {from} RENAME TO {to}")).execute(c)?;
                Ok(())
            })
            .unwrap()
        };
        rename("assets", "assets_offline");
        assert!(log.flush().await.is_err(), "{backend}");
        assert_eq!(log.pending(), 8, "{backend}: the counts went back");
        // Two more assets fit; two do not, nor two downloads each of theirs.
        for i in 8..12 {
            log.record(repo, &path(i));
            log.record(repo, &path(i));
        }
        assert_eq!(log.pending(), 10, "{backend}");
        assert_eq!(log.take_dropped(), 4, "{backend}");
        // Assets already waiting are still counted.
        log.record(repo, &path(0));
        assert!(log.flush().await.is_err(), "{backend}");
        assert_eq!((log.pending(), log.take_dropped()), (10, 0), "{backend}: nothing lost on the way back");
        rename("assets_offline", "assets");
        assert_eq!(log.flush().await.unwrap(), 10, "{backend}");
        let got: Vec<i64> = counts(&db, repo).into_iter().map(|(_, c, _)| c).collect();
        assert_eq!(got, [2, 1, 1, 1, 1, 1, 1, 1, 2, 2, 0, 0], "{backend}");
    }
}

/// Two nodes count downloads of the same assets and flush at the same moments, many times:
/// every download is counted once (on PostgreSQL their transactions meet on the same rows,
/// in the same order, and the loser retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_flushing_the_same_assets_at_once_count_every_download() {
    const ASSETS: usize = 1_200;
    const ROUNDS: i64 = 4;
    for (backend, url, db, repo) in backends(ASSETS).await {
        let nodes: Vec<Arc<DownloadLog>> = vec![Arc::new(DownloadLog::new(db.clone())), Arc::new(DownloadLog::new(Db::open(&url, 4).unwrap()))];
        for _ in 0..ROUNDS {
            for (k, node) in nodes.iter().enumerate() {
                // Recorded in opposite orders; the flush decides the order it writes in.
                for i in 0..ASSETS {
                    node.record(repo, &path(if k == 0 { i } else { ASSETS - 1 - i }));
                }
            }
            let flushes: Vec<_> = nodes.iter().cloned().map(|node| tokio::spawn(async move { node.flush().await })).collect();
            for f in flushes {
                assert_eq!(f.await.unwrap().unwrap(), ASSETS, "{backend}");
            }
        }
        assert!(counts(&db, repo).iter().all(|(_, c, _)| *c == 2 * ROUNDS), "{backend}");
    }
}
