//! Ensembles: `model ensemble` joins model files into one, whose probabilities are the mean
//! of the members' `predict` outputs, with each image's disagreement; `eval` reports
//! accuracy against disagreement; Grad-CAM is the mean of the members' maps; incompatible
//! members are refused by name.
use crate::common::bin;
use crate::training::write_synthetic_images;
use candle_core::Device;
use covid_resnet::data::gray::GrayImage;
use covid_resnet::infer::gradcam::grad_cam_coarse;
use covid_resnet::infer::Predictor;
use covid_resnet::model::io::model_file::{save_model, ModelMeta};
use covid_resnet::model::ops::conv::PackedWeights;
use covid_resnet::model::{Backbone, Classifier};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const CLASSES: [&str; 4] = ["Normal", "Bacterial", "Viral", "COVID-19"];

pub fn member(dir: &Path, name: &str, seed: u64, classes: &[&str]) -> PathBuf {
    let p = dir.join(name);
    let m = Classifier::new(Backbone::Resnet18, classes.len(), seed, &Device::Cpu).unwrap();
    let meta = ModelMeta::new(
        Backbone::Resnet18,
        64,
        classes.iter().map(|c| c.to_string()).collect(),
    );
    save_model(&p, &m, &meta).unwrap();
    p
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(bin())
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

fn predict_json(model: &Path, files: &[PathBuf]) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = vec!["predict".as_ref(), "--json".as_ref()];
    args.push("--model".as_ref());
    args.push(model.as_os_str());
    args.extend(files.iter().map(|f| f.as_os_str()));
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn probs(v: &serde_json::Value, i: usize) -> Vec<f64> {
    CLASSES
        .iter()
        .map(|c| v["predictions"][i]["probabilities"][c].as_f64().unwrap())
        .collect()
}

#[test]
fn an_ensemble_predicts_the_mean_of_its_members_and_says_how_much_they_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, c) = (
        member(d, "a.safetensors", 1, &CLASSES),
        member(d, "b.safetensors", 2, &CLASSES),
        member(d, "c.safetensors", 3, &CLASSES),
    );
    let e = d.join("ensemble.safetensors");
    let out = run(&[
        "model".as_ref(),
        "ensemble".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        c.as_os_str(),
        "--out".as_ref(),
        e.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("an ensemble of 3"));

    let files: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = d.join(format!("x{i}.png"));
            image::GrayImage::from_fn(70, 60, |x, y| {
                image::Luma([((x * (i + 2) + y * 5) % 256) as u8])
            })
            .save(&p)
            .unwrap();
            p
        })
        .collect();
    let pa = predict_json(&a, &files);
    let pb = predict_json(&b, &files);
    let pc = predict_json(&c, &files);
    let pe = predict_json(&e, &files);
    for i in 0..files.len() {
        let (x, y, z, m) = (probs(&pa, i), probs(&pb, i), probs(&pc, i), probs(&pe, i));
        for k in 0..4 {
            let mean = (x[k] + y[k] + z[k]) / 3.0;
            assert!(
                (m[k] - mean).abs() < 2e-6,
                "image {i} class {k}: ensemble {} mean of members {mean}",
                m[k]
            );
        }
        // Disagreement from the members' own outputs: the population standard deviation
        // of their probabilities for the ensemble's class, and who agrees with it.
        let pred = CLASSES
            .iter()
            .position(|c| pe["predictions"][i]["predicted"] == *c)
            .unwrap();
        let ps = [x[pred], y[pred], z[pred]];
        let mu = ps.iter().sum::<f64>() / 3.0;
        let sd = (ps.iter().map(|p| (p - mu).powi(2)).sum::<f64>() / 3.0).sqrt();
        let dis = &pe["predictions"][i]["disagreement"];
        assert!(
            (dis["spread"].as_f64().unwrap() - sd).abs() < 2e-6,
            "{dis} against {sd}"
        );
        let argmax = |v: &[f64]| {
            (0..v.len())
                .max_by(|&p, &q| v[p].total_cmp(&v[q]).then(q.cmp(&p)))
                .unwrap()
        };
        let agree = [&x, &y, &z].iter().filter(|v| argmax(v) == pred).count();
        assert_eq!(dis["agree"].as_u64().unwrap() as usize, agree, "{dis}");
        assert_eq!(dis["members"], 3);
        // One network: no disagreement field.
        assert!(pa["predictions"][i].get("disagreement").is_none());
    }

    // Grad-CAM of the ensemble is the mean of the members' maps for the same class.
    let ens = Predictor::load(&e, &Device::Cpu).unwrap();
    assert!(ens.is_ensemble() && ens.networks().len() == 3);
    let img: GrayImage = covid_resnet::data::decode::decode_file(&files[0]).unwrap();
    let an = ens.analyze(&img, false, Some(2)).unwrap();
    let x = ens.preprocess().tensor(&[&img], &Device::Cpu).unwrap();
    let maps: Vec<Vec<f32>> = ens
        .networks()
        .iter()
        .map(|n| {
            grad_cam_coarse(n, &PackedWeights::new(), &x, Some(2))
                .unwrap()
                .map
        })
        .collect();
    for (j, v) in an.cam.map.iter().enumerate() {
        let mean = maps.iter().map(|m| m[j]).sum::<f32>() / 3.0;
        assert!((v - mean).abs() < 1e-6, "cell {j}: {v} against {mean}");
    }
    // The Viewer's probabilities are predict's.
    let m = probs(&pe, 0);
    for (v, w) in an.probs.iter().zip(&m) {
        assert!((*v as f64 - w).abs() < 1e-6, "{v} against {w}");
    }
    assert!(an.disagreement.is_some());
}

