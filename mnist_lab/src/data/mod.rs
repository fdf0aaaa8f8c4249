//! The MNIST data pipeline: the files, the two splits, and batches of tensors.
//!
//! [`Mnist::load`] finds the four MNIST files (in the folder named by `MNIST_LAB_DATA`, or
//! else in a cache folder it downloads them into), checks them, and keeps the pixels as
//! bytes. A [`Split`] is a Burn [`Dataset`] of [`MnistItem`]s, and the [`MnistBatcher`]
//! turns a list of items into an [`MnistBatch`]: images `[batch, 1, 28, 28]` scaled to
//! `[0, 1]` (pixel / 255, like torchvision's `ToTensor()`, without mean/std
//! normalisation) and their targets.
//!
//! # Example
//!
//! ```
//! use burn::data::dataloader::batcher::Batcher;
//! use burn::data::dataset::Dataset;
//! use mnist_lab::data::{Mnist, MnistBatcher};
//!
//! let data = Mnist::synthetic(100, 20, 1);
//! let items: Vec<_> = (0..8).map(|i| data.train.get(i).unwrap()).collect();
//! let batch = MnistBatcher.batch(items, &Default::default());
//! assert_eq!(batch.images.dims(), [8, 1, 28, 28]);
//! assert_eq!(batch.targets.dims(), [8]);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{Error, Result};

pub mod download;
pub mod idx;
mod synthetic;

pub use download::Downloader;
pub use idx::{
    idx_images_bytes, idx_labels_bytes, parse_images, parse_labels, read_images, read_labels,
};

/// Width and height of an MNIST image, in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels in one MNIST image (28 x 28).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Classes to tell apart: the digits 0 to 9.
pub const NUM_CLASSES: usize = 10;

/// The training images file (60,000 images).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// The training labels file.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// The test images file (10,000 images).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// The test labels file.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
/// The four MNIST files, as published (gzip-compressed).
pub const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The environment variable naming a folder that holds the MNIST files.
pub const DATA_ENV: &str = "MNIST_LAB_DATA";

/// The environment variable that moves the download cache (see [`Mnist::cache_dir`]).
pub const CACHE_ENV: &str = "MNIST_LAB_CACHE";

/// The environment variable naming mirrors to download from instead of the standard ones
/// (comma-separated base URLs, e.g. a classroom server); see [`Downloader::from_env`].
pub const MIRROR_ENV: &str = "MNIST_LAB_MIRROR";

/// One image and its label.
#[derive(Clone, Debug)]
pub struct MnistItem {
    /// The 28 x 28 pixels, row by row, 0 (black) to 255 (white).
    pub image: [u8; IMAGE_PIXELS],
    /// The digit shown, 0 to 9.
    pub label: u8,
}

/// One split of the data (train or test): the images stored contiguously, and their labels.
///
/// Cloning is cheap (the bytes are shared), and `Debug` prints a summary (size and class
/// counts), not the pixels.
#[derive(Clone)]
pub struct Split {
    images: Arc<Vec<u8>>,
    labels: Arc<Vec<u8>>,
}

impl Split {
    /// A split from `labels.len()` images of 784 pixels each, one after the other.
    ///
    /// # Errors
    ///
    /// [`Error::Setting`] if `images.len()` is not `labels.len() * 784` or a label is
    /// not a digit 0 to 9.
    ///
    /// ```
    /// use mnist_lab::data::Split;
    ///
    /// let split = Split::new(vec![0; 2 * 784], vec![3, 8]).unwrap();
    /// assert_eq!(split.len(), 2);
    /// assert!(Split::new(vec![0; 784], vec![3, 8]).is_err());
    /// assert!(Split::new(vec![0; 784], vec![10]).is_err());
    /// ```
    pub fn new(images: Vec<u8>, labels: Vec<u8>) -> Result<Split> {
        let expected = labels.len().checked_mul(IMAGE_PIXELS);
        if expected != Some(images.len()) {
            return Err(Error::setting(
                "images",
                idx::plural(images.len() as u64, "byte"),
                format!(
                    "{} need {} of pixels, {IMAGE_PIXELS} ({IMAGE_SIDE} x {IMAGE_SIDE}) per \
                     image",
                    idx::plural(labels.len() as u64, "label"),
                    idx::plural(labels.len().saturating_mul(IMAGE_PIXELS) as u64, "byte")
                ),
            ));
        }
        if let Err(problem) = idx::check_labels(&labels) {
            return Err(Error::setting("labels", "a label out of range", problem));
        }
        Ok(Split::from_parts(images, labels))
    }

