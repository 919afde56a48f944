//! The store conformance suite: every `Store` method, its errors, compare-and-set races,
//! leases and migrations, run against both engines. Each test exists twice,
//! `<group>::sqlite::<name>` (a file in a temporary directory) and `<group>::postgres::<name>`
//! (a database of its own on the server `HEARTH_TEST_POSTGRES` names, dropped afterwards).
//!
//! Without `HEARTH_TEST_POSTGRES` the PostgreSQL tests pass after saying how to run them
//! (`eval "$(scripts/pg-cluster start)"`), except in CI (`CI=true`), where they fail.

mod harness;

mod fixtures;

mod assignments;
mod backups;
mod coord;
mod deployments;
mod gateways;
mod history;
mod migrations;
mod shared;
mod tokens;
mod users;
