//! Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural
//! network"): a student network trained on a teacher's probabilities as well as on the labels,
//! so that one network carries what an ensemble learned.
//!
//! The loss of a batch is
//!   (1 - w) * CE(labels, softmax(z)) + w * T^2 * CE(q_T, softmax(z / T))
//! with `z` the student's logits, `q_T` the teacher's probabilities at temperature `T`
//! (`q^(1/T)` renormalised: the softmax of the teacher's log-probabilities over `T`, which for
//! an ensemble are the log of its members' mean), and `T^2` keeping the soft part's gradients
//! the same size whatever `T` (Hinton et al. section 2). The first term is the run's ordinary
//! loss (with its class weights); `w = 0` is ordinary training.
//!
//! The teacher's probabilities are computed once, when the run starts or resumes, for every
//! training image as the teacher reads it (its own input size and normalisation, no
//! augmentation), by the one evaluation path (`eval::run`); the student sees augmented views
//! of the same images. A resumed run refuses a teacher file that changed since the start.
use super::events::{EventSink, TrainEvent};
use crate::data::split::Sample;
use crate::eval::{EvalOptions, EvalSet};
use crate::infer::Predictor;
use crate::model::io::model_file::ModelMeta;
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A run's teacher and how much it counts; saved with the run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The teacher's model file (one network or an ensemble).
    pub teacher: PathBuf,
    /// SHA-256 of the teacher file when the run started (empty until then).
    #[serde(default)]
    pub sha256: String,
    /// The weight `w` of the teacher's term, 0 to 1.
    pub weight: f64,
    /// The temperature `T` (> 0).
    pub temperature: f64,
}

/// Hinton et al.'s weight of the soft targets here: both terms count the same.
pub const DEFAULT_WEIGHT: f64 = 0.5;
/// The temperature: softens a confident teacher enough that its other classes carry signal.
pub const DEFAULT_TEMPERATURE: f64 = 2.0;

impl DistillConfig {
    /// A teacher with weight `w` and temperature `t`, refused by value when out of range.
    pub fn new(teacher: PathBuf, weight: f64, temperature: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&weight) {
            return Err(Error::invalid(
                "distillation weight (--distill-weight)",
                format!("{weight}: must be from 0 to 1"),
            ));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::invalid(
                "distillation temperature (--distill-temperature)",
                format!("{temperature}: must be a number above 0"),
            ));
        }
        Ok(Self {
            teacher,
            sha256: String::new(),
            weight,
            temperature,
        })
    }
}

/// The teacher's tempered probabilities `q_T` of every training image, in the loader's
/// sample order.
#[derive(Debug, Clone)]
pub struct SoftTargets {
    classes: usize,
    probs: Vec<f32>,
    /// The run's distillation settings.
    pub config: DistillConfig,
}

impl SoftTargets {
    /// The rows of the loader's samples `indices` as a (N, classes) tensor on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let mut v = Vec::with_capacity(indices.len() * self.classes);
        for &i in indices {
            let row = self
                .probs
                .get(i * self.classes..(i + 1) * self.classes)
                .ok_or_else(|| {
                    Error::invalid("teacher", format!("no soft target for image {i}"))
                })?;
            v.extend_from_slice(row);
        }
        Ok(Tensor::from_vec(v, (indices.len(), self.classes), device)?)
    }
}

/// A new run's teacher, before the run folder is touched: its path made absolute (the run can
/// be resumed from anywhere) and its file read. Unless the run was given a validation split
/// seed (`split_seed`), it holds out the one the teacher's networks held out; a run that holds
/// out another one is warned. Check the classes with [`check_teacher`] once the data set is
/// read.
pub fn begin(
    cfg: &mut DistillConfig,
    split_seed: &mut Option<u64>,
    seed: u64,
    sink: &dyn EventSink,
) -> Result<ModelMeta> {
    cfg.teacher = std::path::absolute(&cfg.teacher).unwrap_or_else(|_| cfg.teacher.clone());
    let meta = crate::model::io::model_file::read_meta(&cfg.teacher)?;
    if split_seed.is_none() {
        if let Some(s) = teacher_split_seed(&meta) {
            *split_seed = Some(s);
            sink.send(TrainEvent::Log(format!(
                "validation split seeded {s}, the one the teacher's networks held out"
            )));
        }
    }
    if let Some(w) = other_split(&meta, split_seed.unwrap_or(seed)) {
        let shown = crate::files::shown(&cfg.teacher);
        sink.send(TrainEvent::Log(format!("warning: {shown}: {w}")));
    }
    Ok(meta)
}

