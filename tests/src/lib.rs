//! websessions' test harness: the one way to declare a test that runs on each backend and
//! needs machine tools (`on!`), reported as ignored with the variable to set wherever a
//! backend or tool is not configured, never as passed; and fresh databases (`db`). The storage
//! contract suite and recognition's tests are this package's own (`storage/`); the end-to-end
//! suite (`e2e/`) is a test target of `websessions-api`, since Cargo gives only a binary's own
//! package the path of the binary (`CARGO_BIN_EXE_websessions`), and uses this harness too.
//!
//! Which backends and tools this build was configured for is decided once, here, by
//! `build.rs`: the gates (`__need_*`) are defined under those cfgs, so a crate that expands
//! `on!` needs no build script of its own.

// Test support: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod db;

pub use db::{Backend, TestDb};

#[doc(hidden)]
pub use tokio as __tokio;

/// Declares tests, each a function of the calling module taking the `Backend` it runs on,
/// in groups: a module named after the backend (`sqlite`, `postgres` or `mysql`; `postgres as
/// another_name` names it otherwise), what the group needs from the machine (`needs postgres,
/// nginx`), and the tests. `every backend:`
/// declares them on all three. A test whose needs this build was not configured for is
/// reported as ignored with the variable to set. Each runs on tokio's multi-threaded runtime
/// with two workers (the machine's cores).
///
/// ```text
/// websessions_tests::on! {
///     every backend: [login_rotates_the_token];
///     postgres needs postgres, nginx: [the_gateway_protects_the_application];
/// }
/// ```
///
/// Needs: `postgres` (`WEBSESSIONS_TEST_POSTGRES_URL`), `mysql` (`WEBSESSIONS_TEST_MYSQL_URL`),
/// `nginx`, `pg_bin`, `mariadbd`, `chromedriver`, `python` (the contract tools), `redocly`.
/// `with RUNNER;` first passes each test to `RUNNER(backend, test)` instead of calling it.
#[macro_export]
macro_rules! on {
    (@groups $runner:tt;) => {};
    (@groups $runner:tt; every backend: [$($name:ident),* $(,)?]; $($rest:tt)*) => {
        $crate::on!(@groups $runner;
            sqlite: [$($name),*];
            postgres needs postgres: [$($name),*];
            mysql needs mysql: [$($name),*];
            $($rest)*);
    };
    (@groups $runner:tt; $backend:ident as $module:ident needs $($need:ident),+: $names:tt; $($rest:tt)*) => {
        $crate::on!(@group $runner $backend $module [$($need)+] $names);
        $crate::on!(@groups $runner; $($rest)*);
    };
    (@groups $runner:tt; $backend:ident as $module:ident: $names:tt; $($rest:tt)*) => {
        $crate::on!(@group $runner $backend $module [] $names);
        $crate::on!(@groups $runner; $($rest)*);
    };
    (@groups $runner:tt; $backend:ident needs $($need:ident),+: $names:tt; $($rest:tt)*) => {
        $crate::on!(@group $runner $backend $backend [$($need)+] $names);
        $crate::on!(@groups $runner; $($rest)*);
    };
    (@groups $runner:tt; $backend:ident: $names:tt; $($rest:tt)*) => {
        $crate::on!(@group $runner $backend $backend [] $names);
        $crate::on!(@groups $runner; $($rest)*);
    };
    (@group $runner:tt $backend:ident $module:ident $needs:tt [$($name:ident),* $(,)?]) => {
        mod $module {
            $($crate::__gate!($needs $runner $backend $name);)*
        }
    };
    (with $runner:ident; $($rest:tt)*) => {
        $crate::on!(@groups [$runner]; $($rest)*);
    };
    ($($rest:tt)*) => {
        $crate::on!(@groups []; $($rest)*);
    };
}

