//! Reading a repository's components a page at a time. Pages come in (component, path) order
//! and are handed out in batches that end where a component name ends: retention ranks every
//! version of a name together, and nothing in an evaluation looks at two names at once, so a
//! batch holds about a page, or one name's versions when a name has more than a page of them.

use std::future::Future;

use wharf_format::Asset;

pub struct Pages {
    limit: i64,
    /// Where the next page starts: after this component and path.
    after: Option<(String, String)>,
    /// The last name read, held back until the page after shows it has ended.
    carry: Vec<Asset>,
    done: bool,
}

impl Pages {
    pub fn new(limit: i64) -> Pages {
        Pages { limit: limit.max(1), after: None, carry: Vec::new(), done: false }
    }

    /// The next batch of whole component names, or `None` when the repository has no more.
    /// `fetch(after, limit)` reads a page (see `SqlMeta::component_page`).
    pub async fn next<F, Fut, E>(&mut self, mut fetch: F) -> Result<Option<Vec<Asset>>, E>
    where
        F: FnMut(Option<(String, String)>, i64) -> Fut,
        Fut: Future<Output = Result<Vec<Asset>, E>>,
    {
        loop {
            if self.done {
                return Ok(Some(std::mem::take(&mut self.carry)).filter(|c| !c.is_empty()));
            }
            let page = fetch(self.after.clone(), self.limit).await?;
            self.done = (page.len() as i64) < self.limit;
            if let Some(last) = page.last() {
                self.after = Some((last.component.clone().unwrap_or_default(), last.path.clone()));
            }
            let mut batch = std::mem::take(&mut self.carry);
            batch.extend(page);
            if self.done {
                return Ok(Some(batch).filter(|b| !b.is_empty()));
            }
            let last = batch.last().and_then(|a| a.component.clone());
            let split = batch.iter().rposition(|a| a.component != last).map_or(0, |i| i + 1);
            self.carry = batch.split_off(split);
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(component: &str, n: usize) -> Asset {
        Asset {
            path: format!("{component}/{n:03}"),
            kind: "k".into(),
            component: Some(component.into()),
            digest: None,
            size: 0,
            content_type: None,
            link: None,
            attributes: serde_json::Value::Null,
            created_at: 0,
            updated_at: 0,
            last_downloaded: None,
            download_count: 0,
        }
    }

    /// Batches of `all` (sorted as the database sorts) read `limit` at a time, as component
    /// names per batch, and the largest page asked for.
    fn batches(all: &[Asset], limit: i64) -> (Vec<Vec<String>>, usize) {
        let mut pages = Pages::new(limit);
        let mut out = Vec::new();
        let mut largest = 0;
        let fetch = |after: Option<(String, String)>, limit: i64| {
            let page: Vec<Asset> = all
                .iter()
                .filter(|a| after.as_ref().is_none_or(|(c, p)| (a.component.as_deref().unwrap(), a.path.as_str()) > (c.as_str(), p.as_str())))
                .take(limit as usize)
                .cloned()
                .collect();
            std::future::ready(Ok::<_, std::convert::Infallible>(page))
        };
        while let Some(batch) = futures::executor::block_on(pages.next(fetch)).unwrap() {
            largest = largest.max(batch.len());
            let mut names: Vec<String> = batch.iter().map(|a| a.component.clone().unwrap()).collect();
            names.dedup();
            out.push(names);
        }
        (out, largest)
    }

    #[test]
    fn batches_end_where_a_name_ends_and_every_asset_comes_once() {
        let mut all = Vec::new();
        for (name, versions) in [("a", 2), ("b", 7), ("c", 1), ("d", 3), ("e", 2)] {
            all.extend((0..versions).map(|n| asset(name, n)));
        }
        for limit in 1..=16 {
            let (got, largest) = batches(&all, limit);
            let names: Vec<String> = got.iter().flatten().cloned().collect();
            assert_eq!(names, ["a", "b", "c", "d", "e"], "limit {limit}: each name in one batch, in order: {got:?}");
            assert!(largest <= 7 + limit as usize, "limit {limit}: a batch holds a page and at most one name carried over: {largest}");
        }
        let (got, _) = batches(&all, 3);
        assert_eq!(got, [vec!["a"], vec!["b", "c"], vec!["d"], vec!["e"]], "b, longer than a page, is carried until it ends");
        let (got, _) = batches(&all, 100);
        assert_eq!(got, [vec!["a", "b", "c", "d", "e"]], "a repository smaller than a page is one batch");
        assert_eq!(batches(&[], 5).0, Vec::<Vec<String>>::new());
    }
}
