//! Protocol conformance tests for Headway.
//!
//! The vectors in `tests/vectors/` are the normative known answers; the tests
//! in this crate check our implementation against them.
