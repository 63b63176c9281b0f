//! Streams part of a local file in big chunks read into buffers that are used again.
//!
//! A download's chunks live only until the HTTP layer has copied them into the connection's
//! buffer. `ReaderStream` over `tokio::fs::File` allocated a new 256 KiB chunk for each read
//! (and copied it once more out of tokio's own buffer): under 200 concurrent pulls that was
//! 16,000 allocations of 256 KiB for 4 GiB served, and glibc's heap grew to the burst's peak and
//! kept it. Here a chunk's buffer goes back to a small shared pool when the chunk is dropped
//! (`Bytes::from_owner`); the pool keeps at most [`POOL_MAX`] buffers, so what a burst leaves
//! behind is bounded, and a read is one positioned read (`pread`) straight into the buffer.

use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};

use super::READ_CHUNK;

/// Buffers kept for reuse (2 MiB: what an idle server holds); more in flight at once are
/// allocated and freed.
const POOL_MAX: usize = 8;

/// What a read is handed on as: actix-http copies each piece into the connection's write
/// buffer, which it keeps between pieces only while that stays under 128 KiB (a 256 KiB piece
/// made it allocate and free a buffer per piece).
const SLICE: usize = 64 << 10;

static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A pooled buffer, of which the first `len` bytes are the chunk.
struct Chunk {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..self.len])
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(buf);
            }
        }
    }
}

fn buffer() -> Box<[u8]> {
    let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    // Zeroed once, when first made: a reused buffer is overwritten by the read.
    pooled.unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice())
}

/// The `len` bytes of `file` from `start`, read [`READ_CHUNK`] at a time and handed on in
/// pieces of up to [`SLICE`]; a file that turns out shorter ends the stream with an
/// `UnexpectedEof` error.
pub(super) fn stream(file: std::fs::File, start: u64, len: u64) -> BoxStream<'static, std::io::Result<Bytes>> {
    let file = Arc::new(file);
    futures::stream::try_unfold((file, start, len), |(file, pos, left)| async move {
        if left == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        let want = left.min(READ_CHUNK as u64) as usize;
        let f = file.clone();
        let chunk = tokio::task::spawn_blocking(move || {
            let mut chunk = Chunk { buf: Some(buffer()), len: want };
            let buf = chunk.buf.as_mut().expect("just set");
            f.read_exact_at(&mut buf[..want], pos).map(|()| chunk)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Some((Bytes::from_owner(chunk), (file, pos + want as u64, left - want as u64))))
    })
    .map_ok(|read: Bytes| futures::stream::iter((0..read.len()).step_by(SLICE).map(move |at| Ok(read.slice(at..(at + SLICE).min(read.len()))))))
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use futures::TryStreamExt as _;

    use super::*;

    #[tokio::test]
    async fn streams_the_range_in_chunks_and_reuses_buffers() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 1234)).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let start = 17u64;
        let len = data.len() as u64 - start - 5;
        let chunks: Vec<Bytes> = stream(f.try_clone().unwrap(), start, len).try_collect().await.unwrap();
        assert_eq!(chunks.len(), (len as usize).div_ceil(SLICE));
        assert!(chunks.iter().all(|c| c.len() <= SLICE));
        assert_eq!(chunks.concat(), &data[start as usize..(start + len) as usize]);
        drop(chunks);
        assert!(!POOL.lock().unwrap().is_empty(), "dropped chunks give their buffers back");
        // A second pass reads through reused buffers and still gets the bytes.
        let again: Vec<Bytes> = stream(f.try_clone().unwrap(), 0, data.len() as u64).try_collect().await.unwrap();
        assert_eq!(again.concat(), data);
    }

    #[tokio::test]
    async fn a_file_shorter_than_asked_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let got: std::io::Result<Vec<Bytes>> = stream(f, 0, 2000).try_collect().await;
        assert_eq!(got.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
