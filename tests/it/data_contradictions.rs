//! Data sets that contradict themselves or point elsewhere, each refused or reported with
//! the file, the line or the key named: a CSV listing an image twice or with two labels, the
//! same image in two splits (by path, and as a copy under another name), a `dataset.toml`
//! whose CSV lies outside the data folder, unknown keys, a bad `valid`, and a Kermany name
//! that says both bacteria and virus.
use crate::common::bin;
use image::{GrayImage, Luma};
use std::path::Path;
use std::process::{Command, Output};

fn png(p: &Path, shade: u8) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    GrayImage::from_fn(16, 16, |x, y| Luma([shade.wrapping_add((x * 3 + y) as u8)]))
        .save(p)
        .unwrap();
}

/// A CSV data set: images a.png .. f.png (distinct), the rows given.
fn csv_set(dir: &Path, rows: &str) {
    for (i, n) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        png(&dir.join(format!("img/{n}.png")), 20 * i as u8);
    }
    std::fs::write(
        dir.join("list.csv"),
        format!("path,label,patient_id,split\n{rows}"),
    )
    .unwrap();
}

fn check(data: &Path) -> Output {
    Command::new(bin())
        .args(["data", "check", "--data"])
        .arg(data)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const BASE: &str = "img/a.png,Normal,p1,train\nimg/b.png,COVID-19,p2,train\n\
                    img/c.png,Normal,p3,valid\nimg/d.png,COVID-19,p4,test\n";

#[test]
fn a_csv_that_contradicts_itself_is_refused_naming_both_lines() {
    let d = tempfile::tempdir().unwrap();
    // The same path twice in train with two labels (lines 2 and 6).
    csv_set(d.path(), &format!("{BASE}./img/a.png,COVID-19,p1,train\n"));
    let o = check(d.path());
    assert!(!o.status.success());
    let e = text(&o);
    assert!(
        e.contains("list.csv:6")
            && e.contains("labelled \"COVID-19\" here but \"Normal\" on line 2"),
        "{e}"
    );
    // An exact duplicate row.
    csv_set(d.path(), &format!("{BASE}img/b.png,COVID-19,p2,train\n"));
    let e = text(&check(d.path()));
    assert!(
        e.contains("list.csv:6") && e.contains("listed again (first on line 3)"),
        "{e}"
    );
    // Two labels in two splits: one image, one label.
    csv_set(d.path(), &format!("{BASE}img/a.png,COVID-19,p9,test\n"));
    let e = text(&check(d.path()));
    assert!(e.contains("list.csv:6") && e.contains("on line 2"), "{e}");
}

#[test]
fn the_same_image_in_two_splits_is_reported_as_leakage() {
    let d = tempfile::tempdir().unwrap();
    // Before: the same file in train and test under two patient ids said
    // "patient leakage: none".
    csv_set(d.path(), &format!("{BASE}img/a.png,Normal,p7,test\n"));
    let o = check(d.path());
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("patient leakage: none"), "{out}");
    assert!(
        out.contains("image leakage: 1 image(s) in both train and test:") && out.contains("a.png"),
        "{out}"
    );
    // A copy under another name (found by content: same bytes, another path).
    let e = tempfile::tempdir().unwrap();
    csv_set(e.path(), &format!("{BASE}img/copy.png,Normal,p8,test\n"));
    std::fs::copy(e.path().join("img/a.png"), e.path().join("img/copy.png")).unwrap();
    let o = check(e.path());
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("image leakage: 1 image(s) in both train and test:")
            && out.contains("a.png = ")
            && out.contains("copy.png"),
        "{out}"
    );
    // A clean set says so.
    let f = tempfile::tempdir().unwrap();
    csv_set(f.path(), BASE);
    let o = check(f.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("image leakage: none"), "{}", text(&o));
}

