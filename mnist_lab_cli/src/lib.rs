#![warn(missing_docs)]
//! # mnist_lab_cli
//!
//! The tools around [mnist_lab]'s lesson: the `mnist-lab` program (`src/bin/mnist-lab/`: the
//! lecture headless, `train`, `evaluate`, `plot`, `bench`) and what it runs on:
//!
//! - [`models`]: the lecture's four models as one type ([`ModelKind`](models::ModelKind)
//!   names one, [`LectureModel`](models::LectureModel) holds it) and the settings a saved
//!   model carries ([`ModelSettings`](models::ModelSettings));
//! - [`lecture`]: the lecture's plan of runs and whole runs of a model;
//! - [`mod@bench`]: training and evaluation speed, images/s and GFLOP/s.
//!
//! The notebooks use mnist_lab alone: this crate's dependencies (clap, anyhow, ctrlc) are
//! not in their build.

pub mod bench;
pub mod lecture;
pub mod models;
