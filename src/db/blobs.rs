//! The blob ledger (`blobs`): one row per blob a blob store holds or is about to hold, its size,
//! when a writer last relied on it, and whether a collection pass is deleting it. The rules that
//! make online garbage collection safe live here, in one place:
//!
//! - a writer touches a blob's row before it relies on the bytes ([`touch`]);
//! - a commit links a blob only while its row is live ([`linkable`], inside the commit's
//!   transaction);
//! - a pass marks a row `deleting` only if it is live, untouched since the cutoff and no asset of
//!   a repository on that store names it, all in one transaction ([`mark`]); it deletes the
//!   object, then the row ([`forget`]).
//!
//! Each of these is one transaction through `Db::write` (serialized on SQLite, SERIALIZABLE on
//! PostgreSQL), so a mark and a touch or link of the same blob are ordered: either the writer
//! came first (the pass then skips the blob) or the pass did (the writer waits and writes the
//! bytes afresh, or its commit fails rather than point at a blob that is going away).

use diesel::prelude::*;
use wharf_format::now_millis;

use super::schema::{assets, blobs, repositories};
use super::AnyConnection;

pub const LIVE: &str = "live";
pub const DELETING: &str = "deleting";

/// `Ok(None)`: the row is live (and now touched); `Ok(Some(marked_at))`: a pass is deleting it.
pub fn touch(conn: &mut AnyConnection, store: &str, digest: &str, size: i64) -> QueryResult<Option<i64>> {
    let now = now_millis();
    let row: Option<(String, Option<i64>)> = blobs::table.find((store, digest)).select((blobs::state, blobs::marked_at)).get_result(conn).optional()?;
    match row {
        None => {
            diesel::insert_into(blobs::table)
                .values((blobs::blob_store.eq(store), blobs::digest.eq(digest), blobs::size.eq(size), blobs::state.eq(LIVE), blobs::touched_at.eq(now)))
                .execute(conn)?;
            Ok(None)
        }
        Some((state, _)) if state == LIVE => {
            diesel::update(blobs::table.find((store, digest))).set((blobs::touched_at.eq(now), blobs::size.eq(size))).execute(conn)?;
            Ok(None)
        }
        Some((_, marked_at)) => Ok(Some(marked_at.unwrap_or(0))),
    }
}

/// Moves a deletion from mark `marked_at` to a new mark owned by the caller.
pub fn claim_deletion(conn: &mut AnyConnection, store: &str, digest: &str, marked_at: i64) -> QueryResult<Option<i64>> {
    let mark = now_millis().max(marked_at + 1);
    let n = diesel::update(blobs::table.find((store, digest)).filter(blobs::state.eq(DELETING)).filter(blobs::marked_at.eq(marked_at)))
        .set(blobs::marked_at.eq(mark))
        .execute(conn)?;
    Ok((n == 1).then_some(mark))
}

/// Drops the row of a deleted blob, if it still carries the deleter's mark.
pub fn forget(conn: &mut AnyConnection, store: &str, digest: &str, marked_at: i64) -> QueryResult<usize> {
    diesel::delete(blobs::table.find((store, digest)).filter(blobs::state.eq(DELETING)).filter(blobs::marked_at.eq(marked_at))).execute(conn)
}

/// [`forget`] for many rows of one mark.
pub fn forget_all(conn: &mut AnyConnection, store: &str, digests: &[String], marked_at: i64) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in digests.chunks(500) {
        n += diesel::delete(
            blobs::table
                .filter(blobs::blob_store.eq(store))
                .filter(blobs::digest.eq_any(chunk))
                .filter(blobs::state.eq(DELETING))
                .filter(blobs::marked_at.eq(marked_at)),
        )
        .execute(conn)?;
    }
    Ok(n)
}

/// The blob store of repository `repo`.
pub fn store_of(conn: &mut AnyConnection, repo: i64) -> QueryResult<String> {
    repositories::table.find(repo).select(repositories::blob_store).get_result(conn)
}

/// Whether an asset of a repository on `store` may name `digest` now: its row is live.
pub fn linkable(conn: &mut AnyConnection, store: &str, digest: &str) -> QueryResult<bool> {
    let state: Option<String> = blobs::table.find((store, digest)).select(blobs::state).get_result(conn).optional()?;
    Ok(state.as_deref() == Some(LIVE))
}

