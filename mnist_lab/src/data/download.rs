//! Downloading the MNIST files into a cache folder, safely.
//!
//! Each file streams into a hidden temporary file next to its destination, its MD5 is
//! checked against the published one, and only then is it renamed into place; on any
//! failure the temporary file is removed. So the cache never holds a half-written or
//! corrupted file, even if the process is interrupted between two files.
//!
//! Failures are handled by kind: HTTP 5xx and timeouts are retried with exponential
//! backoff, a 404 moves on to the next mirror at once, a checksum mismatch is downloaded
//! once more before moving on, and when no mirror can even be connected to, the error says
//! that the machine looks offline and how to work without a network.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};

use super::{FILES, find_file};
use crate::{Error, Result};

/// The mirrors tried in order. The original site, yann.lecun.com, now refuses
/// unauthenticated downloads; these two hold byte-identical copies.
pub const MIRRORS: [&str; 2] = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
];

/// The published MD5 checksums of the four files, in [`FILES`] order, as listed in the
/// `resources` of torchvision's MNIST dataset (`torchvision/datasets/mnist.py`, class
/// `MNIST`).
pub const MD5S: [&str; 4] = [
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
];

/// The largest response accepted for one file; MNIST's largest is 9.9 MB.
const MAX_DOWNLOAD_BYTES: u64 = 200_000_000;

/// Downloads missing MNIST files from a list of mirrors, checking each file's MD5.
///
/// The fields are public so that tests can point it at a local server and shorten the
/// waits.
///
/// ```no_run
/// use mnist_lab::data::{Downloader, Mnist};
///
/// let downloaded = Downloader::default().fetch_missing(&Mnist::cache_dir()).unwrap();
/// println!("downloaded {} files", downloaded.len());
/// ```
#[derive(Clone, Debug)]
pub struct Downloader {
    /// Base URLs tried in order; a file's URL is the base followed by its name.
    pub mirrors: Vec<String>,
    /// The files to fetch: name, and expected MD5 as lowercase hex.
    pub files: Vec<(String, String)>,
    /// How many times each mirror is tried when it answers with an HTTP 5xx or times out
    /// (values below 1 count as 1).
    pub retries: u32,
    /// The wait before the first retry; it doubles before each further retry.
    pub backoff: Duration,
    /// How long to wait for a connection, for the response to a request, and for each
    /// further piece of the file (so a stalled transfer is abandoned, while a slow but
    /// steady one is not). A whole download may take at most 20 times this.
    pub timeout: Duration,
}

impl Default for Downloader {
    /// The two standard mirrors, the four MNIST files with their published MD5s, 3 tries
    /// per mirror, backoff 1 s (doubling), timeout 30 s.
    fn default() -> Self {
        Downloader {
            mirrors: MIRRORS.iter().map(|m| m.to_string()).collect(),
            files: FILES
                .iter()
                .zip(MD5S)
                .map(|(name, md5)| (name.to_string(), md5.to_string()))
                .collect(),
            retries: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        }
    }
}

impl Downloader {
    /// [`Downloader::default`], with the mirrors replaced by those listed in
    /// `MNIST_LAB_MIRROR` (comma-separated base URLs) when it is set.
    pub fn from_env() -> Self {
        let mut downloader = Downloader::default();
        if let Ok(list) = std::env::var(super::MIRROR_ENV) {
            let mirrors: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(|m| {
                    if m.ends_with('/') {
                        m.to_string()
                    } else {
                        format!("{m}/")
                    }
                })
                .collect();
            if !mirrors.is_empty() {
                downloader.mirrors = mirrors;
            }
        }
        downloader
    }

