//! Specialised per-queue statements for the client's hot paths (push,
//! push_many, pick, complete_many, reschedule_many).
//!
//! The `fetchq.doc_*` functions build their SQL with `format()` and run it
//! with `EXECUTE`, which PostgreSQL plans again on every call. The files in
//! `sql/per_queue/` are the same operations as static statements with the
//! queue's table written in; sqlx prepares each text once per connection and
//! reuses its plan. See `sql/per_queue/README.md`.

use crate::error::Error;

/// Embeds `sql/per_queue/<name>.sql`, a template with `{docs}` for the table.
macro_rules! per_queue {
    ($name:literal) => {
        include_str!(concat!("../sql/per_queue/", $name, ".sql"))
    };
}
pub(crate) use per_queue;

/// The statement `template` for `queue`, whose name the caller has validated
/// (`a-z`, `0-9`, `_`), so the quoted identifier below cannot be broken out of.
pub(crate) fn statement(template: &str, queue: &str) -> String {
    template.replace("{docs}", &format!("\"fetchq_data\".\"{queue}__docs\""))
}

/// Whether `err` says a table does not exist (SQLSTATE 42P01): the queue
/// behind it was never created or has been dropped.
pub(crate) fn is_missing_table(err: &sqlx::Error) -> bool {
    has_sqlstate(err, "42P01")
}

/// Whether the database answered with this SQLSTATE.
pub(crate) fn has_sqlstate(err: &sqlx::Error, code: &str) -> bool {
    err.as_database_error().and_then(|db| db.code()).as_deref() == Some(code)
}

/// The error of a per-queue statement: a missing table (SQLSTATE 42P01)
/// means the queue does not exist.
pub(crate) fn queue_error(err: sqlx::Error, queue: &str) -> Error {
    if is_missing_table(&err) {
        Error::QueueNotFound {
            queue: queue.to_owned(),
        }
    } else {
        Error::from(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_quoted_into_every_place() {
        let sql = statement("SELECT * FROM {docs} JOIN {docs} AS b", "crawl_2");
        assert_eq!(
            sql,
            "SELECT * FROM \"fetchq_data\".\"crawl_2__docs\" JOIN \"fetchq_data\".\"crawl_2__docs\" AS b"
        );
    }

    #[test]
    fn templates_name_their_table_only_through_the_placeholder() {
        for template in [
            per_queue!("push"),
            per_queue!("push_many"),
            per_queue!("pick"),
            per_queue!("pick_limited"),
            per_queue!("complete_many"),
            per_queue!("reschedule_many"),
        ] {
            assert!(template.contains("{docs}"));
            assert!(!template.contains("fetchq_data"));
        }
    }
}
