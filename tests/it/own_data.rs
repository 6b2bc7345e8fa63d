//! A researcher's own data set: COVIDx CXR-4-style binary split files, Kermany's folder tree
//! and a CSV, each trained, evaluated and opened in the Viewer end to end; the validation
//! split drawn by patient; class weights; a model refused on a data set with other classes;
//! the Training tab's class list and warnings.
use crate::common::{bin, step_until};
use covid_resnet::app::training::TrainingSettings;
use covid_resnet::app::viewer::ImageState;
use covid_resnet::app::{App, Settings};
use covid_resnet::eval::report::EvalReport;
use covid_resnet::model::Backbone;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use image::{GrayImage, Luma};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A 40 px image of class `k` (brightness and stripe direction tell the classes apart).
fn image_of(k: usize, i: usize) -> GrayImage {
    GrayImage::from_fn(40, 40, |x, y| {
        let noise = ((x * 7 + y * 13 + i as u32 * 31) % 17) as i32 - 8;
        let stripe = if k.is_multiple_of(2) {
            (y / 3) % 2
        } else {
            (x / 3) % 2
        };
        Luma([(40 + 60 * k as i32 + 40 * stripe as i32 + noise).clamp(0, 255) as u8])
    })
}

fn save(img: &GrayImage, p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    img.save(p).unwrap();
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny plan file: one head epoch and one whole-network epoch at 32 px.
fn tiny_plan(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"tiny\"\n{extra}\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"head\"\n\
             lr = \"2e-3\"\nepochs = 1\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-3\"\nepochs = 1\n"
        ),
    )
    .unwrap();
    p
}

/// `train` with a tiny ResNet-18 on `data` (`extra`: data-set options, then `train_only`
/// after them), then `eval` of its model on the test split with the same data-set options;
/// returns the run folder, the training log and the evaluation report.
fn train_and_eval(
    dir: &Path,
    data: &Path,
    extra: &[&str],
    train_only: &[&str],
) -> (PathBuf, String, EvalReport) {
    let run = dir.join("run");
    let plan = tiny_plan(dir, "");
    let o = Command::new(bin())
        .args([
            "--device",
            "cpu",
            "train",
            "--backbone",
            "resnet18",
            "--batch-size",
            "4",
        ])
        .args(["--no-disk-cache", "--plan"])
        .arg(&plan)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&run)
        .args(extra)
        .args(train_only)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let log = err(&o);
    let o = Command::new(bin())
        .args(["--device", "cpu", "eval", "--bootstrap", "50", "--model"])
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let report = EvalReport::load(&dir.join("eval-test.json")).unwrap();
    (run, log, report)
}

/// The Viewer with `model` loaded and `file` dropped on it: the bars' class names.
fn viewer_classes(model: &Path, file: &Path) -> Vec<String> {
    let mut h = crate::app_viewer::harness(model, Path::new(""));
    step_until(&mut h, 200, "the model", |a| a.viewer.model.is_some());
    crate::app_viewer::drop_files(&mut h, &[file.to_path_buf()]);
    step_until(&mut h, 400, "the prediction", |a| {
        a.viewer
            .images
            .iter()
            .all(|i| matches!(&i.state, ImageState::Ready(_)) && i.analysis().is_some())
    });
    let classes = h.state().viewer.class_names();
    for c in &classes {
        assert!(
            h.query_all_by_label_contains(c).next().is_some(),
            "no bar for {c}"
        );
    }
    classes
}

