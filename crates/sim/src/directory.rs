//! The simulated tenant's directory: attendance groups, the contact department tree, and which
//! users each of them holds, derived from the seed when the tenant starts.
//!
//! Invariants:
//! - The directory is a pure function of (seed, generated users, groups, departments): the same
//!   config always has the same ids, names, tree and memberships, in the same order.
//! - Every user (generated and fixture) is a direct member of exactly one department; only when
//!   there are no departments at all are users direct members of the root "0". Departments
//!   nest at most [`MAX_DEPTH`] levels below the root, and department `k`'s parent is always an
//!   earlier department, so index order is a valid creation order.
//! - A generated user is in 0, 1 or 2 distinct groups (about 3% in none, about 5% of the others
//!   in a second); fixture users are in group 0 only. Member lists are sorted by user index and
//!   free of duplicates.
//! - Group ids (19 digits), open_department_ids ("od-" + 32 hex) and department_ids (6 digits)
//!   are unique within their kind and never "0" (the root's id in both department id types).

use std::collections::HashMap;

use super::data::hash_of;

/// Deepest nesting below the root: a top-level department is at depth 1.
pub(crate) const MAX_DEPTH: u8 = 3;
/// The root department's id, in both department id types.
pub(crate) const ROOT_DEPARTMENT_ID: &str = "0";

// Stream tags (data.rs keeps the registry of which module owns which range).
const TAG_GROUP_ID: u64 = 0x40;
const TAG_GROUP_MEMBERSHIP: u64 = 0x41;
const TAG_DEPARTMENT_PARENT: u64 = 0x42;
const TAG_DEPARTMENT_ID: u64 = 0x43;
const TAG_OPEN_DEPARTMENT_ID: u64 = 0x44;
const TAG_USER_DEPARTMENT: u64 = 0x45;
const TAG_USER_NAME: u64 = 0x46;

/// Share of generated users in no attendance group, in percent.
const NO_GROUP_PERCENT: u64 = 3;
/// Share of grouped generated users in a second group too, in percent.
const SECOND_GROUP_PERCENT: u64 = 5;

const DEPARTMENT_NAMES: &[&str] = &[
    "研发部",
    "产品部",
    "Sales 销售部",
    "市场部",
    "Operations",
    "人力资源部 👥",
    "财务部",
    "客户成功部",
    "Design",
    "法务部",
    "Support 🛠",
    "行政部",
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "欧阳",
];
const GIVEN_NAMES: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "子涵", "雨桐", "浩然",
];
const ENGLISH_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isabel", "Jack",
    "Olivia", "Noah",
];

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) name: String,
    /// User indexes, ascending.
    pub(crate) members: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Department {
    pub(crate) name: String,
    /// The short numeric `department_id`.
    pub(crate) department_id: String,
    /// The `open_department_id` ("od-" + 32 hex).
    pub(crate) open_department_id: String,
    /// None = directly under the root.
    pub(crate) parent: Option<usize>,
    pub(crate) depth: u8,
    /// Direct children, ascending.
    pub(crate) children: Vec<usize>,
    /// Direct members (user indexes), ascending.
    pub(crate) members: Vec<usize>,
}

/// A node of the contact tree: the root or one department.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DepartmentNode {
    Root,
    Department(usize),
}

/// The two id types a department can be named by (`department_id_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DepartmentIdType {
    DepartmentId,
    OpenDepartmentId,
}

