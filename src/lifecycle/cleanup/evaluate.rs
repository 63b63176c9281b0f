//! Which components cleanup policies delete: pure, over components already loaded.
//!
//! - A policy's candidates meet every criterion it sets (Nexus: criteria are ANDed).
//! - A policy never deletes what its retention keeps: the newest `retain` versions of each
//!   component name (among all its versions, not only the candidates), newest by the format's
//!   version order as in Nexus (a pre-release ranks where its version puts it), and besides
//!   them the highest release, which is what `pip install` or `npm install` get without naming a
//!   version; and versions matching `keepVersionRegex`.
//! - A repository deletes what any of its policies would delete (ORed). Each policy is applied
//!   on its own, as in Nexus, so that a repository's run deletes exactly the union of its
//!   policies' previews: one policy's retention does not hold back another policy.
//!
//! The components given are every version of each name they include (cleanup reads a
//! repository a few names at a time), so that retention ranks all versions of a name.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use wharf_format::{Asset, ComponentKey, Versions};

use super::policy::{Policy, ReleaseType, SortBy};

const DAY_MS: i64 = 86_400_000;

/// A component with what the criteria look at.
#[derive(Clone, Debug)]
pub struct Component {
    pub key: ComponentKey,
    pub assets: Vec<Asset>,
    /// When its newest asset was written (Nexus's "last blob updated").
    pub updated: i64,
    /// Its last download (of any of its assets, or of content with the same digest in the
    /// repository: a Docker tag is in use when its manifest is pulled by digest).
    pub downloaded: Option<i64>,
}

impl Component {
    /// Groups assets into components (`component_of`) and fills in their times; `by_digest` is
    /// the latest download of any asset of the repository with a digest (the components' own
    /// downloads count without it).
    pub fn gather(assets: Vec<Asset>, component_of: impl Fn(&Asset) -> Option<ComponentKey>, by_digest: &HashMap<String, i64>) -> Vec<Component> {
        let mut grouped: BTreeMap<ComponentKey, Vec<Asset>> = BTreeMap::new();
        for a in assets {
            if let Some(mut key) = component_of(&a) {
                key.download_path = None;
                grouped.entry(key).or_default().push(a);
            }
        }
        grouped
            .into_iter()
            .map(|(key, assets)| {
                let updated = assets.iter().map(|a| a.updated_at).max().unwrap_or(0);
                let downloaded = assets.iter().flat_map(|a| [a.last_downloaded, a.digest.as_ref().and_then(|d| by_digest.get(d).copied())]).flatten().max();
                Component { key, assets, updated, downloaded }
            })
            .collect()
    }
}

/// Whether `c` meets every criterion `p` sets, at `now` (milliseconds).
fn candidate(p: &Policy, c: &Component, versions: Option<&dyn Versions>, now: i64) -> bool {
    let older = |since: i64, days: u64| now - since >= days as i64 * DAY_MS;
    if p.last_blob_updated.is_some_and(|d| !older(c.updated, d)) {
        return false;
    }
    if p.last_downloaded.is_some_and(|d| !older(c.downloaded.unwrap_or(c.updated), d)) {
        return false;
    }
    if let Some(rt) = p.release_type {
        // A version the format cannot classify (or a format without versions) matches neither.
        match versions.and_then(|v| v.is_prerelease(&c.key.version)) {
            Some(pre) if pre == (rt == ReleaseType::Prereleases) => {}
            _ => return false,
        }
    }
    if let Some(re) = &p.asset_regex {
        if !c.assets.iter().any(|a| re.matches(&a.path)) {
            return false;
        }
    }
    true
}

/// The components `p`'s retention keeps (indexes into `components`).
fn protected(p: &Policy, components: &[Component], versions: Option<&dyn Versions>) -> BTreeSet<usize> {
    let mut keep = BTreeSet::new();
    if let Some(re) = &p.keep_version_regex {
        keep.extend(components.iter().enumerate().filter(|(_, c)| re.matches(&c.key.version)).map(|(i, _)| i));
    }
    let Some(n) = p.retain else { return keep };
    let by_version = match (p.sort_by, versions) {
        (Some(SortBy::Date), _) | (_, None) => None,
        (_, Some(v)) => Some(v),
    };
    let mut names: BTreeMap<(&Option<String>, &str), Vec<usize>> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        names.entry((&c.key.group, &c.key.name)).or_default().push(i);
    }
    for mut members in names.into_values() {
        // Whatever the order, retention never changes what an install that names no version
        // gets: with only pre-releases (or, by date, old releases) among the newest, deleting
        // the highest release would make a client install a pre-release or go back a version.
        keep.extend(versions.and_then(|v| highest_release(&members, components, v)));
        members.sort_by(|&a, &b| newest_first(&components[a], &components[b], by_version));
        keep.extend(members.into_iter().take(n as usize));
    }
    keep
}

