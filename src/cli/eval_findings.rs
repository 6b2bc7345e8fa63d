//! `covid-resnet eval` with a multi-label model: per finding AUC, ROC, the 2x2 table and its
//! four rates at the threshold the model file records, with intervals from the bootstrap over
//! patients; the mean AUC and CheXpert's five-label mean (the evaluation a multi-label run
//! does at its end, on any split).
use super::eval::EvalArgs;
use crate::eval::findings::{evaluate, Outputs, ThresholdRule};
use crate::eval::findings_report::{FindingsReport, Source};
use crate::eval::{EvalOptions, EvalSet};
use crate::files::shown;
use crate::infer::Predictor;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs `eval` for the multi-label model at `model`.
pub fn run(a: &EvalArgs, model: &Path, device: &candle_core::Device) -> anyhow::Result<ExitCode> {
    if a.threshold.is_some() || a.target_sensitivity.is_some() || a.compare.is_some() {
        anyhow::bail!(
            "--threshold, --target-sensitivity and --compare are not available for a \
             multi-label model (findings) yet: it is evaluated at the thresholds its file records"
        );
    }
    let predictor = Predictor::load(model, device)
        .with_context(|| format!("cannot load model {}", shown(model)))?
        .in_precision(a.precision);
    let meta = predictor.meta().clone();
    let f = meta.findings.clone().context("not a multi-label model")?;
    let split_seed = super::args::held_out_seed(a.split_seed, &meta);
    let samples = a.dataset.finding_samples(
        &a.data,
        split_seed,
        &meta.class_names,
        &f.uncertain,
        a.split,
    )?;
    let opts = EvalOptions {
        batch_size: a.batch_size,
        bootstrap: a.bootstrap,
        seed: a.seed,
    };
    let set = EvalSet::with_cache(samples, a.cache.settings().open());
    let out = Outputs::of(&predictor, &set, &opts)?;
    let rules: Vec<ThresholdRule> = f
        .thresholds
        .iter()
        .map(|&t| ThresholdRule::Typed(t))
        .collect();
    let m = evaluate(&meta.class_names, &out.cases(), &rules, a.bootstrap, a.seed);
    let dir = a.out.clone().unwrap_or_else(|| {
        model
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the output folder {}", shown(&dir)))?;
    let path = dir.join(format!("eval-findings-{}.json", a.split.name()));
    let source = Source {
        model: model.to_path_buf(),
        data: a.data.clone(),
        split: a.split.name().into(),
        validated_on_test: false,
        validation: None,
        uncertain: Some(
            a.dataset
                .uncertain
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or(f.uncertain.clone()),
        ),
        thresholds_from: f.thresholds_from.clone(),
    };
    FindingsReport::new(source, &out, m.clone()).save(&path)?;
    let pct = |v: f64| crate::fmt::pct(v, 1);
    let ci = |w: &crate::eval::metrics::WithCi| {
        if w.value.is_nan() {
            "–".to_string()
        } else {
            format!("{} ({}-{})", pct(w.value), pct(w.lo), pct(w.hi))
        }
    };
    println!(
        "{} split, {} images; intervals from the bootstrap over {} ({} resamples)",
        a.split.name(),
        out.probs.len(),
        m.resampled,
        a.bootstrap
    );
    println!(
        "{:<28} {:>7} {:>9}  {:<24} {:>9} {:>11} {:>11} {:>7} {:>7}",
        "finding",
        "counted",
        "positive",
        "AUC (95 % CI)",
        "threshold",
        "sensitivity",
        "specificity",
        "PPV",
        "NPV"
    );
    for l in &m.labels {
        let t = &l.table;
        println!(
            "{:<28} {:>7} {:>9}  {:<24} {:>9.4} {:>11} {:>11} {:>7} {:>7}",
            l.label,
            l.counted,
            l.positives,
            ci(&l.auc),
            l.threshold,
            pct(t.sensitivity.value),
            pct(t.specificity.value),
            pct(t.ppv.value),
            pct(t.npv.value)
        );
    }
    println!(
        "mean AUC {}{}",
        ci(&m.mean_auc),
        m.competition_auc
            .as_ref()
            .map(|c| format!("; CheXpert's five {}", ci(c)))
            .unwrap_or_default()
    );
    println!("written: {}", shown(&path));
    println!("{}", crate::RESEARCH_NOTICE);
    Ok(ExitCode::SUCCESS)
}
