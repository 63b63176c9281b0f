//! Wrong passwords by (canonical user name, client address), shared by every node (see
//! `security::principal`): a guesser who alternates nodes meets the pause their count reached on
//! all of them together.

use diesel::prelude::*;

use super::schema::login_failures as lf;
use super::{AnyConnection, DbError};

/// Whether wrong passwords were counted for `user` from `client` (`None`: none), and when the
/// last pause they started ends.
pub fn state(conn: &mut AnyConnection, user: &str, client: &str) -> Result<Option<Option<i64>>, DbError> {
    Ok(lf::table.find((user, client)).select(lf::paused_until).get_result(conn).optional()?)
}

/// Counts one more wrong password and returns (the count, when the pause it starts ends). A
/// count whose last failure is older than `forget_after_ms` starts again from zero; rows that
/// old are removed. Runs inside [`super::Db::write`]: a read and an upsert that concurrent
/// failures on other nodes cannot interleave (SERIALIZABLE on PostgreSQL, retried).
pub fn record(
    conn: &mut AnyConnection,
    user: &str,
    client: &str,
    now: i64,
    forget_after_ms: i64,
    pause_for: impl Fn(u32) -> Option<i64>,
) -> Result<(u32, Option<i64>), DbError> {
    let cutoff = now.saturating_sub(forget_after_ms);
    let old: Option<(i64, i64)> = lf::table.find((user, client)).select((lf::count, lf::last_at)).get_result(conn).optional()?;
    let count = match old {
        Some((c, last)) if last >= cutoff => c.saturating_add(1),
        _ => 1,
    };
    let count32 = count.clamp(0, u32::MAX as i64) as u32;
    let until = pause_for(count32).map(|p| now.saturating_add(p));
    if old.is_some() {
        diesel::update(lf::table.find((user, client))).set((lf::count.eq(count), lf::last_at.eq(now), lf::paused_until.eq(until))).execute(conn)?;
    } else {
        diesel::insert_into(lf::table)
            .values((lf::username.eq(user), lf::client.eq(client), lf::count.eq(count), lf::last_at.eq(now), lf::paused_until.eq(until)))
            .execute(conn)?;
    }
    diesel::delete(lf::table.filter(lf::last_at.lt(cutoff)).filter(lf::paused_until.is_null().or(lf::paused_until.lt(now)))).execute(conn)?;
    Ok((count32, until))
}

/// A right password: the count for `user` from `client` starts again.
pub fn clear(conn: &mut AnyConnection, user: &str, client: &str) -> Result<(), DbError> {
    diesel::delete(lf::table.find((user, client))).execute(conn)?;
    Ok(())
}
