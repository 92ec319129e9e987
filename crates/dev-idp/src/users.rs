//! The demo people and the demo CI workload of the sandbox.

/// The name `countersign dev token` takes for the demo CI workload instead of a user name.
pub const CI_USER: &str = "ci";

/// A person who can sign in to the dev provider. Their claims go into every token issued for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoUser {
    /// The `sub` and `preferred_username` claims, and what the user picker posts.
    pub username: &'static str,
    /// The `name` claim.
    pub name: &'static str,
    /// The `email` claim (always `email_verified: true`).
    pub email: &'static str,
    /// The `groups` claim.
    pub groups: &'static [&'static str],
    /// The `team` claim.
    pub team: &'static str,
    /// What this user is for in the sandbox, shown in the picker and by `countersign dev`.
    pub description: &'static str,
}

/// The demo CI job: the subject and GitHub-Actions-like claims of its client-credentials token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoWorkload {
    /// The `sub` claim, shaped like GitHub's `repo:OWNER/REPO:ref:REF`.
    pub sub: &'static str,
    /// The `repository` claim.
    pub repository: &'static str,
    /// The `repository_owner` claim.
    pub repository_owner: &'static str,
    /// The `repository_id` claim (a string, as GitHub sends it).
    pub repository_id: &'static str,
    /// The `ref` claim.
    pub git_ref: &'static str,
    /// The `workflow` claim.
    pub workflow: &'static str,
    /// The `actor` claim: the GitHub login that triggered the run.
    pub actor: &'static str,
    /// The `actor_sub` claim: the `sub` of the human behind the run at this provider.
    pub actor_sub: &'static str,
    /// What this workload is for in the sandbox.
    pub description: &'static str,
}

static DEMO_USERS: [DemoUser; 5] = [
    DemoUser {
        username: "alice",
        name: "Alice Adams",
        email: "alice@example.com",
        groups: &["dev"],
        team: "payments",
        description: "Requester: a payments developer who asks for production deploys and database sessions.",
    },
    DemoUser {
        username: "bob",
        name: "Bob Baker",
        email: "bob@example.com",
        groups: &["sre"],
        team: "platform",
        description: "SRE approver on the platform team.",
    },
    DemoUser {
        username: "carol",
        name: "Carol Chen",
        email: "carol@example.com",
        groups: &["security"],
        team: "security",
        description: "Security approver: the second team a production deploy needs.",
    },
    DemoUser {
        username: "dave",
        name: "Dave Diaz",
        email: "dave@example.com",
        groups: &["sre", "security"],
        team: "platform",
        description: "In both SRE and security: shows that one person cannot fill two approvals.",
    },
    DemoUser {
        username: "erin",
        name: "Erin Evans",
        email: "erin@example.com",
        groups: &["admin"],
        team: "it",
        description: "Administrator: sees every request and the audit log.",
    },
];

static DEMO_WORKLOAD: DemoWorkload = DemoWorkload {
    sub: "repo:acme/app:ref:refs/heads/main",
    repository: "acme/app",
    repository_owner: "acme",
    repository_id: "1234",
    git_ref: "refs/heads/main",
    workflow: "deploy",
    actor: "alice",
    actor_sub: "alice",
    description: "The deploy workflow of acme/app on main, started by alice.",
};

/// The demo people, in the order the user picker shows them.
pub fn demo_users() -> &'static [DemoUser] {
    &DEMO_USERS
}

/// The workload the `demo-ci` client gets tokens for.
pub fn demo_workload() -> &'static DemoWorkload {
    &DEMO_WORKLOAD
}

/// The demo user with this user name, if any.
pub fn find_demo_user(username: &str) -> Option<&'static DemoUser> {
    DEMO_USERS.iter().find(|user| user.username == username)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_unique_and_emails_follow_them() {
        for (i, user) in demo_users().iter().enumerate() {
            assert_eq!(user.email, format!("{}@example.com", user.username));
            assert!(
                demo_users()[i + 1..]
                    .iter()
                    .all(|other| other.username != user.username)
            );
            assert_ne!(user.username, CI_USER);
        }
    }
}