impl DepartmentIdType {
    pub(crate) fn parse(name: &str) -> Option<DepartmentIdType> {
        match name {
            "department_id" => Some(DepartmentIdType::DepartmentId),
            "open_department_id" => Some(DepartmentIdType::OpenDepartmentId),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Directory {
    seed: u64,
    generated_users: usize,
    groups: Vec<Group>,
    group_by_id: HashMap<String, usize>,
    departments: Vec<Department>,
    top_level: Vec<usize>,
    /// Users directly under the root: everyone when there are no departments, else nobody.
    root_members: Vec<usize>,
    department_by_id: HashMap<String, usize>,
    department_by_open_id: HashMap<String, usize>,
    /// Per user index: the department it is a direct member of (None = the root).
    department_of_user: Vec<Option<u32>>,
}

impl Directory {
    /// Builds the directory of `total_users` users, the first `generated_users` of them
    /// generated and the rest fixtures.
    pub(crate) fn build(
        seed: u64,
        generated_users: usize,
        total_users: usize,
        group_count: usize,
        department_count: usize,
    ) -> Directory {
        let groups = build_groups(seed, group_count, generated_users, total_users);
        let group_by_id = groups
            .iter()
            .enumerate()
            .map(|(index, group)| (group.id.clone(), index))
            .collect();
        let mut departments = build_departments(seed, department_count);
        let top_level = (0..departments.len())
            .filter(|&index| departments[index].parent.is_none())
            .collect();

        let mut department_of_user = Vec::with_capacity(total_users);
        let mut root_members = Vec::new();
        for user in 0..total_users {
            let department = if departments.is_empty() {
                None
            } else if user < generated_users {
                let roll = hash_of(&[seed, TAG_USER_DEPARTMENT, user as u64]);
                Some((roll % departments.len() as u64) as usize)
            } else {
                // Fixture users sit in the first department, where tests can find them.
                Some(0)
            };
            match department {
                Some(index) => departments[index].members.push(user),
                None => root_members.push(user),
            }
            department_of_user.push(department.map(|index| index as u32));
        }
        let department_by_id = departments
            .iter()
            .enumerate()
            .map(|(index, department)| (department.department_id.clone(), index))
            .collect();
        let department_by_open_id = departments
            .iter()
            .enumerate()
            .map(|(index, department)| (department.open_department_id.clone(), index))
            .collect();
        Directory {
            seed,
            generated_users,
            groups,
            group_by_id,
            departments,
            top_level,
            root_members,
            department_by_id,
            department_by_open_id,
            department_of_user,
        }
    }

    pub(crate) fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub(crate) fn group_index(&self, group_id: &str) -> Option<usize> {
        self.group_by_id.get(group_id).copied()
    }

    /// Indexes of the groups `user` is in, ascending.
    pub(crate) fn groups_of(&self, user: usize) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&group| self.groups[group].members.binary_search(&user).is_ok())
            .collect()
    }

    pub(crate) fn department(&self, index: usize) -> &Department {
        &self.departments[index]
    }

    /// The node named `id` in `id_type`; "0" is the root in both types.
    pub(crate) fn resolve_department(
        &self,
        id_type: DepartmentIdType,
        id: &str,
    ) -> Option<DepartmentNode> {
        if id == ROOT_DEPARTMENT_ID {
            return Some(DepartmentNode::Root);
        }
        let map = match id_type {
            DepartmentIdType::DepartmentId => &self.department_by_id,
            DepartmentIdType::OpenDepartmentId => &self.department_by_open_id,
        };
        map.get(id).map(|&index| DepartmentNode::Department(index))
    }

    /// A node's id in `id_type`.
    pub(crate) fn department_id(&self, node: DepartmentNode, id_type: DepartmentIdType) -> &str {
        match node {
            DepartmentNode::Root => ROOT_DEPARTMENT_ID,
            DepartmentNode::Department(index) => {
                let department = &self.departments[index];
                match id_type {
                    DepartmentIdType::DepartmentId => &department.department_id,
                    DepartmentIdType::OpenDepartmentId => &department.open_department_id,
                }
            }
        }
    }

    pub(crate) fn children(&self, node: DepartmentNode) -> &[usize] {
        match node {
            DepartmentNode::Root => &self.top_level,
            DepartmentNode::Department(index) => &self.departments[index].children,
        }
    }

    /// Every department below `node`, depth first, each before its own descendants.
    pub(crate) fn descendants(&self, node: DepartmentNode) -> Vec<usize> {
        let mut found = Vec::new();
        let mut pending: Vec<usize> = self.children(node).iter().rev().copied().collect();
        while let Some(index) = pending.pop() {
            found.push(index);
            pending.extend(self.departments[index].children.iter().rev());
        }
        found
    }

    /// Direct members of `node`, ascending.
    pub(crate) fn members(&self, node: DepartmentNode) -> &[usize] {
        match node {
            DepartmentNode::Root => &self.root_members,
            DepartmentNode::Department(index) => &self.departments[index].members,
        }
    }

    /// The node `user` is a direct member of.
    pub(crate) fn department_of(&self, user: usize) -> DepartmentNode {
        match self.department_of_user[user] {
            Some(index) => DepartmentNode::Department(index as usize),
            None => DepartmentNode::Root,
        }
    }

    /// A user's display name: a plausible (not unique) person name for generated users, the
    /// id itself for fixture users (`fixture_id`).
    pub(crate) fn user_name(&self, user: usize, fixture_id: &str) -> String {
        if user >= self.generated_users {
            return fixture_id.to_owned();
        }
        let roll = hash_of(&[self.seed, TAG_USER_NAME, user as u64]);
        let surname = SURNAMES[(roll % SURNAMES.len() as u64) as usize];
        if roll >> 60 < 3 {
            // About one in five is listed under an English name, as in mixed teams.
            let given = ENGLISH_NAMES[((roll >> 8) % ENGLISH_NAMES.len() as u64) as usize];
            format!("{given} {surname}")
        } else {
            let given = GIVEN_NAMES[((roll >> 8) % GIVEN_NAMES.len() as u64) as usize];
            format!("{surname}{given}")
        }
    }
}

fn build_groups(
    seed: u64,
    group_count: usize,
    generated_users: usize,
    total_users: usize,
) -> Vec<Group> {
    let mut used_ids = std::collections::HashSet::with_capacity(group_count);
    let mut groups: Vec<Group> = (0..group_count)
        .map(|index| {
            // 19 digits starting "69", like the platform's snowflake-style group ids.
            let mut candidate = hash_of(&[seed, TAG_GROUP_ID, index as u64]) % 10u64.pow(17);
            let id = loop {
                let id = (6_900_000_000_000_000_000 + candidate).to_string();
                if used_ids.insert(id.clone()) {
                    break id;
                }
                candidate = (candidate + 1) % 10u64.pow(17);
            };
            let number = index + 1;
            let name = if number % 2 == 1 {
                format!("考勤组 {number}")
            } else {
                format!("Group {number} 🌏")
            };
            Group {
                id,
                name,
                members: Vec::new(),
            }
        })
        .collect();
    if groups.is_empty() {
        return groups;
    }
    let count = groups.len() as u64;
    for user in 0..generated_users {
        let key = user as u64;
        let in_none = hash_of(&[seed, TAG_GROUP_MEMBERSHIP, key, 0]) % 100 < NO_GROUP_PERCENT;
        if in_none {
            continue;
        }
        let first = hash_of(&[seed, TAG_GROUP_MEMBERSHIP, key, 1]) % count;
        groups[first as usize].members.push(user);
        let in_second = hash_of(&[seed, TAG_GROUP_MEMBERSHIP, key, 2]) % 100 < SECOND_GROUP_PERCENT;
        if in_second && count > 1 {
            // An offset in 1..count can never land back on the first group.
            let offset = 1 + hash_of(&[seed, TAG_GROUP_MEMBERSHIP, key, 3]) % (count - 1);
            groups[((first + offset) % count) as usize]
                .members
                .push(user);
        }
    }
    groups[0].members.extend(generated_users..total_users);
    // Users are visited in index order, so each list is already sorted and duplicate-free.
    groups
}

fn build_departments(seed: u64, department_count: usize) -> Vec<Department> {
    let mut departments: Vec<Department> = Vec::with_capacity(department_count);
    let mut used_ids = std::collections::HashSet::with_capacity(department_count);
    for index in 0..department_count {
        let parent = match index {
            0 => None,
            // The first three always form a chain, so every tree of 3+ has the deepest level.
            1 | 2 => Some(index - 1),
            _ => {
                let roll = hash_of(&[seed, TAG_DEPARTMENT_PARENT, index as u64]) % 3;
                let candidate =
                    hash_of(&[seed, TAG_DEPARTMENT_PARENT, index as u64, 1]) % index as u64;
                // A third go straight under the root; the others under an earlier department
                // that still has room below it.
                let candidate = candidate as usize;
                (roll != 0 && departments[candidate].depth < MAX_DEPTH).then_some(candidate)
            }
        };
        let depth = parent.map_or(1, |parent| departments[parent].depth + 1);
        let mut candidate = hash_of(&[seed, TAG_DEPARTMENT_ID, index as u64]) % 900_000;
        let department_id = loop {
            let id = (100_000 + candidate).to_string();
            if used_ids.insert(id.clone()) {
                break id;
            }
            candidate = (candidate + 1) % 900_000;
        };
        // 128 random bits: collisions are not a practical concern, unlike the 6-digit ids.
        let open_department_id = format!(
            "od-{:016x}{:016x}",
            hash_of(&[seed, TAG_OPEN_DEPARTMENT_ID, index as u64, 0]),
            hash_of(&[seed, TAG_OPEN_DEPARTMENT_ID, index as u64, 1])
        );
        let name = match DEPARTMENT_NAMES.get(index) {
            Some(name) => (*name).to_owned(),
            None => format!("部门 {}", index + 1),
        };
        if let Some(parent) = parent {
            departments[parent].children.push(index);
        }
        departments.push(Department {
            name,
            department_id,
            open_department_id,
            parent,
            depth,
            children: Vec::new(),
            members: Vec::new(),
        });
    }
    departments
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn memberships_have_the_documented_shape() {
        let generated = 4_000;
        let directory = Directory::build(42, generated, generated + 7, 5, 8);
        let mut in_none = 0;
        let mut in_two = 0;
        for user in 0..generated {
            match directory.groups_of(user).len() {
                0 => in_none += 1,
                1 => {}
                2 => in_two += 1,
                other => panic!("user {user} is in {other} groups"),
            }
        }
        let none_share = in_none as f64 / generated as f64;
        let two_share = in_two as f64 / generated as f64;
        assert!((0.015..0.05).contains(&none_share), "{none_share}");
        assert!((0.03..0.07).contains(&two_share), "{two_share}");
        for fixture in generated..generated + 7 {
            assert_eq!(directory.groups_of(fixture), [0]);
            assert_eq!(
                directory.department_of(fixture),
                DepartmentNode::Department(0)
            );
        }
        for group in directory.groups() {
            assert!(group.members.windows(2).all(|pair| pair[0] < pair[1]));
            assert_eq!(group.id.len(), 19);
            assert!(group.id.bytes().all(|byte| byte.is_ascii_digit()));
        }
        assert_eq!(directory.groups()[0].name, "考勤组 1");
        assert_eq!(directory.groups()[1].name, "Group 2 🌏");
    }

    #[test]
    fn the_tree_is_nested_and_holds_every_user_once() {
        let directory = Directory::build(7, 500, 507, 3, 8);
        let all = directory.descendants(DepartmentNode::Root);
        assert_eq!(all.len(), 8);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 8);
        assert!(
            all.iter()
                .any(|&index| directory.department(index).depth == 3)
        );
        assert!(
            all.iter()
                .all(|&index| directory.department(index).depth <= 3)
        );
        assert!(directory.children(DepartmentNode::Root).len() < 8);
        let mut seen: Vec<usize> = all
            .iter()
            .flat_map(|&index| directory.department(index).members.iter().copied())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..507).collect::<Vec<_>>());
        assert!(directory.members(DepartmentNode::Root).is_empty());
        for &index in &all {
            let department = directory.department(index);
            assert!(department.open_department_id.starts_with("od-"));
            assert_eq!(department.open_department_id.len(), 35);
            let node = DepartmentNode::Department(index);
            for id_type in [
                DepartmentIdType::DepartmentId,
                DepartmentIdType::OpenDepartmentId,
            ] {
                let id = directory.department_id(node, id_type);
                assert_eq!(directory.resolve_department(id_type, id), Some(node));
            }
        }
        let first = DepartmentNode::Department(0);
        assert_eq!(directory.descendants(first)[..2], [1, 2]);
    }

    #[test]
    fn without_departments_everyone_is_under_the_root() {
        let directory = Directory::build(1, 20, 27, 0, 0);
        assert_eq!(directory.members(DepartmentNode::Root).len(), 27);
        assert!(directory.groups().is_empty());
        assert!(directory.groups_of(3).is_empty());
        assert_eq!(directory.department_of(26), DepartmentNode::Root);
    }
}
