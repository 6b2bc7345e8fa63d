//! What a resumed run continues with: the checkpoint's settings, checked against what the
//! user gives now. A flag that disagrees with the run is refused with both values; a data
//! set that changed since the checkpoint, or an edited `plan.toml`, is refused unless the
//! user forces it (and then said); a data set found at a new path is used when its content
//! is the recorded one.
use super::checkpoint::CheckpointMeta;
use super::config::{SuggestionKind, TrainConfig};
use super::schedule::Plan;
use crate::data::fingerprint::{describe_change, fingerprint};
use crate::data::split::Dataset;
use crate::files::shown;
use crate::model::Backbone;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What the user gave with a resume; None: not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeOptions {
    /// Where the data set is now (it may have moved).
    pub data: Option<PathBuf>,
    /// Backbone.
    pub backbone: Option<Backbone>,
    /// Pretrained weights.
    pub weights: Option<PathBuf>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Seed.
    pub seed: Option<u64>,
    /// LR-finder suggestion for `auto` steps.
    pub suggestion: Option<SuggestionKind>,
    /// Augmentation on.
    pub augment: Option<bool>,
    /// Flips drawn.
    pub flip: Option<crate::data::augment::Flip>,
    /// Class-balanced sampling.
    pub balanced: Option<bool>,
    /// Training-image subset.
    pub max_train_images: Option<usize>,
    /// Validation-image subset.
    pub max_valid_images: Option<usize>,
    /// The class order.
    pub classes: Option<Vec<String>>,
    /// The validation split's source.
    pub valid: Option<crate::data::split::ValidChoice>,
    /// Loss weights.
    pub class_weights: Option<crate::train::loss::ClassWeights>,
    /// Precision of the convolutions.
    pub precision: Option<crate::model::ops::precision::Precision>,
    /// Go on despite a changed data set or an edited plan file.
    pub force: bool,
}

/// Settings, data set and notes for the log of a run resumed from `meta`.
pub struct Settled {
    /// The run's settings, with the data set's current path.
    pub config: TrainConfig,
    /// The data set, opened.
    pub dataset: Dataset,
    /// What the user should read in the log.
    pub notes: Vec<String>,
}

fn conflicts(cfg: &TrainConfig, o: &ResumeOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |flag: &str, given: Option<String>, run: String| {
        if let Some(g) = given {
            if g != run {
                out.push(format!("{flag} {g} was given, but the run uses {run}"));
            }
        }
    };
    check(
        "--backbone",
        o.backbone.map(|b| b.name().to_string()),
        cfg.backbone.name().to_string(),
    );
    check(
        "--batch-size",
        o.batch_size.map(|v| v.to_string()),
        cfg.batch_size.to_string(),
    );
    check(
        "--seed",
        o.seed.map(|v| v.to_string()),
        cfg.seed.to_string(),
    );
    check(
        "--suggestion",
        o.suggestion.map(|v| v.name().to_string()),
        cfg.suggestion.name().to_string(),
    );
    let onoff = |b: bool| if b { "on" } else { "off" }.to_string();
    check(
        "augmentation",
        o.augment.map(onoff),
        onoff(cfg.augment.enabled),
    );
    check(
        "--flip",
        o.flip.map(|f| format!("{f:?}").to_lowercase()),
        format!("{:?}", cfg.augment.flip).to_lowercase(),
    );
    check(
        "--balanced",
        o.balanced.map(onoff),
        onoff(cfg.sampling == crate::data::sampler::Sampling::Balanced),
    );
    let opt = |v: Option<usize>| v.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
    check(
        "--max-train-images",
        o.max_train_images.map(|n| n.to_string()),
        opt(cfg.max_train_images),
    );
    check(
        "--max-valid-images",
        o.max_valid_images.map(|n| n.to_string()),
        opt(cfg.max_valid_images),
    );
    check(
        "--classes",
        o.classes.as_ref().map(|c| c.join(",")),
        cfg.classes
            .as_ref()
            .map(|c| c.join(","))
            .unwrap_or_else(|| "the data set's".into()),
    );
    let valid = |v: Option<crate::data::split::ValidChoice>| match v {
        None => "the data set's choice".to_string(),
        Some(v) => v.to_string(),
    };
    check("--valid", o.valid.map(|v| valid(Some(v))), valid(cfg.valid));
    check(
        "--precision",
        o.precision.map(|p| p.to_string()),
        cfg.precision.to_string(),
    );
    check(
        "--class-weights",
        o.class_weights.map(|w| w.name().to_string()),
        cfg.class_weights.name().to_string(),
    );
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| shown(p).to_string())
            .unwrap_or_else(|| "none (random initialisation)".into())
    };
    check(
        "--weights",
        o.weights.as_ref().map(|p| shown(p).to_string()),
        path(&cfg.weights),
    );
    out
}

