//! `covid-resnet predict` with a multi-label model: each finding's probability (independent:
//! they do not sum to 1) and whether it is present at the threshold the model file records.
use super::predict::PredictArgs;
use crate::infer::Predictor;
use std::path::Path;
use std::process::ExitCode;

/// Runs `predict` for the multi-label `predictor` loaded from `model`.
pub fn run(a: &PredictArgs, predictor: &Predictor, model: &Path) -> anyhow::Result<ExitCode> {
    if a.tta || a.gradcam.is_some() || a.cam_class.is_some() {
        anyhow::bail!(
            "--tta, --gradcam and --cam-class are not available for a multi-label model (findings) yet"
        );
    }
    let labels = predictor.meta().class_names.clone();
    let thresholds = predictor.finding_thresholds().unwrap_or_default().to_vec();
    let results = predictor.predict_finding_files(&a.files, a.batch_size);
    if a.json {
        let preds: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|p| {
                let findings: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        (
                            l.clone(),
                            serde_json::json!({
                                "probability": p.probs[i],
                                "threshold": thresholds.get(i),
                                "present": p.present[i],
                            }),
                        )
                    })
                    .collect();
                let present: Vec<&String> = labels
                    .iter()
                    .zip(&p.present)
                    .filter(|(_, &x)| x)
                    .map(|(l, _)| l)
                    .collect();
                let mut v = serde_json::json!({
                    "file": crate::files::path_text(&p.path),
                    "findings": findings,
                    "present": present,
                    "warnings": p.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                });
                if let Some(hex) = crate::files::path_bytes_hex(&p.path) {
                    v["file_bytes"] = serde_json::json!(hex);
                }
                v
            })
            .collect();
        let errors = super::predict::error_entries(&a.files, &results);
        let doc = serde_json::json!({
            "model": crate::files::path_text(model),
            "notice": crate::RESEARCH_NOTICE,
            "multi_label": true,
            "about": "one independent probability a finding (they do not sum to 1); present when at or above its threshold",
            "predictions": preds,
            "errors": errors,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "findings: one independent probability each (they do not sum to 1); * present at \
             the model's threshold"
        );
        for r in results.iter().flatten() {
            println!("{}", crate::files::shown(&r.path));
            for (i, l) in labels.iter().enumerate() {
                println!(
                    "  {l:<28} {:>7.4} {} (threshold {:.4})",
                    r.probs[i],
                    if r.present[i] { "*" } else { " " },
                    thresholds.get(i).copied().unwrap_or(f64::NAN)
                );
            }
            for w in &r.warnings {
                println!("  warning: {w}");
            }
        }
        println!("{}", crate::RESEARCH_NOTICE);
    }
    let mut failed = false;
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        eprintln!("error: {r}");
        failed = true;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
