//! Procedural macros for fetchq. Use them through the `fetchq` crate:
//! `#[fetchq::handler(queue = "avengers", version = 1)]`.
//!
//! The logic lives in [`handler`](mod@handler) (expansion) and `args`
//! (attribute parsing); this file is only the entry point.
#![warn(missing_docs)]

use proc_macro::TokenStream;

mod args;
mod duration;
mod handler;

/// Turns an `async fn(doc: Doc<T>, ctx: Context) -> Result<Outcome>` into a
/// fetchq handler that `Runtime::register` accepts, keeping the function
/// callable on its own.
///
/// Keys: `queue` (required), `version` (default 0), `concurrency`, `batch`,
/// `lease`, `idle_poll`, `max_runtime` (durations such as `"500ms"`, `"30s"`,
/// `"5m"`, `"2h"`, `"1d"`; `max_runtime = "none"` for no limit), `migrate_to`
/// (marks a migration handler), `name`, `cron` (runs the handler on a
/// calendar: 5 fields, 6 with seconds first, or `@daily`; checked at compile
/// time), `tz` (the IANA time zone of `cron`, default UTC, checked at compile
/// time), `subject` (the subject of the document `cron` fires, default the
/// function's name), and `crate` (the path of the `fetchq` crate when it is
/// renamed or re-exported). See the `fetchq` crate for examples.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}
