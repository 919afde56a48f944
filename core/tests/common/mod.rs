//! What the property tests share.

use proptest::test_runner::Config;

/// 256 cases, so a property runs in about a second; no failure files (a failure prints its
/// minimal input, which is the reproduction).
pub(crate) fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}
