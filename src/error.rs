//! The library's error type: every variant names the file or value that caused it.
use std::path::PathBuf;

/// Errors of the covid-resnet library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed. The OS error is part of the message and not a
    /// separate source, so a chain printer (`{:#}`) does not say it twice.
    #[error("{}: {os}", crate::files::shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        os: std::io::Error,
    },
    /// A weight, model or checkpoint file is unusable.
    #[error("{}: {msg}", crate::files::shown(path))]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An image could not be decoded.
    #[error("{}: {msg}", crate::files::shown(path))]
    Decode {
        /// The image file.
        path: PathBuf,
        /// Why it could not be decoded.
        msg: String,
    },
    /// A download failed or was refused; the message names the address and what to do.
    #[error("download {msg}")]
    Download {
        /// What happened, beginning with the address.
        msg: String,
    },
    /// A setting or argument has a value that cannot work.
    #[error("invalid {what}: {msg}")]
    Invalid {
        /// The setting.
        what: String,
        /// Why it is invalid.
        msg: String,
    },
    /// The training loss became NaN or infinite; the weights of the epoch's start were
    /// restored and the run can be resumed with a lower learning rate.
    #[error(
        "loss became {loss} at stage {stage}, step {step}, epoch {epoch}, batch {batch} \
         (learning rate {lr:.3e}): weights restored to the start of this epoch; lower the \
         learning rate and resume"
    )]
    Diverged {
        /// The loss (NaN or infinite).
        loss: f64,
        /// Stage (1-based).
        stage: usize,
        /// Step in the stage (1-based).
        step: usize,
        /// Epoch in the step (1-based).
        epoch: usize,
        /// Batch in the epoch (1-based).
        batch: usize,
        /// The head group's learning rate at that batch.
        lr: f64,
    },
    /// The requested compute device is not available in this build or on this machine.
    #[error("device {0}")]
    Device(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The OS error of an I/O failure (its kind tells a full disk from a missing file).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Self::Io { os, .. } => Some(os.kind()),
            _ => None,
        }
    }
}

/// Result with the library's error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, os: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            os,
        }
    }

    /// A problem with the weight/model file at `path`.
    pub fn weights(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::WeightFile {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An invalid setting.
    pub fn invalid(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            msg: msg.into(),
        }
    }
}
