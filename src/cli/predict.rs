//! `covid-resnet predict --model M [--json] FILE...`
use crate::device::DeviceChoice;
use crate::infer::{Prediction, Predictor};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A model file written by covid-resnet (`train`, or the app); default: the shipped
    /// model (weights/default-covidx-v1.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Images evaluated together.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Average each image's probabilities with its mirror image's (test-time augmentation).
    #[arg(long)]
    pub tta: bool,
    /// Write a Grad-CAM overlay per image into this folder (`<name>.gradcam.png`).
    #[arg(long, value_name = "OUT_DIR")]
    pub gradcam: Option<PathBuf>,
    /// The class Grad-CAM explains (name or index); default: the predicted class (for a
    /// multi-label model: the finding; default: the most probable one).
    #[arg(long, value_name = "CLASS", requires = "gradcam")]
    pub cam_class: Option<String>,
    /// Opacity of the Grad-CAM colours over the image (0-1).
    #[arg(long, default_value_t = 0.45, requires = "gradcam")]
    pub cam_opacity: f32,
    /// Precision of the convolutions: f32, or bf16 mixed precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::model::ops::precision::Precision,
    /// Image files (PNG, JPEG, BMP, TIFF, DICOM; 8- or 16-bit; gray, RGB or RGBA).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Resolves a class given by name (case-insensitive) or index.
pub fn parse_class(s: &str, classes: &[String]) -> anyhow::Result<usize> {
    if let Ok(i) = s.parse::<usize>() {
        if i < classes.len() {
            return Ok(i);
        }
    }
    classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case(s))
        .or_else(|| {
            let c = crate::data::split::labels::canonical(s);
            classes.iter().position(|x| x.eq_ignore_ascii_case(&c))
        })
        .filter(|&i| i < classes.len())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--cam-class {s:?}: expected one of {} or an index 0-{}",
                classes.join(", "),
                classes.len().saturating_sub(1)
            )
        })
}

/// Predicts each file with Grad-CAM (each decoded and analysed once) and writes its overlay
/// into `out`. Returns the predictions, and (file, written path or error) for each file that
/// predicted.
pub(super) type CamResults = Vec<(PathBuf, Result<PathBuf, String>)>;

pub(super) fn predict_with_cams(
    predictor: &Predictor,
    files: &[PathBuf],
    out: &std::path::Path,
    tta: bool,
    class: Option<usize>,
    opacity: f32,
) -> anyhow::Result<(Vec<crate::Result<Prediction>>, CamResults)> {
    std::fs::create_dir_all(out).with_context(|| {
        format!(
            "cannot create the Grad-CAM folder {}",
            crate::files::shown(out)
        )
    })?;
    let mut used = std::collections::HashSet::new();
    let (mut preds, mut cams) = (Vec::new(), Vec::new());
    for f in files {
        let analysed = crate::data::decode::decode_file(f).and_then(|img| {
            let a = predictor.analyze(&img, tta, class).map_err(|e| {
                crate::Error::invalid("inference", format!("{}: {e}", crate::files::shown(f)))
            })?;
            Ok((img, a))
        });
        let (img, a) = match analysed {
            Ok(x) => x,
            Err(e) => {
                preds.push(Err(e));
                continue;
            }
        };
        let stem = f
            .file_stem()
            .map(|s| crate::files::path_text(std::path::Path::new(s)))
            .unwrap_or_else(|| "image".into());
        let mut name = format!("{stem}.gradcam.png");
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{stem}-{k}.gradcam.png");
            k += 1;
        }
        let dest = out.join(name);
        let written = (|| -> crate::Result<PathBuf> {
            let cam = a.cam.upsample(img.width, img.height);
            let rgb = crate::infer::gradcam::overlay(&img, &cam, opacity);
            let mut png = Vec::new();
            rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| crate::Error::invalid("png", e.to_string()))?;
            crate::files::write_atomic(&dest, &png)?;
            Ok(dest.clone())
        })();
        cams.push((f.clone(), written.map_err(|e| e.to_string())));
        preds.push(Ok(Prediction {
            path: f.clone(),
            probs: a.probs,
            predicted: a.predicted,
            warnings: a.warnings,
            disagreement: a.disagreement,
        }));
    }
    Ok((preds, cams))
}