/// How many assets of the repositories on `blob_store` name each of `digests`.
pub fn references(conn: &mut AnyConnection, blob_store: &str, digests: &[String]) -> QueryResult<std::collections::HashMap<String, i64>> {
    let mut out = std::collections::HashMap::new();
    for chunk in digests.chunks(500) {
        let repos = repositories::table.filter(repositories::blob_store.eq(blob_store)).select(repositories::id);
        let rows: Vec<(Option<String>, i64)> = assets::table
            .filter(assets::repository_id.eq_any(repos))
            .filter(assets::digest.eq_any(chunk))
            .group_by(assets::digest)
            .select((assets::digest, diesel::dsl::count_star()))
            .load(conn)?;
        out.extend(rows.into_iter().filter_map(|(d, n)| Some((d?, n))));
    }
    Ok(out)
}

/// A blob a pass may take: live, untouched since `cutoff`, named by no asset of a repository on
/// its store.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub digest: String,
    pub size: i64,
}

/// Ledger rows a pass reads per page, whatever few of them are garbage: a page is one bounded
/// read, never a walk of the whole ledger (the usual state: nearly every blob is referenced).
pub const WINDOW: i64 = 4096;

/// Which rows a candidate search looks at.
enum Among<'a> {
    /// Digest order, after `after` up to and including `upto`, at most `limit` candidates.
    Range {
        after: &'a str,
        upto: Option<&'a str>,
        limit: i64,
    },
    Digests(&'a [String]),
}

fn find(conn: &mut AnyConnection, store: &str, cutoff: i64, among: Among) -> QueryResult<Vec<Candidate>> {
    let referenced = assets::table
        .inner_join(repositories::table)
        .filter(assets::digest.eq(blobs::digest.nullable()))
        .filter(repositories::blob_store.eq(blobs::blob_store))
        .select(assets::path);
    let unreferenced = blobs::table.filter(blobs::blob_store.eq(store)).filter(diesel::dsl::not(diesel::dsl::exists(referenced)));
    let rows: Vec<(String, i64)> = match among {
        Among::Range { after, upto, limit } => {
            let mut query = unreferenced
                .filter(blobs::state.eq(LIVE))
                .filter(blobs::touched_at.lt(cutoff))
                .filter(blobs::digest.gt(after))
                .select((blobs::digest, blobs::size))
                .into_boxed();
            if let Some(upto) = upto {
                query = query.filter(blobs::digest.le(upto));
            }
            query.order(blobs::digest.asc()).limit(limit).load(conn)?
        }
        // Looked up by the primary key, the state and age judged here: with them in the query,
        // SQLite walked `blobs_by_touch` instead, every live row of the store for each page
        // marked (the whole ledger, while holding the write lock).
        Among::Digests(digests) => {
            let rows: Vec<(String, i64, String, i64)> = unreferenced
                .filter(blobs::digest.eq_any(digests))
                .select((blobs::digest, blobs::size, blobs::state, blobs::touched_at))
                .order(blobs::digest.asc())
                .load(conn)?;
            rows.into_iter().filter(|(_, _, state, touched_at)| state == LIVE && *touched_at < cutoff).map(|(d, size, _, _)| (d, size)).collect()
        }
    };
    Ok(rows.into_iter().map(|(digest, size)| Candidate { digest, size }).collect())
}

/// Up to `limit` candidates among the next [`WINDOW`] rows of `store` after `after` (digest
/// order), without marking them; and where the next page starts (`None`: the ledger ends).
/// A read: it takes no write lock, however long the ledger.
pub fn candidates(conn: &mut AnyConnection, store: &str, cutoff: i64, after: &str, limit: i64) -> QueryResult<(Vec<Candidate>, Option<String>)> {
    let upto: Option<String> = blobs::table
        .filter(blobs::blob_store.eq(store))
        .filter(blobs::digest.gt(after))
        .order(blobs::digest.asc())
        .offset(WINDOW - 1)
        .select(blobs::digest)
        .first(conn)
        .optional()?;
    let found = find(conn, store, cutoff, Among::Range { after, upto: upto.as_deref(), limit })?;
    let next = match found.last() {
        Some(last) if found.len() as i64 == limit => Some(last.digest.clone()),
        _ => upto,
    };
    Ok((found, next))
}