/// Checks the teacher file of `cfg` against the run (a resumed run's: unchanged since the run
/// started, which [`check_teacher`] accepted) and computes its tempered probabilities for
/// `train` (the loader's samples). Fills in `cfg.sha256` on a new run.
pub fn soft_targets(
    cfg: &mut DistillConfig,
    train: &[Sample],
    classes: usize,
    sink: &dyn EventSink,
) -> Result<SoftTargets> {
    let shown = crate::files::shown(&cfg.teacher).to_string();
    let (sha, _) = crate::fetch::sha256_file(&cfg.teacher)?;
    if cfg.sha256.is_empty() {
        cfg.sha256 = sha;
    } else if cfg.sha256 != sha {
        return Err(Error::invalid(
            "teacher",
            format!(
                "{shown} changed since the run started (SHA-256 {} then, {sha} now): the run \
                 learns from the teacher it started with; restore that file or start a new run",
                cfg.sha256
            ),
        ));
    }
    // The teacher runs in float32 on the CPU: its probabilities do not depend on the
    // student's device or precision.
    let teacher = Predictor::load(&cfg.teacher, &Device::Cpu)?;
    let t0 = std::time::Instant::now();
    let opts = EvalOptions {
        bootstrap: 0,
        ..EvalOptions::default()
    };
    let mut said = 0;
    let cases = EvalSet::new(train.to_vec()).cases(&teacher, &opts, |done, total| {
        // A line every fifth of the way: the pass takes minutes on a large set.
        if done * 5 / total.max(1) > said || done == total {
            said = done * 5 / total.max(1);
            sink.send(TrainEvent::Log(format!(
                "teacher {shown}: {done} of {total} training images"
            )));
        }
    })?;
    let mut probs = Vec::with_capacity(cases.len() * classes);
    for c in &cases {
        probs.extend(crate::infer::decision::tempered(&c.probs, cfg.temperature));
    }
    sink.send(TrainEvent::Log(format!(
        "distilling from {shown} ({}): soft targets of {} training images at temperature {} in \
         {:.0} s; loss = {} x cross-entropy with the labels + {} x T^2 x cross-entropy with the \
         teacher",
        if teacher.is_ensemble() {
            format!("an ensemble of {}", teacher.networks().len())
        } else {
            "one network".to_string()
        },
        cases.len(),
        cfg.temperature,
        t0.elapsed().as_secs_f64(),
        1.0 - cfg.weight,
        cfg.weight
    )));
    Ok(SoftTargets {
        classes,
        probs,
        config: cfg.clone(),
    })
}

