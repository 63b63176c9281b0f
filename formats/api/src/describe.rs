//! Component descriptions ([`crate::Repo::describe_component`]): what a format can say of one
//! component beyond its assets' rows, for the component detail page (Docker: platforms and
//! layers; npm: dist-tags and README; PyPI: summary and files).
//!
//! A description reads only what the repository holds (never the upstream: opening a page must
//! not fill a cache) and only bounded amounts. Content that is missing or unreadable is said so
//! in the description; an error means the metadata store or blob store itself failed.

use crate::blob::BlobError;
use crate::meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("describing a component: {0}")]
    Meta(#[from] MetaError),
    #[error("describing a component: {0}")]
    Blob(#[from] BlobError),
}

/// The first `max` bytes of `text` (cut back to a character boundary), and whether it was cut.
pub fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(super::cut("abc", 3), ("abc", false));
        assert_eq!(super::cut("abcd", 3), ("abc", true));
        // "é" is two bytes: a cut inside it goes back before it.
        assert_eq!(super::cut("aé", 2), ("a", true));
    }
}