    /// A split from parts already checked.
    pub(crate) fn from_parts(images: Vec<u8>, labels: Vec<u8>) -> Split {
        debug_assert_eq!(images.len(), labels.len() * IMAGE_PIXELS);
        Split {
            images: Arc::new(images),
            labels: Arc::new(labels),
        }
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`, row by row.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "image index {i} out of range 0..{}",
            self.len()
        );
        &self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    /// The label of image `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// All pixels, image after image (`len() * 784` bytes).
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// The first `n` items (all of them if there are fewer), for quick runs.
    ///
    /// ```
    /// let data = mnist_lab::data::Mnist::synthetic(50, 10, 0);
    /// assert_eq!(data.train.take(20).len(), 20);
    /// assert_eq!(data.test.take(20).len(), 10);
    /// ```
    pub fn take(&self, n: usize) -> Split {
        if n >= self.len() {
            return self.clone();
        }
        Split::from_parts(
            self.images[..n * IMAGE_PIXELS].to_vec(),
            self.labels[..n].to_vec(),
        )
    }

    /// Images `range` as one batch on `device`, the way training sees them (pixels / 255).
    ///
    /// ```
    /// let data = mnist_lab::data::Mnist::synthetic(50, 10, 0);
    /// let device = mnist_lab::device::cpu();
    /// let batch = data.train.batch(0..20, &device).unwrap();
    /// assert_eq!(batch.images.dims(), [20, 1, 28, 28]);
    /// assert!(data.test.batch(0..20, &device).is_err()); // the test split holds 10
    /// ```
    pub fn batch(&self, range: std::ops::Range<usize>, device: &Device) -> Result<MnistBatch> {
        if range.is_empty() || range.end > self.len() {
            return Err(Error::Setting {
                name: "range".into(),
                value: format!("{range:?}"),
                hint: format!(
                    "this split holds {} images, so take a non-empty range within 0..{}",
                    self.len(),
                    self.len()
                ),
            });
        }
        let items = range.filter_map(|i| self.get(i).ok()).collect();
        Ok(MnistBatcher.batch(items, device))
    }

    /// How many images of each digit the split holds.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &label in self.labels.iter() {
            if let Some(count) = counts.get_mut(usize::from(label)) {
                *count += 1;
            }
        }
        counts
    }
}

impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len())
            .field("class_counts", &self.class_counts())
            .finish_non_exhaustive()
    }
}