#[test]
fn an_ensemble_evaluates_with_its_disagreement_and_refuses_unlike_members() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic_images(&data, 4, 12);
    let two = ["Normal", "COVID-19"];
    let (a, b) = (
        member(d, "a.safetensors", 1, &two),
        member(d, "b.safetensors", 2, &two),
    );
    let e = d.join("e.safetensors");
    let ok = run(&[
        "model".as_ref(),
        "ensemble".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        "--out".as_ref(),
        e.as_os_str(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out_dir = d.join("eval");
    let ev = run(&[
        "eval".as_ref(),
        "--model".as_ref(),
        e.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--bootstrap".as_ref(),
        "50".as_ref(),
    ]);
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("eval-test.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    assert!(cases.iter().all(|c| c["disagreement"]["members"] == 2));
    let summary = &report["disagreement"];
    assert_eq!(summary["top_n"], 2, "{summary}");
    assert_eq!(summary["rest_n"], 10);
    let md = std::fs::read_to_string(out_dir.join("eval-test.md")).unwrap();
    assert!(
        md.contains("Disagreement among the ensemble's networks"),
        "{md}"
    );

    // `eval --compare` of a member against the ensemble: the paired figures of the two
    // reports (the accuracies each eval gives, and the images only one got right).
    let cmp_dir = d.join("cmp");
    let r = run(&[
        "eval".as_ref(),
        "--compare".as_ref(),
        a.as_os_str(),
        e.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--bootstrap".as_ref(),
        "50".as_ref(),
        "--out".as_ref(),
        cmp_dir.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cmp_dir.join("compare-test.json")).unwrap()).unwrap();
    assert_eq!(c["n"], 12);
    let ens_acc = report["metrics"]["accuracy"]["value"].as_f64().unwrap();
    assert!(
        (c["accuracy"][1].as_f64().unwrap() - ens_acc).abs() < 1e-12,
        "{c}"
    );
    let right = |r: &serde_json::Value| -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = r["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["file"].as_str().unwrap().to_string(),
                    c["actual"] == c["predicted"],
                )
            })
            .collect();
        v.sort();
        v
    };
    let a_dir = d.join("eval-a");
    let r = run(&[
        "eval".as_ref(),
        "--model".as_ref(),
        a.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--bootstrap".as_ref(),
        "10".as_ref(),
        "--out".as_ref(),
        a_dir.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let ra: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a_dir.join("eval-test.json")).unwrap()).unwrap();
    let (xa, xe) = (right(&ra), right(&report));
    let only_a = xa.iter().zip(&xe).filter(|(p, q)| p.1 && !q.1).count();
    let only_e = xa.iter().zip(&xe).filter(|(p, q)| !p.1 && q.1).count();
    assert_eq!(
        (
            c["only_a"].as_u64().unwrap() as usize,
            c["only_b"].as_u64().unwrap() as usize
        ),
        (only_a, only_e)
    );

    // A temperature fitted on held-out images applies to the mean: p_T is proportional to
    // p^(1/T) of the ensemble's plain probabilities; an operating point decides on it.
    let cal = d.join("cal.safetensors");
    let r = run(&[
        "model".as_ref(),
        "calibrate".as_ref(),
        "--model".as_ref(),
        e.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--valid-pct".as_ref(),
        "50".as_ref(),
        "--out".as_ref(),
        cal.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t = covid_resnet::model::io::model_file::read_meta(&cal)
        .unwrap()
        .temperature
        .unwrap()
        .value;
    let img = data.join("test").join("test_0.png");
    let prob = |m: &Path| -> Vec<f64> {
        let v = predict_json(m, std::slice::from_ref(&img));
        ["Normal", "COVID-19"]
            .iter()
            .map(|c| v["predictions"][0]["probabilities"][c].as_f64().unwrap())
            .collect()
    };
    let (plain, tempered) = (prob(&e), prob(&cal));
    let pw: Vec<f64> = plain.iter().map(|p| p.powf(1.0 / t)).collect();
    let z: f64 = pw.iter().sum();
    for (got, want) in tempered.iter().zip(pw.iter().map(|v| v / z)) {
        assert!(
            (got - want).abs() < 1e-5,
            "T {t}: {tempered:?} against {want}"
        );
    }
    let thr = d.join("thr.safetensors");
    let r = run(&[
        "model".as_ref(),
        "threshold".as_ref(),
        "--model".as_ref(),
        e.as_os_str(),
        "COVID-19=0.0".as_ref(),
        "--out".as_ref(),
        thr.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v = predict_json(&thr, std::slice::from_ref(&img));
    assert_eq!(v["predictions"][0]["predicted"], "COVID-19");

    // Different classes: refused, naming the file and what differs; nothing written.
    let other = member(d, "other.safetensors", 3, &CLASSES);
    let bad = d.join("bad.safetensors");
    let r = run(&[
        "model".as_ref(),
        "ensemble".as_ref(),
        a.as_os_str(),
        other.as_os_str(),
        "--out".as_ref(),
        bad.as_os_str(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("other.safetensors") && err.contains("classes"),
        "{err}"
    );
    assert!(!bad.exists());
    // An ensemble as a member: refused by name.
    let r = run(&[
        "model".as_ref(),
        "ensemble".as_ref(),
        e.as_os_str(),
        a.as_os_str(),
        "--out".as_ref(),
        bad.as_os_str(),
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("already an ensemble"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // `model f16` halves an ensemble too, and it still loads.
    let half = d.join("half.safetensors");
    let r = run(&[
        "model".as_ref(),
        "f16".as_ref(),
        e.as_os_str(),
        half.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let p = Predictor::load(&half, &Device::Cpu).unwrap();
    assert_eq!(p.networks().len(), 2);
}

#[test]
fn train_members_shares_one_validation_split_leaves_the_test_split_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    // No dataset.toml: 10 % of the training patients are drawn for validation.
    write_synthetic_images(&data, 40, 8);
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "name = \"t\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-3\"\nepochs = 1\n",
    )
    .unwrap();
    let train = || {
        Command::new(bin())
            .args(["--device", "cpu", "train", "--backbone", "resnet18"])
            .args([
                "--batch-size",
                "8",
                "--seed",
                "5",
                "--members",
                "2",
                "--plan",
            ])
            .arg(&plan)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap()
    };
    let out = train();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let meta = |i: usize| {
        covid_resnet::model::io::model_file::read_meta(
            &run.join(format!("member-{i}/model.safetensors")),
        )
        .unwrap()
    };
    let (m1, m2) = (meta(1), meta(2));
    let t = |m: &ModelMeta| m.training.clone().unwrap();
    assert_eq!(
        (t(&m1)["seed"].clone(), t(&m2)["seed"].clone()),
        (5.into(), 6.into())
    );
    assert_eq!(t(&m1)["split_seed"], 5);
    assert_eq!(t(&m2)["split_seed"], 5);
    // Members summarise their validation split, the same images for both; no test figures.
    for m in [&m1, &m2] {
        assert!(t(m).get("test").is_none(), "{}", t(m));
        assert_eq!(t(m)["valid"]["split"], "valid");
    }
    assert_eq!(t(&m1)["valid"]["n"], t(&m2)["valid"]["n"]);
    let member_report = |i: usize| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(format!("member-{i}/report.json"))).unwrap())
            .unwrap()
    };
    let files = |r: serde_json::Value| -> Vec<String> {
        let mut f: Vec<String> = r["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["file"].as_str().unwrap().to_string())
            .collect();
        f.sort();
        f
    };
    let (v1, v2) = (files(member_report(1)), files(member_report(2)));
    assert_eq!(v1, v2, "one validation split");
    assert!(v1.iter().all(|f| f.contains("train_")), "{v1:?}");
    // `eval --split valid` of a member draws the split its run held out (not one seeded by
    // the bootstrap's seed): the same images as its own validation report.
    let ev_dir = dir.path().join("ev");
    let ev = Command::new(bin())
        .args([
            "--device",
            "cpu",
            "eval",
            "--split",
            "valid",
            "--bootstrap",
            "10",
        ])
        .arg("--model")
        .arg(run.join("member-2/model.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&ev_dir)
        .output()
        .unwrap();
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let evr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ev_dir.join("eval-valid.json")).unwrap()).unwrap();
    assert_eq!(files(evr.clone()), v1);
    assert_eq!(evr["info"]["validation split seed"], "5");
    // Models that held out different images are not compared on "the" validation split.
    let other = member(dir.path(), "other.safetensors", 9, &["Normal", "COVID-19"]);
    let mut other_meta = covid_resnet::model::io::model_file::read_meta(&other).unwrap();
    other_meta.training = Some(serde_json::json!({"seed": 7}));
    covid_resnet::model::io::model_file::rewrite_meta(&other, &other, |m| *m = other_meta).unwrap();
    let cmp = Command::new(bin())
        .args(["--device", "cpu", "eval", "--split", "valid", "--compare"])
        .arg(run.join("member-1/model.safetensors"))
        .arg(&other)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!cmp.status.success());
    let e = String::from_utf8_lossy(&cmp.stderr);
    assert!(e.contains("held out different validation images"), "{e}");
    // The ensemble, and its one test evaluation.
    let ens = Predictor::load(&run.join("ensemble.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ens.networks().len(), 2);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["cases"].as_array().unwrap().len(), 8);
    assert!(report["info"]["selection"]
        .as_str()
        .unwrap()
        .contains("one evaluation"));

    // Again: finished members are kept; a member whose model file is gone resumes from its
    // checkpoint (which finished: nothing left to train) and the ensemble is written again.
    std::fs::remove_file(run.join("member-2/model.safetensors")).unwrap();
    let out = train();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("member 1 of 2 (seed 5): finished before, kept (1 epochs)"),
        "{err}"
    );
    assert!(run.join("member-2/model.safetensors").is_file());
    assert_eq!(meta(2).training.unwrap()["seed"], 6);
}
