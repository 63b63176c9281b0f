//! Checksums besides the sha256, computed while a body streams into staging: each on a
//! blocking thread of its own, fed the body's chunks (shared, not copied) through a short
//! queue. A protocol whose client sends more digests than the one content is stored under
//! (twine: MD5 and BLAKE2b-256) used to check them in a second pass over the staged file,
//! after the upload: one more read of every byte, and the hashing's time added to the
//! client's wait instead of overlapping the transfer.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A hash function fed in pieces. Every RustCrypto hasher is one.
pub trait SideHasher: Send + 'static {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

impl<D: sha2::Digest + Send + 'static> SideHasher for D {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(self, data);
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        sha2::Digest::finalize(*self).to_vec()
    }
}

/// Chunks a hasher may lag behind the body before the body waits for it: bounds what a slow
/// hasher holds (the body's chunks are at most a few hundred KiB).
const QUEUE: usize = 8;

pub struct SideHashes {
    lanes: Vec<(mpsc::Sender<Bytes>, JoinHandle<Vec<u8>>)>,
}

impl SideHashes {
    /// Starts one thread per hasher (none: `tap` passes the body through); they end when the
    /// body does, or when this is dropped.
    pub fn start(hashers: Vec<Box<dyn SideHasher>>) -> SideHashes {
        let lanes = hashers
            .into_iter()
            .map(|mut hasher| {
                let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
                let task = tokio::task::spawn_blocking(move || {
                    while let Some(chunk) = rx.blocking_recv() {
                        hasher.update(&chunk);
                    }
                    hasher.finish()
                });
                (tx, task)
            })
            .collect();
        SideHashes { lanes }
    }

    /// `body`, with every chunk also handed to each hasher.
    pub fn tap<'a, S, E>(&'a self, body: S) -> impl Stream<Item = Result<Bytes, E>> + Unpin + 'a
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + 'a,
        E: 'a,
    {
        Box::pin(body.then(move |chunk| async move {
            if let Some(bytes) = chunk.as_ref().ok().filter(|b| !b.is_empty()) {
                for (tx, _) in &self.lanes {
                    // A hasher that is gone has panicked; `finish` reports it.
                    let _ = tx.send(bytes.clone()).await;
                }
            }
            chunk
        }))
    }

    /// The digests, in the order the hashers were given, of everything the tapped body yielded.
    pub async fn finish(self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(self.lanes.len());
        for (tx, task) in self.lanes {
            drop(tx);
            out.push(task.await.map_err(std::io::Error::other)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_hasher_sees_the_whole_body_in_order() {
        // Empty chunks among them (a multipart parser yields some): passed on, not queued.
        let chunks: Vec<Bytes> = (0..50u8).map(|i| Bytes::from(vec![i; if i % 7 == 3 { 0 } else { 1000 + i as usize }])).collect();
        let whole = chunks.concat();
        let side = SideHashes::start(vec![Box::new(sha2::Sha256::default()), Box::new(sha2::Sha512::default())]);
        let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
        let passed: Vec<Bytes> = side.tap(body).map(|c| c.unwrap()).collect().await;
        assert_eq!(passed.concat(), whole, "the body passes through unchanged");
        let digests = side.finish().await.unwrap();
        use sha2::Digest as _;
        assert_eq!(digests, vec![sha2::Sha256::digest(&whole).to_vec(), sha2::Sha512::digest(&whole).to_vec()]);
    }

    #[tokio::test]
    async fn without_hashers_the_body_passes_through() {
        let side = SideHashes::start(Vec::new());
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"def"))]);
        let passed: Vec<Bytes> = side.tap(body).map(|c| c.unwrap()).collect().await;
        assert_eq!(passed.concat(), b"abcdef");
        assert!(side.finish().await.unwrap().is_empty());
    }
}
