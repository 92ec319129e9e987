//! `countersign login` against a real provider: the device flow (the user's part played with
//! `approve_device`), the browser flow with PKCE and a loopback redirect (played with
//! `complete_login`), the cache file's mode, refreshing, and `logout`.

use std::time::Duration;

use serde_json::json;

use crate::support::{CLI_TIMEOUT, World};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}

/// `XXXX-XXXX` after "enter the code".
fn user_code(line: &str) -> String {
    line.split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no user code in {line:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_login_is_cached_0600_used_and_forgotten_at_logout() {
    let world = World::start().await;
    let mut login = world.cli().args(["login", "--no-browser"]).spawn();
    let line = login
        .wait_for_stderr(|l| l.contains("enter the code"), CLI_TIMEOUT)
        .await;
    assert!(
        line.contains(&format!("{}/device", world.people.issuer())),
        "{line}"
    );
    world
        .people
        .approve_device(&user_code(&line), "alice")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", login.stderr()));
    let done = login.finish(Duration::from_secs(30)).await;
    done.expect_code(0);
    assert!(
        done.stderr.contains(&format!(
            "logged in to {} as Alice Adams (alice)",
            world.server
        )),
        "{done}"
    );

    let file = world.login_file();
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        assert_eq!(mode(&world.logins_dir()), 0o700);
    }
    let cached = world.cached_login();
    assert_eq!(cached["server"], world.server.as_str());
    assert_eq!(cached["issuer_name"], "idp");
    assert!(cached["refresh_token"].is_string(), "{cached}");
    let access = cached["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert!(!done.stderr.contains(&access), "no token printed: {done}");
    assert!(!done.stdout.contains(&access), "no token printed: {done}");

    let gates = world.cli().args(["gates"]).run().await;
    gates.expect_code(0);
    let deploy = gates
        .stdout
        .lines()
        .find(|l| l.starts_with("deploy-prod"))
        .unwrap_or_else(|| panic!("deploy-prod listed: {gates}"));
    assert!(deploy.contains("yes"), "alice may request it: {gates}");

    world.cli().args(["logout"]).run().await.expect_code(0);
    assert!(!file.exists(), "logout removes the cached login");
    world
        .cli()
        .args(["gates"])
        .run()
        .await
        .expect_error(4, &["not logged in", "countersign login"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_with_pkce_and_a_loopback_redirect() {
    let world = World::start().await;
    let done = world.login_in_browser("bob").await;
    done.expect_code(0);
    assert!(done.stderr.contains("as Bob Baker (bob)"), "{done}");
    let url_line = done
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("http://"))
        .expect("the URL was printed");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A",
        "resource=api%3A%2F%2Fcountersign",
    ] {
        assert!(url_line.contains(part), "{part} in {url_line}");
    }
    #[cfg(unix)]
    assert_eq!(mode(&world.login_file()), 0o600);

    let inbox = world.cli().args(["ls", "--inbox"]).run().await;
    inbox.expect_code(0);
    assert!(inbox.stdout.contains("no requests"), "{inbox}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_with_the_refresh_token() {
    let world = World::start_with(json!({"access_token_ttl": 2})).await;
    world.login_in_browser("alice").await.expect_code(0);
    let before = world.cached_login();
    tokio::time::sleep(Duration::from_secs(3)).await;

    world.cli().args(["gates"]).run().await.expect_code(0);
    let after = world.cached_login();
    assert_ne!(
        after["access_token"], before["access_token"],
        "a new access token was fetched"
    );
    assert!(
        after["expires_at"].as_i64() > before["expires_at"].as_i64(),
        "{before} {after}"
    );
    #[cfg(unix)]
    assert_eq!(
        mode(&world.login_file()),
        0o600,
        "still 0600 after the rewrite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_is_one_line_and_exit_4() {
    let world = World::start_with(json!({
        "access_token_ttl": 2,
        "ttl": {"RefreshToken": 2}
    }))
    .await;
    world.login_in_browser("alice").await.expect_code(0);
    let cached = world.cached_login();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let done = world.cli().args(["gates"]).run().await;
    done.expect_error(
        4,
        &[
            "your login to",
            "has expired",
            &format!("countersign login --server {}", world.server),
        ],
    );
    for token in ["access_token", "refresh_token"] {
        let value = cached[token].as_str().expect("a token");
        assert!(!done.stderr.contains(value), "no {token} printed: {done}");
    }
}