impl Dataset<MnistItem> for Split {
    /// Item `index`; like slice indexing (and as Burn's `Dataset` contract says), it panics
    /// if `index >= len()`.
    fn get(&self, index: usize) -> std::result::Result<MnistItem, DatasetError> {
        let mut image = [0u8; IMAGE_PIXELS];
        image.copy_from_slice(self.image(index));
        Ok(MnistItem {
            image,
            label: self.labels[index],
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// The data set: the training and test splits, plus where they came from.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training split (60,000 images for MNIST).
    pub train: Split,
    /// The test split (10,000 images for MNIST).
    pub test: Split,
    /// Where the data came from: the folder it was read from, or `"synthetic"`.
    pub source: String,
}

impl Mnist {
    /// Reads the four MNIST files from the folder `path`.
    ///
    /// Each file may be gzip-compressed (`train-images-idx3-ubyte.gz`) or raw
    /// (`train-images-idx3-ubyte`, or Kaggle's `train-images.idx3-ubyte`); gzip is
    /// recognised by its content, not its name. A torchvision data root works too: when
    /// `path` lacks the files but `path/MNIST/raw` holds them, they are read from there.
    ///
    /// # Errors
    ///
    /// [`Error::DataNotFound`] if the folder is missing or lacks some of the files (all of
    /// them are listed), [`Error::Io`] if a file cannot be read, and [`Error::BadIdx`] if a
    /// file is damaged or an image file and its label file disagree on the count.
    pub fn from_dir(path: impl AsRef<Path>) -> Result<Mnist> {
        let dir = path.as_ref();
        let [train_images, train_labels, test_images, test_labels] = locate(dir)?;
        let train = read_split(&train_images, &train_labels)?;
        let test = read_split(&test_images, &test_labels)?;
        Ok(Mnist {
            train,
            test,
            source: dir.display().to_string(),
        })
    }

    /// Loads MNIST from the usual place.
    ///
    /// If the environment variable `MNIST_LAB_DATA` names a folder, the files are read
    /// from it as they are (nothing is ever downloaded into it). Otherwise they are read
    /// from the cache folder [`Mnist::cache_dir`], after downloading whichever are missing
    /// there (see [`Downloader`]).
    ///
    /// # Errors
    ///
    /// [`Error::DataNotFound`] when files are missing and cannot be downloaded (offline,
    /// or `MNIST_LAB_DATA` points to a folder without them), [`Error::Download`] when a
    /// download fails otherwise, [`Error::Io`] when the cache folder cannot be written,
    /// and [`Error::BadIdx`] for damaged files.
    pub fn load() -> Result<Mnist> {
        match std::env::var_os(DATA_ENV) {
            Some(value) if !value.is_empty() => {
                let dir = PathBuf::from(value);
                Mnist::from_dir(&dir).map_err(|error| match error {
                    Error::DataNotFound {
                        missing,
                        looked_in,
                        download: None,
                    } => {
                        let folder = if dir.is_dir() {
                            "a folder without these files"
                        } else {
                            "a folder that does not exist"
                        };
                        Error::DataNotFound {
                            missing,
                            looked_in,
                            download: Some(format!(
                                "nothing was downloaded, because {DATA_ENV} is set to {}, \
                                 {folder}, and mnist_lab never downloads into that folder; \
                                 copy the files there, or unset {DATA_ENV} to download them \
                                 into the cache folder {}",
                                dir.display(),
                                Mnist::cache_dir().display()
                            )),
                        }
                    }
                    other => other,
                })
            }
            _ => Mnist::load_with(&Mnist::cache_dir(), &Downloader::from_env()),
        }
    }

    /// Loads MNIST from the cache folder `cache_dir`, first downloading with `downloader`
    /// whichever files are missing there. [`Mnist::load`] calls this with
    /// [`Mnist::cache_dir`] and [`Downloader::default`]; tests call it with a temporary
    /// folder and a local server. `MNIST_LAB_DATA` plays no part here.
    ///
    /// # Errors
    ///
    /// As [`Downloader::fetch_missing`], then as [`Mnist::from_dir`].
    pub fn load_with(cache_dir: &Path, downloader: &Downloader) -> Result<Mnist> {
        downloader.fetch_missing(cache_dir)?;
        Mnist::from_dir(cache_dir)
    }

    /// Reads from `dir` when given ([`Mnist::from_dir`]), else the usual way
    /// ([`Mnist::load`]); handy for a `--data` command-line option.
    ///
    /// # Errors
    ///
    /// As [`Mnist::from_dir`] or [`Mnist::load`].
    pub fn load_from(dir: Option<&Path>) -> Result<Mnist> {
        match dir {
            Some(dir) => Mnist::from_dir(dir),
            None => Mnist::load(),
        }
    }

    /// A small, learnable, deterministic stand-in for MNIST, for tests and examples.
    ///
    /// Each digit class draws a thick bar at its own position (classes 0 to 4 horizontal
    /// bars on five rows, 5 to 9 vertical bars on five columns), shifted and stretched a
    /// little at random; half the images also hold a fainter bar of another class, and all
    /// have background noise. The same `seed` gives the same data. A linear model learns it
    /// well above chance within a few dozen SGD steps (about 80% after 40 steps at lr 0.05),
    /// but not in one (about 50%). Labels are balanced (as equal as `n` allows) and
    /// shuffled. `source` is `"synthetic"`.
    ///
    /// ```
    /// let data = mnist_lab::data::Mnist::synthetic(200, 100, 7);
    /// assert_eq!((data.train.len(), data.test.len()), (200, 100));
    /// assert_eq!(data.train.class_counts(), [20; 10]);
    /// assert_eq!(data.source, "synthetic");
    /// ```
    pub fn synthetic(n_train: usize, n_test: usize, seed: u64) -> Mnist {
        let mut rng = synthetic::SplitMix64::new(seed);
        let train = synthetic::make_split(n_train, &mut rng);
        let test = synthetic::make_split(n_test, &mut rng);
        Mnist {
            train,
            test,
            source: "synthetic".to_string(),
        }
    }

    /// The cache folder that [`Mnist::load`] downloads into: the folder named by
    /// `MNIST_LAB_CACHE` when set, else `<user cache>/mnist_lab/mnist`, e.g. `~/.cache/mnist_lab/mnist` on Linux and
    /// `~/Library/Caches/mnist_lab/mnist` on macOS (the system's temporary folder stands in
    /// when the system names no cache folder).
    pub fn cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("mnist_lab")
            .join("mnist")
    }
}

/// Writes `data` into the folder `dir` as the four MNIST IDX files, gzip-compressed (with
/// the `.gz` names) or raw (without), creating the folder if needed. The result reads back
/// with [`Mnist::from_dir`]; tests use it to make a data folder.
///
/// # Errors
///
/// [`Error::Io`] if the folder or a file cannot be written.
///
/// ```
/// use mnist_lab::data::{write_idx_dir, Mnist};
///
/// let dir = std::env::temp_dir().join(format!("mnist_lab_doc_{}", std::process::id()));
/// let data = Mnist::synthetic(30, 10, 3);
/// write_idx_dir(&dir, &data, true).unwrap();
/// let back = Mnist::from_dir(&dir).unwrap();
/// assert_eq!(back.train.images(), data.train.images());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn write_idx_dir(dir: &Path, data: &Mnist, gzip: bool) -> Result<()> {
    use std::io::Write;

    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
    let contents = [
        (
            TRAIN_IMAGES,
            idx_images_bytes(data.train.images(), data.train.len()),
        ),
        (TRAIN_LABELS, idx_labels_bytes(data.train.labels())),
        (
            TEST_IMAGES,
            idx_images_bytes(data.test.images(), data.test.len()),
        ),
        (TEST_LABELS, idx_labels_bytes(data.test.labels())),
    ];
    for (name, bytes) in contents {
        let (path, bytes) = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let compressed = encoder.write_all(&bytes).and_then(|()| encoder.finish());
            (
                dir.join(name),
                compressed.map_err(|e| Error::io("compressing", dir.join(name), e))?,
            )
        } else {
            (dir.join(raw_name(name)), bytes)
        };
        std::fs::write(&path, bytes).map_err(|e| Error::io("writing", &path, e))?;
    }
    Ok(())
}

