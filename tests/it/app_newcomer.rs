//! What a newcomer tripped over in the window, each held by a test: a path window where no
//! file dialog opens (focused, with the right placeholder, gone when done), a refused Start
//! that keeps the finished run on screen, a new folder for every run.
use crate::common::step_until;
use crate::training::write_synthetic;
use crate::viewer_infer::{film, write_model};
use covid_resnet::app::dialogs::DialogBackend;
use covid_resnet::app::training::{PlanRow, RunState, TrainingSettings};
use covid_resnet::app::viewer::Mode;
use covid_resnet::app::{App, Settings, Tab};
use covid_resnet::eval::report::{Case, EvalReport};
use covid_resnet::model::Backbone;
use covid_resnet::train::schedule::Trainable;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use std::path::Path;

fn harness(s: Settings) -> Harness<'static, App> {
    crate::app_window::harness(s, (1400.0, 1000.0))
}

use crate::app_window::shown;

fn text_field<'a>(h: &'a Harness<'static, App>, label: &'a str) -> egui_kittest::Node<'a> {
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, label)
}

/// A report of four cases on files in `d`.
fn report(d: &Path) -> std::path::PathBuf {
    let cases: Vec<Case> = (0..4)
        .map(|i| {
            let f = d.join(format!("case{i}.png"));
            film(48, 48, i).save(&f).unwrap();
            let mut probs = vec![0.1f32; 4];
            probs[i as usize] = 0.7;
            Case {
                file: f.display().to_string(),
                file_bytes: None,
                actual: i as usize,
                predicted: i as usize,
                probs,
                loss: 0.3,
                source: None,
                patient: None,
                disagreement: None,
            }
        })
        .collect();
    let classes = covid_resnet::data::split::labels::paper_classes();
    EvalReport::from_cases(classes, cases, 20, 0)
        .write_all(&d.join("eval"), "eval-test")
        .unwrap()[0]
        .clone()
}

#[test]
fn without_a_file_dialog_a_focused_path_window_opens_and_goes_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d, 32);
    let mut s = Settings {
        tab: Tab::Viewer,
        ..Default::default()
    };
    s.viewer.model = model.display().to_string();
    s.training.device = "cpu".into();
    let mut h = harness(s);
    h.state_mut().dialogs = DialogBackend::Unavailable;
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    h.state_mut().viewer.review.open_report(&report(d)).unwrap();
    h.state_mut().viewer.mode = Mode::Review;
    h.run_steps(2);
    // Export review…: a small window opens with its field focused and a folder's placeholder
    // (before: a field at the top of the left panel, unfocused, "/path/to/file", and a notice
    // that stayed).
    h.get_by_label("Export review…").click();
    h.run_steps(3);
    let label = "Type the folder to export the review into:";
    assert!(shown(&h, "No file dialog could be opened"));
    assert!(text_field(&h, label).accesskit_node().is_focused());
    assert_eq!(
        text_field(&h, label).accesskit_node().placeholder(),
        Some("/path/to/folder")
    );
    let out = d.join("exported");
    text_field(&h, label).type_text(&out.display().to_string());
    h.run_steps(1);
    h.key_press(egui::Key::Enter);
    h.run_steps(3);
    assert!(out.join("review.json").is_file(), "the review was exported");
    assert!(!shown(&h, label), "the window is gone");
    assert!(!shown(&h, "No file dialog could be opened"));
    assert!(
        h.state()
            .notices
            .items()
            .iter()
            .all(|n| !n.text.contains("file dialog")),
        "{:?}",
        h.state().notices.items()
    );
    // Escape cancels.
    h.get_by_label("Load model…").click();
    h.run_steps(3);
    assert!(shown(&h, "Type the path of a model file (.safetensors):"));
    h.key_press(egui::Key::Escape);
    h.run_steps(3);
    assert!(!shown(&h, "Type the path of a model file (.safetensors):"));

    // The Training tab's Browse… buttons open the same window.
    h.state_mut().tab = Tab::Training;
    h.run_steps(2);
    h.get_all_by_label("Browse…").next().unwrap().click();
    h.run_steps(3);
    let label = "Type the dataset folder:";
    assert!(text_field(&h, label).accesskit_node().is_focused());
    text_field(&h, label).type_text(&d.display().to_string());
    h.run_steps(1);
    h.get_by_label("OK").click();
    h.run_steps(3);
    assert_eq!(
        h.state().training.settings.data_dir,
        d.display().to_string()
    );
}

