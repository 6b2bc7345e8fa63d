//! Library enums as command-line values: clap learns their names here, so the engine's
//! modules do not depend on clap.
use crate::data::augment::Flip;
use crate::data::cache::CacheSettings;
use crate::data::split::SplitKind;
use crate::data::split::{DataOptions, ValidChoice};
use crate::model::ops::conv::ConvImpl;
use crate::train::config::SuggestionKind;
use crate::train::loss::ClassWeights;
use crate::train::schedule::Trainable;
use clap::builder::PossibleValue;
use std::path::PathBuf;

/// How a data set folder is read: shared by `train`, `lr-find`, `eval` and `data check`.
/// What is given here wins over the data set's own `dataset.toml`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataSetArgs {
    /// The classes in their output order, comma-separated [default: the data set's
    /// dataset.toml, else the paper's order of the paper's classes, else alphabetical].
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Validation images: auto (the data set's own validation split, else 10 % of the
    /// training patients), test (the paper's way: validate on the test split), or a
    /// percentage of the training patients [default: auto].
    #[arg(long)]
    pub valid: Option<ValidChoice>,
    /// Draw this percentage of the training patients as the validation split (by patient,
    /// seeded with --seed).
    #[arg(long, conflicts_with = "valid")]
    pub valid_pct: Option<f64>,
    /// Kermany's NORMAL/PNEUMONIA layout: split pneumonia into Bacterial and Viral by file
    /// name.
    #[arg(long)]
    pub split_pneumonia: bool,
    /// A CSV file listing the images (path,label[,patient_id][,source][,split]), relative to
    /// the data folder [default: the data folder's only .csv when it has no split files or
    /// class folders].
    #[arg(long)]
    pub data_csv: Option<PathBuf>,
    /// Multi-label data sets (NIH ChestX-ray14, CheXpert, MIMIC-CXR-JPG, findings.csv):
    /// uncertain labels ignored (masked), as zeros or as ones, for all and per label, e.g.
    /// `ignore,Edema=ones` [default: ignore].
    #[arg(long)]
    pub uncertain: Option<crate::data::findings::Policies>,
    /// Multi-label data sets: keep only these views, e.g. `PA,AP` (frontal images).
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<String>,
    /// Use links that lead to files outside the data folder (refused by default).
    #[arg(long)]
    pub allow_outside_links: bool,
}

/// Where resized images are kept: shared by `train`, `lr-find` and `eval`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CacheArgs {
    /// Memory for resized images, in MiB [default: a quarter of the machine's memory]; past
    /// it they go to the disk cache.
    #[arg(long, value_name = "MIB")]
    pub cache_memory: Option<u64>,
    /// Folder of the disk cache of resized images [default: $COVID_RESNET_CACHE, else the
    /// user's cache folder + covid-resnet/images].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// No disk cache: images past the memory budget are decoded again when needed.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_disk_cache: bool,
    /// Most the disk cache may hold, in MiB [default: 10240]; past it the least recently
    /// used entries are removed.
    #[arg(long, value_name = "MIB")]
    pub cache_disk_max: Option<u64>,
}

impl CacheArgs {
    /// The cache settings given.
    pub fn settings(&self) -> CacheSettings {
        let mut s = CacheSettings::user_default();
        s.memory_mib = self.cache_memory;
        s.disk_mib = self.cache_disk_max;
        if self.no_disk_cache {
            s.dir = None;
        } else if let Some(d) = &self.cache_dir {
            s.dir = Some(d.clone());
        }
        s
    }
}

/// The samples of `split`, refusing an incomplete or empty split naming it.
fn whole_split(
    ds: &crate::data::split::Dataset,
    data: &std::path::Path,
    split: SplitKind,
) -> anyhow::Result<Vec<crate::data::split::Sample>> {
    let s = ds.split(split);
    s.check_complete(split.name())?;
    if s.samples.is_empty() {
        anyhow::bail!(
            "the {} split of {} has no images",
            split.name(),
            crate::files::shown(data)
        );
    }
    Ok(s.samples.clone())
}

impl DataSetArgs {
    /// The samples of `split` of the data set at `data`, with the model's classes (`classes`,
    /// output order); refuses an incomplete or empty split naming it.
    pub fn split_samples(
        &self,
        data: &std::path::Path,
        seed: u64,
        classes: &[String],
        split: SplitKind,
    ) -> anyhow::Result<Vec<crate::data::split::Sample>> {
        let mut ds = crate::data::split::Dataset::open_with(data, &self.options(seed)?)?;
        ds.align_to_model(classes)?;
        whole_split(&ds, data, split)
    }

    /// The samples of `split` of the multi-label data set at `data` for a model with
    /// `labels` whose file records the uncertain-label policies `uncertain` (`--uncertain`
    /// wins); refuses a data set whose findings differ, or an incomplete or empty split.
    pub fn finding_samples(
        &self,
        data: &std::path::Path,
        seed: u64,
        labels: &[String],
        uncertain: &str,
        split: SplitKind,
    ) -> anyhow::Result<Vec<crate::data::split::Sample>> {
        let mut opts = self.options(seed)?;
        if opts.uncertain.is_none() {
            opts.uncertain = Some(uncertain.parse().map_err(anyhow::Error::msg)?);
        }
        let ds = crate::data::findings::dataset::open_any(data, &opts)?;
        ds.check_findings(labels)?;
        whole_split(&ds, data, split)
    }

