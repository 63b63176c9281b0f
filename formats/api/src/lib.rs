//! The contract between the wharf server and its repository formats.
//!
//! A format crate depends on this crate only (plus actix-web's request/response types). It never
//! sees the database, the config file or the actix `App`: the server resolves the repository and
//! the caller, then hands the format a [`RepoCtx`], the request and its body. Everything a format
//! keeps goes through the [`BlobStore`] (content) and the [`MetaStore`] (metadata).
//!
//! See `docs/architecture.md` for the request flow.

pub mod archive;
pub mod audit;
pub mod blob;
pub mod cache_probe;
pub mod config;
pub mod ctx;
pub mod describe;
pub mod digest;
pub mod download;
pub mod identity;
pub mod lifecycle;
pub mod meta;
pub mod proxy;
pub mod quota;
pub mod repo;
pub mod task;
pub mod thread_class;
pub mod upload;
pub mod upstream;

#[cfg(test)]
mod test_dir;

pub use audit::{Audit, AuditEvent};
pub use blob::{BlobError, BlobStore, ByteStream, DiskReserve, ReadCache, Room, SideHasher, SideHashes, SpaceLeft};
pub use blob::{BlobLedger, BlobRead, HashState, S3Encryption, S3Settings, Staged, Touch, DELETION_LEASE_MS};
pub use config::{ConfigError, Kind, RepoConfig, WritePolicy};
pub use ctx::{
    canonical_user, same_user, Access, Action, Credential, Denied, Grant, Holder, Mount, Objects, Principal, Realm, RepoCtx, RepoPrivilege, CATALOG_GRANT,
};
pub use describe::DescribeError;
pub use digest::{Algorithm, AnyDigest, Digest, DigestError, Hasher};
pub use download::{DownloadError, Want};
pub use identity::{Identity, IdentityError, NewToken, TokenInfo, TokenSpec, WebLogin, WebLoginInfo, WebLoginPoll, WEB_LOGIN_TTL_MS};
pub use lifecycle::{DeleteError, Downloads, NoDownloads, Versions};
pub use meta::{backoff, Asset, Check, KeyedLocks, ListQuery, MetaError, MetaStore, NewAsset, UploadRow, Write, CONTENTION_DEADLINE};
pub use proxy::{first_answer, GroupSettings, NegativeCache, Outcome, ProxySettings, SingleFlight};
pub use quota::{QuotaError, QuotaExceeded, Usage, UsageMeter};
pub use repo::{ComponentKey, Format, FormatEnv, Listener, Repo, RepoLookup, RepoRef, RootCtx};
pub use task::{flag_property, known_properties, name_or_all_property, FormatTask, Stop, TaskReport, TaskRun};
pub use thread_class::ThreadClass;
pub use upload::{ComponentUpload, UploadError, UploadedFile};

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (civil-from-days; no calendar
/// crate needed for one format).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

/// A body held in memory, sent in parts of 64 KiB. actix-http copies a body's bytes into the
/// connection's write buffer a chunk at a time, and a whole `Bytes` is one chunk: 16 clients of
/// one cached 12 MiB packument held 16 copies more until their sockets took them (a peak of 241
/// MB where the document and its rendering were 32). A part is copied as the socket drains; a
/// body of one part goes as it is.
pub fn body_in_parts(body: bytes::Bytes) -> actix_web::body::BoxBody {
    const PART: usize = 64 << 10;
    if body.len() <= PART {
        return actix_web::body::BoxBody::new(body);
    }
    let len = body.len() as u64;
    let parts = (0..body.len()).step_by(PART).map(move |at| Ok::<_, std::io::Error>(body.slice(at..(at + PART).min(body.len()))));
    actix_web::body::BoxBody::new(actix_web::body::SizedStream::new(len, futures::stream::iter(parts)))
}

/// The answer to a HEAD for a body of `size` bytes that is not read: the length a GET would
/// send, or none claimed when it is not known (actix-http writes `content-length: 0` for an
/// empty body, which a client would believe).
pub fn head_response(mut res: actix_web::HttpResponseBuilder, size: Option<u64>) -> actix_web::HttpResponse {
    match size {
        Some(n) => res.body(actix_web::body::SizedStream::new(n, futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())),
        None => res.body(actix_web::body::None::new()),
    }
}

/// A read: GET, or HEAD, which HTTP wants answered wherever GET is (RFC 9110, 9.3.2: the same
/// status and headers, no body; actix leaves the body out of a HEAD's answer).
pub fn reads(m: &actix_web::http::Method) -> bool {
    *m == actix_web::http::Method::GET || *m == actix_web::http::Method::HEAD
}

/// Milliseconds since the Unix epoch: the one time unit of the metadata store.
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The most days a setting or property counts in (a hundred years): retention periods and ages
/// beyond it are refused, not wrapped into the past.
pub const MAX_DAYS: u64 = 36_500;

/// `days` in milliseconds, saturating: a count too large for the clock is "for ever", never a
/// wrapped negative that would put a cutoff in the future.
pub fn days_millis(days: u64) -> i64 {
    i64::try_from(days).unwrap_or(i64::MAX).saturating_mul(86_400_000)
}

#[cfg(test)]
#[test]
fn a_count_of_days_too_large_for_the_clock_is_for_ever() {
    assert_eq!(days_millis(1), 86_400_000);
    assert_eq!(days_millis(1 << 63), i64::MAX);
    assert_eq!(days_millis(u64::MAX), i64::MAX);
    assert!(now_millis().saturating_sub(days_millis(u64::MAX)) < 0, "a cutoff before every time");
}

/// A 503 in plain text with a `Retry-After`, for [`Format::unavailable`].
pub fn unavailable_text(message: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::ServiceUnavailable().insert_header(retry_after()).content_type("text/plain").body(format!("{message}\n"))
}

/// The `Retry-After` of a 503 for want of the database: 5 s.
pub fn retry_after() -> (&'static str, &'static str) {
    ("Retry-After", "5")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_millis(1_795_996_800_123), "2026-11-30T00:00:00.123Z");
        assert_eq!(super::rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