fn one_epoch(data: &Path, run_dir: &str) -> Settings {
    Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: run_dir.into(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            batch_size: 8,
            plan_name: "tiny".into(),
            plan_rows: vec![PlanRow {
                size: "32".into(),
                train: Trainable::Head,
                lr: "1e-3".into(),
                epochs: "1".into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn a_refused_start_keeps_the_finished_run_and_each_run_gets_its_own_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 32, 8);
    let run = dir.path().join("fixed");
    let mut h = harness(one_epoch(&data, &run.display().to_string()));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("Start").click();
    step_until(&mut h, 300, "the run's end", |a| {
        a.training.run.state == RunState::Idle && a.training.run.finished_model.is_some()
    });
    let losses = h.state().training.run.losses.len();
    assert!(losses > 0 && h.state().training.run.epochs.len() == 1);
    // The folder holds a finished run: it says so before Start, and Start is refused
    // without clearing anything (before: the plots and the table were wiped).
    assert!(shown(&h, "It holds a finished run"));
    h.get_by_label("Start").click();
    h.run_steps(4);
    let r = &h.state().training.run;
    assert_eq!(r.state, RunState::Idle);
    assert_eq!((r.losses.len(), r.epochs.len()), (losses, 1));
    assert!(
        h.state()
            .notices
            .items()
            .iter()
            .any(|n| n.text.contains("holds a finished run")),
        "{:?}",
        h.state().notices.items()
    );

    // With the field empty, each run gets a new dated folder under the runs folder, named
    // before Start.
    let home = dir.path().join("home");
    h.state_mut().training.settings.runs_root = Some(home.join("runs"));
    h.state_mut().training.settings.run_dir.clear();
    h.run_steps(2);
    let today = covid_resnet::train::run_dir::utc_date(std::time::SystemTime::now());
    let first = home.join("runs").join(format!("{today}-1"));
    assert!(shown(
        &h,
        &format!("Next run writes to {}", first.display())
    ));
    h.get_by_label("Start").click();
    step_until(&mut h, 300, "the second run's end", |a| {
        a.training.run.state == RunState::Idle
            && a.training.run.finished_model.as_deref()
                == Some(first.join("model.safetensors").as_path())
    });
    let second = home.join("runs").join(format!("{today}-2"));
    assert!(shown(
        &h,
        &format!("Next run writes to {}", second.display())
    ));
    assert!(
        run.join("model.safetensors").is_file(),
        "the first run is kept"
    );
}

fn viewer_with(model: &Path, data: &Path) -> Harness<'static, App> {
    let mut h = crate::app_viewer::harness(model, data);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    h
}

fn header(h: &Harness<'static, App>) -> Vec<(bool, String)> {
    let v = &h.state().viewer;
    v.review.header(v.model.as_ref().map(|m| m.path.as_path()))
}

#[test]
fn the_review_names_its_model_and_data_and_says_when_another_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (model_a, model_b) = (write_model(&a, 32), write_model(&b, 32));
    let samples = covid_resnet::model::io::shipped::samples_dir().unwrap();
    let mut h = viewer_with(&model_a, &samples);
    h.get_by_label("Run test set").click();
    step_until(&mut h, 120, "the review", |a| {
        a.viewer.review.report.is_some() && a.viewer.review.running.is_none()
    });
    let lines = header(&h);
    let model_line = format!(
        "Model: {} · classes Normal, Bacterial, Viral, COVID-19",
        covid_resnet::files::shown(&model_a)
    );
    assert_eq!(lines[0], (false, model_line.clone()), "{lines:?}");
    assert!(lines[1].1.starts_with("Data: test split of"), "{lines:?}");
    assert!(shown(&h, &model_line));
    // The hand-picked samples are said to be no test set (before: 41.7 % beside the model
    // card's 78.5 % without a word).
    assert!(
        lines
            .iter()
            .any(|(w, l)| *w && l.contains("not a test set")),
        "{lines:?}"
    );
    // A comparison survives running the test set again (before: silently dropped).
    let first = dir.path().join("first");
    let files = h.state().viewer.review.export(&first).unwrap();
    h.state_mut().viewer.review.compare_with(&files[0]).unwrap();
    h.get_by_label("Run test set").click();
    h.run_steps(2);
    step_until(&mut h, 120, "the second review", |a| {
        a.viewer.review.running.is_none()
    });
    assert!(h.state().viewer.review.comparison.is_some());
    assert!(h.state().viewer.review.comparison_note.is_none());
    // Another model loaded: the review says it is of the first (before: it showed the
    // first model's figures as if they were the second's).
    h.state_mut()
        .viewer
        .push(covid_resnet::app::viewer::Command::LoadModel(
            model_b.clone(),
        ));
    step_until(&mut h, 60, "model B", |a| {
        a.viewer.model.as_ref().map(|m| m.path.clone()) == Some(model_b.clone())
    });
    h.state_mut().viewer.mode = Mode::Review;
    h.run_steps(2);
    assert!(shown(&h, "This review is of"), "{:?}", header(&h));
    assert!(shown(
        &h,
        "Run the test set again to review the loaded model."
    ));
}

