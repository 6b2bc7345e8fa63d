//! The scale path on a generated 5,000-image data set (the 10,000 and 100,000-image figures
//! are in assets/docs/data.md): `data check` on it, one epoch of ResNet-18 with no memory
//! budget so that every image goes to the disk cache, and a second run that reads every
//! image back from that cache instead of decoding it.
use crate::common::bin;
use covid_resnet::data::synth::{write_synth, SynthSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Every file under `dir` with its modification time.
fn entries(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p, e.metadata().unwrap().modified().unwrap());
            }
        }
    }
    out
}

fn train(data: &Path, plan: &Path, cache: &Path, out: &Path) {
    let o = Command::new(bin())
        .args(["--device", "cpu", "train", "--backbone", "resnet18"])
        .args(["--batch-size", "64", "--seed", "1", "--valid", "test"])
        .args(["--cache-memory", "0"])
        .arg("--data")
        .arg(data)
        .arg("--plan")
        .arg(plan)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn five_thousand_images_train_through_the_disk_cache_and_a_second_run_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = write_synth(
        &data,
        SynthSpec {
            images: 5000,
            side: 48,
            seed: 1,
        },
    )
    .unwrap();
    // Every tenth patient (two images each) is a test patient.
    assert_eq!((s.train, s.test), (4500, 500));

    let o = Command::new(bin())
        .args(["data", "check", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["classes"],
        serde_json::json!(["COVID-19", "Normal", "pneumonia"])
    );
    let total = |i: usize| -> u64 {
        r["splits"][i]["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    // A drawn validation split: 10 % of the 2,250 training patients, two images each.
    assert_eq!((total(0), total(1), total(2)), (4050, 450, 500));
    assert_eq!(r["splits"][0]["sizes"]["48x48"], 4050);

    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "name = \"scale\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-3\"\nepochs = 1\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    train(&data, &plan, &cache, &dir.path().join("run1"));
    let first = entries(&cache);
    // No image fits in memory, so every image a run reads has its entry on disk: the 70 full
    // batches of 64 training images (the last partial batch is dropped, as fastai does) and
    // the 500 test images.
    assert_eq!(first.len(), 70 * 64 + 500, "disk cache entries");

    train(&data, &plan, &cache, &dir.path().join("run2"));
    let second = entries(&cache);
    assert_eq!(
        first, second,
        "the second run reads the cache and writes nothing new"
    );

    // A changed image is decoded again: its entry is a new one.
    let img = data.join("test/000/0000019.png");
    let bytes = std::fs::read(&img).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&img, &bytes).unwrap();
    train(&data, &plan, &cache, &dir.path().join("run3"));
    let third = entries(&cache);
    assert_eq!(
        third.len(),
        second.len() + 1,
        "one new entry for the rewritten file"
    );
}