/// Runs `predict` in `--precision`: exit code 1 when any file failed (the others are still
/// printed).
/// `v` with the fields every `--json` prediction has: the file (its bytes in hex where the
/// name is not UTF-8), the input warnings, and its Grad-CAM file or why there is none.
pub(super) fn with_file_fields(
    mut v: serde_json::Value,
    path: &std::path::Path,
    warnings: &[crate::infer::InputWarning],
    cam: Option<&Result<PathBuf, String>>,
) -> serde_json::Value {
    v["file"] = serde_json::json!(crate::files::path_text(path));
    if let Some(hex) = crate::files::path_bytes_hex(path) {
        v["file_bytes"] = serde_json::json!(hex);
    }
    v["warnings"] = serde_json::json!(warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>());
    match cam {
        Some(Ok(c)) => v["gradcam"] = serde_json::json!(crate::files::path_text(c)),
        Some(Err(e)) => v["gradcam_error"] = serde_json::json!(e),
        None => {}
    }
    v
}

/// `--json`'s `errors`: each file whose result is an error, with the message.
pub fn error_entries<T>(files: &[PathBuf], results: &[crate::Result<T>]) -> Vec<serde_json::Value> {
    files
        .iter()
        .zip(results)
        .filter_map(|(f, r)| {
            r.as_ref().err().map(
                |e| serde_json::json!({"file": crate::files::path_text(f), "error": e.to_string()}),
            )
        })
        .collect()
}

pub fn run(a: &PredictArgs, device: DeviceChoice) -> anyhow::Result<ExitCode> {
    if a.batch_size == 0 {
        anyhow::bail!("--batch-size 0: must be at least 1");
    }
    let device = device.open()?;
    let model = super::model_or_shipped(a.model.as_deref())?;
    let predictor = Predictor::load(&model, &device)
        .with_context(|| format!("cannot load model {}", crate::files::shown(&model)))?
        .in_precision(a.precision);
    if predictor.meta().findings.is_some() {
        return super::predict_findings::run(a, &predictor, &model);
    }
    let classes = predictor.meta().class_names.clone();
    if let Some(rule) = crate::infer::decision::rule_text(predictor.meta()) {
        eprintln!("the model file sets how it predicts: {rule}");
    }
    let cam_class = a
        .cam_class
        .as_deref()
        .map(|c| parse_class(c, &classes))
        .transpose()?;
    let (results, cams) = match &a.gradcam {
        Some(dir) => predict_with_cams(&predictor, &a.files, dir, a.tta, cam_class, a.cam_opacity)?,
        None => (
            predictor.predict_files(&a.files, a.batch_size, a.tta),
            Vec::new(),
        ),
    };
    let failed = results.iter().filter(|r| r.is_err()).count()
        + cams.iter().filter(|(_, r)| r.is_err()).count();
    let cam_of = |f: &PathBuf| cams.iter().find(|(p, _)| p == f).map(|(_, r)| r);
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
                let mut v = serde_json::json!({
                    "probabilities": probs,
                    "predicted": classes.get(p.predicted),
                });
                if let Some(d) = &p.disagreement {
                    v["disagreement"] = serde_json::json!(d);
                }
                with_file_fields(v, &p.path, &p.warnings, cam_of(&p.path))
            })
            .collect();
        let errors = error_entries(&a.files, &results);
        let doc = serde_json::json!({
            "model": crate::files::path_text(&model),
            "notice": crate::RESEARCH_NOTICE,
            "tta": a.tta,
            "predictions": preds,
            "errors": errors,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let width = a
            .files
            .iter()
            .map(|f| crate::files::shown(f).to_string().len())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        print!("{:<width$}", "file");
        for c in &classes {
            print!("  {c:>9}");
        }
        println!("  predicted");
        for r in results.iter().flatten() {
            print!("{:<width$}", crate::files::shown(&r.path).to_string());
            for p in &r.probs {
                print!("  {p:>9.4}");
            }
            println!(
                "  {}",
                classes.get(r.predicted).map(String::as_str).unwrap_or("?")
            );
            if let Some(d) = &r.disagreement {
                println!("    ensemble: {}", d.describe());
            }
            for w in &r.warnings {
                println!("    warning: {w}");
            }
            match cam_of(&r.path) {
                Some(Ok(c)) => println!("    grad-cam: {}", crate::files::shown(c)),
                Some(Err(e)) => println!("    grad-cam failed: {e}"),
                None => {}
            }
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