#[test]
fn the_training_tab_takes_class_folders_warns_of_tiny_validation_and_its_preview_follows() {
    let dir = tempfile::tempdir().unwrap();
    // Folders of classes alone: 40 and 12 images (each its own patient); 10 % of the
    // training patients are drawn for validation, so the small class gets about one.
    let classes_only = dir.path().join("classes");
    for (c, n, shade) in [("clear", 40, 40u8), ("opacity", 12, 200u8)] {
        for i in 0..n {
            let p = classes_only.join(c).join(format!("{c}{i}.png"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::GrayImage::from_pixel(40, 40, image::Luma([shade]))
                .save(&p)
                .unwrap();
        }
    }
    let synthetic = dir.path().join("synthetic");
    write_synthetic(&synthetic, 16, 4);
    let mut h = harness(one_epoch(&synthetic, ""));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("Batch preview").click();
    h.step();
    h.get_by_label("New batch").click();
    step_until(&mut h, 60, "the preview", |a| {
        !a.training.preview.is_empty()
    });
    let labels = |h: &Harness<'static, App>| -> Vec<String> {
        h.state()
            .training
            .preview
            .iter()
            .map(|p| p.1.clone())
            .collect()
    };
    assert!(labels(&h).iter().all(|l| l == "Normal" || l == "COVID-19"));
    // Another folder: the preview is drawn again from it (before: the old images stayed
    // until "New batch").
    h.state_mut().training.settings.data_dir = classes_only.display().to_string();
    step_until(&mut h, 60, "the new scan and preview", |a| {
        a.training.dataset.is_some()
            && !a.training.preview.is_empty()
            && a.training
                .preview
                .iter()
                .all(|p| p.1 == "clear" || p.1 == "opacity")
    });
    assert!(shown(
        &h,
        "without a test split: 20 % of the patients drawn"
    ));
    assert!(
        shown(&h, "class opacity has only"),
        "{:?}",
        h.state().training.dataset
    );
}

#[test]
fn the_first_launch_shows_the_first_sample_with_the_review_in_sight() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), {
            let mut app = App::first_launch();
            app.training.settings.device = "cpu".into();
            app.viewer.device = "cpu".into();
            app
        });
    step_until(&mut h, 120, "the samples and their predictions", |a| {
        a.viewer.images.len() == 12 && !a.viewer.busy()
    });
    let v = &h.state().viewer;
    assert_eq!(v.mode, Mode::Image);
    assert_eq!(v.selected, Some(0), "the first sample is shown");
    // "Review the samples" is on the first screen (before: below the fold at 1280x800).
    let b = h
        .get_by_label("Review the samples")
        .accesskit_node()
        .bounding_box()
        .unwrap();
    assert!(b.y1 < 800.0, "{b:?}");
}

#[test]
fn a_bad_file_last_in_the_list_leaves_a_good_one_shown() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    film(64, 64, 1).save(&good).unwrap();
    let bad = dir.path().join("bad.dcm");
    std::fs::write(&bad, b"DICM not really").unwrap();
    let mut s = Settings {
        tab: Tab::Viewer,
        ..Default::default()
    };
    s.training.device = "cpu".into();
    let mut app = App::with_settings(s);
    app.viewer.open_at_start(vec![good.clone(), bad]);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app);
    step_until(&mut h, 60, "both files", |a| {
        a.viewer.images.len() == 2
            && a.viewer
                .images
                .iter()
                .all(|i| !matches!(i.state, covid_resnet::app::viewer::ImageState::Loading))
    });
    let v = &h.state().viewer;
    assert_eq!(v.images[v.selected.unwrap()].path, good);
}

#[test]
fn open_honours_the_global_device() {
    // `covid-resnet --device cpu open ...` (before: the flag was dropped for the window).
    let mut s = Settings::default();
    s.training.device = "auto".into();
    let mut app = App::with_settings(s);
    app.apply_startup(covid_resnet::app::Startup {
        device: Some(covid_resnet::device::DeviceChoice::Cpu),
        ..Default::default()
    });
    assert_eq!(app.training.settings.device, "cpu");
    // Without the flag the saved setting stays.
    let mut s = Settings::default();
    s.training.device = "cpu".into();
    let mut app = App::with_settings(s);
    app.apply_startup(Default::default());
    assert_eq!(app.training.settings.device, "cpu");
}
