//! What the Viewer's buttons ask for: [`Command`]s, carried out before the next frame is
//! drawn, and the paths they [`Ask`] the user for (a file dialog, or the path window where
//! none opens).
use super::state::Mode;
use super::{ViewerTab, TOPIC};
use crate::app::dialogs::{pick, PathPrompt, Pick, Picked};
use crate::app::notices::Topic;
use crate::app::Shared;
use std::path::PathBuf;

/// File extensions offered by the Open dialog.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom", "PNG", "JPG", "JPEG", "DCM",
];

/// What a file dialog (or the typed path that replaces it) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Images to open.
    Images,
    /// A model file to load.
    Model,
    /// An eval report to open.
    Report,
    /// A folder to export the review into.
    Export,
    /// The dataset folder of the test-set review.
    DataFolder,
    /// A folder for a model copy that keeps the review's operating point.
    ModelCopy,
    /// A second report to compare the review with.
    CompareReport,
}

impl Ask {
    /// The dialog that answers.
    pub(super) fn pick(self) -> Pick {
        match self {
            Ask::Images => Pick::Files {
                filter: "X-ray images",
                exts: IMAGE_EXTENSIONS,
            },
            Ask::Model => Pick::File {
                filter: "covid-resnet model",
                exts: &["safetensors"],
            },
            Ask::Report | Ask::CompareReport => Pick::File {
                filter: "eval report",
                exts: &["json"],
            },
            Ask::Export | Ask::DataFolder | Ask::ModelCopy => Pick::Folder,
        }
    }

    /// An example path for the field.
    pub(super) fn hint(self) -> &'static str {
        match self {
            Ask::Images => "/path/to/xray.png",
            Ask::Model => "/path/to/model.safetensors",
            Ask::Report | Ask::CompareReport => "/path/to/report.json",
            Ask::Export | Ask::DataFolder | Ask::ModelCopy => "/path/to/folder",
        }
    }

    /// The prompt of the path field shown where no dialog opens.
    pub(super) fn what(self) -> &'static str {
        match self {
            Ask::Images => "Type the path of an image to open:",
            Ask::Model => "Type the path of a model file (.safetensors):",
            Ask::Report => "Type the path of an eval report (.json):",
            Ask::Export => "Type the folder to export the review into:",
            Ask::DataFolder => "Type the dataset folder:",
            Ask::ModelCopy => "Type the folder for the model copy:",
            Ask::CompareReport => "Type the path of the report to compare with (.json):",
        }
    }
}

/// What the user asked for; run after the frame is drawn.
#[derive(Debug, Clone)]
pub enum Command {
    /// Show a file dialog (or, without one, a path prompt).
    Pick(Ask),
    /// A path chosen for a purpose.
    Answer(Ask, PathBuf),
    /// Load a model file.
    LoadModel(PathBuf),
    /// Show image `i`.
    Select(usize),
    /// Close image `i`.
    Remove(usize),
    /// Close every image.
    CloseAll,
    /// Run the model over the dataset's test split.
    RunTestSet,
    /// Open a case of the review (its file) in the image view.
    OpenCase(PathBuf),
    /// Open the sample radiographs that ship with the program.
    OpenSamples,
    /// Run the model over the samples' test split.
    ReviewSamples,
    /// Predict the review at this operating point (None: argmax).
    SetOperatingPoint(Option<crate::eval::operating::OperatingPoint>),
    /// Files dropped on the window: (path, content when it is not a file on disk).
    Dropped(Vec<(PathBuf, Option<Vec<u8>>)>),
}

impl ViewerTab {
    /// Runs the queued commands (after the frame).
    pub fn run_commands(&mut self, ctx: &egui::Context, shared: &mut Shared<'_>) {
        for c in std::mem::take(&mut self.commands) {
            self.execute(c, ctx, shared);
        }
    }

