//! `data findings` on a generated NIH ChestX-ray14 folder (the published header and lists).
use crate::common::bin;
use std::process::Command;

#[test]
fn data_findings_counts_each_finding_per_split_and_refuses_a_policy_for_an_unknown_label() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::write(
        r.join("Data_Entry_2017.csv"),
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n\
         00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143\n\
         00000001_001.png,Cardiomegaly|Effusion,1,1,58,M,PA,2894,2729,0.143,0.143\n\
         00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171\n\
         00000003_000.png,Effusion,0,3,74,F,PA,2500,2048,0.168,0.168\n",
    )
    .unwrap();
    std::fs::write(
        r.join("train_val_list.txt"),
        "00000001_000.png\n00000001_001.png\n00000002_000.png\n",
    )
    .unwrap();
    std::fs::write(r.join("test_list.txt"), "00000003_000.png\n").unwrap();
    std::fs::create_dir_all(r.join("images_001/images")).unwrap();
    for n in [
        "00000001_000.png",
        "00000001_001.png",
        "00000002_000.png",
        "00000003_000.png",
    ] {
        std::fs::write(r.join("images_001/images").join(n), b"x").unwrap();
    }
    let out = Command::new(bin())
        .args(["data", "findings", "--views", "PA", "--data"])
        .arg(r)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("NIH ChestX-ray14 data set") && text.contains("3 images (train 2, test 1)"),
        "{text}"
    );
    assert!(
        text.contains("1 images left out") && text.contains("PA"),
        "{text}"
    );
    // Train: Cardiomegaly positive in both PA images, Effusion in one.
    let row = |split: &str, label: &str| -> Vec<String> {
        let block = text.split(&format!("\n{split}: ")).nth(1).unwrap();
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap();
        line.split_whitespace()
            .skip(1)
            .take(4)
            .map(String::from)
            .collect()
    };
    assert_eq!(row("train", "Cardiomegaly"), ["2", "0", "0", "0"]);
    assert_eq!(row("train", "Effusion"), ["1", "1", "0", "0"]);
    assert_eq!(row("test", "Effusion"), ["1", "0", "0", "0"]);
    let out = Command::new(bin())
        .args([
            "data",
            "findings",
            "--uncertain",
            "ignore,Lung Opacity=ones",
            "--data",
        ])
        .arg(r)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("\"Lung Opacity\""),
        "{err}"
    );
}
