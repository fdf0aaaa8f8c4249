//! A small, learnable, deterministic stand-in for MNIST, for tests and doctests.
//!
//! Each class draws a thick bar at its own place: classes 0 to 4 a horizontal bar on one of
//! five rows, classes 5 to 9 a vertical bar on one of five columns. Every image shifts its
//! bar a little (up to two pixels across it, three along it), varies its length and
//! brightness, half the time adds a fainter bar of another class as a distractor, and
//! sprinkles background noise on top. A linear model trained with SGD at lr 0.05 from zero
//! weights gets about 50% of the test images right after one step of 64 images and about
//! 80% after forty (see the test `synthetic_data_is_learnable_but_not_trivial`).

use super::{IMAGE_PIXELS, IMAGE_SIDE, Split};

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is negligible for small `n`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.below((hi - lo + 1) as u64) as i32
    }

    /// `true` with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Makes `n` images with balanced, shuffled labels.
pub(crate) fn make_split(n: usize, rng: &mut SplitMix64) -> Split {
    let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    // Fisher-Yates shuffle.
    for i in (1..labels.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        labels.swap(i, j);
    }
    let mut images = vec![0u8; n * IMAGE_PIXELS];
    for (image, &label) in images.chunks_exact_mut(IMAGE_PIXELS).zip(&labels) {
        draw(image, label, rng);
    }
    Split::from_parts(images, labels)
}

/// Draws the bar of class `label` into the blank 28 x 28 `image`, often a fainter bar of
/// another class as a distractor, then background noise.
fn draw(image: &mut [u8], label: u8, rng: &mut SplitMix64) {
    let brightness = rng.between(150, 255);
    bar(image, label, brightness, rng);
    if rng.chance(DISTRACTOR_PERCENT) {
        let other = (label + 1 + rng.below(9) as u8) % 10;
        let faint = rng.between(DISTRACTOR_LO, DISTRACTOR_HI);
        bar(image, other, faint, rng);
    }
    for pixel in image.iter_mut() {
        if rng.chance(NOISE_PERCENT) {
            let noise = rng.between(0, NOISE_MAX) as u8;
            *pixel = (*pixel).max(noise);
        }
    }
}

/// How often (in percent) an image also holds a faint bar of another class.
const DISTRACTOR_PERCENT: u64 = 50;
/// The faint bar's brightness range.
const DISTRACTOR_LO: i32 = 40;
/// The faint bar's brightness range.
const DISTRACTOR_HI: i32 = 110;
/// How often (in percent) a pixel gets background noise.
const NOISE_PERCENT: u64 = 12;
/// The brightest background noise.
const NOISE_MAX: i32 = 150;
/// How far a bar may move across itself, in pixels (its neighbours are 4 pixels away).
const SHIFT: i32 = 2;

/// Draws the 3-pixel-thick bar of class `label` at about `brightness`.
fn bar(image: &mut [u8], label: u8, brightness: i32, rng: &mut SplitMix64) {
    let side = IMAGE_SIDE as i32;
    let slot = i32::from(label % 5);
    // Centre of the bar across it: rows (or columns) 6, 10, 14, 18, 22, give or take.
    let across = 6 + 4 * slot + rng.between(-SHIFT, SHIFT);
    // Extent along it: about columns (or rows) 6..=21, shifted and stretched a little.
    let start = 6 + rng.between(-3, 3);
    let end = 21 + rng.between(-3, 3);
    let horizontal = label < 5;
    for along in start..=end {
        for offset in -1..=1 {
            let (row, col) = if horizontal {
                (across + offset, along)
            } else {
                (along, across + offset)
            };
            if (0..side).contains(&row) && (0..side).contains(&col) {
                let value = (brightness + rng.between(-40, 40)).clamp(0, 255) as u8;
                let pixel = &mut image[(row * side + col) as usize];
                *pixel = (*pixel).max(value);
            }
        }
    }
}
