//! The attribute's `key = value` list.

use std::time::Duration;

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

use crate::duration;

const KEYS: &str = "`queue`, `version`, `concurrency`, `batch`, `lease`, `idle_poll`, `max_runtime`, `migrate_to`, `name`, `cron`, `tz`, `subject`, `crate`";

/// The parsed attribute.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) queue: Option<String>,
    pub(crate) version: Option<i32>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) batch: Option<u32>,
    pub(crate) lease: Option<Duration>,
    pub(crate) idle_poll: Option<Duration>,
    /// `Some(None)`: `max_runtime = "none"`.
    pub(crate) max_runtime: Option<Option<Duration>>,
    pub(crate) migrate_to: Option<i32>,
    pub(crate) name: Option<String>,
    pub(crate) cron: Option<String>,
    pub(crate) tz: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) krate: Option<syn::Path>,
}

fn string(value: &Expr, key: &str) -> syn::Result<String> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string, e.g. {key} = \"...\""),
        )),
    }
}

fn integer<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    value: &Expr,
    key: &str,
    what: &str,
) -> syn::Result<T> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i
            .base10_parse::<T>()
            .map_err(|_| syn::Error::new_spanned(i, format!("`{key}` must be {what}"))),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes an integer: {what}"),
        )),
    }
}

fn positive(value: &Expr, key: &str) -> syn::Result<u32> {
    let n: u32 = integer(value, key, "an integer of 1 or more")?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        ));
    }
    Ok(n)
}

fn duration_of(value: &Expr, key: &str) -> syn::Result<Duration> {
    let text = string(value, key)?;
    duration::parse(&text).ok_or_else(|| {
        syn::Error::new_spanned(
            value,
            format!("invalid duration {text:?} for `{key}`: use a number and a unit, e.g. \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\""),
        )
    })
}

/// The rule of the SQL engine, checked at compile time.
fn check_queue(name: &str, span: Span) -> syn::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            span,
            format!(
                "invalid queue name {name:?}: use 1 to 40 characters of a-z, 0-9 and _, starting with a letter"
            ),
        ))
    }
}

/// The cron expression, checked as the runtime will (croner with optional
/// seconds, no year field; 5 or 6 fields or an `@nickname`), and that it
/// matches at least once: a typo is a compile error, not a start-up failure.
fn check_cron(expr: &str, span: Span) -> syn::Result<()> {
    use croner::parser::{CronParser, Seconds, Year};
    let expr = expr.trim();
    // the engine stores at most 200 characters (fetchq_core::MAX_CRON_CHARS)
    let chars = expr.chars().count();
    if chars > 200 {
        return Err(syn::Error::new(
            span,
            format!("invalid cron expression: 1 to 200 characters, got {chars}"),
        ));
    }
    let fields = expr.split_whitespace().count();
    let fail = |reason: String| {
        Err(syn::Error::new(
            span,
            format!("invalid cron expression {expr:?}: {reason}"),
        ))
    };
    if !expr.starts_with('@') && !(5..=6).contains(&fields) {
        return fail(format!(
            "expected 5 fields (minute hour day month weekday) or 6 (seconds first), got {fields}"
        ));
    }
    match CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
    {
        Ok(cron) => match cron.find_next_occurrence(&chrono::Utc::now(), false) {
            Ok(_) => Ok(()),
            Err(e) => fail(format!("it never matches ({e}), like 30 February")),
        },
        Err(e) => fail(e.to_string()),
    }
}

/// The time zone, an IANA name known to chrono-tz (as the runtime checks).
fn check_tz(tz: &str, span: Span) -> syn::Result<()> {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(_) => Ok(()),
        Err(_) => Err(syn::Error::new(
            span,
            format!(
                "unknown time zone {tz:?}: use an IANA name such as \"UTC\" or \"Europe/Stockholm\""
            ),
        )),
    }
}

