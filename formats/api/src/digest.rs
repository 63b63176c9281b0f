//! Content digests (`algorithm:hex`). Content is stored under its sha256 only ([`Digest`]): it is
//! what every client of every format sends, and one algorithm means one namespace. A protocol
//! that lets clients name content by another algorithm (OCI: sha512) names it with an
//! [`AnyDigest`], which the format keeps beside the sha256 it is stored under (docs/architecture.md,
//! "Digest algorithms").

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported")]
    Unsupported(String),
}

impl Digest {
    pub fn from_sha256_bytes(bytes: &[u8]) -> Digest {
        Digest { hex: hex::encode(bytes) }
    }

    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256_bytes(&Sha256::digest(data))
    }

    /// The lowercase hex part, 64 characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        // OCI grammar: algorithm-component ([a-z0-9]+) with separators, encoded [a-zA-Z0-9=_-]+
        let alg_ok = !alg.is_empty() && alg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        let enc_ok = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Malformed(s.to_string()));
        }
        if alg != "sha256" {
            return Err(DigestError::Unsupported(alg.to_string()));
        }
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest { hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// The algorithms a client may name content by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Hex characters of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }
}

/// A running hash of either algorithm.
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> AnyDigest {
        match self {
            Hasher::Sha256(h) => AnyDigest { alg: Algorithm::Sha256, hex: hex::encode(h.finalize()) },
            Hasher::Sha512(h) => AnyDigest { alg: Algorithm::Sha512, hex: hex::encode(h.finalize()) },
        }
    }
}

/// A digest as a client names content: sha256 or sha512 (the OCI image spec's registered
/// algorithms). Only its sha256 form is a blob store key ([`AnyDigest::sha256`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnyDigest {
    alg: Algorithm,
    hex: String,
}

impl AnyDigest {
    pub fn of(alg: Algorithm, data: &[u8]) -> AnyDigest {
        let mut h = alg.hasher();
        h.update(data);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The blob store key, when this is a sha256 digest.
    pub fn sha256(&self) -> Option<Digest> {
        (self.alg == Algorithm::Sha256).then(|| Digest { hex: self.hex.clone() })
    }
}

impl From<Digest> for AnyDigest {
    fn from(d: Digest) -> AnyDigest {
        AnyDigest { alg: Algorithm::Sha256, hex: d.hex }
    }
}

impl FromStr for AnyDigest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<AnyDigest, DigestError> {
        let alg = match s.split_once(':') {
            Some(("sha512", _)) => Algorithm::Sha512,
            // Everything else is sha256 or refused, with sha256's own messages.
            _ => return s.parse::<Digest>().map(AnyDigest::from),
        };
        let hex = &s[7..];
        if hex.len() != alg.hex_len() || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(AnyDigest { alg, hex: hex.to_string() })
    }
}

impl fmt::Display for AnyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

impl fmt::Debug for AnyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!("sha256:abc".parse::<Digest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("nocolon".parse::<Digest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("sha512:abcd".parse::<Digest>(), Err(DigestError::Unsupported(_))));
        assert!(matches!("sha256:../../etc/passwd".parse::<Digest>(), Err(DigestError::Malformed(_))));
        let upper = "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn any_digest_takes_sha256_and_sha512_only() {
        let empty512 =
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
        let d: AnyDigest = empty512.parse().unwrap();
        assert_eq!(d, AnyDigest::of(Algorithm::Sha512, b""));
        assert_eq!(d.to_string(), empty512);
        assert_eq!(d.sha256(), None);
        let d: AnyDigest = Digest::of(b"").to_string().parse().unwrap();
        assert_eq!(d.sha256(), Some(Digest::of(b"")));
        assert_eq!(d, AnyDigest::of(Algorithm::Sha256, b""));
        assert!(matches!("sha512:abcd".parse::<AnyDigest>(), Err(DigestError::Malformed(_))));
        assert!(matches!(empty512.to_uppercase().replace("SHA512", "sha512").parse::<AnyDigest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("sha384:abcd".parse::<AnyDigest>(), Err(DigestError::Unsupported(_))));
        assert!(matches!("sha512:../../x".parse::<AnyDigest>(), Err(DigestError::Malformed(_))));
    }
}