#[test]
fn cxr4_style_binary_split_files_train_evaluate_and_open_in_the_viewer() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("cxr4");
    // COVIDx CXR-4: train.txt / val.txt / test.txt, four columns, positive / negative.
    for (split, dir, n) in [
        ("train", "train", 24),
        ("val", "val", 8),
        ("test", "test", 8),
    ] {
        let mut lines = String::new();
        for i in 0..n {
            let (k, label) = if i % 2 == 0 {
                (0, "negative")
            } else {
                (2, "positive")
            };
            let name = format!("{split}{i}.png");
            save(&image_of(k, i), &data.join(dir).join(&name));
            lines.push_str(&format!("{split}-p{i} {name} {label} rsna\n"));
        }
        std::fs::write(data.join(format!("{split}.txt")), lines).unwrap();
    }
    let (run, log, report) = train_and_eval(d.path(), &data, &[], &[]);
    assert!(
        log.contains(
            "classes: negative, positive; validation on the data set's own validation split"
        ),
        "{log}"
    );
    assert_eq!(report.classes, vec!["negative", "positive"]);
    assert_eq!(report.metrics.n, 8);
    assert!(!report.validated_on_test);
    let model = run.join("model.safetensors");
    assert_eq!(
        viewer_classes(&model, &data.join("test").join("test1.png")),
        vec!["negative", "positive"]
    );
    // predict names the model's classes too.
    let o = Command::new(bin())
        .args(["--device", "cpu", "predict", "--json", "--model"])
        .arg(&model)
        .arg(data.join("test").join("test0.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let probs = doc["predictions"][0]["probabilities"].as_object().unwrap();
    assert_eq!(
        probs.keys().collect::<Vec<_>>(),
        vec!["negative", "positive"],
        "{doc}"
    );
}

#[test]
fn a_kermany_tree_with_pneumonia_split_by_file_name() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("chest_xray");
    let mut n = 0;
    for (split, per) in [("train", 8), ("test", 3)] {
        for i in 0..per {
            n += 1;
            save(
                &image_of(0, n),
                &data
                    .join(split)
                    .join("NORMAL")
                    .join(format!("IM-{n:04}-0001.jpeg")),
            );
            save(
                &image_of(1, n),
                &data
                    .join(split)
                    .join("PNEUMONIA")
                    .join(format!("person{n}_bacteria_{i}.jpeg")),
            );
            save(
                &image_of(3, n),
                &data
                    .join(split)
                    .join("PNEUMONIA")
                    .join(format!("person{}_virus_{i}.jpeg", n + 500)),
            );
        }
    }
    // Without the option: Normal and Pneumonia.
    let o = Command::new(bin())
        .args(["data", "check", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["classes"], serde_json::json!(["Normal", "Pneumonia"]));
    assert!(r["layout"].as_str().unwrap().contains("Kermany"), "{r}");
    // With it: the paper's three classes, in its order.
    let (run, log, report) = train_and_eval(d.path(), &data, &["--split-pneumonia"], &[]);
    assert!(log.contains("classes: Normal, Bacterial, Viral;"), "{log}");
    assert_eq!(report.classes, vec!["Normal", "Bacterial", "Viral"]);
    assert_eq!(report.metrics.n, 9);
    let viral = data.join("test/PNEUMONIA/person509_virus_0.jpeg");
    assert!(viral.is_file());
    assert_eq!(
        viewer_classes(&run.join("model.safetensors"), &viral),
        vec!["Normal", "Bacterial", "Viral"]
    );
}

/// A hospital's CSV: its own column names in `dataset.toml`, any labels, a split column.
fn write_csv_set(data: &Path) {
    let mut csv = String::from("Image,Finding,Patient,where\n");
    let labels = ["effusion", "atelectasis", "clear"];
    for i in 0..36 {
        let k = i % 3;
        let split = match i {
            0..=23 => "train",
            24..=29 => "validation",
            _ => "test",
        };
        let rel = format!("images/{i:03}.png");
        save(&image_of(k, i), &data.join(&rel));
        csv.push_str(&format!("{rel},{},P{:02},{split}\n", labels[k], i / 2));
    }
    std::fs::write(data.join("labels.csv"), csv).unwrap();
    std::fs::write(
        data.join("dataset.toml"),
        "classes = [\"clear\", \"atelectasis\", \"effusion\"]\n\
         [csv]\npath = \"Image\"\nlabel = \"Finding\"\npatient = \"Patient\"\nsplit = \"where\"\n",
    )
    .unwrap();
}

#[test]
fn a_csv_data_set_with_its_own_columns_and_class_order() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("hospital");
    write_csv_set(&data);
    let (run, log, report) = train_and_eval(d.path(), &data, &[], &["--class-weights", "auto"]);
    assert!(
        log.contains("classes: clear, atelectasis, effusion; validation on the data set's own"),
        "{log}"
    );
    assert_eq!(report.classes, vec!["clear", "atelectasis", "effusion"]);
    assert_eq!(report.metrics.n, 6);
    let meta =
        covid_resnet::model::io::model_file::read_meta(&run.join("model.safetensors")).unwrap();
    let t = meta.training.unwrap();
    assert_eq!(t["class_weights"], "auto");
    assert_eq!(
        viewer_classes(&run.join("model.safetensors"), &data.join("images/031.png")),
        vec!["clear", "atelectasis", "effusion"]
    );
}

