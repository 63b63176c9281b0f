//! PEP 440 versions: parsing (the normalised forms and the spellings PEP 440 says to accept),
//! ordering and the pre-release rule, for cleanup policies. Pure, no I/O.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    epoch: u64,
    /// Trailing zeros dropped: `1.0` and `1` are the same version.
    release: Vec<u64>,
    /// `a` = 0, `b` = 1, `rc` = 2, with its number.
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Declared first: PEP 440 orders alphanumeric segments below numeric ones.
    Text(String),
    Number(u64),
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (public, local) = match s.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (s, None),
        };
        let mut p = Parser { s: public.as_bytes(), i: 0 };
        let mut epoch = 0;
        let first = p.number()?;
        let mut release = vec![first];
        if p.eat("!") {
            epoch = first;
            release = vec![p.number()?];
        }
        while p.peek() == Some(b'.') && p.s.get(p.i + 1).is_some_and(u8::is_ascii_digit) {
            p.i += 1;
            release.push(p.number()?);
        }
        let pre = p.pre();
        let post = p.post();
        let dev = p.dev();
        if p.i != p.s.len() {
            return None;
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let local = match local {
            None => Vec::new(),
            Some(l) => {
                let parts: Vec<&str> = l.split(['.', '-', '_']).collect();
                if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric())) {
                    return None;
                }
                parts.iter().map(|p| p.parse().map(LocalPart::Number).unwrap_or_else(|_| LocalPart::Text(p.to_string()))).collect()
            }
        };
        Some(Version { epoch, release, pre, post, dev, local })
    }

    /// PEP 440: pre-releases, development releases included, are not releases.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The comparison key of `packaging.version` (`_cmpkey`), as integers.
    fn key(&self) -> (u64, &[u64], (i8, u64), i64, i64) {
        let pre = match (self.pre, self.post, self.dev) {
            // 1.0.dev0 sorts before 1.0a0.
            (None, None, Some(_)) => (-1, 0),
            (None, _, _) => (3, 0),
            (Some((letter, n)), _, _) => (letter as i8, n),
        };
        let post = self.post.map_or(-1, |n| n as i64);
        let dev = self.dev.map_or(i64::MAX, |n| n as i64);
        (self.epoch, &self.release, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        let (e1, r1, p1, q1, d1) = self.key();
        let (e2, r2, p2, q2, d2) = other.key();
        e1.cmp(&e2).then_with(|| cmp_release(r1, r2)).then(p1.cmp(&p2)).then(q1.cmp(&q2)).then(d1.cmp(&d2)).then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Releases compare as if padded with zeros (trailing zeros are already dropped).
fn cmp_release(a: &[u64], b: &[u64]) -> Ordering {
    a.cmp(b)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }

    fn separator(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `[sep] word [sep] [number]`, restoring the position when `word` is not there.
    fn tagged(&mut self, words: &[&str]) -> Option<(usize, u64)> {
        let start = self.i;
        self.separator();
        for (k, w) in words.iter().enumerate() {
            if self.eat(w) {
                let before_number = self.i;
                self.separator();
                match self.number() {
                    Some(n) => return Some((k, n)),
                    None => {
                        self.i = before_number;
                        return Some((k, 0));
                    }
                }
            }
        }
        self.i = start;
        None
    }

    fn pre(&mut self) -> Option<(u8, u64)> {
        // Longer spellings first: `alpha` before `a`, `rc` before `c`.
        let (k, n) = self.tagged(&["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"])?;
        let letter = match k {
            0 | 5 => 0,
            1 | 6 => 1,
            _ => 2,
        };
        Some((letter, n))
    }

    fn post(&mut self) -> Option<u64> {
        // `1.0-1` is a post-release too.
        if self.peek() == Some(b'-') && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
            return self.number();
        }
        self.tagged(&["post", "rev", "r"]).map(|(_, n)| n)
    }

    fn dev(&mut self) -> Option<u64> {
        self.tagged(&["dev"]).map(|(_, n)| n)
    }
}

/// [`wharf_format::Versions`] for PyPI.
pub struct Pep440;

impl wharf_format::Versions for Pep440 {
    fn scheme(&self) -> &'static str {
        "PEP 440"
    }

    fn is_prerelease(&self, version: &str) -> Option<bool> {
        Version::parse(version).map(|v| v.is_prerelease())
    }

    fn compare(&self, a: &str, b: &str) -> Option<Ordering> {
        Some(Version::parse(a)?.cmp(&Version::parse(b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn orders_as_pep_440_does() {
        // PEP 440's own example order, with spellings it says to normalise.
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0-alpha-1"), v("1.0a1"));
        assert_eq!(v("1.0.RC.1"), v("1.0rc1"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("v2.0c1"), v("2.0rc1"));
        assert!(v("1.10") > v("1.9"));
    }

    #[test]
    fn pre_releases_include_development_releases() {
        for pre in ["1.0a1", "2.0b3", "3.0rc1", "1.0.dev0", "1.0.post1.dev2"] {
            assert!(v(pre).is_prerelease(), "{pre}");
        }
        for release in ["1.0", "1.0.post1", "2!3.4", "1.0+local"] {
            assert!(!v(release).is_prerelease(), "{release}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for bad in ["", "abc", "1.0x", "1..0", "1.0+", "1.0+a..b", "1.0 2"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }
}
