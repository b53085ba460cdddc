//! Content digests (`sha256:<64 hex>`) and a writer that hashes what passes through it.
//!
//! Shared by the registry (blob names), the fs engine (diffIDs and layer digests) and the cache.
//! Only sha256 is accepted: it is the only algorithm OCI registries must support and the only one
//! Docker and Kaniko write; a `sha512:` digest is reported as unsupported rather than guessed at.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// A digest string that is not `sha256:` followed by 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestError {
    pub input: String,
    pub reason: &'static str,
}

impl Digest {
    /// The digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a digest from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// Parses 64 hex characters without the `sha256:` prefix (a cache tag, a blob file name).
    pub fn from_hex(hex_str: &str) -> Result<Digest, DigestError> {
        let err = |reason| DigestError {
            input: hex_str.to_string(),
            reason,
        };
        if hex_str.len() != 64 {
            return Err(err("expected 64 hex characters"));
        }
        if hex_str.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("hex must be lower case"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out).map_err(|_| err("not hexadecimal"))?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        match s.split_once(':') {
            Some(("sha256", hex_str)) => Digest::from_hex(hex_str).map_err(|e| DigestError {
                input: s.to_string(),
                reason: e.reason,
            }),
            Some((_, _)) => Err(DigestError {
                input: s.to_string(),
                reason: "only sha256 digests are supported",
            }),
            None => Err(DigestError {
                input: s.to_string(),
                reason: "expected sha256:<hex>",
            }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts everything written through it, then passes it on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest(self.hasher.finalize().into()), self.len)
    }

    /// The inner writer, for flushing or inspection.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_round_trip_and_hash() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of(b""), d);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"").unwrap();
        let (_, digest, len) = w.finish();
        assert_eq!((digest, len), (d, 0));
    }

    #[test]
    fn bad_digests_are_named() {
        let cases = [
            ("sha512:abcd", "only sha256 digests are supported"),
            ("abcd", "expected sha256:<hex>"),
            ("sha256:abcd", "expected 64 hex characters"),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                "hex must be lower case",
            ),
        ];
        for (input, reason) in cases {
            assert_eq!(
                input.parse::<Digest>().unwrap_err().reason,
                reason,
                "{input}"
            );
        }
    }
}
