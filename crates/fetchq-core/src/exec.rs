//! How the client's statements reach the server: directly on the pool (named
//! prepared statements, cached per connection), or, behind a transaction
//! pooler (PgBouncer in `pool_mode = transaction`, before 1.21 without
//! `max_prepared_statements`), as unnamed statements inside an explicit
//! transaction.
//!
//! Why both: sqlx runs a statement with parameters in two round trips, a
//! Parse/Describe/Sync and then a Bind/Execute/Sync. A transaction pooler
//! hands the server connection back to its pool at each Sync that leaves the
//! session idle, so the Bind may reach another server connection: a named
//! statement is missing there ("prepared statement sqlx_s_3 does not exist"),
//! or a leftover of another client has its name ("already exists"; sqlx
//! numbers statements per client connection, from 1, and with
//! `statement_cache_capacity(0)` it still names them, and never closes them),
//! and an unnamed one is missing too, or worse, is another client's. Inside
//! `BEGIN ... COMMIT` the server connection stays the same from the Parse to
//! the Bind, and an unnamed statement leaves nothing behind.

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres};

/// A statement sent unnamed: not prepared under a name, not cached.
pub(crate) struct Unnamed<Q>(pub(crate) Q);

impl<'q, Q: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<Q> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<sqlx::postgres::PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// The client's pool as an executor: each statement on the pool, or, with
/// `transaction_pooling`, each unnamed inside its own transaction.
///
/// It owns a handle on the pool (an `Arc`), like sqlx's `&Pool` executor
/// that clones its pool: it is an executor for any lifetime, so the futures
/// of generic calls on it stay `Send` for every borrow.
#[derive(Debug, Clone)]
pub(crate) struct PoolExec {
    pub(crate) pool: PgPool,
    pub(crate) transaction_pooling: bool,
}

type Step = Either<PgQueryResult, PgRow>;

impl<'p> Executor<'p> for PoolExec {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return (&self.pool).fetch_many(query);
        }
        let pool = self.pool;
        // the results of one engine call are small: collect them, commit,
        // then hand them out
        stream::once(async move {
            let mut tx = pool.begin().await?;
            let steps: Vec<Step> = (&mut *tx).fetch_many(Unnamed(query)).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(steps)
        })
        .map(|done| match done {
            Ok(steps) => stream::iter(steps.into_iter().map(Ok)).left_stream(),
            Err(e) => stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return (&self.pool).fetch_optional(query);
        }
        let pool = self.pool;
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(Unnamed(query)).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.pool;
        Box::pin(async move { (&pool).prepare_with(sql, parameters).await })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.pool;
        Box::pin(async move { (&pool).describe(sql).await })
    }
}

/// A caller's executor (their transaction), with statements sent unnamed
/// under `transaction_pooling`.
#[derive(Debug)]
pub(crate) struct CallerExec<E> {
    pub(crate) inner: E,
    pub(crate) transaction_pooling: bool,
}

impl<'c, X> Executor<'c> for CallerExec<X>
where
    X: Executor<'c, Database = Postgres>,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.transaction_pooling {
            self.inner.fetch_many(Unnamed(query))
        } else {
            self.inner.fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.transaction_pooling {
            self.inner.fetch_optional(Unnamed(query))
        } else {
            self.inner.fetch_optional(query)
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}
