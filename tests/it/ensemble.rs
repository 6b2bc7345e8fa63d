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
use covid_resnet::model::{Backbone, Classifier};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLASSES: [&str; 4] = ["Normal", "Bacterial", "Viral", "COVID-19"];

fn member(dir: &Path, name: &str, seed: u64, classes: &[&str]) -> PathBuf {
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
        .map(|n| grad_cam_coarse(n, &x, Some(2)).unwrap().map)
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

/// The review of an ensemble's report: the gallery orders by disagreement and keeps only the
/// disputed images when asked, and the chart of accuracy against disagreement is shown.
#[test]
fn the_review_sorts_and_filters_by_disagreement_and_charts_it() {
    use crate::app_viewer::{harness, FixedDir};
    use crate::common::step_until;
    use covid_resnet::app::viewer::Mode;
    use covid_resnet::eval::report::{Case, EvalReport};
    use covid_resnet::infer::disagreement::Disagreement;
    use egui_kittest::kittest::Queryable;
    let dir = FixedDir::new("covid-resnet-ensemble-review");
    let d = dir.0.as_path();
    let model = member(d, "a.safetensors", 1, &CLASSES);
    let mut cases = Vec::new();
    for i in 0..40usize {
        let f = d.join(format!("case_{i:02}.png"));
        image::GrayImage::from_fn(48, 48, |x, y| {
            image::Luma([((x + y + i as u32) % 256) as u8])
        })
        .save(&f)
        .unwrap();
        // The first ten are Normal called COVID-19; spread rises with i, loss falls.
        let (actual, predicted) = if i < 10 { (0, 3) } else { (i % 4, i % 4) };
        let mut probs = vec![0.1f32; 4];
        probs[predicted] = 0.7;
        cases.push(Case {
            file: f.display().to_string(),
            file_bytes: None,
            actual,
            predicted,
            probs,
            loss: 5.0 - 0.1 * i as f64,
            source: None,
            patient: None,
            disagreement: Some(Disagreement {
                spread: 0.01 * i as f32,
                agree: if i % 3 == 0 { 3 } else { 2 },
                members: 3,
            }),
        });
    }
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let report = EvalReport::from_cases(classes, cases, 50, 0);
    assert!(report.disagreement.is_some());
    let json = report.write_all(&d.join("eval"), "eval-test").unwrap()[0].clone();
    let mut h = harness(&model, d);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    h.state_mut().viewer.review.open_report(&json).unwrap();
    h.state_mut().viewer.mode = Mode::Review;
    h.run_steps(3);
    h.get_by_label("actual Normal predicted COVID-19").click();
    h.run_steps(3);
    let listed = |h: &egui_kittest::Harness<'static, covid_resnet::app::App>| -> Vec<String> {
        h.state()
            .viewer
            .review
            .gallery()
            .iter()
            .map(|c| {
                std::path::Path::new(&c.file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    // Highest loss first: case_00 first.
    assert_eq!(listed(&h)[0], "case_00.png");
    h.get_by_label("most disagreement first").click();
    h.run_steps(2);
    assert_eq!(listed(&h)[0], "case_09.png", "{:?}", listed(&h));
    h.get_by_label("only images the networks do not all agree on")
        .click();
    h.run_steps(2);
    // Cases 0, 3, 6 and 9 have every network agreeing: gone.
    assert_eq!(
        listed(&h),
        [
            "case_08.png",
            "case_07.png",
            "case_05.png",
            "case_04.png",
            "case_02.png",
            "case_01.png"
        ]
    );
    assert!(h
        .query_all_by_label_contains("Accuracy against the networks' disagreement")
        .next()
        .is_some());
    assert!(h
        .query_all_by_label_contains("2 of 3 networks agree")
        .next()
        .is_some());
    step_until(&mut h, 30, "the gallery thumbnails", |a| !a.viewer.busy());
    h.run_steps(3);
    h.snapshot("viewer_review_ensemble");
    // The chart, scrolled into view.
    h.query_all_by_label_contains("Accuracy against the networks' disagreement")
        .next()
        .unwrap()
        .scroll_to_me();
    h.run_steps(4);
    h.snapshot("viewer_review_ensemble_chart");
}

/// The Training tab trains an ensemble: each network's run in its own folder, the curves of
/// the networks done beside the current one, the ensemble file at the end.
#[test]
fn the_training_tab_trains_several_networks_as_one_and_shows_their_curves() {
    use crate::app_viewer::FixedDir;
    use crate::common::step_until;
    use covid_resnet::app::training::plan_editor::PlanRow;
    use covid_resnet::app::training::setup::TrainingSettings;
    use covid_resnet::app::training::state::RunState;
    use covid_resnet::app::Settings;
    use covid_resnet::train::schedule::Trainable;
    use egui_kittest::kittest::Queryable;
    let dir = FixedDir::new("covid-resnet-ensemble-training");
    let d = dir.0.as_path();
    let data = d.join("data");
    write_synthetic_images(&data, 40, 8);
    let run = d.join("run");
    let s = Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: run.display().to_string(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            batch_size: 8,
            members: 3,
            plan_name: "tiny".into(),
            plan_rows: vec![PlanRow {
                size: "32".into(),
                train: Trainable::All,
                lr: "1e-3".into(),
                epochs: "2".into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = crate::app_window::harness(s, (1400.0, 1000.0));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    assert!(crate::app_window::shown(
        &h,
        "an ensemble of 3 (seeds 42..=44)"
    ));
    h.get_by_label("Start").click();
    step_until(&mut h, 600, "the ensemble", |a| {
        a.training.run.state == RunState::Idle && a.training.run.finished_model.is_some()
    });
    let r = &h.state().training.run;
    assert_eq!(
        r.finished_model.as_deref(),
        Some(run.join("ensemble.safetensors").as_path())
    );
    let names: Vec<&str> = r.members_done.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["member 1", "member 2"]);
    assert!(r.members_done.iter().all(|(_, e)| e.len() == 2));
    assert_eq!(r.epochs.len(), 2, "the last member's own epochs");
    for i in 1..=3 {
        assert!(run.join(format!("member-{i}/model.safetensors")).is_file());
    }
    assert!(run.join("report.json").is_file());
    h.run_steps(3);
    // The epochs table shows each epoch's seconds, which vary from run to run: a few
    // hundred pixels of digits may differ, nothing else.
    h.snapshot_options(
        "training_members",
        &egui_kittest::SnapshotOptions::new().max_failed_pixels(600),
    );
}