/// Marks for deletion those of `digests` that are still candidates, in the caller's (write)
/// transaction: judged again there, so a touch or a new reference since the read wins. Returns
/// them and the mark.
pub fn mark(conn: &mut AnyConnection, store: &str, cutoff: i64, digests: &[String]) -> QueryResult<(Vec<Candidate>, i64)> {
    let found = find(conn, store, cutoff, Among::Digests(digests))?;
    let mark = now_millis();
    if !found.is_empty() {
        let digests: Vec<&str> = found.iter().map(|c| c.digest.as_str()).collect();
        diesel::update(blobs::table.filter(blobs::blob_store.eq(store)).filter(blobs::digest.eq_any(digests)))
            .set((blobs::state.eq(DELETING), blobs::marked_at.eq(mark)))
            .execute(conn)?;
    }
    Ok((found, mark))
}

/// Rows a pass left marked (it was killed, or stalled): `(digest, size, marked_at)`, the first
/// `limit` in digest order. Sorted here: in digest order SQLite walked the store's whole ledger
/// by its primary key; by `blobs_by_touch` it reads only the marked rows.
pub fn marked(conn: &mut AnyConnection, store: &str, limit: i64) -> QueryResult<Vec<(String, i64, i64)>> {
    let mut rows: Vec<(String, i64, Option<i64>)> =
        blobs::table.filter(blobs::blob_store.eq(store)).filter(blobs::state.eq(DELETING)).select((blobs::digest, blobs::size, blobs::marked_at)).load(conn)?;
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows.into_iter().map(|(d, s, m)| (d, s, m.unwrap_or(0))).collect())
}

/// The recorded sizes of those of `digests` that have a row in `store`.
pub fn known(conn: &mut AnyConnection, store: &str, digests: &[String]) -> QueryResult<std::collections::HashMap<String, i64>> {
    Ok(blobs::table
        .filter(blobs::blob_store.eq(store))
        .filter(blobs::digest.eq_any(digests))
        .select((blobs::digest, blobs::size))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect())
}

/// Records the true size of rows that were written without one (a migration knew no sizes).
pub fn fix_sizes(conn: &mut AnyConnection, store: &str, sizes: &[(String, i64)]) -> QueryResult<usize> {
    let mut n = 0;
    for (digest, size) in sizes {
        n += diesel::update(blobs::table.find((store, digest)).filter(blobs::size.eq(0))).set(blobs::size.eq(size)).execute(conn)?;
    }
    Ok(n)
}

/// Rows for objects found in the store that the ledger did not know (written before it
/// existed, or by a process that died between its write and its touch): aged by the object's
/// own time, so that a later pass judges them like any other blob.
pub fn adopt(conn: &mut AnyConnection, store: &str, found: &[(String, i64, i64)]) -> QueryResult<usize> {
    let mut n = 0;
    for (digest, size, modified) in found {
        let exists = blobs::table.find((store, digest)).count().get_result::<i64>(conn)? > 0;
        if !exists {
            n += diesel::insert_into(blobs::table)
                .values((blobs::blob_store.eq(store), blobs::digest.eq(digest), blobs::size.eq(size), blobs::state.eq(LIVE), blobs::touched_at.eq(modified)))
                .execute(conn)?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::db::plans::{assert_plan, plans};

    /// A mark judges its page by the ledger's primary key. With the state and age in the query,
    /// SQLite chose `blobs_by_touch` and walked every live row of the store for each page (1.6 ms
    /// against 156 ms with a million rows, holding the write lock).
    #[test]
    fn a_mark_looks_its_page_up_by_the_primary_key() {
        let plans = plans(|c| {
            super::mark(c, "default", i64::MAX, &["sha256:00".to_string(), "sha256:01".to_string()]).unwrap();
        });
        let selects: Vec<String> = plans.into_iter().filter(|p| p.starts_with("SELECT")).collect();
        assert_plan(&selects, "SEARCH blobs USING INDEX sqlite_autoindex_blobs_1 (blob_store=? AND digest=?)", &["blobs_by_touch"]);
    }

    /// A pass starts by finishing what a killed one left marked: it reads the marked rows only,
    /// not the store's whole ledger in digest order (1.26 s at 750,000 rows).
    #[test]
    fn the_marks_left_are_read_without_walking_the_ledger() {
        let plans = plans(|c| {
            super::marked(c, "default", i64::MAX).unwrap();
        });
        assert_plan(&plans, "blobs_by_touch (blob_store=? AND state=?)", &["sqlite_autoindex_blobs_1"]);
    }
}