impl Args {
    pub(crate) fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<Self> {
        let list = syn::parse::Parser::parse2(
            Punctuated::<MetaNameValue, Token![,]>::parse_terminated,
            tokens,
        )?;
        let mut args = Args::default();
        let mut errors: Vec<syn::Error> = Vec::new();
        for nv in &list {
            let key = nv
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            let key = if nv.path.is_ident("crate") || key == "crate" {
                "crate".to_owned()
            } else {
                key
            };
            let v = &nv.value;
            let result = (|| -> syn::Result<bool> {
                let fresh = match key.as_str() {
                    "queue" => {
                        let q = string(v, "queue")?;
                        check_queue(&q, v.span())?;
                        args.queue.replace(q).is_none()
                    }
                    "version" => args
                        .version
                        .replace(integer(v, "version", "0 or more")?)
                        .is_none(),
                    "concurrency" => args
                        .concurrency
                        .replace(positive(v, "concurrency")?)
                        .is_none(),
                    "batch" => args.batch.replace(positive(v, "batch")?).is_none(),
                    "lease" => args.lease.replace(duration_of(v, "lease")?).is_none(),
                    "idle_poll" => args
                        .idle_poll
                        .replace(duration_of(v, "idle_poll")?)
                        .is_none(),
                    "max_runtime" => {
                        let limit = if string(v, "max_runtime")? == "none" {
                            None
                        } else {
                            Some(duration_of(v, "max_runtime")?)
                        };
                        args.max_runtime.replace(limit).is_none()
                    }
                    "migrate_to" => args
                        .migrate_to
                        .replace(integer(v, "migrate_to", "a version, 0 or more")?)
                        .is_none(),
                    "name" => args.name.replace(string(v, "name")?).is_none(),
                    "cron" => {
                        let c = string(v, "cron")?;
                        check_cron(&c, v.span())?;
                        args.cron.replace(c).is_none()
                    }
                    "tz" => {
                        let t = string(v, "tz")?;
                        check_tz(&t, v.span())?;
                        args.tz.replace(t).is_none()
                    }
                    "subject" => {
                        let t = string(v, "subject")?;
                        if t.is_empty() || t.len() > 255 {
                            return Err(syn::Error::new_spanned(v, "`subject` is 1 to 255 bytes"));
                        }
                        args.subject.replace(t).is_none()
                    }
                    "crate" => {
                        let path: syn::Path =
                            syn::parse_str(&string(v, "crate")?).map_err(|_| {
                                syn::Error::new_spanned(
                                    v,
                                    "`crate` takes a path, e.g. crate = \"fetchq\"",
                                )
                            })?;
                        args.krate.replace(path).is_none()
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &nv.path,
                            format!("unknown key `{key}`; expected one of {KEYS}"),
                        ));
                    }
                };
                Ok(fresh)
            })();
            match result {
                Ok(true) => {}
                Ok(false) => errors.push(syn::Error::new_spanned(
                    &nv.path,
                    format!("`{key}` specified more than once"),
                )),
                Err(e) => errors.push(e),
            }
        }
        if let Some(v) = args.version
            && v < 0
        {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`version` must be 0 or more",
            ));
        }
        if args.cron.is_none() && (args.tz.is_some() || args.subject.is_some()) {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`tz` and `subject` are for a handler on a calendar: add `cron = \"...\"`",
            ));
        }
        if args.queue.is_none() && errors.is_empty() {
            errors.push(syn::Error::new(
                Span::call_site(),
                "missing `queue`: write #[fetchq::handler(queue = \"name\", ...)]",
            ));
        }
        let mut errors = errors.into_iter();
        match errors.next() {
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
            None => Ok(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_over_200_characters_is_a_compile_error() {
        let span = Span::call_site();
        assert!(check_cron("0 3 * * *", span).is_ok());
        let long = format!("{} * * * *", vec!["1"; 200].join(","));
        let e = check_cron(&long, span).unwrap_err().to_string();
        assert!(e.contains("200 characters"), "{e}");
        assert!(e.len() < 200, "{e}");
    }
}