    /// The samples of the held-out `split` (never the test split) for fitting something on
    /// (a temperature): refuses the test split however it is reached, by its name, as the
    /// validation source (`--valid test`) or through images that are also in the test split.
    pub fn held_out_samples(
        &self,
        data: &std::path::Path,
        seed: u64,
        classes: &[String],
        split: SplitKind,
    ) -> anyhow::Result<Vec<crate::data::split::Sample>> {
        const WHY: &str = "the test split is where the model is measured; fit on held-out \
                           images (the data set's own validation split or a drawn one) and \
                           measure on the test split with eval";
        if split == SplitKind::Test {
            anyhow::bail!("--split test: {WHY}");
        }
        let mut ds = crate::data::split::Dataset::open_with(data, &self.options(seed)?)?;
        if split == SplitKind::Valid && ds.valid_source == crate::data::split::ValidSource::Test {
            anyhow::bail!("--valid test: the validation images are the test split's; {WHY}");
        }
        ds.align_to_model(classes)?;
        let shared = ds.shared_files();
        if let Some((_, _, files)) = shared.iter().find(|(a, b, _)| {
            (*a, *b) == (split, SplitKind::Test) || (*a, *b) == (SplitKind::Test, split)
        }) {
            anyhow::bail!(
                "the {} split shares {} image(s) with the test split (e.g. {}); {WHY}",
                split.name(),
                files.len(),
                crate::files::shown(&files[0])
            );
        }
        whole_split(&ds, data, split)
    }

    /// The validation choice given, if any.
    pub fn valid_choice(&self) -> crate::Result<Option<ValidChoice>> {
        match (self.valid, self.valid_pct) {
            (_, Some(p)) => Ok(Some(format!("{p}").parse().map_err(|_| {
                crate::Error::invalid(
                    "--valid-pct",
                    format!("{p}: a percentage between 0 and 100"),
                )
            })?)),
            (v, None) => Ok(v),
        }
    }

    /// The reading options, with `seed` for a drawn validation split.
    pub fn options(&self, seed: u64) -> crate::Result<DataOptions> {
        Ok(DataOptions {
            classes: self.classes.clone(),
            valid: self.valid_choice()?,
            seed,
            allow_outside_links: self.allow_outside_links,
            split_pneumonia: self.split_pneumonia.then_some(true),
            csv_file: self.data_csv.clone(),
            uncertain: self.uncertain.clone(),
            views: self.views.clone(),
        })
    }
}

/// Implements `clap::ValueEnum` for a library enum from (variant, name, help) triples.
macro_rules! value_enum {
    ($t:ty, $(($v:expr, $name:literal, $help:literal)),+ $(,)?) => {
        impl clap::ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($v),+]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                $(if *self == $v {
                    return Some(PossibleValue::new($name).help($help));
                })+
                None
            }
        }
    };
}

value_enum!(
    SuggestionKind,
    (
        SuggestionKind::Valley,
        "valley",
        "fastai v2's default: in the longest descent"
    ),
    (
        SuggestionKind::Steep,
        "steep",
        "fastai v1: the steepest descent"
    ),
    (
        SuggestionKind::Minimum,
        "minimum",
        "the minimum's rate divided by 10"
    ),
);

value_enum!(
    Trainable,
    (Trainable::All, "all", "the whole network"),
    (
        Trainable::Head,
        "head",
        "the head and BatchNorm layers; the body is frozen"
    ),
);

value_enum!(
    SplitKind,
    (SplitKind::Test, "test", "the test split"),
    (SplitKind::Train, "train", "the training split"),
    (SplitKind::Valid, "valid", "the validation split"),
);

value_enum!(
    Flip,
    (Flip::Vertical, "vertical", "up-down, as in the paper"),
    (
        Flip::Horizontal,
        "horizontal",
        "left-right only, as most chest X-ray work"
    ),
    (Flip::Dihedral, "dihedral", "all 8 flips and quarter turns"),
    (Flip::None, "none", "no flips"),
);

value_enum!(
    ClassWeights,
    (
        ClassWeights::None,
        "none",
        "every image counts the same (the paper)"
    ),
    (
        ClassWeights::Auto,
        "auto",
        "inverse class frequency in the training split, as COVID-Net trained"
    ),
);

value_enum!(
    ConvImpl,
    (
        ConvImpl::Gemm,
        "gemm",
        "im2col + GEMM custom ops (the default)"
    ),
    (ConvImpl::Stock, "stock", "candle's own conv2d"),
);

value_enum!(
    crate::model::ops::precision::Precision,
    (
        crate::model::ops::precision::Precision::F32,
        "f32",
        "float32 throughout"
    ),
    (
        crate::model::ops::precision::Precision::Bf16,
        "bf16",
        "bfloat16 mixed precision: convolutions on bf16 operands, f32 weights and sums"
    ),
);

/// The seed of the validation split a model's run held out: `given`, else the one its file
/// records, else training's default seed (42) for a file that records none. `eval --split
/// valid` and `model calibrate` both draw with it.
pub fn held_out_seed(given: Option<u64>, meta: &crate::model::io::model_file::ModelMeta) -> u64 {
    given.or_else(|| meta.split_seed()).unwrap_or(
        crate::train::config::TrainConfig::new(Default::default(), Default::default()).seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_parse_back() {
        for k in SuggestionKind::ALL {
            assert_eq!(SuggestionKind::from_str(k.name(), false).unwrap(), k);
        }
        assert_eq!(Trainable::from_str("head", false).unwrap(), Trainable::Head);
        assert_eq!(
            SplitKind::from_str("train", false).unwrap(),
            SplitKind::Train
        );
        assert!(ConvImpl::from_str("fast", false).is_err());
    }
}