/// Declares one test, ignored with the first unmet need's variable.
#[doc(hidden)]
#[macro_export]
macro_rules! __gate {
    ([] $($test:tt)*) => {
        $crate::__test!($($test)* ());
    };
    ([$need:ident $($rest:ident)*] $($test:tt)*) => {
        $crate::__need!($need [$($rest)*] $($test)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __test {
    ($runner:tt $module:ident $name:ident ($($reason:literal)?)) => {
        #[$crate::__tokio::test(crate = "websessions_tests::__tokio", flavor = "multi_thread", worker_threads = 2)]
        $(#[ignore = $reason])?
        async fn $name() {
            $crate::__run!($runner $module $name)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __run {
    ([] $module:ident $name:ident) => {
        super::$name($crate::__backend!($module)).await
    };
    ([$runner:ident] $module:ident $name:ident) => {
        super::$runner($crate::__backend!($module), super::$name).await
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __backend {
    (sqlite) => {
        $crate::Backend::Sqlite
    };
    (postgres) => {
        $crate::Backend::Postgres
    };
    (mysql) => {
        $crate::Backend::Mysql
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __need {
    (postgres $($rest:tt)*) => { $crate::__need_postgres!($($rest)*); };
    (mysql $($rest:tt)*) => { $crate::__need_mysql!($($rest)*); };
    (nginx $($rest:tt)*) => { $crate::__need_nginx!($($rest)*); };
    (pg_bin $($rest:tt)*) => { $crate::__need_pg_bin!($($rest)*); };
    (mariadbd $($rest:tt)*) => { $crate::__need_mariadbd!($($rest)*); };
    (chromedriver $($rest:tt)*) => { $crate::__need_chromedriver!($($rest)*); };
    (python $($rest:tt)*) => { $crate::__need_python!($($rest)*); };
    (redocly $($rest:tt)*) => { $crate::__need_redocly!($($rest)*); };
}

/// One gate per need: under the cfg `build.rs` set when the need's variable is, it passes the
/// test on to the next need; without it, it declares the test ignored with the variable.
/// (`$d` is a `$` passed in, so that the macros it defines can have variables of their own.)
macro_rules! gate {
    ($d:tt $($gate:ident: $cfg:meta, $reason:literal;)*) => {$(
        #[cfg($cfg)]
        #[doc(hidden)]
        #[macro_export]
        macro_rules! $gate {
            ([$d($d rest:ident)*] $d($d test:tt)*) => {
                $d crate::__gate!([$d($d rest)*] $d($d test)*);
            };
        }

        #[cfg(not($cfg))]
        #[doc(hidden)]
        #[macro_export]
        macro_rules! $gate {
            ([$d($d rest:ident)*] $d runner:tt $d module:ident $d name:ident) => {
                $d crate::__test!($d runner $d module $d name ($reason));
            };
        }
    )*};
}

gate! {$
    __need_postgres: has_postgres, "set WEBSESSIONS_TEST_POSTGRES_URL to run on PostgreSQL";
    __need_mysql: has_mysql, "set WEBSESSIONS_TEST_MYSQL_URL to run on MySQL/MariaDB";
    __need_nginx: has_nginx, "set WEBSESSIONS_TEST_NGINX (an nginx binary)";
    __need_pg_bin: has_pg_bin, "set WEBSESSIONS_TEST_PG_BIN to PostgreSQL's bin directory";
    __need_mariadbd: has_mariadbd, "set WEBSESSIONS_TEST_MARIADBD to a mariadbd binary";
    __need_chromedriver: has_chromedriver, "set WEBSESSIONS_TEST_CHROMEDRIVER (a chromedriver; Chromium at /usr/bin/chromium or WEBSESSIONS_TEST_CHROMIUM)";
    __need_python: has_contract_tools, "set WEBSESSIONS_TEST_PYTHON to a Python with tests/contract/requirements.txt";
    __need_redocly: has_redocly, "set WEBSESSIONS_TEST_REDOCLY to the redocly of tests/contract/package.json";
}
