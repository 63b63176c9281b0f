//! What measuring usage costs: the hard-quota check and the repository list answer from memory
//! for a few seconds and measure again only when this node wrote (the quota check, after a
//! deletion, only when the limit is reached), and the soft-quota watcher
//! reads nothing of the ledger when no store has a soft quota. On the real database (SQLite, and
//! PostgreSQL when `WHARF_TEST_DATABASE_URL` names one); "another node" is a second `SqlMeta` on
//! the same database.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use diesel::RunQueryDsl;
use wharf::db::meta::SqlMeta;
use wharf::db::{blobs, repos, Db};
use wharf::lifecycle::store_usage::{self, Scope};
use wharf_format::{MetaStore, NewAsset, QuotaError, RepoConfig, Usage, UsageMeter, Write};

fn repo_config(id: i64, hard_quota: Option<u64>) -> RepoConfig {
    RepoConfig { hard_quota, ..RepoConfig::hosted(id, "r1", "docker") }
}

/// Links a blob of `size` bytes (its ledger row first, as a blob store would write it).
async fn link(meta: &SqlMeta, db: &Db, repo: i64, digest: &str, size: i64) {
    let d = digest.to_string();
    db.write(move |c| Ok(blobs::touch(c, "default", &d, size)?)).await.unwrap();
    let asset = NewAsset { path: format!("img/blobs/{digest}"), kind: "blob".into(), digest: Some(digest.into()), size, ..Default::default() };
    meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await.unwrap();
}

fn usage(blob_count: u64, bytes: u64) -> Usage {
    Usage { blob_count, bytes }
}

#[tokio::test]
async fn usage_is_remembered_and_exact_for_this_nodes_writes() {
    for (backend, url) in common::test_databases() {
        let db = Db::open(&url, 4).unwrap();
        db.run_sync(|c| {
            repos::insert_blob_store(c, "default", "file", "{}")?;
            repos::insert(c, "r1", "docker", "hosted", "default", "{}")
        })
        .unwrap();
        let id = db.run_sync(|c| repos::get(c, "r1")).unwrap().unwrap().id;
        // A TTL no test run outlasts: nothing here depends on the clock.
        let here = Arc::new(SqlMeta::new(db.clone()).with_usage_ttl(Duration::from_secs(3600)));
        let other_node = SqlMeta::new(db.clone());
        let meter: Arc<dyn UsageMeter> = here.clone();
        let list = || here.repositories_usage(vec![(id, "default".to_string())]);

        link(&here, &db, id, "sha256:a", 10).await;
        assert_eq!(list().await.unwrap()[&id], usage(1, 10), "{backend}");
        assert_eq!(meter.repository_usage(&repo_config(id, Some(11))).await.unwrap(), usage(1, 10), "{backend}");

        // Another node's write is not measured again at once: both answer from memory.
        link(&other_node, &db, id, "sha256:b", 1000).await;
        assert_eq!(list().await.unwrap()[&id], usage(1, 10), "{backend}: the list was measured again");
        assert!(meter.check_write(&repo_config(id, Some(11))).await.is_ok(), "{backend}: the quota was measured again");

        // This node's own write counts at once, without a measurement, for the quota.
        link(&here, &db, id, "sha256:c", 5).await;
        match meter.check_write(&repo_config(id, Some(15))).await {
            Err(QuotaError::Exceeded(e)) => assert_eq!(e.used, 15, "{backend}"),
            other => panic!("{backend}: expected a refusal, got {other:?}"),
        }
        // And the list measures again, exactly (the other node's write with it).
        assert_eq!(list().await.unwrap()[&id], usage(3, 1015), "{backend}");
        assert_eq!(meter.repository_usage(&repo_config(id, Some(1))).await.unwrap(), usage(3, 1015), "{backend}");

        // After a deletion of this node's, the quota goes by the last measurement as a bound
        // (it may count what is gone) while that is below the limit, without measuring: the
        // other node's blob stays unseen.
        link(&other_node, &db, id, "sha256:d", 1000).await;
        here.commit(vec![], vec![Write::Delete { repo: id, path: "img/blobs/sha256:c".into() }]).await.unwrap();
        assert!(meter.check_write(&repo_config(id, Some(1016))).await.is_ok(), "{backend}: measured although the bound was below the limit");
        // At the limit, the deletion may have made room: measured (and the other node's blob
        // with it).
        match meter.check_write(&repo_config(id, Some(1015))).await {
            Err(QuotaError::Exceeded(e)) => assert_eq!(e.used, 2010, "{backend}"),
            other => panic!("{backend}: expected a refusal, got {other:?}"),
        }
        here.commit(vec![], vec![Write::Delete { repo: id, path: "img/blobs/sha256:d".into() }]).await.unwrap();

        // A deletion of this node's is measured again at once for the exact views.
        here.commit(vec![], vec![Write::Delete { repo: id, path: "img/blobs/sha256:b".into() }]).await.unwrap();
        assert_eq!(meter.repository_usage(&repo_config(id, Some(1))).await.unwrap(), usage(1, 10), "{backend}");
        assert_eq!(list().await.unwrap()[&id], usage(1, 10), "{backend}");
    }
}

