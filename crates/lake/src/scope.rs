//! Which rows a run replaces: those of its users, for its statuses. Everything else stays.

use std::collections::HashSet;

use attendance_core::plan::Status;

/// The rows a commit replaces in every partition and rejects file of its window.
#[derive(Debug, Clone)]
pub struct Scope {
    pub users: HashSet<String>,
    pub statuses: HashSet<Status>,
}

impl Scope {
    /// Whether a row of `user` with status code `status` is replaced by this run. A row without
    /// a user (an unreadable user_approval, kept aside) is replaced by any run over its status.
    pub fn covers(&self, user: Option<&str>, status: i32) -> bool {
        Status::new(status).is_some_and(|s| self.statuses.contains(&s))
            && user.is_none_or(|u| self.users.contains(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_covers_its_users_and_statuses_only() {
        let scope = Scope {
            users: ["u1".to_string()].into(),
            statuses: [Status::APPROVED].into(),
        };
        assert!(scope.covers(Some("u1"), 2));
        assert!(!scope.covers(Some("u1"), 3));
        assert!(!scope.covers(Some("u2"), 2));
        assert!(scope.covers(None, 2));
        assert!(
            !scope.covers(None, 9),
            "a code that is no status is never covered"
        );
    }
}
