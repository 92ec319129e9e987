//! The gates directory: files merged in name order after the main file, names unique across
//! all of them, problems pointing at the right file.

use std::fs;
use std::path::{Path, PathBuf};

use countersign_config::{ConfigErrors, Env, Settings, load};

const MAIN: &str = r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[issuers]]
name = "okta"
url = "https://acme.okta.com"
audiences = ["a"]

[[gates]]
name = "deploy-prod"
requesters = 'true'
  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
"#;

fn gate(name: &str) -> String {
    format!(
        "# owned by a team\n[[gates]]\nname = \"{name}\"\nrequesters = 'true'\n  [[gates.rules]]\n  name = \"r\"\n  approvers = 'true'\n"
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new(main: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().to_path_buf();
        fs::write(root.join("countersign.toml"), main).expect("write the main file");
        Self { _dir: dir, root }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the directory");
        fs::write(&path, text).expect("write the file");
        path
    }

    fn main(&self) -> PathBuf {
        self.root.join("countersign.toml")
    }

    fn load(&self) -> Result<Settings, ConfigErrors> {
        load(&self.main(), &Env::empty())
    }
}

#[test]
fn gates_d_next_to_the_config_is_merged_in_name_order() {
    let s = Setup::new(MAIN);
    let b = s.write("gates.d/b-team.toml", &gate("db-session"));
    let a = s.write(
        "gates.d/a-team.toml",
        &format!("{}\n{}", gate("rotate-key"), gate("publish")),
    );
    s.write("gates.d/README.md", "not a gate file");
    s.write("gates.d/.draft.toml", "this is = not toml [");
    let settings = s.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.sources, vec![s.main(), a, b]);
    assert_eq!(settings.server.gates_dir, Some(s.root.join("gates.d")));
    let mut names: Vec<&str> = settings.gates.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["db-session", "deploy-prod", "publish", "rotate-key"]
    );
}

#[test]
fn a_configured_gates_dir_resolves_against_the_config_file() {
    let s = Setup::new(&MAIN.replace(
        "public_url = \"https://approvals.example.com\"",
        "public_url = \"https://approvals.example.com\"\ngates_dir = \"teams/gates\"",
    ));
    s.write("teams/gates/x.toml", &gate("from-teams"));
    // The default directory is not read when another is configured.
    s.write("gates.d/y.toml", &gate("ignored"));
    let settings = s.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.server.gates_dir, Some(s.root.join("teams/gates")));
    assert!(settings.gates.get("from-teams").is_some());
    assert!(settings.gates.get("ignored").is_none());
}

#[test]
fn a_missing_configured_gates_dir_is_an_error() {
    let s = Setup::new(&MAIN.replace(
        "public_url = \"https://approvals.example.com\"",
        "public_url = \"https://approvals.example.com\"\ngates_dir = \"nowhere\"",
    ));
    let e = s.load().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].key, "server.gates_dir");
    assert_eq!(e.0[0].line, Some(3));
    assert!(e.0[0].message.contains("is not a directory"), "{e}");
}

#[test]
fn a_duplicate_gate_names_both_files() {
    let s = Setup::new(MAIN);
    s.write("gates.d/a.toml", &gate("fine"));
    let dup = s.write(
        "gates.d/b.toml",
        &format!("{}\n{}", gate("other"), gate("deploy-prod")),
    );
    let e = s.load().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    let p = &e.0[0];
    assert_eq!(p.file, dup);
    assert_eq!(p.line, Some(11));
    assert_eq!(p.key, "gates[deploy-prod].name");
    let first = format!("{}:10", s.main().display());
    assert!(p.message.contains(&first), "{p}");

    // And between two gates files.
    let s = Setup::new(MAIN);
    let first = s.write("gates.d/a.toml", &gate("same"));
    let second = s.write("gates.d/b.toml", &gate("same"));
    let e = s.load().unwrap_err();
    assert_eq!(e.0[0].file, second);
    assert!(
        e.0[0].message.contains(&format!("{}:3", first.display())),
        "{e}"
    );
}

#[test]
fn problems_in_gates_files_point_at_them() {
    let s = Setup::new(MAIN);
    let bad = s.write(
        "gates.d/bad.toml",
        "[[gates]]\nname = \"bad\"\nrequesters = 'true'\n  [[gates.rules]]\n  name = \"r\"\n  approvers = 'aprover.groups == []'\n",
    );
    let e = s.load().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, bad);
    assert_eq!(e.0[0].line, Some(6));
    assert_eq!(e.0[0].key, "gates[bad].rules[r].approvers");
    assert!(e.to_string().starts_with(&format!(
        "{}:6: gates[bad].rules[r].approvers: unknown variable 'aprover'",
        bad.display()
    )));
}

#[test]
fn gates_files_hold_only_gates() {
    let s = Setup::new(MAIN);
    let f = s.write(
        "gates.d/x.toml",
        "[server]\nlisten = \"0.0.0.0:1\"\n\n[[issuers]]\nname = \"evil\"\n",
    );
    let e = s.load().unwrap_err();
    let keys: Vec<(&Path, Option<usize>, &str)> =
        e.0.iter()
            .map(|p| (p.file.as_path(), p.line, p.key.as_str()))
            .collect();
    assert_eq!(
        keys,
        [
            (f.as_path(), Some(1), "server"),
            (f.as_path(), Some(4), "issuers")
        ]
    );
    assert!(e.0[0].message.contains("may only contain [[gates]]"));
}

#[test]
fn a_syntax_error_in_a_gates_file_is_reported_with_its_line() {
    let s = Setup::new(MAIN);
    s.write("gates.d/a.toml", &gate("fine"));
    let broken = s.write(
        "gates.d/b.toml",
        "[[gates]]\nname = \"x\"\nrequesters = 'true\n",
    );
    let e = s.load().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, broken);
    assert_eq!(e.0[0].line, Some(3));
}

#[test]
fn relative_secret_files_resolve_against_the_file_that_names_them() {
    let s = Setup::new(MAIN);
    s.write(
        "gates.d/secrets/hook",
        "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=\n",
    );
    s.write(
        "gates.d/hooked.toml",
        &format!("{}  [[gates.webhooks]]\n  url = \"https://h.example.com\"\n  secret_file = \"secrets/hook\"\n  events = [\"request.approved\"]\n", gate("hooked")),
    );
    let settings = s.load().unwrap_or_else(|e| panic!("{e}"));
    let hook = &settings.gates.get("hooked").unwrap().webhooks[0];
    assert!(
        hook.secret
            .as_ref()
            .unwrap()
            .ct_eq("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    );
}