#[tokio::test]
async fn the_soft_quota_watcher_reads_the_ledger_only_of_stores_with_a_soft_quota() {
    for (backend, url) in common::test_databases() {
        let db = Db::open(&url, 4).unwrap();
        let data = tempfile::tempdir().unwrap();
        db.run_sync(|c| {
            repos::insert_blob_store(c, "plain", "file", r#"{"path": "plain"}"#)?;
            blobs::touch(c, "plain", "sha256:p", 7)?;
            Ok(())
        })
        .unwrap();
        let rename = |from: &str, to: &str| {
            let sql = format!("ALTER TABLE {from} RENAME TO {to}");
            db.run_sync(move |c| Ok(diesel::sql_query(sql).execute(c)?)).unwrap();
        };

        // No soft quota anywhere: a pass does not read the ledger at all (it is out of reach).
        rename("blobs", "blobs_out_of_reach");
        let watched = store_usage::reports(&db, data.path(), Scope::SoftQuotas).await;
        rename("blobs_out_of_reach", "blobs");
        assert!(watched.expect("no ledger read").is_empty(), "{backend}");
        let mut violating = HashSet::new();
        store_usage::warn_soft_quotas(&db, data.path(), &mut violating).await;
        assert!(violating.is_empty(), "{backend}");

        // One store with a soft quota: that one is measured, and the other is not reported.
        db.run_sync(|c| {
            repos::insert_blob_store(c, "watched", "file", r#"{"path": "watched", "softQuota": {"type": "spaceUsedQuota", "limit": 10}}"#)?;
            blobs::touch(c, "watched", "sha256:w", 11)?;
            Ok(())
        })
        .unwrap();
        let watched = store_usage::reports(&db, data.path(), Scope::SoftQuotas).await.unwrap();
        assert_eq!(watched.iter().map(|r| (r.store.name.as_str(), r.usage)).collect::<Vec<_>>(), [("watched", usage(1, 11))], "{backend}");
        store_usage::warn_soft_quotas(&db, data.path(), &mut violating).await;
        assert_eq!(violating, HashSet::from(["watched".to_string()]), "{backend}");
        let all = store_usage::reports(&db, data.path(), Scope::All).await.unwrap();
        assert_eq!(all.len(), 2, "{backend}: the admin list still has every store");
    }
}

/// An asset a migration made with size 0 (a hosted PyPI file's PEP 658 metadata, whose true size
/// a GC walk later wrote in the ledger) counts with the ledger's size; the others with their own.
#[tokio::test]
async fn a_blob_its_assets_say_is_empty_counts_with_the_ledgers_size() {
    for (backend, url) in common::test_databases() {
        let db = Db::open(&url, 4).unwrap();
        db.run_sync(|c| {
            repos::insert_blob_store(c, "default", "file", "{}")?;
            repos::insert(c, "r1", "pypi", "hosted", "default", "{}")
        })
        .unwrap();
        let id = db.run_sync(|c| repos::get(c, "r1")).unwrap().unwrap().id;
        let meta = SqlMeta::new(db.clone());
        link(&meta, &db, id, "sha256:file", 10).await;
        // What the migration wrote: the ledger's row and the asset both at 0 bytes.
        link(&meta, &db, id, "sha256:metadata", 0).await;
        let measured =
            |db: &Db| db.run_sync(move |c| Ok((wharf::db::usage::repository_usage(c, id, "default")?, wharf::db::usage::repositories_usage(c)?[&id])));
        assert_eq!(measured(&db).unwrap(), (usage(2, 10), usage(2, 10)), "{backend}");
        // The walk finds the object's true size.
        db.run_sync(|c| Ok(blobs::fix_sizes(c, "default", &[("sha256:metadata".to_string(), 70)])?)).unwrap();
        assert_eq!(measured(&db).unwrap(), (usage(2, 80), usage(2, 80)), "{backend}");
    }
}
