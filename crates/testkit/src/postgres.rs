//! A throwaway PostgreSQL cluster per test process, handing out fresh empty databases; and, for
//! the benchmarks, clusters of their own with production durability settings.
//!
//! The cluster lives in a temporary folder and listens on a free loopback port with `trust`
//! authentication. A guard process, started before the server and fed through a pipe only this
//! process holds, stops the server (`pg_ctl stop -m immediate`) and removes the folder as soon as
//! the pipe closes: when the test process exits, however it exits.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::OnceCell;

use crate::node::both_streams;

/// Where Debian's `postgresql` package puts each version's server binaries.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Overrides the folder holding `initdb` and `pg_ctl`.
const BIN_DIR_ENV: &str = "COUNTERSIGN_TEST_PG_BIN";
/// Free-port races with other processes are retried this many times.
const START_ATTEMPTS: u32 = 5;

/// The test process's PostgreSQL cluster; see [`TestPostgres::shared`].
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    root: PathBuf,
    /// Holds the write end of the guard's stdin; never used, only kept open.
    _guard: Mutex<Child>,
}

impl TestPostgres {
    /// One cluster per test process, started on first use (`initdb` and `pg_ctl start`, through
    /// `runuser -u postgres --` when running as root, since `initdb` refuses root), with
    /// `fsync=off` and `max_connections=200`. It is stopped and deleted when the process exits.
    pub async fn shared() -> anyhow::Result<&'static TestPostgres> {
        static SHARED: OnceCell<TestPostgres> = OnceCell::const_new();
        SHARED
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| Self::start(false))
                    .await
                    .context("the PostgreSQL start was cancelled")?
            })
            .await
    }

    /// A cluster of the caller's own with durable settings (`fsync`, `synchronous_commit` and
    /// `full_page_writes` on, as in production), for measurements where commit cost matters.
    /// It is stopped and deleted when the value is dropped, or when the process exits.
    pub async fn start_durable() -> anyhow::Result<TestPostgres> {
        tokio::task::spawn_blocking(|| Self::start(true))
            .await
            .context("the PostgreSQL start was cancelled")?
    }

    /// Creates a fresh, empty database and returns its URL:
    /// `postgres://postgres@127.0.0.1:PORT/db_<random>`.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        let name = format!("db_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .with_context(|| format!("cannot connect to the test cluster on port {}", self.port))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        admin.close().await?;
        Ok(self.url(&name))
    }

    /// The port the cluster listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `database` in this cluster, as user `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server log, for a test that wants to show it.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    fn start(durable: bool) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let as_root = fs::metadata("/proc/self")
            .map(|meta| meta.uid() == 0)
            .unwrap_or(false);

        let root = tempfile::Builder::new()
            .prefix("countersign-pg-")
            .tempdir()
            .context("cannot create a temporary folder for PostgreSQL")?
            .keep();
        if as_root {
            run(Command::new("chown").arg("postgres:postgres").arg(&root))?;
        }
        let data = root.join("data");

        // The guard first, so that whatever happens next, the folder goes away at exit.
        let guard = spawn_guard(&bin, &data, &root, as_root)?;
        let postgres = TestPostgres {
            port: 0,
            root,
            _guard: Mutex::new(guard),
        };

        run(pg_command(&bin, "initdb", as_root, &postgres.root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]))?;

        let mut conf = OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .context("cannot open the test cluster's postgresql.conf")?;
        let durability = if durable { "on" } else { "off" };
        writeln!(
            conf,
            "\n# countersign-testkit: a throwaway cluster\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             fsync = {durability}\n\
             synchronous_commit = {durability}\n\
             full_page_writes = {durability}\n",
            postgres.root.display()
        )?;
        drop(conf);

        let log = postgres.root.join("postgres.log");
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let started = run(pg_command(&bin, "pg_ctl", as_root, &postgres.root)
                .args(["start", "-w", "-t", "60", "-s", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &format!("-p {port}")]));
            match started {
                Ok(()) => return Ok(TestPostgres { port, ..postgres }),
                Err(err) => last_error = Some(err),
            }
        }
        let log = fs::read_to_string(&log).unwrap_or_default();
        match last_error {
            Some(err) => Err(err.context(format!("PostgreSQL did not start; its log:\n{log}"))),
            None => bail!("PostgreSQL did not start"),
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, or `$COUNTERSIGN_TEST_PG_BIN`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server found: {DEBIAN_PG_ROOT}/<version>/bin/initdb is missing \
             (install it with `apt-get install -y postgresql`, or set {BIN_DIR_ENV})"
        ),
    }
}

/// `tool` from `bin`, run as the `postgres` user when this process is root.
fn pg_command(bin: &Path, tool: &str, as_root: bool, cwd: &Path) -> Command {
    let mut command = if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        command
    } else {
        Command::new(bin.join(tool))
    };
    // A working directory the postgres user can enter.
    command.current_dir(cwd);
    command
}

/// Runs `command` to completion, failing with its output when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}",
            output.status,
            both_streams(&output)
        );
    }
    Ok(())
}

/// A shell that waits for its stdin to close (this process exiting closes it), then stops the
/// cluster and removes its folder. In a process group of its own so that a Ctrl-C aimed at the
/// test run does not kill it before it has cleaned up.
fn spawn_guard(bin: &Path, data: &Path, root: &Path, as_root: bool) -> anyhow::Result<Child> {
    const SCRIPT: &str = r#"
cat >/dev/null 2>&1
if [ -f "$2/postmaster.pid" ]; then
  if [ "$4" = root ]; then
    runuser -u postgres -- "$1" stop -D "$2" -m immediate -s
  else
    "$1" stop -D "$2" -m immediate -s
  fi
fi
rm -rf "$3"
"#;
    Command::new("sh")
        .args(["-c", SCRIPT, "countersign-pg-guard"])
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(root)
        .arg(if as_root { "root" } else { "user" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the PostgreSQL clean-up guard")
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}
