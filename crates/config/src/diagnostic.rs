//! Errors that point at a place in the configuration file.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in a configuration file, 1-based, as editors count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The configuration file.
    pub file: PathBuf,
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number (in characters), starting at 1.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `text`, read from `file`.
    pub fn at(file: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location { file: file.to_path_buf(), line, column }
    }

    /// The location of the start of `span` in `text`.
    pub fn of_span(file: &Path, text: &str, span: &Range<usize>) -> Location {
        Location::at(file, text, span.start)
    }
}

/// Where each line of a text starts, so that a location is a binary search rather than a count of every
/// newline before it (a file of ten thousand tenants has a location for each).
#[derive(Debug)]
pub(crate) struct LineStarts(Vec<usize>);

impl LineStarts {
    pub(crate) fn of(text: &str) -> LineStarts {
        LineStarts(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// The location of byte offset `offset` in `text` (the text these starts were taken of), read from `file`;
    /// the same as [`Location::at`].
    pub(crate) fn location(&self, file: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let line = self.0.partition_point(|&start| start <= offset).max(1);
        let line_start = self.0.get(line - 1).copied().unwrap_or(0);
        let column = text.get(line_start..offset).map_or(0, |s| s.chars().count()) + 1;
        Location { file: file.to_path_buf(), line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, in one sentence, naming the key.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    // The reason is part of the message and not a `source`: printed with its causes, it would appear twice.
    #[error("{}: cannot read configuration: {reason}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// The file was read but has one or more problems; each names its line.
    #[error("{}", DisplayAll(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The individual problems, one per line of the error's display.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            ConfigError::Read { .. } => &[],
        }
    }
}

struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        let file = Path::new("p.toml");
        assert_eq!(Location::at(file, text, 0).to_string(), "p.toml:1:1");
        assert_eq!(Location::at(file, text, 6).to_string(), "p.toml:2:1");
        assert_eq!(Location::at(file, text, 9).to_string(), "p.toml:2:4");
        // Past the end clamps rather than panicking.
        assert_eq!(Location::at(file, text, 999).line, 3);
        let lines = LineStarts::of(text);
        for offset in [0, 3, 5, 6, 9, 10, 11, 999] {
            assert_eq!(lines.location(file, text, offset), Location::at(file, text, offset), "offset {offset}");
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "é = \"x\"";
        assert_eq!(Location::at(Path::new("f"), text, 3).column, 3);
    }
}
