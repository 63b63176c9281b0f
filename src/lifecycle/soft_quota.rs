//! Nexus's blob store soft quota: a limit that warns (in the status check, the API and the log)
//! and never refuses a write. `spaceUsedQuota` is violated when the store holds more than the
//! limit, `spaceRemainingQuota` when its file system has less than the limit left.

use serde_json::{json, Value};
use wharf_format::ConfigError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftQuotaKind {
    SpaceUsed,
    SpaceRemaining,
}

impl SoftQuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SoftQuotaKind::SpaceUsed => "spaceUsedQuota",
            SoftQuotaKind::SpaceRemaining => "spaceRemainingQuota",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftQuota {
    pub kind: SoftQuotaKind,
    /// Bytes.
    pub limit: u64,
}

impl SoftQuota {
    /// `softQuota` as a request sends it: null (none) or `{"type", "limit"}`; errors name the field.
    pub fn parse(v: &Value) -> Result<Option<SoftQuota>, ConfigError> {
        let q = match v {
            Value::Null => return Ok(None),
            Value::Object(q) => q,
            _ => return Err(ConfigError::new("softQuota", "must be an object {\"type\", \"limit\"} or null")),
        };
        let (mut kind, mut limit) = (None, None);
        for (k, v) in q {
            match k.as_str() {
                "type" => {
                    kind = Some(match v.as_str() {
                        Some("spaceUsedQuota") => SoftQuotaKind::SpaceUsed,
                        Some("spaceRemainingQuota") => SoftQuotaKind::SpaceRemaining,
                        _ => return Err(ConfigError::new("softQuota.type", "must be spaceUsedQuota or spaceRemainingQuota")),
                    })
                }
                "limit" => {
                    limit =
                        Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| ConfigError::new("softQuota.limit", "must be a whole number of bytes, at least 1"))?)
                }
                _ => return Err(ConfigError::unknown_field(format!("softQuota.{k}"))),
            }
        }
        let kind = kind.ok_or_else(|| ConfigError::new("softQuota.type", "is required (spaceUsedQuota or spaceRemainingQuota)"))?;
        let limit = limit.ok_or_else(|| ConfigError::new("softQuota.limit", "is required (bytes)"))?;
        Ok(Some(SoftQuota { kind, limit }))
    }

    /// As stored and shown (Nexus's shape).
    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind.as_str(), "limit": self.limit })
    }
}

/// Nexus's quota status: is the quota violated, and a sentence saying why or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaStatus {
    pub violation: bool,
    pub message: String,
}

/// Evaluates `store`'s soft quota against what it holds (`used`) and what its file system has
/// left (`available`, unknown for a store whose directory cannot be read).
pub fn evaluate(store: &str, quota: Option<&SoftQuota>, used: u64, available: Option<u64>) -> QuotaStatus {
    let Some(q) = quota else {
        return QuotaStatus { violation: false, message: format!("Blob store {store} has no soft quota") };
    };
    match q.kind {
        SoftQuotaKind::SpaceUsed => {
            let violation = used > q.limit;
            let relation = if violation { "over" } else { "within" };
            QuotaStatus { violation, message: format!("Blob store {store} is using {}, {relation} its soft quota of {}", bytes(used), bytes(q.limit)) }
        }
        SoftQuotaKind::SpaceRemaining => match available {
            None => QuotaStatus {
                violation: false,
                message: format!("Blob store {store}: the space remaining is unknown (soft quota {} remaining)", bytes(q.limit)),
            },
            Some(left) => {
                let violation = left < q.limit;
                let relation = if violation { "below" } else { "above" };
                QuotaStatus { violation, message: format!("Blob store {store} has {} remaining, {relation} its soft quota of {}", bytes(left), bytes(q.limit)) }
            }
        },
    }
}

/// `1.5 MiB (1572864 bytes)`: readable, and exact for whoever compares numbers.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_field_it_refuses() {
        assert_eq!(SoftQuota::parse(&Value::Null), Ok(None));
        assert_eq!(SoftQuota::parse(&json!({"type": "spaceUsedQuota", "limit": 10})), Ok(Some(SoftQuota { kind: SoftQuotaKind::SpaceUsed, limit: 10 })));
        assert_eq!(SoftQuota::parse(&json!({"type": "other", "limit": 10})).unwrap_err().field, "softQuota.type");
        assert_eq!(SoftQuota::parse(&json!({"type": "spaceUsedQuota", "limit": -1})).unwrap_err().field, "softQuota.limit");
        assert_eq!(SoftQuota::parse(&json!({"type": "spaceUsedQuota"})).unwrap_err().field, "softQuota.limit");
        assert_eq!(SoftQuota::parse(&json!({"type": "spaceUsedQuota", "limit": 1, "x": 1})).unwrap_err().field, "softQuota.x");
        assert_eq!(SoftQuota::parse(&json!(5)).unwrap_err().field, "softQuota");
    }

    #[test]
    fn used_quota_is_violated_above_the_limit_and_remaining_quota_below_it() {
        let used = SoftQuota { kind: SoftQuotaKind::SpaceUsed, limit: 1000 };
        assert!(!evaluate("s", Some(&used), 1000, None).violation);
        let over = evaluate("s", Some(&used), 1001, None);
        assert!(over.violation);
        assert_eq!(over.message, "Blob store s is using 1001 bytes, over its soft quota of 1000 bytes");
        let remaining = SoftQuota { kind: SoftQuotaKind::SpaceRemaining, limit: 2048 };
        assert!(evaluate("s", Some(&remaining), 0, Some(1024)).violation);
        assert!(!evaluate("s", Some(&remaining), 0, Some(4096)).violation);
        assert!(!evaluate("s", Some(&remaining), 0, None).violation, "unknown space is no violation");
        assert!(!evaluate("s", None, u64::MAX, Some(0)).violation);
        assert_eq!(bytes(1536), "1.5 KiB (1536 bytes)");
    }
}
