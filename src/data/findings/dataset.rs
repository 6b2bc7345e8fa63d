//! A multi-label data set as the trainer reads any data set ([`Dataset`]): its labels as the
//! model's outputs, one sample an image with its finding codes under the uncertain-label
//! policies, the data set's own splits (NIH's test list, CheXpert's and MIMIC's validation
//! and test splits), a validation split drawn by patient from the training images where the
//! set has none, and a test split drawn by patient (the same every run) where it has none
//! (CheXpert's test set is not published).
use super::{read, Layout};
use crate::data::split::{
    draw, settle_valid, DataOptions, Dataset, Layout as SetLayout, Sample, Split, SplitKind,
    ValidChoice,
};
use crate::Result;
use std::sync::Arc;

/// Reads `root` (of `layout`) with `opts`' policies, views and validation choice.
pub fn open(root: &std::path::Path, layout: Layout, opts: &DataOptions) -> Result<Dataset> {
    let mut set = read(root, Some(layout.clone()))?;
    let policies = opts.uncertain.clone().unwrap_or_default();
    policies.check(&set.labels)?;
    if !opts.views.is_empty() {
        set.keep_views(&opts.views);
    }
    let (mut train, mut own, mut test) = (Split::default(), Split::default(), Split::default());
    for im in set.images {
        let sample = Sample {
            findings: Some(Arc::from(policies.codes(&set.labels, &im.marks))),
            path: im.path,
            label: 0,
            patient: im.patient,
            source: None,
        };
        match im.split {
            Some(SplitKind::Valid) => own.samples.push(sample),
            Some(SplitKind::Test) => test.samples.push(sample),
            Some(SplitKind::Train) | None => train.samples.push(sample),
        }
    }
    train.missing = set.missing;
    if test.samples.is_empty() {
        test = draw::draw_patients(
            &mut train,
            draw::TEST_PERCENT,
            draw::TEST_SEED,
            draw::TEST_SALT,
        );
    }
    let own = (!own.samples.is_empty()).then_some(own);
    let choice = opts.valid.unwrap_or(ValidChoice::Auto);
    let (valid, valid_source) = settle_valid(root, choice, own, &mut train, &test, opts.seed)?;
    let mut ds = Dataset {
        root: root.to_path_buf(),
        layout: SetLayout::Findings(layout),
        classes: set.labels,
        train,
        valid,
        test,
        valid_source,
        uncertain: Some(policies),
    };
    ds.set_aside_links(opts)?;
    Ok(ds)
}

/// The data set in `root` for training: a multi-label one where [`super::detect`] finds
/// one (and no CSV file is named), else as [`Dataset::open_with`] reads it.
pub fn open_any(root: &std::path::Path, opts: &DataOptions) -> Result<Dataset> {
    match super::detect(root).filter(|_| opts.csv_file.is_none()) {
        Some(l) if root.is_dir() => open(root, l, opts),
        _ => Dataset::open_with(root, opts),
    }
}

impl Dataset {
    /// Whether it is a multi-label data set (its samples carry findings).
    pub fn is_findings(&self) -> bool {
        self.uncertain.is_some()
    }

    /// An error unless it is a multi-label data set with the findings `labels` (a model's),
    /// in that order.
    pub fn check_findings(&self, labels: &[String]) -> Result<()> {
        if self.is_findings() && self.classes == labels {
            return Ok(());
        }
        Err(crate::Error::invalid(
            "data set",
            format!(
                "the model's findings ({}) differ from the data set's ({})",
                labels.join(", "),
                if self.is_findings() {
                    self.classes.join(", ")
                } else {
                    "a single-label data set".to_string()
                }
            ),
        ))
    }
}
