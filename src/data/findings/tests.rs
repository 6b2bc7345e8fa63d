//! The layouts read from generated files in their published formats (headers as the data
//! sets ship them), the policies, the view filter and the messages.
use super::*;
use std::io::Write;

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn index(set: &FindingSet, label: &str) -> usize {
    set.labels.iter().position(|l| l == label).unwrap()
}

#[test]
fn nih_reads_entries_lists_and_the_release_folders() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(
        &r.join("Data_Entry_2017.csv"),
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n\
         00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143\n\
         00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143\n\
         00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171\n\
         00000003_000.png,Hernia|Effusion|Pleural_Thickening,0,3,74,F,PA,2500,2048,0.168,0.168\n\
         00000004_000.png,Mass,0,4,82,M,AP,2048,2500,0.168,0.168\n",
    );
    write(
        &r.join("train_val_list.txt"),
        "00000001_000.png\n00000001_001.png\n00000002_000.png\n",
    );
    write(
        &r.join("test_list.txt"),
        "00000003_000.png\n00000004_000.png\n",
    );
    touch(&r.join("images_001/images/00000001_000.png"));
    touch(&r.join("images_001/images/00000001_001.png"));
    touch(&r.join("images_002/images/00000002_000.png"));
    touch(&r.join("images/00000003_000.png"));
    assert_eq!(detect(r), Some(Layout::Nih));
    let s = read(r, None).unwrap();
    assert_eq!(s.labels.len(), 14);
    assert_eq!(s.images.len(), 4);
    assert_eq!(s.missing, vec![r.join("images/00000004_000.png")]);
    let im = &s.images[1];
    assert_eq!((im.patient.as_str(), im.view.as_deref()), ("1", Some("PA")));
    assert_eq!(im.split, Some(SplitKind::Train));
    let pos: Vec<&str> = s
        .labels
        .iter()
        .zip(&im.marks)
        .filter(|(_, m)| **m == Mark::Positive)
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(pos, ["Cardiomegaly", "Emphysema"]);
    assert!(s.images[2].marks.iter().all(|m| *m == Mark::Negative));
    assert_eq!(s.images[3].split, Some(SplitKind::Test));
    assert_eq!(s.images[3].marks[index(&s, "Hernia")], Mark::Positive);
    let c = s.counts(Some(SplitKind::Train));
    assert_eq!(c[index(&s, "Cardiomegaly")].positive, 2);
    assert_eq!(c[index(&s, "Cardiomegaly")].negative, 1);
    // The frontal filter.
    let mut s2 = s.clone();
    assert_eq!(s2.keep_views(&["ap".into()]), 3);
    assert_eq!(s2.images.len(), 1);
    assert!(s2.notes.iter().any(|n| n.contains("--views")));
    // An unknown finding names the file, the line and the value.
    write(
        &r.join("Data_Entry_2017.csv"),
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n\
         00000001_000.png,Cardiomegaly|Tumour,0,1,58,M,PA\n",
    );
    let e = read(r, None).unwrap_err().to_string();
    assert!(
        e.contains("Data_Entry_2017.csv:2") && e.contains("\"Tumour\""),
        "{e}"
    );
}

const CHEXPERT_HEAD: &str = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices";

