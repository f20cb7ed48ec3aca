//! Reports which test backends and tools this build was configured for, so that tests of a
//! backend or tool that is missing are reported as ignored (with the variable to set), never
//! as passed: the one build script of the tests, read by `on!`'s gates (`src/lib.rs`).

fn main() {
    for (cfg, var) in [
        ("has_postgres", "WEBSESSIONS_TEST_POSTGRES_URL"),
        ("has_mysql", "WEBSESSIONS_TEST_MYSQL_URL"),
        // A Python with tests/contract/requirements.txt installed (the third-party tools).
        ("has_contract_tools", "WEBSESSIONS_TEST_PYTHON"),
        // Redocly's CLI (tests/contract/package.json), which lints the document.
        ("has_redocly", "WEBSESSIONS_TEST_REDOCLY"),
        // An nginx binary, for the gateway tests.
        ("has_nginx", "WEBSESSIONS_TEST_NGINX"),
        // Database servers the restart tests run of their own: PostgreSQL's `bin` directory
        // (`initdb`, `pg_ctl`), and a `mariadbd` binary.
        ("has_pg_bin", "WEBSESSIONS_TEST_PG_BIN"),
        ("has_mariadbd", "WEBSESSIONS_TEST_MARIADBD"),
        // A chromedriver (and Chromium), for the browser tests.
        ("has_chromedriver", "WEBSESSIONS_TEST_CHROMEDRIVER"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
