//! `covid-resnet predict --model M [--json] FILE...`
use crate::device::DeviceChoice;
use crate::infer::Predictor;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A model file written by covid-resnet (`train`, or the app).
    #[arg(long)]
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Images evaluated together.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Image files (PNG, JPEG, BMP, TIFF; 8- or 16-bit; gray, RGB or RGBA).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `predict`: exit code 1 when any file failed (the others are still printed).
pub fn run(a: &PredictArgs, device: DeviceChoice) -> anyhow::Result<ExitCode> {
    let device = device.open()?;
    let predictor = Predictor::load(&a.model, &device)
        .with_context(|| format!("cannot load model {}", a.model.display()))?;
    let classes = predictor.meta().class_names.clone();
    let results = predictor.predict_files(&a.files, a.batch_size);
    let failed = results.iter().filter(|r| r.is_err()).count();
    if a.json {
        let preds: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|p| {
                let probs: serde_json::Map<String, serde_json::Value> = classes
                    .iter()
                    .zip(&p.probs)
                    .map(|(c, &v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({
                    "file": p.path,
                    "probabilities": probs,
                    "predicted": classes.get(p.predicted),
                })
            })
            .collect();
        let errors: Vec<_> = a
            .files
            .iter()
            .zip(&results)
            .filter_map(|(f, r)| {
                r.as_ref()
                    .err()
                    .map(|e| serde_json::json!({"file": f, "error": e.to_string()}))
            })
            .collect();
        let doc = serde_json::json!({
            "model": a.model,
            "notice": crate::RESEARCH_NOTICE,
            "predictions": preds,
            "errors": errors,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let width = a
            .files
            .iter()
            .map(|f| f.display().to_string().len())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        print!("{:<width$}", "file");
        for c in &classes {
            print!("  {c:>9}");
        }
        println!("  predicted");
        for r in results.iter().flatten() {
            print!("{:<width$}", r.path.display().to_string());
            for p in &r.probs {
                print!("  {p:>9.4}");
            }
            println!(
                "  {}",
                classes.get(r.predicted).map(String::as_str).unwrap_or("?")
            );
        }
        println!("{}", crate::RESEARCH_NOTICE);
    }
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        eprintln!("error: {r}");
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
