//! Distillation: a student trained with `--teacher` learns the teacher's classes even against
//! its own labels, records which teacher it learned from, and refuses a teacher with other
//! classes or one that changed before a resume.
use crate::ensemble::member;
use crate::training::{config, plan, write_synthetic};
use covid_resnet::device::DeviceChoice;
use covid_resnet::train::distill::DistillConfig;
use covid_resnet::train::events::{Control, TrainEvent, VecSink};
use covid_resnet::train::schedule::{LrSpec, Plan};
use covid_resnet::train::trainer::{Outcome, Trainer};
use std::path::Path;
use std::sync::Arc;

fn six_epochs() -> Plan {
    let mut p = plan(1, 5);
    p.stages[0].steps[1].lr = LrSpec::Fixed(1e-3);
    p
}

/// Trains on `data` into `out` (with `distill`, seed `seed`); the last epoch's validation
/// accuracy.
fn train(
    data: &Path,
    out: &Path,
    distill: Option<DistillConfig>,
    seed: u64,
) -> (f64, Vec<TrainEvent>) {
    let mut c = config(data, out, six_epochs());
    c.distill = distill;
    c.seed = seed;
    let sink = Arc::new(VecSink::default());
    let mut t = Trainer::new(c, DeviceChoice::Cpu, sink.clone(), Default::default()).unwrap();
    assert!(matches!(t.run().unwrap(), Outcome::Finished { .. }));
    (t.history().last().unwrap().accuracy, sink.events())
}

/// The same images with Normal and COVID-19 swapped in the split files.
fn swapped_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(&name).join(f.file_name())).unwrap();
            }
        } else if name.ends_with(".txt") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let swapped = text
                .replace(" normal ", " @ ")
                .replace(" COVID-19 ", " normal ")
                .replace(" @ ", " COVID-19 ");
            assert_ne!(text, swapped);
            std::fs::write(to.join(&name), swapped).unwrap();
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn a_student_learns_its_teachers_classes_against_its_own_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // These runs validate on the test split (dataset.toml), 16 images.
    write_synthetic(&a, 48, 16);
    swapped_copy(&a, &b);
    let (teacher_acc, _) = train(&a, &dir.path().join("teacher"), None, 3);
    assert!(
        teacher_acc >= 0.9,
        "the teacher learned its set: {teacher_acc}"
    );
    let teacher = dir.path().join("teacher/model.safetensors");
    // The student's labels say the opposite of the teacher; with the teacher's term alone
    // (w = 1) it must follow the teacher, so it is wrong about its own labels. Another seed:
    // its validation split is still the one the teacher held out.
    let d = DistillConfig::new(teacher.clone(), 1.0, 1.0).unwrap();
    let (student_acc, events) = train(&b, &dir.path().join("student"), Some(d), 7);
    assert!(
        student_acc <= 0.1,
        "the student follows its teacher, not its labels: accuracy {student_acc} on them"
    );
    let logs: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("soft targets of 48 training images")),
        "{logs:?}"
    );
    // The model file says which teacher, by content.
    let meta = covid_resnet::model::io::model_file::read_meta(
        &dir.path().join("student/model.safetensors"),
    )
    .unwrap();
    let training = meta.training.unwrap();
    assert_eq!(
        (&training["seed"], &training["split_seed"]),
        (&7.into(), &3.into())
    );
    assert!(
        logs.iter().any(|l| l.contains("validation split seeded 3")),
        "{logs:?}"
    );
    let from = &training["distilled_from"];
    let (sha, _) = covid_resnet::fetch::sha256_file(&teacher).unwrap();
    assert_eq!(from["sha256"], sha.as_str());
    assert_eq!(
        (from["weight"].as_f64(), from["temperature"].as_f64()),
        (Some(1.0), Some(1.0))
    );
}

