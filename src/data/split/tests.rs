//! Layout detection, classes from the data, validation splits, leakage.
use super::*;

fn touch(dir: &Path, names: &[&str]) {
    for n in names {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
}

fn with_test(v: ValidChoice) -> DataOptions {
    DataOptions {
        valid: Some(v),
        ..DataOptions::default()
    }
}

#[test]
fn split_files_missing_files_and_leakage() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    touch(r, &["train/a.png", "train/b.png", "test/c.png"]);
    std::fs::write(
        r.join("train_COVIDx_v1.txt"),
        "p1 a.png normal\np2 b.png bacteria\np3 gone.png viral\n",
    )
    .unwrap();
    std::fs::write(r.join("train_extra.txt"), "p9 zz.png normal\n").unwrap();
    std::fs::write(r.join("test_COVIDx_v1.txt"), "p2 c.png COVID-19\n").unwrap();
    let ds = Dataset::open_with(r, &with_test(ValidChoice::Test)).unwrap();
    assert!(
        matches!(ds.layout, Layout::SplitFiles { ref train, .. } if train.ends_with("train_COVIDx_v1.txt"))
    );
    assert_eq!(ds.classes, PAPER_CLASSES.map(String::from));
    assert_eq!(ds.train.samples.len(), 2);
    assert_eq!(ds.train.missing, vec![r.join("train").join("gone.png")]);
    assert!(ds
        .train
        .check_complete("train")
        .unwrap_err()
        .to_string()
        .contains("gone.png"));
    assert_eq!(ds.leaked_patients(), vec!["p2".to_string()]);
    assert_eq!(ds.valid_source, ValidSource::Test);
}

#[test]
fn class_folders_with_their_own_classes_and_a_valid_folder() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    touch(
        r,
        &[
            "train/Normal/1.png",
            "train/COVID-19/2.jpeg",
            "train/Normal/notes.txt",
            "valid/normal/3.png",
            "test/covid/4.png",
        ],
    );
    let ds = Dataset::open(r).unwrap();
    assert_eq!(ds.layout, Layout::ClassFolders);
    assert_eq!(ds.classes, vec!["Normal".to_string(), "COVID-19".into()]);
    assert_eq!(ds.train.class_counts(2), vec![1, 1]);
    assert_eq!(ds.valid.class_counts(2), vec![1, 0]);
    assert_eq!(ds.valid_source, ValidSource::Own);
    // Labels of another scheme are classes too, alphabetically unless the user orders them.
    touch(r, &["train/Fungal/5.png"]);
    let ds = Dataset::open(r).unwrap();
    assert_eq!(
        ds.classes,
        vec!["COVID-19".to_string(), "Fungal".into(), "Normal".into()]
    );
    let e = Dataset::open(&r.join("nope")).unwrap_err().to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn a_valid_split_is_drawn_by_patient_with_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let mut train = String::new();
    for i in 0..40 {
        let name = format!("{i}.png");
        touch(&r.join("train"), &[&name]);
        // Two images per patient.
        train.push_str(&format!(
            "pat{} {name} {}\n",
            i / 2,
            if i % 3 == 0 { "positive" } else { "negative" }
        ));
    }
    touch(&r.join("test"), &["t.png"]);
    std::fs::write(r.join("train_x.txt"), train).unwrap();
    std::fs::write(r.join("test_x.txt"), "q t.png positive\n").unwrap();
    let opts = |p: f64, seed: u64| DataOptions {
        valid: Some(ValidChoice::Percent(p)),
        seed,
        ..DataOptions::default()
    };
    let a = Dataset::open_with(r, &opts(25.0, 1)).unwrap();
    assert_eq!(a.classes, vec!["negative".to_string(), "positive".into()]);
    assert_eq!(a.valid.patients().len(), 5, "25 % of 20 patients");
    assert_eq!(a.train.samples.len() + a.valid.samples.len(), 40);
    assert!(
        leaked_patients(&a.train, &a.valid).is_empty(),
        "no patient on both sides"
    );
    let b = Dataset::open_with(r, &opts(25.0, 1)).unwrap();
    assert_eq!(a.valid.patients(), b.valid.patients(), "seeded");
    let c = Dataset::open_with(r, &opts(25.0, 2)).unwrap();
    assert_ne!(a.valid.patients(), c.valid.patients());
    // Auto without a valid split of its own: 10 % drawn.
    let auto = Dataset::open(r).unwrap();
    assert_eq!(auto.valid.patients().len(), 2);
    assert!(matches!(auto.valid_source, ValidSource::Drawn { percent, .. } if percent == 10.0));
    // dataset.toml may fix the class order and the validation.
    std::fs::write(
        r.join("dataset.toml"),
        "classes = [\"positive\", \"negative\"]\nvalid = \"test\"\n",
    )
    .unwrap();
    let m = Dataset::open(r).unwrap();
    assert_eq!(m.classes, vec!["positive".to_string(), "negative".into()]);
    assert_eq!(m.valid_source, ValidSource::Test);
    std::fs::write(r.join("dataset.toml"), "clases = [\"x\"]\n").unwrap();
    let e = Dataset::open(r).unwrap_err().to_string();
    assert!(e.contains("dataset.toml") && e.contains("clases"), "{e}");
}

