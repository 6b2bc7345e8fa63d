//! A multi-label model trained from the command line on a generated NIH ChestX-ray14-shaped
//! set (findings drawn as shapes, several an image): per-finding AUC on the test split, the
//! thresholds chosen on the validation split, the model file's findings, and the
//! single-label commands refusing the model by name.
use crate::common::bin;
use covid_resnet::data::findings::synth::{write_nih_synth, DRAWN};
use covid_resnet::data::synth::SynthSpec;
use std::process::Command;

#[test]
fn a_findings_model_trains_to_high_auc_per_finding_and_records_its_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("nih"), dir.path().join("run"));
    let s = write_nih_synth(
        &data,
        SynthSpec {
            images: 240,
            side: 32,
            seed: 5,
        },
    )
    .unwrap();
    assert_eq!((s.train, s.test), (216, 24));
    // `data check` reads the layout too: images per split, and per finding those showing it.
    let out = Command::new(bin())
        .args(["data", "check", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&out.stdout);
    assert!(
        check.contains("NIH ChestX-ray14 (multi-label findings)"),
        "{check}"
    );
    let total = |split: &str| -> usize {
        let line = check
            .lines()
            .find(|l| l.starts_with(split) && l.contains("total"))
            .unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(total("test"), 24);
    assert_eq!(total("train") + total("valid"), 216);
    let (report, text) = train_findings(&data, &run, &["--class-weights", "auto"]);
    assert!(
        text.contains("mean AUC") && text.contains("test split, 24 images"),
        "{text}"
    );
    assert_eq!(report["split"], "test");
    assert_eq!(
        report["thresholds_from"],
        "Youden's J on the validation split"
    );
    let labels = report["metrics"]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 14);
    for l in labels {
        let name = l["label"].as_str().unwrap();
        if DRAWN.contains(&name) {
            let auc = l["auc"]["value"].as_f64().unwrap();
            assert!(auc > 0.9, "{name}: test AUC {auc}\n{text}");
            assert!(l["positives"].as_u64().unwrap() > 0);
        } else {
            // Never present: no AUC, every image counted negative.
            assert!(l["auc"]["value"].is_null() && l["positives"] == 0, "{name}");
        }
    }
    // A finished run resumed trains nothing and finishes again: the data set reopens as a
    // multi-label one and the same report comes out.
    let first = std::fs::read(run.join("findings_report.json")).unwrap();
    let out = Command::new(bin())
        .args(["--device", "cpu", "train", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("findings_report.json")).unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(again["metrics"], first["metrics"]);
    // The model file records its findings and the thresholds chosen on validation.
    let meta =
        covid_resnet::model::io::model_file::read_meta(&run.join("model.safetensors")).unwrap();
    let f = meta.findings.expect("a multi-label model file");
    assert_eq!((f.uncertain.as_str(), f.thresholds.len()), ("ignore", 14));
    assert!(f.thresholds_from.contains("validation"));
    assert_eq!(meta.class_names[2], "Effusion");
    // predict: an independent probability a finding and its decision at the recorded
    // threshold; an Effusion test image scores Effusion above a test image without findings.
    let entries = std::fs::read_to_string(data.join("Data_Entry_2017.csv")).unwrap();
    let tests = std::fs::read_to_string(data.join("test_list.txt")).unwrap();
    let pick = |want: &dyn Fn(&str) -> bool| -> std::path::PathBuf {
        let line = entries
            .lines()
            .skip(1)
            .find(|l| {
                let mut f = l.split(',');
                let name = f.next().unwrap();
                tests.lines().any(|t| t == name) && want(f.next().unwrap())
            })
            .unwrap();
        data.join("images_001/images")
            .join(line.split(',').next().unwrap())
    };
    let with = pick(&|f| f.contains("Effusion"));
    let without = pick(&|f| f == "No Finding");
    let out = Command::new(bin())
        .args(["predict", "--json", "--model"])
        .arg(run.join("model.safetensors"))
        .args([&with, &without])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["multi_label"], true);
    let preds = doc["predictions"].as_array().unwrap();
    let eff = |i: usize| {
        preds[i]["findings"]["Effusion"]["probability"]
            .as_f64()
            .unwrap()
    };
    assert!(eff(0) > eff(1), "{doc}");
    for p in preds {
        let f = p["findings"].as_object().unwrap();
        assert_eq!(f.len(), 14);
        for v in f.values() {
            let (prob, t) = (
                v["probability"].as_f64().unwrap(),
                v["threshold"].as_f64().unwrap(),
            );
            assert_eq!(v["present"].as_bool().unwrap(), prob >= t, "{v}");
        }
    }
    // eval is the same evaluation as the run's end: on the test split at the recorded
    // thresholds, with the same bootstrap, it gives the run's figures.
    let out = Command::new(bin())
        .args(["eval", "--batch-size", "16", "--model"])
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mean AUC") && text.contains("Effusion"),
        "{text}"
    );
    let evald: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval-findings-test.json")).unwrap())
            .unwrap();
    assert_eq!(evald["metrics"], again["metrics"]);
    // A single-label command still refuses it by name.
    let out = Command::new(bin())
        .args(["model", "calibrate", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(run.join("model.safetensors"))
        .arg("--out")
        .arg(dir.path().join("c.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("multi-label"),
        "{err}"
    );
}

/// Trains a ResNet-18 at 32 px on `data` with `extra` arguments: the run's findings report
/// and what the command printed.
fn train_findings(
    data: &std::path::Path,
    run: &std::path::Path,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let plan = run.with_extension("plan.toml");
    std::fs::write(
        &plan,
        "name = \"t\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"all\"\nlr = \"..3e-3\"\nepochs = 5\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "--device",
            "cpu",
            "train",
            "--backbone",
            "resnet18",
            "--batch-size",
            "16",
        ])
        .args(extra)
        .arg("--plan")
        .arg(&plan)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(run)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let report =
        serde_json::from_slice(&std::fs::read(run.join("findings_report.json")).unwrap()).unwrap();
    (report, text)
}

/// Each drawn finding's test AUC is above 0.9; the others are never present.
fn assert_drawn_learned(report: &serde_json::Value, what: &str) {
    use covid_resnet::data::findings::synth::CHEXPERT_DRAWN;
    let labels = report["metrics"]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 14, "{what}");
    for l in labels {
        let name = l["label"].as_str().unwrap();
        if CHEXPERT_DRAWN.contains(&name) || name == "No Finding" {
            let auc = l["auc"]["value"].as_f64().unwrap();
            assert!(auc > 0.9, "{what}: {name}: test AUC {auc}");
        } else {
            assert_eq!(l["positives"], 0, "{what}: {name}");
        }
    }
}