#[test]
fn dataset_toml_is_held_to_the_data_folder_and_its_keys() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    csv_set(&data, BASE);
    let toml = |t: &str| std::fs::write(data.join("dataset.toml"), t).unwrap();
    // A CSV outside the data folder: refused before it is read (before: /etc/passwd was
    // opened and its first line echoed).
    std::fs::write(d.path().join("ext.csv"), "secret,first,line\n").unwrap();
    for (file, shown) in [("/etc/passwd", "/etc/passwd"), ("../ext.csv", "../ext.csv")] {
        toml(&format!("[csv]\nfile = \"{file}\"\n"));
        let e = text(&check(&data));
        assert!(
            e.contains(&format!(
                "dataset.toml's [csv] file \"{shown}\": outside the data folder"
            )) && !e.contains("root:")
                && !e.contains("secret"),
            "{e}"
        );
        assert!(e.lines().all(|l| l.len() < 400), "{e}");
    }
    // ... unless links out of the folder are allowed.
    toml("[csv]\nfile = \"../ext.csv\"\n");
    let o = Command::new(bin())
        .args(["data", "check", "--allow-outside-links", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !text(&o).contains("outside the data folder"),
        "{}",
        text(&o)
    );
    // Unknown keys in [csv] are refused as at the top level, naming the file and the key.
    toml("[csv]\npath = \"path\"\nlabell = \"label\"\n");
    let e = text(&check(&data));
    assert!(e.contains("dataset.toml") && e.contains("labell"), "{e}");
    toml("validd = \"10\"\n");
    let e = text(&check(&data));
    assert!(e.contains("dataset.toml") && e.contains("validd"), "{e}");
    // A bad `valid` names dataset.toml and the key.
    toml("valid = \"150\"\n");
    let e = text(&check(&data));
    assert!(
        e.contains("dataset.toml") && e.contains("valid = \"150\""),
        "{e}"
    );
}

#[test]
fn a_kermany_name_with_both_bacteria_and_virus_is_refused_when_splitting() {
    let d = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        png(&d.path().join(split).join("NORMAL/IM-0001.png"), 10);
        png(
            &d.path().join(split).join("PNEUMONIA/person1_virus_1.png"),
            90,
        );
        png(
            &d.path()
                .join(split)
                .join("PNEUMONIA/person2_bacteria_2.png"),
            150,
        );
    }
    png(
        &d.path()
            .join("train/PNEUMONIA/person3_bacteria_virus_3.png"),
        200,
    );
    let o = Command::new(bin())
        .args(["data", "check", "--split-pneumonia", "--data"])
        .arg(d.path())
        .output()
        .unwrap();
    let e = text(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("person3_bacteria_virus_3.png") && e.contains("says both bacteria and virus"),
        "{e}"
    );
}

#[test]
fn folders_of_classes_alone_get_a_drawn_test_split_the_same_for_every_seed() {
    // Before: refused ("found neither ...").
    let d = tempfile::tempdir().unwrap();
    for (c, n, base) in [("clear", 30u8, 0u8), ("opacity", 20, 128)] {
        for i in 0..n {
            png(&d.path().join(c).join(format!("{c}{i}.png")), base + 2 * i);
        }
    }
    let open = |seed: u64| {
        covid_resnet::data::split::Dataset::open_with(
            d.path(),
            &covid_resnet::data::split::DataOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (open(1), open(2));
    // Each image its own patient: 20 % of the 50 patients are the test split, the same
    // images whatever the run's seed; validation is drawn from the rest with the seed.
    assert_eq!(a.test.samples.len(), 10);
    let files = |s: &covid_resnet::data::split::Split| -> Vec<String> {
        let mut v: Vec<String> = s
            .samples
            .iter()
            .map(|x| x.path.display().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&a.test), files(&b.test));
    assert_eq!(a.train.samples.len() + a.valid.samples.len(), 40);
    assert!(a.leaked_patients().is_empty());
    let o = check(d.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("without a test split: 20 % of the patients drawn as the test split"),
        "{out}"
    );
}
