//! The users of a run: read from a users file (one user id per line; blank lines and `#`
//! comments are ignored), or listed from the tenant's attendance groups or contact tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use attendance_core::plan::EmployeeType;
use attendance_feishu::{Client, PlatformError};
use futures::StreamExt;

use crate::request::Users;

/// Users that could not be listed from the tenant.
#[derive(Debug, thiserror::Error)]
pub enum ListUsersError {
    #[error("listing users ({source_name})")]
    Platform {
        source_name: &'static str,
        #[source]
        error: PlatformError,
    },
    #[error("listing users ({0}) found nobody: check the app's data scope, or pass --users-file")]
    NobodyFound(&'static str),
    #[error(
        "listing users ({0}) needs the platform, and this run has none (a replay): give the users"
    )]
    NoDirectory(&'static str),
}

/// The users `users` stands for, sorted and unique when listed from the tenant, as given when
/// listed by hand (duplicates are left to the planner).
pub async fn resolve(
    directory: Option<&Client>,
    users: &Users,
    employee_type: EmployeeType,
    concurrency: usize,
) -> Result<Vec<String>, ListUsersError> {
    let source_name = users.source_name();
    let err = |error| ListUsersError::Platform { source_name, error };
    let client = match (users, directory) {
        (Users::List(ids), _) => return Ok(ids.clone()),
        (_, None) => return Err(ListUsersError::NoDirectory(source_name)),
        (_, Some(client)) => client,
    };
    let ids = match users {
        Users::List(_) => unreachable!("returned above"),
        Users::Groups => {
            let groups = client.list_groups().await.map_err(err)?;
            let group_ids = groups.into_iter().filter_map(|g| g.group_id);
            members_of(group_ids, concurrency, |id| async move {
                client.list_group_users(&id, employee_type).await
            })
            .await
            .map_err(err)?
        }
        Users::Contact => {
            let departments = client.list_departments().await.map_err(err)?;
            let mut ids_of: Vec<String> = vec!["0".to_string()];
            ids_of.extend(departments.into_iter().filter_map(|d| d.open_department_id));
            members_of(ids_of, concurrency, |id| async move {
                client.list_department_users(&id, employee_type).await
            })
            .await
            .map_err(err)?
        }
    };
    let unique: BTreeSet<String> = ids.into_iter().flatten().collect();
    if unique.is_empty() {
        return Err(ListUsersError::NobodyFound(source_name));
    }
    tracing::info!(users = unique.len(), source = source_name, "users listed");
    Ok(unique.into_iter().collect())
}

/// The members of every group (or department) in `ids`, listed `concurrency` at a time.
async fn members_of<F, Fut>(
    ids: impl IntoIterator<Item = String>,
    concurrency: usize,
    list: F,
) -> Result<Vec<Vec<String>>, PlatformError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, PlatformError>>,
{
    futures::stream::iter(ids)
        .map(list)
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read users file {}", path.display())]
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
