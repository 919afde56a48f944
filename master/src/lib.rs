//! The master: enrolment, node sessions, desired state, scheduling and the operator API (see issue 3).
