//! Bad input gets one line that says what to do next, and the documented exit code.

use crate::support::{Cli, World, closed_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_one_line_with_exit_1_or_4() {
    let world = World::start().await;
    let (alice, erin) = tokio::join!(world.cli_as("alice"), world.cli_as("erin"));

    alice
        .clone()
        .args(["request", "no-such-gate", "--reason", "x"])
        .run()
        .await
        .expect_error(1, &["unknown gate 'no-such-gate'", "countersign gates"]);

    alice
        .clone()
        .args(["request", "deploy-prod", "-p", "service", "--reason", "x"])
        .run()
        .await
        .expect_error(1, &["KEY=VALUE", "'service'", "countersign request --help"]);

    alice
        .clone()
        .args([
            "request",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=1",
            "-p",
            "colour=red",
            "--reason",
            "x",
        ])
        .run()
        .await
        .expect_error(1, &["unknown parameter 'colour'", "service, version"]);

    alice
        .clone()
        .args([
            "request",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "service=web",
        ])
        .run()
        .await
        .expect_error(1, &["'service' is given twice"]);

    alice
        .clone()
        .args(["show", "not-an-id"])
        .run()
        .await
        .expect_error(1, &["not a request id"]);

    // Not allowed: erin is no developer.
    erin.args([
        "request",
        "deploy-prod",
        "-p",
        "service=api",
        "-p",
        "version=1",
        "--reason",
        "x",
    ])
    .run()
    .await
    .expect_error(4, &["not allowed", "deploy-prod"]);

    // Not logged in at all.
    world
        .cli()
        .args(["ls"])
        .run()
        .await
        .expect_error(4, &["not logged in", "countersign login"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_one_line_with_exit_1() {
    let home = tempfile::tempdir().expect("a home");
    let port = closed_port().await;
    let server = format!("http://127.0.0.1:{port}");
    let cli = Cli::new(home.path()).env("COUNTERSIGN_ID_TOKEN", "a.b.c");
    cli.clone()
        .args(["gates", "--server", &server])
        .run()
        .await
        .expect_error(
            1,
            &[&format!("cannot reach the server at {server}"), "--server"],
        );
    Cli::new(home.path())
        .args(["login", "--server", &server])
        .run()
        .await
        .expect_error(1, &["cannot reach the server", "--server"]);
    cli.args(["gates"])
        .run()
        .await
        .expect_error(1, &["no server given", "COUNTERSIGN_SERVER"]);
}