/// Refuses a teacher (`meta`, read from `path`) whose outputs are not the run's `classes` in
/// the run's order, or a run on findings (multi-label).
pub fn check_teacher(
    meta: &ModelMeta,
    path: &Path,
    classes: &[String],
    multi_label_data: bool,
) -> Result<()> {
    let shown = crate::files::shown(path);
    if multi_label_data {
        return Err(Error::invalid(
            "teacher",
            "distillation trains single-label classes; this data set has findings (multi-label)",
        ));
    }
    if meta.findings.is_some() {
        return Err(Error::invalid(
            "teacher",
            format!("{shown}: a multi-label model; distillation reads single-label models"),
        ));
    }
    if meta.class_names != classes {
        return Err(Error::invalid(
            "teacher",
            format!(
                "{shown} predicts {} but the run's classes are {}: a teacher must have the \
                 run's classes in the run's order",
                meta.class_names.join(", "),
                classes.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Why the student's validation figures would flatter it: the teacher's networks held out
/// another validation split of the same data, so they trained on images the student is
/// judged on.
fn other_split(meta: &ModelMeta, run: u64) -> Option<String> {
    let seeds: Vec<u64> = meta
        .trainings()
        .iter()
        .filter_map(|t| t.get("split_seed").and_then(|v| v.as_u64()))
        .filter(|&s| s != run)
        .collect();
    (!seeds.is_empty()).then(|| {
        format!(
            "its networks held out validation splits seeded {} and this run's is seeded {run}: \
             if they trained on this data set, some of this run's validation images were the \
             teacher's training images and its validation figures will be optimistic \
             (--split-seed chooses the run's)",
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The validation split seed every network of the teacher (`meta`) held out, when they agree
/// (a members run's): a student that holds out the same images is judged on images its
/// teacher never trained on.
fn teacher_split_seed(meta: &ModelMeta) -> Option<u64> {
    let seeds: Vec<u64> = meta
        .trainings()
        .iter()
        .filter_map(|t| t.get("split_seed").and_then(|v| v.as_u64()))
        .collect();
    let first = *seeds.first()?;
    seeds.iter().all(|&s| s == first).then_some(first)
}

/// The distillation loss of a batch: `(1 - w) * hard + w * T^2 * CE(soft, softmax(z / T))`
/// with `hard` the run's own loss of these logits and `soft` the teacher's tempered
/// probabilities (N, classes), averaged over the batch.
pub fn loss(logits: &Tensor, hard: Tensor, soft: &Tensor, w: f64, t: f64) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&(logits / t)?, D::Minus1)?;
    let soft = soft.to_dtype(logits.dtype())?;
    let ce = (soft * logp)?.sum(D::Minus1)?.mean_all()?.neg()?;
    Ok(((hard * (1.0 - w))? + (ce * (w * t * t))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn softmax(z: &[f64]) -> Vec<f64> {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    const Z: [[f64; 3]; 2] = [[1.5, -0.5, 0.25], [-1.0, 2.0, 0.5]];
    const Y: [u32; 2] = [0, 2];
    const Q: [[f64; 3]; 2] = [[0.7, 0.1, 0.2], [0.05, 0.6, 0.35]];

    fn tensors() -> (Var, Tensor, Tensor) {
        let z = Var::from_vec(Z.concat(), (2, 3), &Device::Cpu).unwrap();
        let y = Tensor::new(&Y, &Device::Cpu).unwrap();
        let q = Tensor::from_vec(Q.concat(), (2, 3), &Device::Cpu).unwrap();
        (z, y, q)
    }

    fn ours(z: &Var, y: &Tensor, q: &Tensor, w: f64, t: f64) -> Tensor {
        let hard = crate::train::loss::cross_entropy(z.as_tensor(), y, None).unwrap();
        loss(z.as_tensor(), hard, q, w, t).unwrap()
    }

    #[test]
    fn the_loss_is_hintons_formula_and_its_gradient_the_textbook_one() {
        let (w, t) = (0.3, 2.0);
        let (z, y, q) = tensors();
        let got = ours(&z, &y, &q, w, t);
        // By hand, in float64: (1 - w) mean -log p_y + w T^2 mean sum -q log softmax(z / T).
        let mut want = 0.0;
        let mut want_grad = vec![0.0; 6];
        for i in 0..2 {
            let p = softmax(&Z[i]);
            let zt: Vec<f64> = Z[i].iter().map(|v| v / t).collect();
            let pt = softmax(&zt);
            let soft: f64 = (0..3).map(|c| -Q[i][c] * pt[c].ln()).sum();
            want += ((1.0 - w) * -p[Y[i] as usize].ln() + w * t * t * soft) / 2.0;
            // d/dz: (1 - w)(p - onehot) + w T (softmax(z / T) - q), over the batch of 2.
            for c in 0..3 {
                let onehot = if c == Y[i] as usize { 1.0 } else { 0.0 };
                want_grad[i * 3 + c] =
                    ((1.0 - w) * (p[c] - onehot) + w * t * (pt[c] - Q[i][c])) / 2.0;
            }
        }
        let got_v = got.to_scalar::<f64>().unwrap();
        assert!((got_v - want).abs() < 1e-12, "{got_v} vs {want}");
        let g = got.backward().unwrap();
        let gz: Vec<f64> = g.get(&z).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in gz.iter().zip(&want_grad) {
            assert!((a - b).abs() < 1e-12, "{gz:?} vs {want_grad:?}");
        }
    }

    #[test]
    fn weight_zero_is_the_plain_loss_and_weight_one_the_teacher_alone() {
        let (z, y, q) = tensors();
        let hard = crate::train::loss::cross_entropy(z.as_tensor(), &y, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let v = |w, t| ours(&z, &y, &q, w, t).to_scalar::<f64>().unwrap();
        assert!((v(0.0, 3.0) - hard).abs() < 1e-12);
        // At T = 1 and w = 1: cross-entropy with the teacher's probabilities.
        let want: f64 = (0..2)
            .map(|i| {
                let p = softmax(&Z[i]);
                (0..3).map(|c| -Q[i][c] * p[c].ln()).sum::<f64>() / 2.0
            })
            .sum();
        assert!((v(1.0, 1.0) - want).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_settings_are_refused_by_value() {
        let p = PathBuf::from("t.safetensors");
        let e = DistillConfig::new(p.clone(), 1.5, 2.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--distill-weight") && e.contains("1.5"), "{e}");
        for t in [0.0, -1.0, f64::NAN] {
            let e = DistillConfig::new(p.clone(), 0.5, t)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--distill-temperature"), "{e}");
        }
        assert!(DistillConfig::new(p, 0.0, 0.5).is_ok());
    }
}
