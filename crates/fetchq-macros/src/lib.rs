//! Procedural macros for fetchq (`#[fetchq::handler]`). Not implemented yet:
//! this crate reserves the name and the place in the workspace.
#![warn(missing_docs)]
