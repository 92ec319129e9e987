//! The login cache: one JSON file per server under `$XDG_CONFIG_HOME/countersign/logins/`
//! (else `~/.config/countersign/logins/`), named by a hash of the server URL, readable by the
//! user only. Files are created with mode 0600 (never chmod-ed afterwards) and replaced
//! atomically: written to a temporary file in the same folder, synced, renamed over.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::failure::Failure;

/// One login to one server.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Login {
    /// The countersign server this login is for.
    pub server: String,
    /// The configured name of the issuer.
    pub issuer_name: String,
    /// The issuer URL.
    pub issuer: String,
    /// The public client signed in as.
    pub client_id: String,
    /// Where the refresh token is exchanged.
    pub token_endpoint: String,
    /// Where `logout` revokes the refresh token, if the issuer has one.
    pub revocation_endpoint: Option<String>,
    /// The RFC 8707 resource asked for.
    pub resource: Option<String>,
    /// The bearer token for the server.
    pub access_token: String,
    /// For a new access token without the user.
    pub refresh_token: Option<String>,
    /// When the access token expires, in seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("server", &self.server)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `countersign/` in the user's configuration folder.
pub fn config_dir() -> Result<PathBuf, Failure> {
    let from = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from("XDG_CONFIG_HOME")
        .or_else(|| from("HOME").map(|home| home.join(".config")))
        .or_else(|| from("APPDATA"))
        .map(|base| base.join("countersign"))
        .ok_or_else(|| {
            Failure::error(
                "cannot find a configuration folder for the login cache; set XDG_CONFIG_HOME or HOME",
            )
        })
}

/// The cache file of `server`.
pub fn path_for(server: &str) -> Result<PathBuf, Failure> {
    let hash = hex::encode(Sha256::digest(server.as_bytes()));
    Ok(config_dir()?
        .join("logins")
        .join(format!("{}.json", &hash[..32])))
}

/// The cached login for `server`, if there is one.
pub fn load(server: &str) -> Result<Option<Login>, Failure> {
    let path = path_for(server)?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::error(format!(
                "cannot read the login cache {}: {e}; run `countersign login --server {server}`",
                path.display()
            )));
        }
    };
    match serde_json::from_str::<Login>(&text) {
        Ok(login) if login.server == server => Ok(Some(login)),
        // Unreadable or for another server (a hash collision would be astonishing): treat it as
        // no login, and let the next login replace it.
        _ => Ok(None),
    }
}

/// Saves `login`, replacing any earlier one for its server.
pub fn save(login: &Login) -> Result<(), Failure> {
    let path = path_for(&login.server)?;
    let fail = |what: &str, e: std::io::Error| {
        Failure::error(format!(
            "cannot {what} the login cache {}: {e}",
            path.display()
        ))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| fail("create the folder of", e))?;
    let json = serde_json::to_vec_pretty(login)
        .map_err(|e| Failure::error(format!("cannot encode the login: {e}")))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("login"),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let written = write_private(&temp, &json).and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(fail("write", e));
    }
    Ok(())
}

/// Removes the cached login of `server`; whether there was one.
pub fn remove(server: &str) -> Result<bool, Failure> {
    let path = path_for(server)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::error(format!(
            "cannot remove the login cache {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Creates `path` (it must not exist) readable and writable by the user only, writes `bytes`
/// and syncs them to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_hash_the_server() {
        let a = path_for("https://a.example.com");
        let b = path_for("https://b.example.com");
        if let (Ok(a), Ok(b)) = (a, b) {
            assert_ne!(a, b);
            assert!(a.to_string_lossy().ends_with(".json"));
            assert!(!a.to_string_lossy().contains("example"));
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let login = Login {
            server: "https://s".into(),
            issuer_name: "idp".into(),
            issuer: "https://idp".into(),
            client_id: "cli".into(),
            token_endpoint: "https://idp/token".into(),
            revocation_endpoint: None,
            resource: None,
            access_token: "secret-access".into(),
            refresh_token: Some("secret-refresh".into()),
            expires_at: 1,
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