#[test]
fn kermany_layout_with_and_without_the_pneumonia_split() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    touch(
        r,
        &[
            "train/NORMAL/IM-0001-0001.jpeg",
            "train/NORMAL/NORMAL2-IM-0173-0001.jpeg",
            "train/PNEUMONIA/person1_bacteria_1.jpeg",
            "train/PNEUMONIA/person1_virus_2.jpeg",
            "val/NORMAL/IM-0002-0001.jpeg",
            "test/NORMAL/IM-0003-0001.jpeg",
            "test/PNEUMONIA/person9_virus_9.jpeg",
        ],
    );
    let ds = Dataset::open(r).unwrap();
    assert_eq!(
        ds.layout,
        Layout::Kermany {
            split_pneumonia: false
        }
    );
    assert_eq!(ds.classes, vec!["Normal".to_string(), "Pneumonia".into()]);
    assert_eq!(ds.valid_source, ValidSource::Own);
    assert_eq!(
        ds.train.patients().len(),
        3,
        "person1's two images are one patient"
    );
    let split = Dataset::open_with(
        r,
        &DataOptions {
            split_pneumonia: Some(true),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        split.classes,
        vec!["Normal".to_string(), "Bacterial".into(), "Viral".into()]
    );
    assert_eq!(split.train.class_counts(3), vec![2, 1, 1]);
}

#[test]
fn a_csv_with_its_own_column_names() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    touch(r, &["img/a.png", "img/b.png", "img/c.png", "img/d.png"]);
    std::fs::write(
        r.join("labels.csv"),
        "Image,Finding,Patient,where\nimg/a.png,pneumonia,1,train\nimg/b.png,normal,2,train\nimg/c.png,normal,3,val\nimg/d.png,pneumonia,4,test\n",
    )
    .unwrap();
    std::fs::write(
        r.join("dataset.toml"),
        "[csv]\npath = \"Image\"\nlabel = \"Finding\"\npatient = \"Patient\"\nsplit = \"where\"\n",
    )
    .unwrap();
    let ds = Dataset::open(r).unwrap();
    assert!(matches!(ds.layout, Layout::Csv { .. }));
    assert_eq!(ds.classes, vec!["Normal".to_string(), "pneumonia".into()]);
    assert_eq!(
        (
            ds.train.samples.len(),
            ds.valid.samples.len(),
            ds.test.samples.len()
        ),
        (2, 1, 1)
    );
    std::fs::write(
        r.join("labels.csv"),
        "Image,Finding,Patient,where\n../x.png,normal,1,train\n",
    )
    .unwrap();
    let e = Dataset::open(r).unwrap_err().to_string();
    assert!(e.contains("labels.csv:2") && e.contains("leaves"), "{e}");
}