#[test]
fn a_model_is_refused_on_a_data_set_with_other_classes_naming_both() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("hospital");
    write_csv_set(&data);
    // A model of the paper's four classes.
    let model = crate::viewer_infer::write_model(d.path(), 32);
    let o = Command::new(bin())
        .args(["--device", "cpu", "eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains(
            "the model's classes (Normal, Bacterial, Viral, COVID-19) differ from the data \
             set's (clear, atelectasis, effusion)"
        ),
        "{}",
        err(&o)
    );
}

#[test]
fn a_drawn_validation_split_keeps_patients_apart_and_valid_test_says_so() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("cls");
    // Class folders without a validation folder.
    for split in ["train", "test"] {
        for i in 0..(if split == "train" { 40 } else { 6 }) {
            let k = i % 2;
            let class = ["clear", "opacity"][k];
            save(
                &image_of(k * 2, i),
                &data.join(split).join(class).join(format!("{split}{i}.png")),
            );
        }
    }
    // Each image is its own patient in class folders; 25 % of them are drawn, seeded.
    let open = |seed: u64| {
        covid_resnet::data::split::Dataset::open_with(
            &data,
            &covid_resnet::data::split::DataOptions {
                valid: Some(covid_resnet::data::split::ValidChoice::Percent(25.0)),
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let ds = open(7);
    assert_eq!(ds.valid.samples.len(), 10);
    assert_eq!(ds.train.samples.len(), 30);
    assert!(
        ds.leaked_patients().is_empty(),
        "{:?}",
        ds.leaked_patients()
    );
    assert_eq!(open(7).valid.patients(), ds.valid.patients());
    assert_ne!(open(8).valid.patients(), ds.valid.patients());
    // --valid test: the paper's way, and the report's first line says so.
    let (run, log, _) = train_and_eval(d.path(), &data, &["--valid", "test"], &[]);
    assert!(log.contains("validation on the test split"), "{log}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.lines()
            .next()
            .unwrap()
            .contains("validated on the test split: not an independent test"),
        "{md}"
    );
    // eval of that model on the test split says so too.
    let md = std::fs::read_to_string(d.path().join("eval-test.md")).unwrap();
    assert!(
        md.lines()
            .next()
            .unwrap()
            .contains("validated on the test split"),
        "{md}"
    );
}

#[test]
fn the_training_tab_lists_any_number_of_classes_and_warns() {
    // Fixed paths: the snapshot shows them.
    let data = std::env::temp_dir().join("covid-resnet-own-data-five");
    let _ = std::fs::remove_dir_all(&data);
    let names = ["alpha", "beta", "gamma", "delta", "epsilon"];
    for (k, c) in names.iter().enumerate() {
        let n = if k == 4 { 3 } else { 12 };
        for i in 0..n {
            save(
                &image_of(k % 4, i),
                &data.join("train").join(c).join(format!("{c}{i}.png")),
            );
        }
        save(
            &image_of(k % 4, 99),
            &data.join("valid").join(c).join(format!("v{c}.png")),
        );
        // The same file name (so the same patient) in train and test: a leak.
        save(
            &image_of(k % 4, 98),
            &data.join("test").join(c).join(format!("{c}0.png")),
        );
    }
    let s = Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: std::env::temp_dir()
                .join("covid-resnet-own-data-run")
                .display()
                .to_string(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s));
    step_until(&mut h, 100, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.run_steps(2);
    let shown = |t: &str| h.query_all_by_label_contains(t).next().is_some();
    assert!(shown("5 classes"));
    assert!(shown("validation: the data set's own validation split"));
    for c in names {
        assert!(shown(c), "{c} is not listed");
    }
    assert!(shown("train 12") && shown("train 3") && shown("valid 1") && shown("test 1"));
    assert!(shown("class epsilon has only 3 training image(s)"));
    assert!(shown("patient(s) are in more than one split"));
    h.get_by_label_contains("Classes, validation and imbalance")
        .click();
    h.run_steps(3);
    h.snapshot("training_tab_own_data");
}