#[test]
fn chexpert_reads_marks_views_patients_and_its_validation_split() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("CheXpert-v1.0-small");
    write(
        &r.join("train.csv"),
        &format!(
            "{CHEXPERT_HEAD}\n\
             CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0\n\
             CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,\n\
             CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg,Female,87,Lateral,,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,\n"
        ),
    );
    write(
        &r.join("valid.csv"),
        &format!(
            "{CHEXPERT_HEAD}\n\
             CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        ),
    );
    for p in [
        "train/patient00001/study1/view1_frontal.jpg",
        "train/patient00002/study2/view1_frontal.jpg",
        "train/patient00002/study2/view2_lateral.jpg",
        "valid/patient64541/study1/view1_frontal.jpg",
    ] {
        touch(&r.join(p));
    }
    assert_eq!(detect(&r), Some(Layout::Chexpert));
    let s = read(&r, None).unwrap();
    assert_eq!(s.labels, chexpert::OBSERVATIONS.map(String::from).to_vec());
    assert_eq!(s.images.len(), 4);
    let im = &s.images[1];
    assert_eq!(im.patient, "patient00002");
    assert_eq!(im.marks[index(&s, "Cardiomegaly")], Mark::Uncertain);
    assert_eq!(im.marks[index(&s, "Lung Opacity")], Mark::Positive);
    assert_eq!(im.marks[index(&s, "No Finding")], Mark::Blank);
    assert_eq!(s.images[2].view.as_deref(), Some("LATERAL"));
    assert_eq!(s.images[3].split, Some(SplitKind::Valid));
    let c = s.counts(Some(SplitKind::Train))[index(&s, "Edema")];
    assert_eq!((c.positive, c.negative, c.uncertain, c.blank), (0, 0, 2, 1));
    // The policies turn the same marks into different targets and masks.
    let marks = &im.marks;
    let p: Policies = "zeros,Edema=ones,Atelectasis=ignore".parse().unwrap();
    let (t, m) = p.targets(&s.labels, marks);
    let at = |l: &str| (t[index(&s, l)], m[index(&s, l)]);
    assert_eq!(at("Cardiomegaly"), (0.0, 1.0)); // uncertain -> zeros
    assert_eq!(at("Edema"), (1.0, 1.0)); // uncertain -> ones
    assert_eq!(at("Atelectasis"), (0.0, 0.0)); // uncertain -> ignored
    assert_eq!(at("No Finding"), (0.0, 1.0)); // blank -> negative
    assert_eq!(at("Fracture"), (1.0, 1.0));
    let (_, m) = Policies::default().targets(&s.labels, marks);
    assert_eq!(m.iter().filter(|w| **w == 0.0).count(), 5);
    // A bad mark names the file, the line, the column and the value.
    write(
        &r.join("valid.csv"),
        &format!(
            "{CHEXPERT_HEAD}\n\
             CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,2.0,,,,,,,,,,,,\n"
        ),
    );
    let e = read(&r, None).unwrap_err().to_string();
    assert!(
        e.contains("valid.csv:2")
            && e.contains("Enlarged Cardiomediastinum")
            && e.contains("\"2.0\""),
        "{e}"
    );
}

const MIMIC_LABELS: &str = "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices";
const MIMIC_META: &str = "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning";

#[test]
fn mimic_joins_labels_metadata_and_split_also_compressed() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(
        &r.join("mimic-cxr-2.0.0-chexpert.csv"),
        &format!(
            "{MIMIC_LABELS}\n\
             10000032,50414267,,,,,,,,,1.0,,,,,\n\
             10000764,57375967,,,1.0,,,,,1.0,,,,-1.0,,\n"
        ),
    );
    write(
        &r.join("mimic-cxr-2.0.0-metadata.csv"),
        &format!(
            "{MIMIC_META}\n\
             02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),postero-anterior,Erect\n\
             174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect\n\
             096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,10000764,57375967,CHEST (PORTABLE AP),AP,2544,3056,21321015,092549.703,CHEST (PORTABLE AP),antero-posterior,\n\
             aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee,10000999,59999999,CHEST (PA),PA,3056,2544,21321015,092549.703,CHEST (PA),postero-anterior,Erect\n"
        ),
    );
    let split = "dicom_id,study_id,subject_id,split\n\
        02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,50414267,10000032,train\n\
        174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,50414267,10000032,train\n\
        096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,57375967,10000764,test\n";
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(r.join("mimic-cxr-2.0.0-split.csv.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(split.as_bytes()).unwrap();
    gz.finish().unwrap();
    touch(&mimic::image_path(
        r,
        "10000032",
        "50414267",
        "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
    ));
    touch(&mimic::image_path(
        r,
        "10000764",
        "57375967",
        "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4",
    ));
    assert_eq!(
        mimic::image_path(r, "10000032", "50414267", "x"),
        r.join("files/p10/p10000032/s50414267/x.jpg")
    );
    assert_eq!(detect(r), Some(Layout::Mimic));
    let s = read(r, None).unwrap();
    assert_eq!(s.labels.len(), 14);
    assert_eq!(s.images.len(), 2);
    assert_eq!(s.missing.len(), 1); // the lateral image's file is absent
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("1 images left out") && n.contains("chexpert")));
    let im = &s.images[1];
    assert_eq!(
        (im.patient.as_str(), im.view.as_deref()),
        ("10000764", Some("AP"))
    );
    assert_eq!(im.split, Some(SplitKind::Test));
    assert_eq!(im.marks[index(&s, "Pneumonia")], Mark::Uncertain);
    assert_eq!(im.marks[index(&s, "Consolidation")], Mark::Positive);
}

