//! The OpenAPI contract, proved with tools nobody here wrote (issue 11): a client generated
//! from the committed document by openapi-python-client runs the whole lifecycle,
//! Schemathesis finds nothing, as a superuser and without credentials, and Redocly's
//! recommended rules find no error. They run when `WEBSESSIONS_TEST_PYTHON` names a Python
//! with `tests/contract/requirements.txt` installed and `WEBSESSIONS_TEST_REDOCLY` the
//! `redocly` of `tests/contract/package.json` (`.ci/run` installs both); otherwise they are
//! reported as ignored.

use std::path::PathBuf;
use std::process::Command;

use websessions_tests::Backend;

use crate::server::Server;
use crate::support::PASSWORD;

websessions_tests::on! {
    sqlite needs python: [
        a_client_generated_from_the_document_runs_the_whole_lifecycle,
        schemathesis_finds_nothing_without_credentials,
        schemathesis_finds_nothing_as_a_superuser,
    ];
    sqlite as document needs redocly: [redocly_finds_no_error_in_the_document];
}

fn python() -> String {
    std::env::var("WEBSESSIONS_TEST_PYTHON")
        .expect("WEBSESSIONS_TEST_PYTHON names the Python with the contract tools")
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
}

async fn a_client_generated_from_the_document_runs_the_whole_lifecycle(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_COOKIE_NAME", "websession"),
        ("WEBSESSIONS_COOKIE_SECURE", "false"),
    ];
    let server = Server::start(backend, &settings).await;
    server.create_superuser("root", PASSWORD);
    let out = tempfile::tempdir().unwrap();
    run(
        Command::new(python())
            .arg(root().join("tests/contract/lifecycle.py"))
            .arg("--document")
            .arg(root().join("openapi/openapi.json"))
            .args([
                "--base",
                &server.base,
                "--superuser",
                "root",
                "--password",
                PASSWORD,
            ])
            .arg("--out")
            .arg(out.path()),
        "the generated client's lifecycle",
    );
}

/// Schemathesis's checks, with zero failures allowed.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn schemathesis(server: &Server, superuser: bool) {
    let report = tempfile::tempdir().unwrap();
    let mut command = Command::new(python());
    command
        .args(["-m", "schemathesis.cli", "run"])
        .arg(root().join("openapi/openapi.json"))
        .args(["--url", &server.base, "--checks", CHECKS])
        .args(["--max-examples", "40", "--seed", "1", "--no-color"])
        .current_dir(report.path());
    if superuser {
        // tests/contract/hooks.py logs a superuser in for every case, making a new one with
        // the command line whenever the run has ended, reset, disabled or deleted the last.
        command
            .env("PYTHONPATH", root().join("tests/contract"))
            .env("SCHEMATHESIS_HOOKS", "hooks")
            .env("WS_BASE", &server.base)
            .env("WS_BIN", env!("CARGO_BIN_EXE_websessions"))
            .envs(server.settings());
    }
    run(&mut command, "schemathesis");
}

async fn schemathesis_finds_nothing_without_credentials(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    schemathesis(&server, false);
}

async fn schemathesis_finds_nothing_as_a_superuser(backend: Backend) {
    let server = Server::start(backend, &[]).await;
    schemathesis(&server, true);
}

/// Redocly's recommended ruleset (its default without a configuration file): no error.
async fn redocly_finds_no_error_in_the_document(_backend: Backend) {
    let redocly = std::env::var("WEBSESSIONS_TEST_REDOCLY").expect("WEBSESSIONS_TEST_REDOCLY");
    run(
        Command::new(redocly)
            .args(["lint", "--format=summary"])
            .arg(root().join("openapi/openapi.json"))
            .current_dir(root()),
        "redocly lint",
    );
}
