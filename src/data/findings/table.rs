//! The CSV reading the multi-label layouts share: plain or gzip-compressed files, columns
//! found by name with a message that lists the file's columns, lines numbered in errors.
use crate::files::shown;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// A CSV file's header and records.
pub struct Table {
    /// Column names.
    pub head: Vec<String>,
    reader: csv::Reader<Box<dyn Read>>,
    file: std::path::PathBuf,
}

impl Table {
    /// Opens `file` (`.gz`: decompressed as it is read).
    pub fn open(file: &Path) -> Result<Table> {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let inner: Box<dyn Read> = if file.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        } else {
            Box::new(std::io::BufReader::new(f))
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(inner);
        let head = reader
            .headers()
            .map_err(|e| Error::invalid("CSV", format!("{}: {e}", shown(file))))?
            .iter()
            .map(str::to_string)
            .collect();
        Ok(Table {
            head,
            reader,
            file: file.to_path_buf(),
        })
    }

    /// The column called `name`, or an error naming the file and its columns.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.head.iter().position(|h| h == name).ok_or_else(|| {
            Error::invalid(
                "CSV",
                format!(
                    "{}: no column {name:?} (columns: {})",
                    shown(&self.file),
                    self.head.join(", ")
                ),
            )
        })
    }

    /// Calls `each(line, record)` for every record (lines count from 1, the header's).
    pub fn each(
        &mut self,
        mut each: impl FnMut(usize, &csv::StringRecord) -> Result<()>,
    ) -> Result<()> {
        let mut rec = csv::StringRecord::new();
        let mut line = 1;
        loop {
            line += 1;
            match self.reader.read_record(&mut rec) {
                Ok(false) => return Ok(()),
                Ok(true) => each(line, &rec)?,
                Err(e) => return Err(self.error(line, e.to_string())),
            }
        }
    }

    /// An error at `line` of the file.
    pub fn error(&self, line: usize, msg: impl fmt::Display) -> Error {
        Error::invalid("CSV", format!("{}:{line}: {msg}", shown(&self.file)))
    }
}

use std::fmt;

/// The marks of `rec`'s label columns (`cols`: index and name), or what `at` makes of the
/// first cell that is not 1, 0, -1 (or 1.0, 0.0, -1.0) or blank.
pub fn marks(
    rec: &csv::StringRecord,
    cols: &[(usize, String)],
    at: impl Fn(String) -> Error,
) -> Result<Vec<super::Mark>> {
    cols.iter()
        .map(|(c, name)| {
            let cell = rec.get(*c).unwrap_or("").trim();
            super::Mark::parse(cell).ok_or_else(|| {
                at(format!(
                    "{name} is {cell:?} (expected 1, 0, -1 or blank; also 1.0, 0.0, -1.0)"
                ))
            })
        })
        .collect()
}