/// Checks the plan file the run folder holds against the run's plan.
fn plan_file(run_dir: &Path, plan: &Plan, force: bool, notes: &mut Vec<String>) -> Result<()> {
    let p = run_dir.join("plan.toml");
    if !p.is_file() {
        return Ok(());
    }
    let edited = match Plan::load(&p) {
        Ok(file_plan) => file_plan != *plan,
        Err(_) => true,
    };
    if !edited {
        return Ok(());
    }
    if !force {
        return Err(Error::invalid(
            "resume",
            format!(
                "{} was edited since the run started; a run continues with the plan it \
                 started with. Restore the file, start a new run with the new plan, or resume \
                 with --force (the edited file is then kept as plan.toml.edited)",
                shown(&p)
            ),
        ));
    }
    let keep = run_dir.join("plan.toml.edited");
    std::fs::rename(&p, &keep).map_err(|e| Error::io(&p, e))?;
    notes.push(format!(
        "warning: plan.toml was edited; the run continues with its own plan (the edited file \
         is now {})",
        shown(&keep)
    ));
    Ok(())
}

/// Settles what a run resumed in `run_dir` continues with.
pub fn settle(meta: &CheckpointMeta, run_dir: &Path, opts: &ResumeOptions) -> Result<Settled> {
    let mut cfg = meta.config.clone();
    cfg.out_dir = run_dir.to_path_buf();
    let problems = conflicts(&cfg, opts);
    if !problems.is_empty() {
        return Err(Error::invalid(
            "resume",
            format!(
                "{}; a resumed run keeps its settings (start a new run to change them)",
                problems.join("; ")
            ),
        ));
    }
    let mut notes = Vec::new();
    let recorded_classes = meta
        .data_fingerprint
        .as_ref()
        .map(|f| f.classes.clone())
        .unwrap_or_default();
    if cfg.classes.is_none() && recorded_classes.is_empty() {
        // Runs from before classes came from the data had the paper's four outputs.
        cfg.classes = Some(crate::data::split::labels::paper_classes());
    }
    plan_file(run_dir, &cfg.plan, opts.force, &mut notes)?;
    let recorded = cfg.data.clone();
    let at = opts.data.clone().unwrap_or_else(|| recorded.clone());
    let at = std::path::absolute(&at).unwrap_or(at);
    let dataset =
        crate::data::findings::dataset::open_any(&at, &cfg.data_options()).map_err(|e| {
            if opts.data.is_none() {
                Error::invalid(
                    "resume",
                    format!(
                        "the run's data set {} cannot be opened ({e}); if it moved, point the run \
                     at it with --data",
                        shown(&recorded)
                    ),
                )
            } else {
                e
            }
        })?;
    match &meta.data_fingerprint {
        Some(then) => {
            let now = fingerprint(&dataset);
            if !then.classes.is_empty() && then.classes != now.classes {
                return Err(Error::invalid(
                    "resume",
                    format!(
                        "the classes of the data set {} changed since the checkpoint: {} then, \
                         {} now. The model's outputs are the run's classes, so a run cannot \
                         change them: start a new run",
                        shown(&at),
                        then.classes.join(", "),
                        now.classes.join(", ")
                    ),
                ));
            }
            match describe_change(then, &now) {
                None if at != recorded => notes.push(format!(
                    "the data set moved: {} -> {} (same images and labels)",
                    shown(&recorded),
                    shown(&at)
                )),
                None => {}
                Some(change) if opts.force => notes.push(format!(
                    "warning: the data set {} changed since the checkpoint ({change}); going on \
                     as asked (--force)",
                    shown(&at)
                )),
                Some(change) => {
                    return Err(Error::invalid(
                        "resume",
                        format!(
                            "the data set {} changed since the checkpoint: {change}. Resume with \
                             the data set the run started with, or with --force to go on",
                            shown(&at)
                        ),
                    ))
                }
            }
        }
        None => notes.push(
            "this checkpoint predates data-set records: the data set was not compared".into(),
        ),
    }
    cfg.data = at;
    Ok(Settled {
        config: cfg,
        dataset,
        notes,
    })
}