    /// The names of the files missing from `dir`. A file counts as present in either its
    /// compressed or its raw form (see [`crate::data::Mnist::from_dir`]).
    pub fn missing(&self, dir: &Path) -> Vec<String> {
        self.files
            .iter()
            .filter(|(name, _)| find_file(dir, name).is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Downloads each file missing from `dir` into it (creating the folder if needed),
    /// printing one line per file downloaded to standard error, and returns the names
    /// downloaded (empty when nothing was missing, in which case the network is not used).
    ///
    /// # Errors
    ///
    /// * [`Error::Io`] if `dir` cannot be created or written (read-only, disk full); the
    ///   message names the folder.
    /// * [`Error::DataNotFound`] (listing the files still missing) if no mirror could be
    ///   connected to: the machine looks offline.
    /// * [`Error::Download`] if every mirror failed otherwise (not found, server errors,
    ///   checksum mismatches), mirror by mirror.
    ///
    /// Files downloaded before an error stay in `dir`; they were checked.
    pub fn fetch_missing(&self, dir: &Path) -> Result<Vec<String>> {
        self.fetch_missing_with(dir, &mut |line| eprintln!("{line}"))
    }

    /// As [`Downloader::fetch_missing`], but hands each progress line to `report` instead
    /// of printing it.
    ///
    /// # Errors
    ///
    /// As [`Downloader::fetch_missing`].
    pub fn fetch_missing_with(
        &self,
        dir: &Path,
        report: &mut dyn FnMut(&str),
    ) -> Result<Vec<String>> {
        let missing = self.missing(dir);
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("creating the download folder", dir, e))?;
        self.remove_stale_parts(dir, &missing);
        let agent = self.agent();
        let mut downloaded = Vec::new();
        for (name, md5) in self.files.iter().filter(|(name, _)| missing.contains(name)) {
            match self.fetch_one(&agent, dir, name, md5)? {
                Fetched::Done { url, bytes } => {
                    report(&format!(
                        "Downloaded {name} ({}) from {url}",
                        human_size(bytes)
                    ));
                    downloaded.push(name.clone());
                }
                Fetched::Offline(notes) => {
                    return Err(Error::DataNotFound {
                        missing: self.missing(dir),
                        looked_in: vec![dir.to_path_buf()],
                        download: Some(format!(
                            "could not connect to any mirror ({notes}); this machine looks \
                             offline"
                        )),
                    });
                }
                Fetched::Failed(notes) => {
                    return Err(Error::Download {
                        file: name.clone(),
                        problem: notes,
                    });
                }
            }
        }
        Ok(downloaded)
    }

    /// Removes temporary files that a killed process left behind for the files in `names`.
    /// Only old ones go: a younger one may belong to a download still running elsewhere
    /// (no download lasts longer than 20 timeouts).
    fn remove_stale_parts(&self, dir: &Path, names: &[String]) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let max_age = self
            .timeout
            .saturating_mul(20)
            .max(Duration::from_secs(3600));
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let ours = names
                .iter()
                .any(|name| file_name.starts_with(&format!(".{name}.part-")));
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if ours && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .timeout_per_read(Some(self.timeout))
            .timeout_global(Some(self.timeout.saturating_mul(20)))
            // The files are gzip already: ask for the bytes as stored, so that no
            // transparent decompression changes what the checksum sees.
            .accept_encoding("identity")
            .user_agent(concat!("mnist_lab/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }

    /// Tries every mirror for one file. `Err` only for local failures (the folder).
    fn fetch_one(&self, agent: &ureq::Agent, dir: &Path, name: &str, md5: &str) -> Result<Fetched> {
        let mut notes = Vec::new();
        let mut only_connect_failures = true;
        for mirror in &self.mirrors {
            let url = if mirror.ends_with('/') {
                format!("{mirror}{name}")
            } else {
                format!("{mirror}/{name}")
            };
            let mut tries = 0;
            let mut checksum_tries = 0;
            let mut delay = self.backoff;
            loop {
                match attempt(agent, &url, dir, name, md5) {
                    Ok(bytes) => return Ok(Fetched::Done { url, bytes }),
                    Err(Failure::Local(error)) => return Err(error),
                    Err(Failure::Connect(why)) => {
                        notes.push(format!("{url}: {why}"));
                        break;
                    }
                    Err(Failure::Skip(why)) => {
                        only_connect_failures = false;
                        notes.push(format!("{url}: {why}"));
                        break;
                    }
                    Err(Failure::Transient(why)) => {
                        only_connect_failures = false;
                        tries += 1;
                        if tries >= self.retries.max(1) {
                            let times = if tries == 1 { "try" } else { "tries" };
                            notes.push(format!("{url}: {why} ({tries} {times})"));
                            break;
                        }
                        std::thread::sleep(delay);
                        delay = delay.saturating_mul(2);
                    }
                    Err(Failure::Checksum { got }) => {
                        only_connect_failures = false;
                        checksum_tries += 1;
                        if checksum_tries >= 2 {
                            notes.push(format!(
                                "{url}: checksum mismatch on {checksum_tries} downloads: \
                                 expected MD5 {md5}, got {got}"
                            ));
                            break;
                        }
                    }
                }
            }
        }
        if self.mirrors.is_empty() {
            return Ok(Fetched::Failed("no mirror is configured".to_string()));
        }
        let notes = notes.join("; ");
        Ok(if only_connect_failures {
            Fetched::Offline(notes)
        } else {
            Fetched::Failed(notes)
        })
    }
}

/// The end of trying all mirrors for one file.
enum Fetched {
    /// Downloaded and checked, `bytes` long, from `url`.
    Done { url: String, bytes: u64 },
    /// No mirror could be connected to; what each said.
    Offline(String),
    /// Every mirror failed, at least one of them after connecting; what each said.
    Failed(String),
}

/// Why one download attempt failed, which decides what to try next.
enum Failure {
    /// Could not write locally: give up at once.
    Local(Error),
    /// Could not connect (refused, DNS, unreachable): try the next mirror.
    Connect(String),
    /// The mirror does not have the file (404) or refused it: try the next mirror.
    Skip(String),
    /// Server error or timeout: retry after a pause, then try the next mirror.
    Transient(String),
    /// The file arrived but its MD5 is wrong: download once more, then the next mirror.
    Checksum { got: String },
}

/// One download of `url` into `dir/name`, through a temporary file. Returns its size.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    name: &str,
    md5: &str,
) -> std::result::Result<u64, Failure> {
    let mut part = PartFile::create(dir, name).map_err(Failure::Local)?;
    let response = agent.get(url).call().map_err(call_failure)?;
    let status = response.status();
    if !status.is_success() {
        let code = status.as_u16();
        let why = format!(
            "HTTP {code} {}",
            status.canonical_reason().unwrap_or("(unknown status)")
        );
        return Err(match code {
            408 | 429 | 500..=599 => Failure::Transient(why),
            _ => Failure::Skip(why),
        });
    }
    let mut body = response
        .into_body()
        .into_with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .reader();
    let mut hasher = Md5::new();
    let mut total: u64 = 0;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(e, total)),
        };
        let chunk = &buffer[..n];
        hasher.update(chunk);
        part.write(chunk)
            .map_err(|e| Failure::Local(Error::io(format!("writing {name} into"), dir, e)))?;
        total += n as u64;
    }
    let got = format!("{:x}", hasher.finalize());
    if !got.eq_ignore_ascii_case(md5) {
        return Err(Failure::Checksum { got });
    }
    part.persist(&dir.join(name))
        .map_err(|e| Failure::Local(Error::io(format!("saving {name} into"), dir, e)))?;
    Ok(total)
}

