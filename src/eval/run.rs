//! The one evaluation: a model (with its file's preprocessing) over a list of samples, one
//! [`Case`] per image, and the report built from them. Training's validation and final
//! test, `eval` and the Viewer's test-set review all call it.
use super::report::{Case, EvalReport};
use crate::data::cache::{CachePlace, ImageCache};
use crate::data::decode::decode_file;
use crate::data::preprocess::Preprocess;
use crate::data::split::Sample;
use crate::infer::disagreement::Disagreement;
use crate::infer::predictor::{argmax, probs_of};
use crate::infer::Predictor;
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// How an evaluation runs and how its intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images per forward pass.
    pub batch_size: usize,
    /// Bootstrap resamples of the intervals (0: none, as for per-epoch validation).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            bootstrap: 1000,
            seed: 0,
        }
    }
}

/// Samples to evaluate, with the resized planes of the last size kept for the next pass
/// (training validates the same images after every epoch), within the run's memory budget
/// and on disk past it.
pub struct EvalSet {
    samples: Vec<Sample>,
    place: CachePlace,
    planes: Mutex<Option<Arc<ImageCache<f32>>>>,
}

impl EvalSet {
    /// A set over `samples` (nothing is decoded yet) with the default budget, no disk cache.
    pub fn new(samples: Vec<Sample>) -> Self {
        Self::with_cache(samples, CachePlace::default())
    }

    /// A set over `samples` whose planes are kept in `place`.
    pub fn with_cache(samples: Vec<Sample>, place: CachePlace) -> Self {
        Self {
            samples,
            place,
            planes: Mutex::new(None),
        }
    }

    /// The samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    fn planes_for(&self, pre: &Preprocess) -> Arc<ImageCache<f32>> {
        let mut g = self.planes.lock().unwrap_or_else(|e| e.into_inner());
        match &*g {
            Some(p) if p.size_px() == pre.size_px && p.resize() == pre.resize => p.clone(),
            _ => {
                // The old size's memory goes back to the budget first.
                *g = None;
                let p = Arc::new(ImageCache::new(
                    self.samples.len(),
                    pre.size_px,
                    pre.resize,
                    self.place.clone(),
                ));
                *g = Some(p.clone());
                p
            }
        }
    }

    /// Calls `each(samples, planes)` for the samples batch by batch, their planes made as
    /// `predictor` reads them (and kept for the next pass); `progress(done, total)` after
    /// each batch.
    pub fn batches(
        &self,
        predictor: &Predictor,
        opts: &EvalOptions,
        mut progress: impl FnMut(usize, usize),
        mut each: impl FnMut(&[Sample], &[&[f32]]) -> Result<()>,
    ) -> Result<()> {
        if opts.batch_size == 0 {
            return Err(Error::invalid("batch size", "0: must be at least 1"));
        }
        let pre = predictor.preprocess();
        let planes = self.planes_for(&pre);
        let total = self.samples.len();
        for (b, chunk) in self.samples.chunks(opts.batch_size).enumerate() {
            let first = b * opts.batch_size;
            let batch: Vec<Arc<[f32]>> = chunk
                .par_iter()
                .enumerate()
                .map(|(k, s)| -> Result<Arc<[f32]>> {
                    planes.get(first + k, &s.path, || pre.plane(&decode_file(&s.path)?))
                })
                .collect::<Result<_>>()?;
            let refs: Vec<&[f32]> = batch.iter().map(|p| &p[..]).collect();
            each(chunk, &refs)?;
            progress(first + chunk.len(), total);
        }
        Ok(())
    }

    /// Runs `predictor` over every sample; `progress(done, total)` after each batch.
    pub fn cases(
        &self,
        predictor: &Predictor,
        opts: &EvalOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Case>> {
        let classes = predictor.meta().class_names.len();
        let mut cases = Vec::with_capacity(self.samples.len());
        self.batches(predictor, opts, progress, |chunk, refs| {
            let (lps, members) = predictor.log_probs_with_members(refs)?;
            for (j, (s, lp)) in chunk.iter().zip(lps).enumerate() {
                if s.label >= classes {
                    return Err(Error::invalid(
                        "label",
                        format!(
                            "{}: class {} but the model has {classes} classes",
                            crate::files::shown(&s.path),
                            s.label
                        ),
                    ));
                }
                let probs = probs_of(&lp);
                let predicted = argmax(&probs);
                let disagreement = members.as_ref().map(|m| {
                    let rows: Vec<Vec<f32>> = m.iter().map(|net| probs_of(&net[j])).collect();
                    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                    Disagreement::of(&refs, predicted)
                });
                cases.push(Case {
                    file: crate::files::path_text(&s.path),
                    file_bytes: crate::files::path_bytes_hex(&s.path),
                    actual: s.label,
                    predicted,
                    disagreement,
                    loss: -(lp[s.label] as f64),
                    probs,
                    source: s.source.clone(),
                    patient: Some(s.patient.clone()),
                });
            }
            Ok(())
        })?;
        Ok(cases)
    }

    /// The report of `predictor` on these samples (classes from the model file).
    pub fn evaluate(
        &self,
        predictor: &Predictor,
        opts: &EvalOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<EvalReport> {
        let cases = self.cases(predictor, opts, progress)?;
        let mut r = EvalReport::from_cases(
            predictor.meta().class_names.clone(),
            cases,
            opts.bootstrap,
            opts.seed,
        );
        r.info
            .insert("size_px".into(), predictor.meta().input_size_px.to_string());
        Ok(r)
    }
}

/// Evaluates `predictor` on `samples` once (no planes kept).
pub fn evaluate(
    predictor: &Predictor,
    samples: &[Sample],
    opts: &EvalOptions,
    progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    EvalSet::new(samples.to_vec()).evaluate(predictor, opts, progress)
}

/// `predictor` (from the file `model`) on the whole test split of the data set at `data`
/// read with `data_opts`: the report the review and a members run write, with where it comes
/// from recorded. `progress(done, total)` after each batch.
pub fn evaluate_test_split(
    predictor: &Predictor,
    model: &std::path::Path,
    data: &std::path::Path,
    data_opts: &crate::data::split::DataOptions,
    opts: &EvalOptions,
    progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    let mut ds = crate::data::split::Dataset::open_with(data, data_opts)?;
    ds.align_to_model(&predictor.meta().class_names)?;
    ds.test.check_complete("test")?;
    let mut r = evaluate(predictor, &ds.test.samples, opts, progress)?;
    r.record_source(model, predictor.meta(), data, "test");
    Ok(r)
}
