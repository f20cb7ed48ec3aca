//! Reports which test backends this build was configured for, so that tests of a backend
//! without a server are reported as ignored (with the variable to set), never as passed.

fn main() {
    for (cfg, var) in [
        ("has_postgres", "WEBSESSIONS_TEST_POSTGRES_URL"),
        ("has_mysql", "WEBSESSIONS_TEST_MYSQL_URL"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
