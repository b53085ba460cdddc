//! Parallel gzip, the way pigz does it: the stream is cut into fixed 128 KiB blocks, each block
//! is deflated on a worker thread with the previous block's last 32 KiB as its dictionary and
//! ends with a sync flush, and the compressed blocks are written in order between one gzip
//! header and trailer. The result is one ordinary gzip member that any reader accepts.
//!
//! Block boundaries depend only on the byte count, never on how many workers ran, so the output
//! (and the layer digest) is the same on a laptop and on a 64-core runner. The writer thread
//! keeps at most two blocks per worker in flight, so memory stays flat. Compression is flate2
//! with the zlib-rs backend. The gzp crate does the same but needs a `'static + Send` sink and
//! panics when an error surfaces in its `Drop`; this is small enough to own.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input per block.
const BLOCK: usize = 128 * 1024;
/// Dictionary carried from one block to the next (deflate's window).
const DICT: usize = 32 * 1024;

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Arc<Vec<u8>>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// A gzip writer compressing on `threads` worker threads.
pub(crate) struct ParGzip<W: Write> {
    /// `None` once finished.
    inner: Option<W>,
    block: Vec<u8>,
    dict: Arc<Vec<u8>>,
    crc: flate2::Crc,
    total: u64,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    sent: u64,
    written: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    max_in_flight: u64,
}

impl<W: Write> ParGzip<W> {
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<ParGzip<W>> {
        // Fixed header: no mtime, no name, no extra flags, OS "unknown".
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let threads = threads.max(1);
        let (jobs_tx, jobs_rx) = channel::<Job>();
        let (done_tx, done_rx) = channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let jobs = Arc::clone(&jobs_rx);
            let done = done_tx.clone();
            workers.push(std::thread::spawn(move || worker(&jobs, &done, level)));
        }
        Ok(ParGzip {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            dict: Arc::new(Vec::new()),
            crc: flate2::Crc::new(),
            total: 0,
            jobs: Some(jobs_tx),
            done: done_rx,
            workers,
            sent: 0,
            written: 0,
            ready: BTreeMap::new(),
            max_in_flight: 2 * threads as u64,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        self.crc.update(&data);
        self.total += data.len() as u64;
        let tail = data[data.len().saturating_sub(DICT)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, Arc::new(tail));
        let job = Job {
            seq: self.sent,
            data,
            dict,
            last,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?
            .send(job)
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.sent += 1;
        while self.sent - self.written > self.max_in_flight {
            self.collect_one()?;
        }
        Ok(())
    }

    /// Waits for one block and writes every block that is now next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, out) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.ready.insert(seq, out?);
        while let Some(out) = self.ready.remove(&self.written) {
            self.inner_mut()?.write_all(&out)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.written < self.sent {
            self.collect_one()?;
        }
        let crc = self.crc.sum();
        let total = self.total as u32;
        let inner = self.inner_mut()?;
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&total.to_le_bytes())?;
        self.stop();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))
    }

    fn inner_mut(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))
    }

    fn stop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Drop for ParGzip<W> {
    fn drop(&mut self) {
        // Finished, or abandoned after an error elsewhere: the workers exit once the job
        // channel closes.
        self.stop();
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = (BLOCK - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == BLOCK {
                self.dispatch(false)?;
            }
        }
        Ok(buf.len())
    }

    /// Does nothing: cutting a block early would make the output depend on when flushes happen.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, level: u32) {
    let mut c = Compress::new(Compression::new(level), false);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let out = deflate_block(&mut c, &job);
        if done.send((job.seq, out)).is_err() {
            return;
        }
    }
}

fn deflate_block(c: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    c.reset();
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let start_in = c.total_in();
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = (c.total_in() - start_in) as usize;
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output did not fill up.
            _ if !job.last && consumed == job.data.len() && room_left => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParGzip::new(Vec::new(), 6, threads).unwrap();
        for part in data.chunks(chunk.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn output_is_standard_gzip_and_independent_of_threads_and_write_sizes() {
        let mut data = Vec::new();
        let mut x = 1u32;
        while data.len() < 3 * BLOCK + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.extend_from_slice(format!("line {} {}\n", x % 1000, x >> 20).as_bytes());
        }
        for len in [0, 10, BLOCK, 2 * BLOCK, data.len()] {
            let input = &data[..len];
            let one = compress(input, 1, 4096);
            assert_eq!(one, compress(input, 3, 100_000), "len {len}");
            assert_eq!(&one[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, input, "len {len}");
        }
    }
}