/// The highest release among `members` by the format's version order.
fn highest_release(members: &[usize], components: &[Component], versions: &dyn Versions) -> Option<usize> {
    members
        .iter()
        .copied()
        .filter(|&i| versions.is_prerelease(&components[i].key.version) == Some(false))
        .max_by(|&a, &b| versions.compare(&components[a].key.version, &components[b].key.version).unwrap_or(Ordering::Equal))
}

/// Newest first: by version when asked (versions that do not parse count as the oldest),
/// then by publish time, then by version string so that the order is total.
fn newest_first(a: &Component, b: &Component, versions: Option<&dyn Versions>) -> Ordering {
    let by_version = match versions {
        None => Ordering::Equal,
        Some(v) => match (v.compare(&a.key.version, &b.key.version), v.is_prerelease(&a.key.version), v.is_prerelease(&b.key.version)) {
            (Some(o), _, _) => o.reverse(),
            (None, Some(_), None) => Ordering::Less,
            (None, None, Some(_)) => Ordering::Greater,
            _ => Ordering::Equal,
        },
    };
    by_version.then(b.updated.cmp(&a.updated)).then_with(|| b.key.version.cmp(&a.key.version))
}

/// What one policy would delete from `components` on its own (its preview).
pub fn select(p: &Policy, components: &[Component], versions: Option<&dyn Versions>, now: i64) -> Vec<usize> {
    let keep = protected(p, components, versions);
    (0..components.len()).filter(|i| !keep.contains(i) && candidate(p, &components[*i], versions, now)).collect()
}

