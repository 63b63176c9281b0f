//! A cleanup policy as the REST API shows and accepts it (Nexus's `/v1/cleanup-policies` shape,
//! plus wharf's `keepVersionRegex`), parsed and checked once; errors name the field.
//!
//! Criteria (`criteria*`) choose what a policy deletes: a component must meet every criterion
//! the policy sets. Retention (`retain` with `sortBy`, and `keepVersionRegex`) protects: what it
//! keeps is never deleted, whatever the criteria say.

use serde_json::{json, Map, Value};
use wharf_format::proxy::valid_policy_name;
use wharf_format::ConfigError;

/// Days are bounded so that their milliseconds never overflow (a century is plenty).
const MAX_DAYS: u64 = 36_500;
const MAX_RETAIN: u64 = 100_000;
const MAX_PATTERN: usize = 1_000;
const MAX_NOTES: usize = 4_096;

/// The format value of a policy that applies to every format.
pub const ALL_FORMATS: &str = "*";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseType {
    Releases,
    Prereleases,
}

impl ReleaseType {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseType::Releases => "RELEASES",
            ReleaseType::Prereleases => "PRERELEASES",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// The format's version order (PEP 440, semver); by date where the format has none.
    Version,
    /// Newest publish first.
    Date,
}

impl SortBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Version => "version",
            SortBy::Date => "date",
        }
    }
}

/// A regular expression that must match a whole string (Nexus: `criteriaAssetRegex` is a full
/// match). regex-lite: linear time in the input, whatever an administrator writes.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
    re: regex_lite::Regex,
}

impl Pattern {
    pub fn parse(field: &str, source: &str) -> Result<Pattern, ConfigError> {
        if source.is_empty() || source.len() > MAX_PATTERN {
            return Err(ConfigError::new(field, format!("must be a regular expression of 1-{MAX_PATTERN} characters")));
        }
        let re = regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|e| ConfigError::new(field, format!("not a valid regular expression: {e}")))?;
        Ok(Pattern { source: source.to_string(), re })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub notes: String,
    /// A format name, or [`ALL_FORMATS`].
    pub format: String,
    /// Days since the component's newest asset was published (written).
    pub last_blob_updated: Option<u64>,
    /// Days since its last download; never downloaded counts from its publish time.
    pub last_downloaded: Option<u64>,
    pub release_type: Option<ReleaseType>,
    /// Full match against an asset's path (as the components API shows it).
    pub asset_regex: Option<Pattern>,
    /// Keep the newest this many versions of each component name.
    pub retain: Option<u64>,
    /// How "newest" is decided for `retain`; `None`: by version where the format has an order.
    pub sort_by: Option<SortBy>,
    /// Keep versions (Docker: tags) that fully match this.
    pub keep_version_regex: Option<Pattern>,
}

const FIELDS: &[&str] = &[
    "name",
    "notes",
    "format",
    "criteriaLastBlobUpdated",
    "criteriaLastDownloaded",
    "criteriaReleaseType",
    "criteriaAssetRegex",
    "retain",
    "sortBy",
    "keepVersionRegex",
];

fn days(obj: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::new(field, format!("must be a whole number from 1 to {max}"))),
        },
    }
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::not_string(field)),
    }
}