#[test]
fn a_generic_csv_gives_labels_as_columns_or_as_one_joined_column() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    touch(&r.join("a.png"));
    touch(&r.join("b.png"));
    write(
        &r.join(CSV_FILE),
        "path,patient_id,view,split,Effusion,Mass\na.png,p1,PA,train,1,-1\nb.png,p2,AP,test,,0\n",
    );
    assert_eq!(detect(r), Some(Layout::Csv(PathBuf::from(CSV_FILE))));
    let s = read(r, None).unwrap();
    assert_eq!(s.labels, ["Effusion", "Mass"]);
    assert_eq!(s.images[0].marks, [Mark::Positive, Mark::Uncertain]);
    assert_eq!(s.images[1].marks, [Mark::Blank, Mark::Negative]);
    write(
        &r.join(CSV_FILE),
        "path,labels\na.png,Mass|Effusion\nb.png,No Finding\nc.png,Nodule\n",
    );
    let s = read(r, None).unwrap();
    assert_eq!(s.labels, ["Effusion", "Mass", "Nodule"]);
    assert_eq!(
        s.images[0].marks,
        [Mark::Positive, Mark::Positive, Mark::Negative]
    );
    assert_eq!(s.images[1].marks, [Mark::Negative; 3]);
    assert_eq!(
        (s.images[0].patient.as_str(), s.missing.len()),
        ("a.png", 1)
    );
    // A path leaving the folder is refused by line.
    write(&r.join(CSV_FILE), "path,labels\n../x.png,Mass\n");
    let e = read(r, None).unwrap_err().to_string();
    assert!(
        e.contains("findings.csv:2") && e.contains("../x.png"),
        "{e}"
    );
}

#[test]
fn policies_parse_print_and_name_bad_input() {
    let p: Policies = "ignore,Edema=ones,Atelectasis=u-ones".parse().unwrap();
    assert_eq!(p.to_string(), "ignore,Atelectasis=ones,Edema=ones");
    assert_eq!(p.to_string().parse::<Policies>().unwrap(), p);
    assert_eq!(p.of("Cardiomegaly"), Uncertain::Ignore);
    assert!("maybe"
        .parse::<Policies>()
        .unwrap_err()
        .contains("\"maybe\""));
    assert!("ones,zeros"
        .parse::<Policies>()
        .unwrap_err()
        .contains("LABEL=POLICY"));
    let labels = vec!["Edema".to_string()];
    let e = p.check(&labels).unwrap_err().to_string();
    assert!(e.contains("\"Atelectasis\""), "{e}");
}

#[test]
fn a_folder_of_no_known_layout_says_what_it_looked_for() {
    let d = tempfile::tempdir().unwrap();
    let e = read(d.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("Data_Entry_2017.csv") && e.contains(CSV_FILE),
        "{e}"
    );
}

/// An NIH folder of `n` patients with two images each, patient k's findings by k.
fn nih_folder(r: &Path, n: usize) {
    let mut entries = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n",
    );
    let (mut tv, mut te) = (String::new(), String::new());
    for k in 0..n {
        for f in 0..2 {
            let name = format!("{k:08}_{f:03}.png");
            let labels = match k % 3 {
                0 => "No Finding",
                1 => "Effusion",
                _ => "Effusion|Mass",
            };
            entries += &format!("{name},{labels},{f},{k},50,M,PA\n");
            if k % 5 == 0 { &mut te } else { &mut tv }.push_str(&format!("{name}\n"));
            touch(&r.join("images").join(&name));
        }
    }
    write(&r.join("Data_Entry_2017.csv"), &entries);
    write(&r.join("train_val_list.txt"), &tv);
    write(&r.join("test_list.txt"), &te);
}

