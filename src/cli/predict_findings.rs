//! `covid-resnet predict` with a multi-label model: each finding's probability (independent:
//! they do not sum to 1) and whether it is present at the threshold the model file records.
use super::predict::PredictArgs;
use crate::infer::findings::FindingPrediction;
use crate::infer::Predictor;
use std::path::Path;
use std::process::ExitCode;

/// Runs `predict` for the multi-label `predictor` loaded from `model`.
pub fn run(a: &PredictArgs, predictor: &Predictor, model: &Path) -> anyhow::Result<ExitCode> {
    let labels = predictor.meta().class_names.clone();
    let thresholds = predictor.finding_thresholds().unwrap_or_default().to_vec();
    let cam_finding = a
        .cam_class
        .as_deref()
        .map(|c| super::predict::parse_class(c, &labels))
        .transpose()?;
    let (results, cams) = match &a.gradcam {
        Some(dir) => {
            let (preds, cams) = super::predict::predict_with_cams(
                predictor,
                &a.files,
                dir,
                a.tta,
                cam_finding,
                a.cam_opacity,
            )?;
            let found = preds
                .into_iter()
                .map(|r| {
                    r.map(|p| FindingPrediction {
                        present: predictor.findings_present(&p.probs).unwrap_or_default(),
                        path: p.path,
                        probs: p.probs,
                        warnings: p.warnings,
                    })
                })
                .collect();
            (found, cams)
        }
        None => (
            predictor.predict_finding_files(&a.files, a.batch_size, a.tta),
            Vec::new(),
        ),
    };
    let cam_of = |f: &std::path::PathBuf| cams.iter().find(|(p, _)| p == f).map(|(_, r)| r);
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
                let v = serde_json::json!({
                    "findings": findings,
                    "present": present,
                });
                super::predict::with_file_fields(v, &p.path, &p.warnings, cam_of(&p.path))
            })
            .collect();
        let errors = super::predict::error_entries(&a.files, &results);
        let doc = serde_json::json!({
            "model": crate::files::path_text(model),
            "notice": crate::RESEARCH_NOTICE,
            "multi_label": true,
            "tta": a.tta,
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
            match cam_of(&r.path) {
                Some(Ok(c)) => println!("  grad-cam: {}", crate::files::shown(c)),
                Some(Err(e)) => println!("  grad-cam failed: {e}"),
                None => {}
            }
        }
        println!("{}", crate::RESEARCH_NOTICE);
    }
    let mut failed = cams.iter().any(|(_, r)| r.is_err());
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
