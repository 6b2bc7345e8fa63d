//! What the Viewer's buttons ask for: [`Command`]s run after the frame, and the paths they
//! [`Ask`] the user for (a file dialog, or a path field where none opens).
use crate::app::dialogs::Pick;
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
}