#[test]
fn a_teacher_with_other_classes_or_changed_before_a_resume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 16, 8);
    let new_run = |teacher: &Path, out: &str, control: Arc<Control>| {
        let mut c = config(&data, &dir.path().join(out), six_epochs());
        c.distill = Some(DistillConfig::new(teacher.to_path_buf(), 0.5, 2.0).unwrap());
        Trainer::new(c, DeviceChoice::Cpu, Arc::new(VecSink::default()), control)
    };
    let other = member(dir.path(), "other.safetensors", 1, &["A", "B", "C", "D"]);
    let e = new_run(&other, "r1", Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("A, B, C, D") && e.contains("classes are Normal, COVID-19"),
        "{e}"
    );
    assert!(
        !dir.path().join("r1").exists(),
        "refused before the run folder is made"
    );
    // The synthetic set's two classes.
    const CLASSES: [&str; 2] = ["Normal", "COVID-19"];
    // Stopped after two batches, the teacher file replaced, then resumed.
    let teacher = member(dir.path(), "teacher.safetensors", 1, &CLASSES);
    let control = Arc::new(Control::default());
    control.stop_after_batches(2);
    let mut t = new_run(&teacher, "r2", control).unwrap();
    assert_eq!(t.run().unwrap(), Outcome::Stopped);
    drop(t);
    let original = std::fs::read(&teacher).unwrap();
    std::fs::copy(member(dir.path(), "m2.safetensors", 2, &CLASSES), &teacher).unwrap();
    let resume = || {
        Trainer::resume(
            &dir.path().join("r2"),
            DeviceChoice::Cpu,
            Arc::new(VecSink::default()),
            Default::default(),
        )
    };
    let e = resume().err().unwrap().to_string();
    assert!(e.contains("changed since the run started"), "{e}");
    assert!(e.contains("teacher.safetensors"), "{e}");
    // The teacher it started with: the run goes on to the end.
    std::fs::write(&teacher, original).unwrap();
    let mut t = resume().unwrap();
    assert!(matches!(t.run().unwrap(), Outcome::Finished { .. }));
}

/// The Training tab: a teacher typed in the Distillation section, Start, and the model file
/// records what it learned from; a weight out of range keeps Start off and says why.
#[test]
fn the_training_tab_distils_from_a_teacher() {
    use crate::common::step_until;
    use covid_resnet::app::training::plan_editor::PlanRow;
    use covid_resnet::app::training::setup::TrainingSettings;
    use covid_resnet::app::training::state::RunState;
    use covid_resnet::app::Settings;
    use covid_resnet::model::Backbone;
    use covid_resnet::train::schedule::Trainable;
    use egui_kittest::kittest::Queryable;
    // A fixed folder: its paths are in the snapshot.
    let dir = crate::app_viewer::FixedDir::new("covid-resnet-distill-tab");
    let d = dir.0.as_path();
    let data = d.join("data");
    write_synthetic(&data, 16, 8);
    let teacher = member(d, "teacher.safetensors", 1, &["Normal", "COVID-19"]);
    let run = d.join("run");
    let s = Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: run.display().to_string(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            batch_size: 8,
            teacher: teacher.display().to_string(),
            distill_weight: 0.75,
            distill_temperature: 3.0,
            plan_name: "tiny".into(),
            plan_rows: vec![PlanRow {
                size: "32".into(),
                train: Trainable::All,
                lr: "1e-3".into(),
                epochs: "1".into(),
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
        "Distillation: from teacher.safetensors"
    ));
    h.get_by_label("Distillation: from teacher.safetensors")
        .click();
    h.run_steps(3);
    h.snapshot("training_distill");
    h.state_mut().training.settings.distill_weight = 1.5;
    assert!(h
        .state()
        .training
        .start_blocker()
        .is_some_and(|b| b.contains("--distill-weight") && b.contains("1.5")));
    h.state_mut().training.settings.distill_weight = 0.75;
    assert_eq!(h.state().training.start_blocker(), None);
    // Start is below the harness's height with the section open: as its button would.
    h.state_mut()
        .training
        .push(covid_resnet::app::training::Command::Start);
    step_until(&mut h, 600, "the student", |a| {
        a.training.run.state == RunState::Idle && a.training.run.finished_model.is_some()
    });
    let meta =
        covid_resnet::model::io::model_file::read_meta(&run.join("model.safetensors")).unwrap();
    let from = &meta.training.unwrap()["distilled_from"];
    assert_eq!(from["teacher"], teacher.display().to_string().as_str());
    assert_eq!(
        (from["weight"].as_f64(), from["temperature"].as_f64()),
        (Some(0.75), Some(3.0))
    );
}