/// What a repository's policies delete together (the union of each one's [`select`]), each
/// with the policies that chose it.
pub fn select_all<'p>(policies: &'p [Policy], components: &[Component], versions: Option<&dyn Versions>, now: i64) -> Vec<(usize, Vec<&'p str>)> {
    let mut chosen: BTreeMap<usize, Vec<&'p str>> = BTreeMap::new();
    for p in policies {
        for i in select(p, components, versions, now) {
            chosen.entry(i).or_default().push(p.name.as_str());
        }
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// Versions ordered as plain dotted numbers, pre-releases marked with `-`.
    struct Dotted;

    impl Versions for Dotted {
        fn scheme(&self) -> &'static str {
            "dotted"
        }
        fn is_prerelease(&self, v: &str) -> Option<bool> {
            self.parse(v).map(|_| v.contains('-'))
        }
        fn compare(&self, a: &str, b: &str) -> Option<Ordering> {
            Some(self.parse(a)?.cmp(&self.parse(b)?))
        }
    }

    impl Dotted {
        fn parse(&self, v: &str) -> Option<Vec<u64>> {
            v.split('-').next()?.split('.').map(|p| p.parse().ok()).collect()
        }
    }

    const NOW: i64 = 1_000 * DAY_MS;

    fn component(name: &str, version: &str, updated_days_ago: i64, downloaded_days_ago: Option<i64>) -> Component {
        let asset = Asset {
            path: format!("pkg/{name}/-/{name}-{version}.tgz"),
            kind: "tarball".into(),
            component: Some(name.into()),
            digest: Some(format!("sha256:{name}{version}")),
            size: 10,
            content_type: None,
            link: None,
            attributes: Value::Null,
            created_at: NOW - updated_days_ago * DAY_MS,
            updated_at: NOW - updated_days_ago * DAY_MS,
            last_downloaded: downloaded_days_ago.map(|d| NOW - d * DAY_MS),
            download_count: 0,
        };
        let key = ComponentKey { group: None, name: name.into(), version: version.into(), download_path: None };
        Component::gather(vec![asset], |_| Some(key.clone()), &HashMap::new()).remove(0)
    }

    fn policy(body: Value) -> Policy {
        let mut body = body;
        body["name"] = json!("p");
        body["format"] = json!("npm");
        Policy::parse(&body, &["npm"], None).unwrap()
    }

    fn versions_of(components: &[Component], chosen: &[usize]) -> Vec<String> {
        chosen.iter().map(|&i| format!("{}@{}", components[i].key.name, components[i].key.version)).collect()
    }

    fn set() -> Vec<Component> {
        vec![
            component("a", "1.2.0", 50, None),
            component("a", "1.10.0", 40, Some(1)),
            component("a", "2.0.0-rc.1", 5, None),
            component("a", "1.9.0", 60, Some(100)),
            component("b", "0.1.0", 90, None),
        ]
    }

    #[test]
    fn retain_keeps_the_newest_by_version_per_name() {
        let c = set();
        let chosen = select(&policy(json!({"retain": 2})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &chosen), ["a@1.2.0", "a@1.9.0"], "2.0.0-rc.1 and 1.10.0 are a's newest; b has one version");
        let by_date = select(&policy(json!({"retain": 2, "sortBy": "date"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &by_date), ["a@1.2.0", "a@1.9.0"]);
        let by_date = select(&policy(json!({"retain": 1, "sortBy": "date"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &by_date), ["a@1.2.0", "a@1.9.0"], "2.0.0-rc.1 is the newest; 1.10.0 the highest release");
    }

    #[test]
    fn retention_keeps_the_highest_release_beside_newer_prereleases() {
        // Only pre-releases among the newest two: the one release is what an install without a
        // version gets, and stays.
        let c = vec![component("p", "1.0.0", 30, None), component("p", "2.0.0-rc.1", 20, None), component("p", "2.0.0-rc.2", 10, None)];
        assert!(select(&policy(json!({"retain": 2})), &c, Some(&Dotted), NOW).is_empty());
        let chosen = select(&policy(json!({"retain": 1, "sortBy": "date"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &chosen), ["p@2.0.0-rc.1"]);
        // By date, a backport published last does not push the highest release out.
        let c =
            vec![component("q", "1.5.0", 30, None), component("q", "1.0.1", 1, None), component("q", "2.0.0-rc.1", 2, None), component("q", "1.4.0", 40, None)];
        let chosen = select(&policy(json!({"retain": 2, "sortBy": "date"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &chosen), ["q@1.4.0"]);
        // Releases are not ranked above pre-releases (Nexus's order): 2.0.0-rc.1 is one of the
        // newest two by version, and the release 1.0.1 goes.
        let chosen = select(&policy(json!({"retain": 2})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &chosen), ["q@1.0.1", "q@1.4.0"]);
        // Without a version rule (Docker) nothing is a release: retention is the newest N alone.
        let chosen = select(&policy(json!({"retain": 2, "sortBy": "date"})), &c, None, NOW);
        assert_eq!(versions_of(&c, &chosen), ["q@1.5.0", "q@1.4.0"]);
    }

    #[test]
    fn criteria_are_anded() {
        let c = set();
        let pre = select(&policy(json!({"criteriaReleaseType": "PRERELEASES"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &pre), ["a@2.0.0-rc.1"]);
        let old = select(&policy(json!({"criteriaLastBlobUpdated": 45})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &old), ["a@1.2.0", "a@1.9.0", "b@0.1.0"]);
        // Downloaded a day ago spares 1.10.0; never downloaded counts from publish time.
        let unused = select(&policy(json!({"criteriaLastDownloaded": 30})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &unused), ["a@1.2.0", "a@1.9.0", "b@0.1.0"]);
        let both = select(&policy(json!({"criteriaLastDownloaded": 30, "criteriaAssetRegex": "pkg/a/.*"})), &c, Some(&Dotted), NOW);
        assert_eq!(versions_of(&c, &both), ["a@1.2.0", "a@1.9.0"]);
        assert!(select(&policy(json!({"criteriaReleaseType": "RELEASES"})), &c, None, NOW).is_empty(), "no version rule: no release type");
    }

    #[test]
    fn a_repository_deletes_what_any_policy_would_each_with_its_own_retention() {
        let c = set();
        let retain = policy(json!({"retain": 1, "keepVersionRegex": "1\\.2\\..*"}));
        let chosen: Vec<usize> = select_all(std::slice::from_ref(&retain), &c, Some(&Dotted), NOW).into_iter().map(|(i, _)| i).collect();
        assert_eq!(versions_of(&c, &chosen), ["a@1.9.0"], "newest of each name, the highest release and 1.2.x kept");
        let pre = policy(json!({"criteriaReleaseType": "PRERELEASES"}));
        let policies = [retain, pre];
        let both = select_all(&policies, &c, Some(&Dotted), NOW);
        let chosen: Vec<usize> = both.iter().map(|(i, _)| *i).collect();
        assert_eq!(versions_of(&c, &chosen), ["a@2.0.0-rc.1", "a@1.9.0"], "the union: retention holds back its own policy only");
        assert_eq!(both[1].1, ["p"]);
    }
}
