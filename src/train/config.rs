//! What a training run is asked to do: the data, the model, the plan and every setting,
//! saved in each checkpoint so a resumed run continues with the same ones.
use super::loss::ClassWeights;
use super::lr_finder::LrFinderConfig;
use super::one_cycle::OneCycleConfig;
use super::optim::AdamConfig;
use super::schedule::Plan;
use crate::data::augment::AugmentConfig;
use crate::data::cache::CacheSettings;
use crate::data::preprocess::Normalization;
use crate::data::sampler::Sampling;
use crate::data::split::ValidChoice;
use crate::model::Backbone;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which LR-finder suggestion `auto` steps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SuggestionKind {
    /// fastai v2's default.
    #[default]
    Valley,
    /// fastai v1's steepest descent.
    Steep,
    /// Minimum / 10.
    Minimum,
}

/// Everything a run needs; saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Dataset folder.
    pub data: PathBuf,
    /// Run folder (checkpoints, model, reports).
    pub out_dir: PathBuf,
    /// Body.
    pub backbone: Backbone,
    /// Pretrained body weights (torchvision/timm), if any.
    pub weights: Option<PathBuf>,
    /// The plan.
    pub plan: Plan,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of initialisation, order, augmentation and dropout.
    pub seed: u64,
    /// Seed of a drawn validation split (None: `seed`). Members of an ensemble share one
    /// split so that the ensemble can be judged on images none of them trained on.
    #[serde(default)]
    pub split_seed: Option<u64>,
    /// Leave the test split alone at the end: the final report and the model file's summary
    /// are of the validation split (members of an ensemble, candidates still to be chosen).
    #[serde(default)]
    pub skip_test: bool,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Input normalisation (recorded in the model file).
    #[serde(default)]
    pub norm: Normalization,
    /// Epoch order.
    pub sampling: Sampling,
    /// Loader threads.
    pub loader_threads: usize,
    /// Optimizer settings.
    pub adam: AdamConfig,
    /// One-cycle settings.
    pub one_cycle: OneCycleConfig,
    /// LR finder settings.
    pub lr_finder: LrFinderConfig,
    /// Suggestion used by `auto`.
    pub suggestion: SuggestionKind,
    /// Bootstrap resamples of the final test report.
    pub bootstrap: usize,
    /// Use at most this many training images (a seeded subset; demos and tests).
    pub max_train_images: Option<usize>,
    /// Use at most this many validation images (a seeded subset).
    pub max_valid_images: Option<usize>,
    /// Use links that lead outside the data folder.
    #[serde(default)]
    pub allow_outside_links: bool,
    /// The classes in their output order (None: as the data set gives them).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Where validation images come from (None: the data set's `dataset.toml`, else auto).
    /// Runs saved before this setting existed validated on the test split.
    #[serde(default = "legacy_valid")]
    pub valid: Option<ValidChoice>,
    /// Kermany's layout: split pneumonia into bacterial and viral by file name.
    #[serde(default)]
    pub split_pneumonia: Option<bool>,
    /// The CSV file listing the images (CSV layout).
    #[serde(default)]
    pub csv_file: Option<PathBuf>,
    /// Multi-label data sets: the uncertain-label policies (None: ignore).
    #[serde(default)]
    pub uncertain: Option<crate::data::findings::Policies>,
    /// Multi-label data sets: the views kept (empty: all).
    #[serde(default)]
    pub views: Vec<String>,
    /// Per-class weights of the loss.
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// Memory budget and disk folder of the resized-image cache.
    #[serde(default)]
    pub cache: CacheSettings,
    /// Distillation: the teacher and its weight (None: trained on the labels alone).
    #[serde(default)]
    pub distill: Option<super::distill::DistillConfig>,
    /// Precision of the convolutions (bf16: mixed precision, f32 weights).
    #[serde(default)]
    pub precision: crate::model::ops::precision::Precision,
    /// Replace a finished or stopped run in `out_dir` (never saved: it is asked each time).
    #[serde(skip)]
    pub overwrite: bool,
}

impl TrainConfig {
    /// Defaults for a dataset and a run folder: the paper plan, ResNet-50, batch 32.
    pub fn new(data: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            data,
            out_dir,
            backbone: Backbone::Resnet50,
            weights: None,
            plan: Plan::paper(),
            batch_size: 32,
            seed: 42,
            split_seed: None,
            skip_test: false,
            augment: AugmentConfig::paper(),
            norm: Normalization::IMAGENET,
            sampling: Sampling::Shuffle,
            loader_threads: 2,
            adam: AdamConfig::default(),
            one_cycle: OneCycleConfig::default(),
            lr_finder: LrFinderConfig::default(),
            suggestion: SuggestionKind::Valley,
            bootstrap: 1000,
            max_train_images: None,
            max_valid_images: None,
            allow_outside_links: false,
            classes: None,
            valid: None,
            split_pneumonia: None,
            csv_file: None,
            uncertain: None,
            views: Vec::new(),
            class_weights: ClassWeights::None,
            cache: CacheSettings::default(),
            distill: None,
            precision: Default::default(),
            overwrite: false,
        }
    }
}

impl TrainConfig {
    /// The seed of a drawn validation split.
    pub fn split_seed(&self) -> u64 {
        self.split_seed.unwrap_or(self.seed)
    }

    /// How the run reads its data set.
    pub fn data_options(&self) -> crate::data::split::DataOptions {
        crate::data::split::DataOptions {
            classes: self.classes.clone(),
            valid: self.valid,
            seed: self.split_seed(),
            allow_outside_links: self.allow_outside_links,
            split_pneumonia: self.split_pneumonia,
            csv_file: self.csv_file.clone(),
            uncertain: self.uncertain.clone(),
            views: self.views.clone(),
        }
    }
}

fn legacy_valid() -> Option<ValidChoice> {
    Some(ValidChoice::legacy())
}

impl SuggestionKind {
    /// Every kind, in the order menus list them.
    pub const ALL: [Self; 3] = [Self::Valley, Self::Steep, Self::Minimum];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valley => "valley",
            Self::Steep => "steep",
            Self::Minimum => "minimum",
        }
    }
}

impl std::str::FromStr for SuggestionKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(
                    "suggestion",
                    format!("{s:?}: expected valley, steep or minimum"),
                )
            })
    }
}
