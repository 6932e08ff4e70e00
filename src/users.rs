//! The users file: one user id per line; blank lines and `#` comments are ignored.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read users file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "users file {}, line {line}: '{text}' is not one user id (ids have no spaces; put one per line)",
        path.display()
    )]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("users file {} holds no user ids", path.display())]
    Empty { path: PathBuf },
}

/// Reads the ids of a users file, in file order (duplicates are left to the planner).
pub fn read_users_file(path: &Path) -> Result<Vec<String>, UsersFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ids = parse_users(&text).map_err(|(line, text)| UsersFileError::BadLine {
        path: path.to_path_buf(),
        line,
        text,
    })?;
    if ids.is_empty() {
        return Err(UsersFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(ids)
}

/// Parses the text of a users file; `Err((line number, line))` on a line that is not one id.
pub fn parse_users(text: &str) -> Result<Vec<String>, (usize, String)> {
    let mut ids = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.split_whitespace().count() != 1 {
            return Err((i + 1, raw.trim().to_string()));
        }
        ids.push(line.to_string());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let ids = parse_users("# team a\nabd754f7\n\n  e2 # on leave\r\n#x\n").unwrap();
        assert_eq!(ids, ["abd754f7", "e2"]);
    }

    #[test]
    fn a_line_with_two_ids_is_an_error_naming_the_line() {
        assert_eq!(parse_users("a\nb c\n").unwrap_err(), (2, "b c".to_string()));
    }
}