    fn execute(&mut self, c: Command, ctx: &egui::Context, shared: &mut Shared<'_>) {
        match c {
            Command::Pick(ask) => match pick(shared.dialogs, &ask.pick()) {
                Picked::Chosen(paths) => {
                    for p in paths {
                        self.execute(Command::Answer(ask, p), ctx, shared);
                    }
                }
                Picked::Cancelled => {}
                Picked::Unavailable => {
                    self.prompt = Some(PathPrompt::new(ask, ask.what(), ask.hint()));
                }
            },
            Command::Answer(ask, p) => match ask {
                Ask::Images => self.open_paths(ctx, vec![p]),
                Ask::Model => self.load_model(ctx, p),
                Ask::Report => self.open_report(&p, shared.notices),
                Ask::Export => match self.review.export(&p) {
                    Ok(files) => shared.notices.info(
                        Topic::Review,
                        format!(
                            "review written: {}",
                            crate::files::shown(&files[0].with_extension("*"))
                        ),
                    ),
                    Err(e) => shared.notices.error(Topic::Review, e.to_string()),
                },
                Ask::DataFolder => *shared.data_dir = crate::files::shown(&p).to_string(),
                Ask::CompareReport => {
                    if let Err(e) = self.review.compare_with(&p) {
                        shared.notices.error(Topic::Review, e);
                    }
                }
                Ask::ModelCopy => match self.save_model_copy(&p) {
                    Ok(out) => {
                        shared.notices.info(
                            Topic::Review,
                            format!(
                                "model with the operating point: {}",
                                crate::files::shown(&out)
                            ),
                        );
                        self.load_model(ctx, out);
                    }
                    Err(e) => shared.notices.error(Topic::Review, e),
                },
            },
            Command::LoadModel(p) => self.load_model(ctx, p),
            Command::Select(i) => {
                if i < self.images.len() {
                    self.selected = Some(i);
                    self.mode = Mode::Image;
                }
            }
            Command::Remove(i) => {
                if i < self.images.len() {
                    self.images.remove(i);
                    self.selected = match self.selected {
                        Some(s) if s > i => Some(s - 1),
                        Some(s) if s == i => None,
                        s => s,
                    }
                    .filter(|&s| s < self.images.len());
                }
            }
            Command::CloseAll => {
                self.images.clear();
                self.selected = None;
            }
            Command::RunTestSet => {
                let data = PathBuf::from(shared.data_dir.trim());
                let opts = shared.data_options.clone();
                self.run_test_set(ctx, shared, data, opts)
            }
            Command::OpenSamples => match crate::model::io::shipped::samples_dir() {
                Some(dir) => {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("test"))
                        .map(|rd| {
                            rd.flatten()
                                .map(|e| e.path())
                                .filter(|p| p.is_file())
                                .collect()
                        })
                        .unwrap_or_default();
                    files.sort();
                    self.open_paths(ctx, files);
                }
                None => shared
                    .notices
                    .error(TOPIC, "the sample radiographs were not found"),
            },
            Command::ReviewSamples => match crate::model::io::shipped::samples_dir() {
                Some(dir) => self.run_test_set(ctx, shared, dir, Default::default()),
                None => shared
                    .notices
                    .error(TOPIC, "the sample radiographs were not found"),
            },
            Command::OpenCase(file) => self.open_case(ctx, file),
            Command::SetOperatingPoint(op) => self.set_operating_point(op),
            Command::Dropped(files) => self.open_dropped(ctx, files, shared.notices),
        }
    }

    /// Starts the test-set pass over `data` in the background.
    fn run_test_set(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared<'_>,
        data: PathBuf,
        opts: crate::data::split::DataOptions,
    ) {
        let Some(m) = &self.model else {
            shared.notices.error(Topic::Review, "load a model first");
            return;
        };
        let (p, path) = (m.predictor.clone(), m.path.clone());
        let bs = self.settings.batch_size.max(1);
        self.review.running = Some((0, 0));
        shared.notices.clear_topic(Topic::Review);
        self.mode = Mode::Review;
        let precision = self.settings.precision;
        self.worker(ctx)
            .review(data, opts, p, path, (bs, precision));
    }

    fn open_case(&mut self, ctx: &egui::Context, path: PathBuf) {
        let truth = self.review.truth_of(&path);
        if let Some(i) = self.images.iter().position(|im| im.path == path) {
            self.images[i].truth = truth.or(self.images[i].truth.take());
            self.selected = Some(i);
            self.mode = Mode::Image;
        } else {
            self.open_one(ctx, path, None, truth);
        }
    }
}
