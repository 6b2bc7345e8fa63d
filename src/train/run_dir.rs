//! Who may write in a run folder: the process that holds the exclusive advisory lock on its
//! `run.lock` for the run's whole life. The OS releases the lock when the process ends, even
//! by kill -9, so a crashed run can be resumed at once; a second process that tries to
//! train, resume or overwrite the folder meanwhile is refused, and only the lock's holder
//! removes the temporary files a crash left behind.
use super::checkpoint::{CHECKPOINT_FILE, HISTORY_FILE, LOSSES_FILE, MODEL_FILE};
use crate::files::shown;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// Files a run writes, removed when the user asks to overwrite a run folder.
const RUN_FILES: &[&str] = &[
    CHECKPOINT_FILE,
    MODEL_FILE,
    HISTORY_FILE,
    LOSSES_FILE,
    "plan.toml",
    "report.json",
    "report.csv",
    "report.md",
    "report-confusion.png",
    "report-roc.png",
    "report-reliability.png",
    "report-histogram.png",
];

/// An exclusive hold on a run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: PathBuf,
}

impl RunLock {
    /// The folder held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a run folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing of a run.
    Empty,
    /// A checkpoint without a final model: a run that was stopped or crashed.
    Stopped,
    /// A final model: a finished run.
    Finished,
}

/// What `dir` holds (not whether someone is running in it: see [`RunLock`]).
pub fn run_state(dir: &Path) -> RunState {
    if dir.join(MODEL_FILE).is_file() {
        RunState::Finished
    } else if dir.join(CHECKPOINT_FILE).is_file() {
        RunState::Stopped
    } else {
        RunState::Empty
    }
}

/// Takes the lock of `dir` (which must exist), or says which process holds it.
pub fn lock(dir: &Path) -> Result<RunLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            return Err(Error::invalid(
                "run folder",
                format!(
                    "{} is in use by {who}, which is training in it; wait for it to end, or \
                     stop it, before training, resuming or overwriting this run",
                    shown(dir)
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    // Who holds it, for the next process's message.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(RunLock {
        _file: file,
        dir: dir.to_path_buf(),
    })
}

/// The folder new runs go into when none is named: `runs` in the user's data folder
/// (`COVID_RESNET_HOME`, else the platform's), else `runs` here.
pub fn default_runs_root() -> PathBuf {
    crate::model::io::zoo::user_data_dir()
        .map(|d| d.join("runs"))
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// The date of `t` (UTC) as YYYY-MM-DD (the civil calendar from days since 1970, Howard
/// Hinnant's algorithm).
pub fn utc_date(t: std::time::SystemTime) -> String {
    let days = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

/// The next new run's folder under `root`: `<date>-<n>` with the first n from 1 that is not
/// there yet, so every run keeps its own folder.
pub fn next_run_dir(root: &Path, date: &str) -> PathBuf {
    (1u32..)
        .map(|n| root.join(format!("{date}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| root.join(date))
}

/// Claims `dir` for a new run: creates it, takes its lock, and refuses a folder that holds a
/// finished or stopped run unless `overwrite`, in which case that run's files are removed.
pub fn claim_new(dir: &Path, overwrite: bool) -> Result<RunLock> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(
            "run folder",
            format!(
                "{} is a file, not a folder: name a folder for the run (it is created if \
                 missing)",
                shown(dir)
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let held = lock(dir)?;
    match (run_state(dir), overwrite) {
        (RunState::Empty, _) => {}
        (state, false) => {
            let what = if state == RunState::Finished {
                "a finished run (model.safetensors)"
            } else {
                "a stopped run (checkpoint.safetensors; continue it with --resume)"
            };
            return Err(Error::invalid(
                "run folder",
                format!(
                    "{} holds {what}; choose another folder, or overwrite it (--force on \
                     the command line, \"overwrite\" in the Training tab)",
                    shown(dir)
                ),
            ));
        }
        (_, true) => {
            for f in RUN_FILES {
                let p = dir.join(f);
                if p.is_file() {
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
    }
    crate::files::remove_stale_temps(dir);
    Ok(held)
}

/// Claims `dir` to resume the run in it: takes its lock, then removes the temporary files a
/// killed writer left (only now: while another process held the lock they were its own).
pub fn claim_resume(dir: &Path) -> Result<(RunLock, Vec<PathBuf>)> {
    if !dir.is_dir() {
        return Err(Error::invalid(
            "run folder",
            format!("{} is not a folder", shown(dir)),
        ));
    }
    let held = lock(dir)?;
    let removed = crate::files::remove_stale_temps(dir);
    Ok((held, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_folder_is_refused_and_free_again_after_drop() {
        let d = tempfile::tempdir().unwrap();
        let first = claim_new(d.path(), false).unwrap();
        // A second claim (the same process opens the file anew: flock locks are per open
        // file, so this is refused as another process would be).
        let e = claim_new(d.path(), false).unwrap_err().to_string();
        assert!(e.contains("in use by process"), "{e}");
        assert!(claim_resume(d.path()).is_err());
        drop(first);
        assert!(claim_resume(d.path()).is_ok());
    }

    #[test]
    fn new_run_folders_are_dated_and_numbered() {
        use std::time::{Duration, UNIX_EPOCH};
        // Dates by the calendar: the epoch, a leap day, the end of a century year.
        let at = |s: u64| utc_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(978_307_199), "2000-12-31");
        assert_eq!(at(1_796_515_200 + 86_399), "2026-12-06");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            next_run_dir(d.path(), "2026-12-06"),
            d.path().join("2026-12-06-1")
        );
        std::fs::create_dir(d.path().join("2026-12-06-1")).unwrap();
        assert_eq!(
            next_run_dir(d.path(), "2026-12-06"),
            d.path().join("2026-12-06-2")
        );
    }

    #[test]
    fn a_file_in_the_folders_place_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("notes.txt");
        std::fs::write(&f, "x").unwrap();
        let e = claim_new(&f, false).err().unwrap().to_string();
        assert!(e.contains("notes.txt is a file, not a folder"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
    }

    #[test]
    fn finished_and_stopped_runs_need_overwrite() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(MODEL_FILE), b"model").unwrap();
        let e = claim_new(d.path(), false).unwrap_err().to_string();
        assert!(e.contains("finished run"), "{e}");
        assert!(d.path().join(MODEL_FILE).is_file(), "nothing removed");
        let _held = claim_new(d.path(), true).unwrap();
        assert!(!d.path().join(MODEL_FILE).exists());
        assert_eq!(run_state(d.path()), RunState::Empty);
    }
}