impl Policy {
    /// Parses a policy body. `formats` are the formats of this build; `name` is the policy's
    /// name from the URL when the body is an update (the body may repeat it, not change it).
    pub fn parse(body: &Value, formats: &[&str], name: Option<&str>) -> Result<Policy, ConfigError> {
        let obj = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ConfigError::unknown_field(k.clone()));
        }
        let given = string(obj, "name")?;
        let name = match (name, given) {
            (Some(url), Some(b)) if url != b => return Err(ConfigError::new("name", format!("cannot be changed (the policy is {url})"))),
            (Some(url), _) => url.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => return Err(ConfigError::required("name")),
        };
        if !valid_policy_name(&name) {
            return Err(ConfigError::new("name", "must be 1-255 characters of letters, digits, '.', '_', '-', starting with a letter or digit"));
        }
        let notes = string(obj, "notes")?.unwrap_or_default().to_string();
        if notes.len() > MAX_NOTES {
            return Err(ConfigError::new("notes", format!("must be at most {MAX_NOTES} bytes")));
        }
        let format = match string(obj, "format")? {
            None => return Err(ConfigError::new("format", format!("is required: one of {}, or * for all formats", formats.join(", ")))),
            Some("*" | "all" | "ALL_FORMATS") => ALL_FORMATS.to_string(),
            Some(f) if formats.contains(&f) => f.to_string(),
            Some(f) => return Err(ConfigError::new("format", format!("unknown format {f:?}: one of {}, or * for all formats", formats.join(", ")))),
        };
        let release_type = match string(obj, "criteriaReleaseType")? {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("RELEASES") => Some(ReleaseType::Releases),
            Some(s) if s.eq_ignore_ascii_case("PRERELEASES") => Some(ReleaseType::Prereleases),
            Some(_) => return Err(ConfigError::new("criteriaReleaseType", "must be RELEASES or PRERELEASES")),
        };
        if release_type.is_some() && format == "docker" {
            return Err(ConfigError::new("criteriaReleaseType", "docker has no release types (a tag is not a version): leave it out"));
        }
        let sort_by = match string(obj, "sortBy")? {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("version") => Some(SortBy::Version),
            Some(s) if s.eq_ignore_ascii_case("date") => Some(SortBy::Date),
            Some(_) => return Err(ConfigError::new("sortBy", "must be version or date")),
        };
        if sort_by == Some(SortBy::Version) && format == "docker" {
            return Err(ConfigError::new("sortBy", "docker tags have no version order: use date"));
        }
        let retain = days(obj, "retain", MAX_RETAIN)?;
        if sort_by.is_some() && retain.is_none() {
            return Err(ConfigError::new("sortBy", "applies to retain only: set retain, or leave sortBy out"));
        }
        let policy = Policy {
            name,
            notes,
            format,
            last_blob_updated: days(obj, "criteriaLastBlobUpdated", MAX_DAYS)?,
            last_downloaded: days(obj, "criteriaLastDownloaded", MAX_DAYS)?,
            release_type,
            asset_regex: string(obj, "criteriaAssetRegex")?.map(|s| Pattern::parse("criteriaAssetRegex", s)).transpose()?,
            retain,
            sort_by,
            keep_version_regex: string(obj, "keepVersionRegex")?.map(|s| Pattern::parse("keepVersionRegex", s)).transpose()?,
        };
        if !policy.has_criterion() {
            return Err(ConfigError::new(
                "criteria",
                "a policy needs at least one of criteriaLastBlobUpdated, criteriaLastDownloaded, criteriaReleaseType, criteriaAssetRegex or retain (without any it would delete everything)",
            ));
        }
        Ok(policy)
    }

    /// Whether anything limits what the policy deletes (retention alone does: it deletes all
    /// but the newest versions).
    fn has_criterion(&self) -> bool {
        self.last_blob_updated.is_some() || self.last_downloaded.is_some() || self.release_type.is_some() || self.asset_regex.is_some() || self.retain.is_some()
    }

    pub fn applies_to(&self, format: &str) -> bool {
        self.format == ALL_FORMATS || self.format == format
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "notes": self.notes,
            "format": self.format,
            "criteriaLastBlobUpdated": self.last_blob_updated,
            "criteriaLastDownloaded": self.last_downloaded,
            "criteriaReleaseType": self.release_type.map(ReleaseType::as_str),
            "criteriaAssetRegex": self.asset_regex.as_ref().map(|p| p.source.clone()),
            "retain": self.retain,
            "sortBy": self.sort_by.map(SortBy::as_str),
            "keepVersionRegex": self.keep_version_regex.as_ref().map(|p| p.source.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: &[&str] = &["docker", "pypi", "npm"];

    fn refused(body: Value) -> String {
        Policy::parse(&body, FORMATS, None).expect_err("refused").field
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(refused(json!({"name": "p", "format": "npm", "retain": 1, "colour": "red"})), "colour");
        assert_eq!(refused(json!({"name": "p", "format": "npm"})), "criteria");
        assert_eq!(refused(json!({"name": "p", "format": "npm", "keepVersionRegex": "1\\..*"})), "criteria");
        assert_eq!(refused(json!({"name": "p", "format": "npm", "criteriaAssetRegex": "(unclosed"})), "criteriaAssetRegex");
        assert_eq!(refused(json!({"name": "p", "format": "docker", "criteriaReleaseType": "PRERELEASES"})), "criteriaReleaseType");
        assert_eq!(refused(json!({"name": "p", "format": "docker", "retain": 2, "sortBy": "version"})), "sortBy");
        assert_eq!(refused(json!({"name": "../etc", "format": "npm", "retain": 1})), "name");
        assert_eq!(refused(json!({"name": "p", "format": "maven2", "retain": 1})), "format");
        assert_eq!(refused(json!({"name": "p", "format": "npm", "criteriaLastDownloaded": 0})), "criteriaLastDownloaded");
        assert_eq!(refused(json!({"name": "p", "format": "npm", "sortBy": "date"})), "sortBy");
    }

    #[test]
    fn round_trips_through_its_json() {
        let body = json!({
            "name": "old-pre", "notes": "n", "format": "all", "criteriaLastBlobUpdated": 30, "criteriaLastDownloaded": null,
            "criteriaReleaseType": "prereleases", "criteriaAssetRegex": "pkg/.*", "retain": 3, "sortBy": "date", "keepVersionRegex": "v1\\..*",
        });
        let p = Policy::parse(&body, FORMATS, None).unwrap();
        assert_eq!(p.format, "*");
        let again = Policy::parse(&p.to_json(), FORMATS, Some("old-pre")).unwrap();
        assert_eq!(again.to_json(), p.to_json());
        assert!(p.asset_regex.as_ref().unwrap().matches("pkg/a"));
        assert!(!p.asset_regex.as_ref().unwrap().matches("xpkg/a"), "a full match, as Nexus");
    }
}