#[test]
fn a_findings_set_opens_as_a_data_set_with_codes_and_patient_splits() {
    use crate::data::split::{DataOptions, Dataset, ValidSource};
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    nih_folder(r, 50);
    let opts = DataOptions {
        seed: 3,
        ..DataOptions::default()
    };
    let ds = dataset::open(r, Layout::Nih, &opts).unwrap();
    assert!(ds.is_findings());
    assert_eq!(ds.classes.len(), 14);
    // 10 of 50 patients are in the test list; 10 % of the other 40 drawn for validation.
    assert_eq!(ds.test.samples.len(), 20);
    assert_eq!(ds.valid.samples.len(), 8);
    assert_eq!(ds.train.samples.len(), 72);
    assert_eq!(
        ds.valid_source,
        ValidSource::Drawn {
            percent: 10.0,
            seed: 3
        }
    );
    let pats = |s: &crate::data::split::Split| -> std::collections::BTreeSet<String> {
        s.samples.iter().map(|x| x.patient.clone()).collect()
    };
    assert!(pats(&ds.train).is_disjoint(&pats(&ds.valid)));
    let (eff, mass) = (
        index_of(&ds.classes, "Effusion"),
        index_of(&ds.classes, "Mass"),
    );
    for s in ds.train.samples.iter().chain(&ds.test.samples) {
        let k: usize = s.patient.parse().unwrap();
        let codes = s.findings.as_deref().unwrap();
        assert_eq!(codes[eff], (!k.is_multiple_of(3)) as u8, "patient {k}");
        assert_eq!(codes[mass], (k % 3 == 2) as u8, "patient {k}");
    }
    // The single-label commands say what the folder is instead of misreading it.
    let e = Dataset::open(r).unwrap_err().to_string();
    assert!(
        e.contains("multi-label") && e.contains("data findings"),
        "{e}"
    );
}

fn index_of(labels: &[String], l: &str) -> usize {
    labels.iter().position(|x| x == l).unwrap()
}

#[test]
fn chexpert_keeps_its_validation_split_draws_a_test_split_and_masks_by_policy() {
    use crate::data::split::{DataOptions, ValidSource};
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("CheXpert-v1.0-small");
    let mut train = format!("{CHEXPERT_HEAD}\n");
    for k in 0..30 {
        let p = format!("train/patient{k:05}/study1/view1_frontal.jpg");
        // Edema uncertain for every patient, Cardiomegaly positive for even ones.
        let card = if k % 2 == 0 { "1.0" } else { "0.0" };
        train += &format!("CheXpert-v1.0-small/{p},Male,60,Frontal,PA,,,{card},,,-1.0,,,,,,,,\n");
        touch(&r.join(p));
    }
    write(&r.join("train.csv"), &train);
    let p = "valid/patient64541/study1/view1_frontal.jpg";
    write(
        &r.join("valid.csv"),
        &format!("{CHEXPERT_HEAD}\nCheXpert-v1.0-small/{p},Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"),
    );
    touch(&r.join(p));
    for (policy, edema) in [
        ("ignore", NOT_COUNTED),
        ("zeros", ABSENT),
        ("ones", PRESENT),
    ] {
        let opts = DataOptions {
            uncertain: Some(policy.parse().unwrap()),
            ..DataOptions::default()
        };
        let ds = dataset::open(&r, Layout::Chexpert, &opts).unwrap();
        assert_eq!(ds.valid_source, ValidSource::Own);
        assert_eq!(ds.valid.samples.len(), 1);
        // The test split: 20 % of the training patients, drawn as for class folders alone.
        assert_eq!(ds.test.samples.len(), 6);
        assert_eq!(ds.train.samples.len(), 24);
        let e = index_of(&ds.classes, "Edema");
        assert!(ds
            .train
            .samples
            .iter()
            .all(|s| s.findings.as_ref().unwrap()[e] == edema));
        let v = ds.valid.samples[0].findings.clone().unwrap();
        assert_eq!(v[e], ABSENT);
        assert_eq!(v[index_of(&ds.classes, "Cardiomegaly")], PRESENT);
    }
}

#[test]
fn the_loader_batches_carry_targets_and_mask() {
    use crate::data::loader::{DataLoader, LoaderConfig};
    use crate::data::split::Sample;
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let img = image::GrayImage::from_pixel(8, 8, image::Luma([100u8]));
    let mut samples = Vec::new();
    for (i, codes) in [[PRESENT, ABSENT, NOT_COUNTED], [ABSENT, ABSENT, PRESENT]]
        .into_iter()
        .enumerate()
    {
        let p = r.join(format!("{i}.png"));
        img.save(&p).unwrap();
        samples.push(Sample {
            path: p,
            label: 0,
            patient: i.to_string(),
            source: None,
            findings: Some(std::sync::Arc::from(codes.to_vec())),
        });
    }
    let cfg = LoaderConfig::train(2, 8, 1);
    let b = DataLoader::new(samples, cfg)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    let (t, m) = b
        .finding_tensors(&candle_core::Device::Cpu)
        .unwrap()
        .unwrap();
    let rows = |x: candle_core::Tensor| x.to_vec2::<f32>().unwrap();
    let order: Vec<usize> = b.indices.clone();
    let want_t = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let want_m = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]];
    let (t, m) = (rows(t), rows(m));
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(t[k], want_t[i]);
        assert_eq!(m[k], want_m[i]);
    }
}
