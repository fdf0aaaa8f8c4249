//! Reading and writing MNIST's IDX files, gzip-compressed or raw.
//!
//! The format (from <http://yann.lecun.com/exdb/mnist/>): a big-endian `u32` magic number
//! (2051 for images, 2049 for labels), one big-endian `u32` per dimension (the item count,
//! then rows and columns for images), then the data, one unsigned byte per pixel or label.
//!
//! The parsers take bytes that may come from anywhere (a damaged download, the wrong file),
//! so they never panic, never trust the header's sizes before the data is there, and say in
//! every error which file was wrong and how.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::{Error, Result};

/// The magic number that starts an IDX image file (unsigned bytes, three dimensions).
pub const IMAGES_MAGIC: u32 = 2051;
/// The magic number that starts an IDX label file (unsigned bytes, one dimension).
pub const LABELS_MAGIC: u32 = 2049;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Length of an image file's header: magic, count, rows, columns.
const IMAGES_HEADER: usize = 16;
/// Length of a label file's header: magic, count.
const LABELS_HEADER: usize = 8;

/// Reads an IDX image file (gzip-compressed or raw) and returns its pixels, one 28 x 28
/// image after the other, and the number of images.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::BadIdx`] if it is not a valid
/// MNIST image file (see [`parse_images`]).
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize)> {
    let bytes = read_file(path)?;
    parse_images(&bytes, path)
}

/// Reads an IDX label file (gzip-compressed or raw) and returns its labels.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::BadIdx`] if it is not a valid
/// MNIST label file (see [`parse_labels`]).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_file(path)?;
    parse_labels(&bytes, path)
}

/// Parses the bytes of an IDX image file; `path` only names the file in errors.
///
/// Gzip is recognised by its magic bytes (`1f 8b`), so compressed and raw files both work
/// whatever their names. Returns the pixels (`count * 784` bytes) and the image count.
///
/// # Errors
///
/// [`Error::BadIdx`] when the gzip stream is corrupt, the magic number is not 2051, the
/// images are not 28 x 28, or the data is shorter or longer than the header says.
///
/// # Example
///
/// ```
/// use std::path::Path;
/// use mnist_lab::data::{idx_images_bytes, parse_images};
///
/// let bytes = idx_images_bytes(&[7u8; 2 * 784], 2);
/// let (pixels, count) = parse_images(&bytes, Path::new("in-memory")).unwrap();
/// assert_eq!((pixels.len(), count), (2 * 784, 2));
/// assert!(parse_images(&bytes[..100], Path::new("in-memory")).is_err());
/// ```
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, usize)> {
    let mut reader = Source::new(bytes);
    let header = reader.read_header(IMAGES_HEADER, path)?;
    check_magic(&header, IMAGES_MAGIC, path)?;
    let count = be_u32(&header, 4);
    let rows = be_u32(&header, 8);
    let cols = be_u32(&header, 12);
    if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
        return Err(bad(
            path,
            format!(
                "its images are {rows} x {cols} pixels, but MNIST images are \
                 {IMAGE_SIDE} x {IMAGE_SIDE}"
            ),
        ));
    }
    // u32 * 784 always fits in a u64; the conversion to usize is checked for 32-bit targets.
    let expected = u64::from(count) * IMAGE_PIXELS as u64;
    let pixels = reader.read_body(expected, path, || {
        let images = plural(u64::from(count), "image");
        format!("{images} of {IMAGE_SIDE} x {IMAGE_SIDE} pixels")
    })?;
    Ok((pixels, count as usize))
}

/// Parses the bytes of an IDX label file; `path` only names the file in errors.
///
/// Gzip is recognised by its magic bytes (`1f 8b`), so compressed and raw files both work
/// whatever their names.
///
/// # Errors
///
/// [`Error::BadIdx`] when the gzip stream is corrupt, the magic number is not 2049, the
/// data is shorter or longer than the header says, or a label is not a digit 0 to 9 (the
/// message names the first bad index and its value).
///
/// # Example
///
/// ```
/// use std::path::Path;
/// use mnist_lab::data::{idx_labels_bytes, parse_labels};
///
/// let bytes = idx_labels_bytes(&[3, 1, 4]);
/// assert_eq!(parse_labels(&bytes, Path::new("in-memory")).unwrap(), vec![3, 1, 4]);
/// let bad = idx_labels_bytes(&[3, 11]);
/// let message = parse_labels(&bad, Path::new("in-memory")).unwrap_err().to_string();
/// assert!(message.contains("index 1"), "{message}");
/// ```
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut reader = Source::new(bytes);
    let header = reader.read_header(LABELS_HEADER, path)?;
    check_magic(&header, LABELS_MAGIC, path)?;
    let count = be_u32(&header, 4);
    let labels = reader.read_body(u64::from(count), path, || plural(u64::from(count), "label"))?;
    check_labels(&labels).map_err(|problem| bad(path, problem))?;
    Ok(labels)
}

/// Builds the bytes of a raw (uncompressed) IDX image file holding `n` images.
///
/// `images` should hold `n * 784` pixels; it is written as given, so tests can also build
/// files whose header and data disagree.
///
/// ```
/// let bytes = mnist_lab::data::idx_images_bytes(&[0u8; 784], 1);
/// assert_eq!(bytes.len(), 16 + 784);
/// assert_eq!(&bytes[..4], &2051u32.to_be_bytes());
/// ```
pub fn idx_images_bytes(images: &[u8], n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(IMAGES_HEADER + images.len());
    bytes.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&to_u32(n).to_be_bytes());
    bytes.extend_from_slice(&(IMAGE_SIDE as u32).to_be_bytes());
    bytes.extend_from_slice(&(IMAGE_SIDE as u32).to_be_bytes());
    bytes.extend_from_slice(images);
    bytes
}

