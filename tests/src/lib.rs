//! End-to-end tests that start the real binaries on loopback.
