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