/// Builds the bytes of a raw (uncompressed) IDX label file holding `labels`.
///
/// ```
/// let bytes = mnist_lab::data::idx_labels_bytes(&[5, 0, 4]);
/// assert_eq!(bytes, [0, 0, 8, 1, 0, 0, 0, 3, 5, 0, 4]);
/// ```
pub fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LABELS_HEADER + labels.len());
    bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&to_u32(labels.len()).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

/// Checks that every label is a digit; the error names the first bad index and value.
pub(crate) fn check_labels(labels: &[u8]) -> std::result::Result<(), String> {
    let mut bad_labels = labels.iter().enumerate().filter(|&(_, &label)| label > 9);
    match bad_labels.next() {
        None => Ok(()),
        Some((index, value)) => {
            let others = bad_labels.count();
            let more = match others {
                0 => String::new(),
                1 => " (and 1 more label out of range)".to_string(),
                n => format!(" (and {n} more labels out of range)"),
            };
            Err(format!(
                "the label at index {index} is {value}, but MNIST labels are the digits 0 to \
                 9{more}"
            ))
        }
    }
}

/// "1 byte", "2 bytes".
pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("reading", path, e))
}

fn bad(path: &Path, problem: impl Into<String>) -> Error {
    Error::BadIdx {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// IDX counts are `u32`; anything larger is saturated (and then fails to parse back).
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The big-endian `u32` at `at`; callers pass headers whose length they checked.
fn be_u32(header: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(bytes) = header.get(at..at + 4) {
        word.copy_from_slice(bytes);
    }
    u32::from_be_bytes(word)
}

fn check_magic(header: &[u8], expected: u32, path: &Path) -> Result<()> {
    let magic = be_u32(header, 0);
    if magic == expected {
        return Ok(());
    }
    let (wanted, other, other_kind) = if expected == IMAGES_MAGIC {
        ("an image file", LABELS_MAGIC, "a label file")
    } else {
        ("a label file", IMAGES_MAGIC, "an image file")
    };
    let problem = if magic == other {
        format!(
            "bad magic number {magic}: that is {other_kind}, but {wanted} (magic {expected}) \
             was expected here, so the file names may be swapped"
        )
    } else {
        format!(
            "bad magic number {magic} (0x{magic:08x}); {wanted} starts with {expected} \
             (0x{expected:08x})"
        )
    };
    Err(bad(path, problem))
}

/// The file's contents, decompressed on the fly when they start with the gzip magic.
struct Source<'a> {
    reader: Box<dyn Read + 'a>,
    gzip: bool,
    /// The length of a raw (uncompressed) input, known up front.
    raw_len: u64,
    /// Bytes of (decompressed) data consumed so far, for messages.
    consumed: u64,
}

impl<'a> Source<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let gzip = bytes.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn Read + 'a> = if gzip {
            Box::new(GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        Source {
            reader,
            gzip,
            raw_len: bytes.len() as u64,
            consumed: 0,
        }
    }

    /// Reads at most `limit` bytes, stopping early only at the end of the data. The buffer
    /// grows with the data actually present, never with a size taken from a header.
    fn read_up_to(&mut self, limit: u64, path: &Path) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let result = (&mut self.reader).take(limit).read_to_end(&mut out);
        self.consumed += out.len() as u64;
        match result {
            Ok(_) => Ok(out),
            Err(e) if self.gzip => Err(bad(
                path,
                format!(
                    "corrupt gzip stream ({e}) after {} of decompressed data",
                    plural(self.consumed, "byte")
                ),
            )),
            // Reading from a byte slice cannot fail, but report it rather than panic.
            Err(e) => Err(bad(path, format!("could not read the data: {e}"))),
        }
    }

    fn read_header(&mut self, len: usize, path: &Path) -> Result<Vec<u8>> {
        let header = self.read_up_to(len as u64, path)?;
        if header.len() < len {
            let what = if self.gzip { "decompresses to" } else { "is" };
            return Err(bad(
                path,
                format!(
                    "the file is truncated: it {what} only {}, shorter than the {len}-byte \
                     IDX header",
                    plural(header.len() as u64, "byte")
                ),
            ));
        }
        Ok(header)
    }

    /// Reads exactly `expected` bytes of data and checks that nothing follows them.
    fn read_body(
        &mut self,
        expected: u64,
        path: &Path,
        promise: impl Fn() -> String,
    ) -> Result<Vec<u8>> {
        let Ok(expected_len) = usize::try_from(expected) else {
            return Err(bad(
                path,
                format!(
                    "its header promises {}, too many for this machine",
                    promise()
                ),
            ));
        };
        // One byte more than promised tells "too long" apart from "just right".
        let mut data = self.read_up_to(expected.saturating_add(1), path)?;
        if data.len() < expected_len {
            return Err(bad(
                path,
                format!(
                    "the file is truncated: its header promises {} ({expected} bytes of data) \
                     but only {} follow the header",
                    promise(),
                    plural(data.len() as u64, "byte")
                ),
            ));
        }
        if data.len() > expected_len {
            let extra = if self.gzip {
                "more data follows".to_string()
            } else {
                // A raw file's length is known: count the surplus exactly.
                let surplus = self.raw_len.saturating_sub(self.consumed.saturating_sub(1));
                let verb = if surplus == 1 { "follows" } else { "follow" };
                format!("{} {verb}", plural(surplus, "more byte"))
            };
            return Err(bad(
                path,
                format!(
                    "the file is too long: its header promises {} ({expected} bytes of data) \
                     but {extra}",
                    promise()
                ),
            ));
        }
        data.shrink_to_fit();
        Ok(data)
    }
}
