//! `covid-resnet data check` on the real COVIDx v1 copy in ../shared: the figures must be
//! those of its README.txt ("Counts" table).
use crate::common::{bin, shared_dir};
use std::process::Command;

#[test]
fn covidx_v1_counts_equal_the_readme() {
    let Some(shared) = shared_dir() else { return };
    let data = shared.join("data/covidx-v1");
    assert!(
        data.join("train_COVIDx_v1.txt").is_file(),
        "{} has no COVIDx split files",
        data.display()
    );
    let check = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(bin())
            .args(["data", "check", "--json", "--data"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = |r: &serde_json::Value, split: &str, key: &str| -> Vec<u64> {
        let s = r["splits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == split)
            .unwrap_or_else(|| panic!("no {split} split in {r}"));
        s[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    // The paper's way (validate on the test split): the README's figures exactly.
    let r = check(&["--valid", "test"]);
    assert_eq!(
        r["classes"],
        serde_json::json!(["Normal", "Bacterial", "Viral", "COVID-19"])
    );
    // README.txt: train (ours) 1349 [1219], 2540 [1362], 1355 [1094], 60 [41]; total 5304.
    assert_eq!(v(&r, "train", "images"), vec![1349, 2540, 1355, 60]);
    assert_eq!(v(&r, "train", "patients"), vec![1219, 1362, 1094, 41]);
    // test (ours) 234 [225], 246 [78], 149 [127], 8 [4]; total 637.
    assert_eq!(v(&r, "test", "images"), vec![234, 246, 149, 8]);
    assert_eq!(v(&r, "test", "patients"), vec![225, 78, 127, 4]);
    // "the official split is fully patient-disjoint"; every image is 256x256 8-bit gray.
    assert_eq!(r["leaked_patients"].as_array().unwrap().len(), 0);
    for s in r["splits"].as_array().unwrap() {
        assert!(s["missing"].as_array().unwrap().is_empty());
        assert!(s["unreadable"].as_array().unwrap().is_empty());
        assert_eq!(s["color_images"], 0);
        assert_eq!(
            s["sizes"].as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["256x256"]
        );
    }
    // By default a tenth of the training patients become the validation split: the same
    // images in all, no patient on two sides, the test split untouched.
    let r = check(&[]);
    let (train, valid) = (v(&r, "train", "images"), v(&r, "valid", "images"));
    let sum: Vec<u64> = train.iter().zip(&valid).map(|(a, b)| a + b).collect();
    assert_eq!(sum, vec![1349, 2540, 1355, 60]);
    let (tp, vp) = (v(&r, "train", "patients"), v(&r, "valid", "patients"));
    let psum: Vec<u64> = tp.iter().zip(&vp).map(|(a, b)| a + b).collect();
    assert_eq!(psum, vec![1219, 1362, 1094, 41]);
    let drawn: u64 = vp.iter().sum::<u64>();
    assert!(
        (350..=390).contains(&drawn),
        "10 % of 3716 patients: {drawn}"
    );
    assert_eq!(v(&r, "test", "images"), vec![234, 246, 149, 8]);
    assert_eq!(r["leaked_patients"].as_array().unwrap().len(), 0);
    assert!(r["valid_source"]
        .as_str()
        .unwrap()
        .contains("10 % of the training patients"));
}

#[test]
fn data_check_reports_leakage_missing_and_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("train")).unwrap();
    std::fs::create_dir_all(d.join("test")).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([9]))
        .save(d.join("train/a.png"))
        .unwrap();
    std::fs::write(d.join("train/b.png"), b"junk").unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([9]))
        .save(d.join("test/c.png"))
        .unwrap();
    std::fs::write(
        d.join("train_x.txt"),
        "p1 a.png normal\np2 b.png viral\np3 gone.png covid\n",
    )
    .unwrap();
    std::fs::write(d.join("test_x.txt"), "p1 c.png normal\n").unwrap();
    let out = Command::new(bin())
        .args(["data", "check", "--valid", "test", "--data"])
        .arg(d)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("MISSING") && text.contains("gone.png"),
        "{text}"
    );
    assert!(
        text.contains("UNREADABLE") && text.contains("b.png"),
        "{text}"
    );
    assert!(
        text.contains("1 patient(s) in both train and test: p1"),
        "{text}"
    );
}