#[test]
fn findings_models_train_on_the_chexpert_and_mimic_layouts_under_each_uncertain_policy() {
    use covid_resnet::data::findings::synth::{write_chexpert_synth, write_mimic_synth};
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        images: 240,
        side: 32,
        seed: 8,
    };
    let (chexpert, mimic) = (dir.path().join("chexpert"), dir.path().join("mimic"));
    write_chexpert_synth(&chexpert, spec).unwrap();
    write_mimic_synth(&mimic, spec).unwrap();
    // CheXpert with uncertain labels left out (the default), MIMIC with them taken as
    // present (they are: the synthetic uncertain marks sit on drawn findings) and
    // Cardiomegaly's as absent.
    let (a, _) = train_findings(&chexpert, &dir.path().join("run-chexpert"), &[]);
    assert_eq!(a["uncertain"], "ignore");
    assert_drawn_learned(&a, "CheXpert, ignore");
    let (b, _) = train_findings(
        &mimic,
        &dir.path().join("run-mimic"),
        &["--uncertain", "ones,Cardiomegaly=zeros"],
    );
    assert_eq!(b["uncertain"], "ones,Cardiomegaly=zeros");
    assert_drawn_learned(&b, "MIMIC, ones");
    // The policies change what counts: under "ignore" the uncertain marks are left out of
    // the test figures, under "ones" and "zeros" every test image counts.
    let counted = |r: &serde_json::Value, label: &str| {
        r["metrics"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["label"] == label)
            .unwrap()["counted"]
            .as_u64()
            .unwrap()
    };
    let n = b["n"].as_u64().unwrap();
    assert_eq!(counted(&b, "Pleural Effusion"), n);
    assert_eq!(counted(&b, "Cardiomegaly"), n);
    assert!(counted(&a, "Pleural Effusion") < a["n"].as_u64().unwrap());
}