/// A batch of images and their targets, ready for a model.
#[derive(Clone, Debug)]
pub struct MnistBatch {
    /// The images, `[batch, 1, 28, 28]`, each pixel scaled to `[0, 1]` (pixel / 255).
    pub images: Tensor<4>,
    /// The digit of each image, `[batch]`.
    pub targets: Tensor<1, Int>,
}

/// Turns [`MnistItem`]s into an [`MnistBatch`] on a device.
///
/// Pixels are divided by 255 (as torchvision's `ToTensor()` does; no mean/std
/// normalisation), so black is 0.0 and white exactly 1.0.
#[derive(Clone, Debug, Default)]
pub struct MnistBatcher;

impl Batcher<MnistItem, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        let n = items.len();
        // One buffer and one upload for the whole batch, not one tensor per item.
        let mut pixels = Vec::with_capacity(n * IMAGE_PIXELS);
        let mut targets = Vec::with_capacity(n);
        for item in &items {
            pixels.extend(item.image.iter().map(|&p| f32::from(p) / 255.0));
            targets.push(i64::from(item.label));
        }
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
            device,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
        MnistBatch { images, targets }
    }
}

/// The raw (uncompressed) name of a published file: its name without `.gz`.
fn raw_name(name: &str) -> &str {
    name.strip_suffix(".gz").unwrap_or(name)
}

/// Where the file `name` lies in `dir`, if it does: compressed, raw, or raw with Kaggle's
/// spelling (`train-images.idx3-ubyte`).
pub(crate) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = raw_name(name);
    let kaggle = raw.replacen("-idx", ".idx", 1);
    [name, raw, kaggle.as_str()]
        .into_iter()
        .map(|candidate| dir.join(candidate))
        .find(|path| path.is_file())
}

/// The paths of the four files, in [`FILES`] order, or which are missing from `dir`.
fn locate(dir: &Path) -> Result<[PathBuf; 4]> {
    let found = FILES.map(|name| find_file(dir, name));
    if let [Some(a), Some(b), Some(c), Some(d)] = found.clone() {
        return Ok([a, b, c, d]);
    }
    // A torchvision data root keeps the files in MNIST/raw.
    let torchvision = dir.join("MNIST").join("raw");
    if let [Some(a), Some(b), Some(c), Some(d)] = FILES.map(|name| find_file(&torchvision, name)) {
        return Ok([a, b, c, d]);
    }
    let missing = FILES
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| name.to_string())
        .collect();
    Err(Error::DataNotFound {
        missing,
        looked_in: vec![dir.to_path_buf()],
        download: None,
    })
}

/// Reads one split and checks that its two files agree on the number of images.
fn read_split(images_path: &Path, labels_path: &Path) -> Result<Split> {
    let (images, count) = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if labels.len() != count {
        let images_name = images_path.file_name().map_or_else(
            || images_path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        return Err(Error::BadIdx {
            path: labels_path.to_path_buf(),
            problem: format!(
                "it holds {} labels, but the matching image file {images_name} holds {count} \
                 images; the two files must come from the same download",
                labels.len()
            ),
        });
    }
    Ok(Split::from_parts(images, labels))
}
