//! Compile-time behaviour of `#[fetchq::handler]`: what compiles, and the
//! errors for what does not (snapshots in tests/ui/fail/*.stderr; regenerate
//! with `TRYBUILD=overwrite cargo test --test macro_ui` after checking them).

#[test]
fn handler_attribute() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
