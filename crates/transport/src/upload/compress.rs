//! The last stage before the store: zstd (and age) on a blocking thread, output cut into parts.

use std::io::Write;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::UploadOptions;
use crate::TransportError;

/// What the compressor saw of the stored bytes.
pub(super) struct CompressedSums {
    pub(super) stored_size: u64,
    pub(super) stored_sha256: String,
}

/// Input per zstd worker job (with `zstd_workers` > 0). A worker compresses each job from one
/// contiguous buffer, which zstd's single-threaded streaming cannot do (its input ring keeps it
/// on the slower split-window path): on a 531 MiB snapshot one worker needed 2.2 CPU-seconds
/// against 2.7 on the pipeline thread. zstd's default job at level 3 is 8 MiB and it keeps
/// three jobs' buffers alive (+35 MiB RSS); 4 MiB jobs cost +17 MiB.
const ZSTD_JOB_SIZE: u32 = 4 * 1024 * 1024;

/// How much of the previous job a job may refer back to, as zstd's overlap log: 8 is half the
/// level-3 window (1 MiB). zstd's default for level 3 (an eighth) stores 0.02 % more than
/// `zstd -3` at this job size; with half the window etcd-dr stores slightly less than the CLI.
const ZSTD_OVERLAP_LOG: u32 = 8;

/// Runs on a blocking thread: compresses (and encrypts) the plain stream and cuts the output
/// into parts.
pub(super) fn compress_parts(
    mut hashed_rx: mpsc::Receiver<Vec<Bytes>>,
    part_tx: mpsc::Sender<Bytes>,
    options: &UploadOptions,
    encryptor: Option<age::Encryptor>,
) -> Result<CompressedSums, TransportError> {
    let pipeline_error =
        |e: std::io::Error| TransportError::Pipeline(format!("zstd compression: {e}"));
    let parts = PartWriter::new(part_tx, options.part_size);
    let stored = match encryptor {
        Some(encryptor) => StoredWriter::Age(
            encryptor
                .wrap_output(parts)
                .map_err(|e| TransportError::Pipeline(format!("age encryption: {e}")))?,
        ),
        None => StoredWriter::Plain(parts),
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(stored, options.zstd_level).map_err(pipeline_error)?;
    if options.zstd_workers > 0 {
        encoder
            .multithread(options.zstd_workers)
            .map_err(pipeline_error)?;
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
            .map_err(pipeline_error)?;
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
                ZSTD_OVERLAP_LOG,
            ))
            .map_err(pipeline_error)?;
    }
    while let Some(batch) = hashed_rx.blocking_recv() {
        for chunk in &batch {
            encoder.write_all(chunk).map_err(pipeline_error)?;
        }
    }
    let mut parts = encoder
        .finish()
        .and_then(StoredWriter::finish)
        .map_err(pipeline_error)?;
    parts.flush_part().map_err(pipeline_error)?;
    Ok(CompressedSums {
        stored_size: parts.size,
        stored_sha256: hex::encode(parts.sha256.finalize()),
    })
}

/// Where zstd's output goes: straight into parts, or through age first.
enum StoredWriter {
    Plain(PartWriter),
    Age(age::stream::StreamWriter<PartWriter>),
}

impl StoredWriter {
    /// Ends the age stream (its last chunk is marked final, so truncation is detected).
    fn finish(self) -> std::io::Result<PartWriter> {
        match self {
            Self::Plain(parts) => Ok(parts),
            Self::Age(writer) => writer.finish(),
        }
    }
}

impl Write for StoredWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(parts) => parts.write(data),
            Self::Age(writer) => writer.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(parts) => parts.flush(),
            Self::Age(writer) => writer.flush(),
        }
    }
}

/// Collects compressed output into parts of `part_size` bytes and hands them to the uploader.
struct PartWriter {
    tx: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    part_size: usize,
    sha256: Sha256,
    size: u64,
}

impl PartWriter {
    fn new(tx: mpsc::Sender<Bytes>, part_size: usize) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(part_size),
            part_size,
            sha256: Sha256::new(),
            size: 0,
        }
    }

    fn flush_part(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        self.tx.blocking_send(Bytes::from(part)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the uploader stopped")
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let taken = data.len().min(room);
        self.buffer.extend_from_slice(&data[..taken]);
        self.sha256.update(&data[..taken]);
        self.size += taken as u64;
        if self.buffer.len() >= self.part_size {
            self.flush_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
