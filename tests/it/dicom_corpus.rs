//! The DICOM corpus of tests/data/dicom (made by DCMTK, GDCM and OpenJPEG from pydicom-written
//! sources by its make.py): every file pydicom + pylibjpeg turns into pixels, we turn into
//! the same pixels; files without an image get one message naming them.
use covid_resnet::data::decode::decode_file;
use covid_resnet::data::dicom::modality_values;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom")
}

fn entries() -> Vec<Value> {
    let text = std::fs::read_to_string(corpus().join("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// pydicom's pixels for a file (float64 little endian).
fn reference(file: &str) -> Vec<f64> {
    let bytes = std::fs::read(corpus().join("ref").join(file.replace(".dcm", ".f64"))).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// How far our pixels may be from pydicom's, and why.
fn tolerance(entry: &Value) -> f64 {
    let syntax = entry["transfer_syntax"].as_str().unwrap();
    let colour = entry["kind"] == "colour";
    match syntax {
        // Lossy DCT JPEG: libjpeg (pydicom) and jpeg-decoder (ours) use different inverse
        // DCTs; T.83's accuracy test allows each output sample to be off by 1 level, and
        // colour adds the YCbCr->RGB rounding and chroma upsampling (1 more each).
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => {
            if colour {
                3.0 / 255.0
            } else {
                1.0
            }
        }
        // Irreversible JPEG 2000: OpenJPEG in C (pydicom) and its Rust port (ours) run the
        // same 9/7 wavelet in floating point; rounding may differ by 1 level.
        "1.2.840.10008.1.2.4.91" => {
            if colour {
                1.0 / 255.0
            } else {
                1.0
            }
        }
        // Everything else is lossless: equal; colour goes through the image crate's RGB to
        // luma conversion, which rounds in f32 (3.8e-5 seen, a fortieth of an 8-bit level).
        _ => {
            if colour {
                1e-4
            } else {
                0.0
            }
        }
    }
}

#[test]
fn every_file_pydicom_decodes_gives_pydicoms_pixels() {
    let mut checked = 0;
    for e in entries() {
        let file = e["file"].as_str().unwrap();
        if e["pydicom"] != "pixels" {
            continue;
        }
        let path = corpus().join(file);
        let img = decode_file(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!((img.width, img.height), (48, 32), "{file}");
        let info = img.dicom.clone().unwrap();
        assert_eq!(
            info.transfer_syntax, e["transfer_syntax"],
            "{file}: transfer syntax"
        );
        assert_eq!(info.photometric, e["photometric"], "{file}: photometric");
        assert_eq!(info.frames as u64, e["frames"].as_u64().unwrap(), "{file}");
        assert!(!info.transfer_syntax_name.is_empty());
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)), "{file}");
        let want = reference(file);
        let tol = tolerance(&e);
        let ours = if e["kind"] == "colour" {
            img.data.iter().map(|&v| v as f64).collect()
        } else {
            modality_values(&std::fs::read(&path).unwrap()).unwrap()
        };
        let d = max_diff(&ours, &want);
        println!("{file}: max |ours - pydicom| = {d:e} (allowed {tol:e})");
        assert!(
            d <= tol,
            "{file} ({}): differs from pydicom by {d}, allowed {tol}",
            e["made_by"]
        );
        checked += 1;
    }
    assert!(checked >= 41, "only {checked} files checked");
}

#[test]
fn near_lossless_jpeg_ls_keeps_its_stated_bound_against_the_source() {
    // dcmcjpls +en +md 2: every sample within NEAR = 2 of the source (ISO 14495-1).
    let near = modality_values(&std::fs::read(corpus().join("jls_near2_dcmtk.dcm")).unwrap());
    // The source's values as pydicom reads them.
    let d = max_diff(&near.unwrap(), &reference("mono16.dcm"));
    assert!(d <= 2.0 && d > 0.0, "max deviation {d}");
}

#[test]
fn lossless_codecs_give_back_the_source_exactly() {
    // The source's values as pydicom reads them (not as we do).
    let source = reference("mono16.dcm");
    for e in entries() {
        let file = e["file"].as_str().unwrap();
        let lossless_16 =
            e["kind"] == "mono" && e["max_diff_from_source"] == 0.0 && e["bits_allocated"] == 16;
        if lossless_16 && !file.starts_with("signed16") && file != "monochrome1.dcm" {
            let ours = modality_values(&std::fs::read(corpus().join(file)).unwrap()).unwrap();
            assert_eq!(ours, source, "{file}");
        }
    }
}

#[test]
fn files_without_an_image_say_so_with_their_sop_class() {
    for (file, name) in [
        ("no_image_sr.dcm", "Basic Text SR Storage"),
        ("no_image_rtplan.dcm", "RT Plan Storage"),
    ] {
        let err = decode_file(&corpus().join(file)).unwrap_err().to_string();
        assert!(
            err.contains(file) && err.contains("holds no image") && err.contains(name),
            "{err}"
        );
    }
}

#[test]
fn the_facts_name_the_file_layout() {
    let info = |f: &str| decode_file(&corpus().join(f)).unwrap().dicom.unwrap();
    let bare = info("bare_implicit.dcm");
    assert!(!bare.meta_header);
    assert_eq!(bare.transfer_syntax, "1.2.840.10008.1.2");
    assert!(info("mono16.dcm").meta_header);
    assert_eq!(
        info("multiframe_j2k.dcm").frames_note().as_deref(),
        Some("3 frames (the first is used)")
    );
    assert!(info("j2k_lossless_gdcm.dcm")
        .transfer_syntax_name
        .contains("JPEG 2000"));
    assert_eq!(info("bits32s.dcm").bits_allocated, 32);
    assert_eq!(info("bits1.dcm").bits_allocated, 1);
}

#[test]
fn data_inspect_and_predict_open_every_kind() {
    use crate::common::bin;
    use std::process::Command;
    let files: Vec<PathBuf> = entries()
        .iter()
        .map(|e| corpus().join(e["file"].as_str().unwrap()))
        .collect();
    let out = Command::new(bin())
        .args(["data", "inspect"])
        .args(&files)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "the files without an image fail the run"
    );
    // Named on stderr: the two files without an image, and only they.
    let failed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(failed.len(), 2, "{stderr}");
    for f in ["no_image_sr.dcm", "no_image_rtplan.dcm"] {
        assert!(stderr.contains(f), "{f}: {stderr}");
    }
    for want in [
        "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)",
        "JPEG-LS Lossy (Near-Lossless) Image Compression",
        "RLE Lossless",
        "JPEG Extended (Process 2 & 4) (1.2.840.10008.1.2.4.51)",
        "Deflated Explicit VR Little Endian",
        "no File Meta header",
        "3 frames (the first is used)",
        "32 of 32 bits",
        "YBR_FULL_422",
        "PALETTE COLOR",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }

    // predict with the shipped model on a few kinds: one row each, exit 0.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/default-covidx-v1.safetensors");
    let some = [
        "j2k_lossy_gdcm.dcm",
        "jls_near2_dcmtk.dcm",
        "bare_implicit.dcm",
        "ybr_full_422.dcm",
        "bits32s.dcm",
        "multiframe_j2k.dcm",
    ];
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .args(some.iter().map(|f| corpus().join(f)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in some {
        assert!(text.contains(f), "{f}: {text}");
    }
}

#[test]
fn the_viewer_opens_every_kind_and_names_the_transfer_syntax() {
    use crate::app_viewer::{drop_files, harness};
    use crate::common::step_until;
    use covid_resnet::app::viewer::ImageState;
    use egui_kittest::kittest::Queryable;
    let dir = tempfile::tempdir().unwrap();
    let model = crate::viewer_infer::write_model(dir.path(), 64);
    let files: Vec<PathBuf> = [
        "jpeg_extended12_51.dcm",
        "jls_near2_dcmtk.dcm",
        "rgb_j2k_rct.dcm",
        "bare_implicit.dcm",
        "no_image_sr.dcm",
        "bits32u_rle.dcm",
        "multiframe_j2k.dcm",
    ]
    .iter()
    .map(|f| corpus().join(f))
    .collect();
    let mut h = harness(&model, &corpus());
    drop_files(&mut h, &files);
    step_until(&mut h, 120, "every dropped file read", |a| {
        a.viewer.images.len() == files.len()
            && a.viewer.images.iter().all(|i| match &i.state {
                ImageState::Loading => false,
                ImageState::Failed(_) => true,
                ImageState::Ready(_) => i.analysis().is_some(),
            })
            && !a.viewer.busy()
    });
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy();
        match (&h.state().viewer.images[i].state, name.as_ref()) {
            (ImageState::Failed(e), "no_image_sr.dcm") => {
                assert!(
                    e.contains("holds no image") && e.contains("no_image_sr.dcm"),
                    "{e}"
                )
            }
            (ImageState::Failed(e), _) => panic!("{name}: {e}"),
            (ImageState::Ready(_), "no_image_sr.dcm") => panic!("an SR has no image"),
            _ => {}
        }
    }
    // The last one is shown: its facts name the syntax and the frame count.
    assert_eq!(h.state().viewer.selected, Some(files.len() - 1));
    let shown = |t: &str| h.query_all_by_label_contains(t).next().is_some();
    assert!(shown("JPEG 2000 Image Compression (Lossless Only)"));
    assert!(shown("3 frames (the first is used)"));
    assert!(shown("holds no image"));
}