/// Sorts an error from sending the request or receiving the response headers.
fn call_failure(error: ureq::Error) -> Failure {
    match &error {
        ureq::Error::HostNotFound => Failure::Connect("host not found (DNS lookup failed)".into()),
        ureq::Error::ConnectionFailed => Failure::Connect("could not connect".into()),
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            Failure::Connect(format!("{error} (could not connect)"))
        }
        ureq::Error::Timeout(_) => Failure::Transient(format!("{error}")),
        ureq::Error::Io(e) => {
            use io::ErrorKind::*;
            let cannot_connect = matches!(
                e.kind(),
                ConnectionRefused
                    | NetworkUnreachable
                    | HostUnreachable
                    | NetworkDown
                    | AddrNotAvailable
                    | NotConnected
            ) || e.to_string().contains("lookup address");
            if cannot_connect {
                Failure::Connect(e.to_string())
            } else {
                Failure::Transient(e.to_string())
            }
        }
        ureq::Error::Protocol(_) => Failure::Transient(error.to_string()),
        _ => Failure::Skip(error.to_string()),
    }
}

/// Sorts an error while reading the body: a cut connection or a stall is worth a retry.
fn read_failure(error: io::Error, received: u64) -> Failure {
    match ureq::Error::from(error) {
        ureq::Error::BodyExceedsLimit(limit) => {
            Failure::Skip(format!("the file is larger than {}", human_size(limit)))
        }
        error => Failure::Transient(format!(
            "transfer broken after {}: {error}",
            human_size(received)
        )),
    }
}

/// Distinguishes temporary files made by threads of one process.
static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary download file next to its destination, removed on drop unless persisted.
struct PartFile {
    path: PathBuf,
    file: Option<File>,
}

impl PartFile {
    fn create(dir: &Path, name: &str) -> Result<PartFile> {
        let n = PART_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.part-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating a download file for {name} in"), dir, e))?;
        Ok(PartFile {
            path,
            file: Some(file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(bytes),
            None => Err(io::Error::other("the download file is closed")),
        }
    }

    /// Flushes the file to disk and renames it to `destination`.
    fn persist(mut self, destination: &Path) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        std::fs::rename(&self.path, destination)?;
        // Renamed: nothing left for drop to remove.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A byte count for people: "9.9 MB", "28.9 kB", "512 bytes".
pub(crate) fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else if bytes >= 1_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} bytes")
    }
}
