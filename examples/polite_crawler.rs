//! A polite crawler: two sites, each with its own rate limit and a cap on
//! requests in flight, crawled by several worker processes that together
//! never exceed either.
//!
//! Run with
//! ```not_rust
//! cargo run --example polite_crawler          # 3 worker processes
//! cargo run --example polite_crawler -- 5     # 5 worker processes
//! ```
//! The parent creates the queues (one per site: `site_a` at most 5 pages a
//! second and 2 at a time, `site_b` at most 2 a second and 1 at a time; the
//! documents' key is the host, so the cap is per host), pushes 30 pages to
//! each, starts the worker
//! processes (this same binary with `worker URL`), waits until every page is
//! fetched, and prints how many fetches each site got in its busiest second,
//! measured by the database's clock, and the most it ever had in flight.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fetchq::embedded::DefaultDatabase;
use fetchq::{Client, Doc, NewDoc, Outcome};
use serde_json::Value;

/// Queue, rate limit, requests in flight per host.
const SITES: [(&str, &str, i32); 2] = [("site_a", "5/s", 2), ("site_b", "2/s", 1)];
const PAGES: usize = 30;

/// A stand-in for an HTTP GET: logs the fetch in `fetches`, with the time
/// of its pick on the database's clock (the lease's expiry less the lease).
async fn fetch(site: &str, doc: &Doc<Value>, ctx: &fetchq::Context) -> fetchq::Result<Outcome> {
    sqlx::query(
        "INSERT INTO fetches (site, page, pid, at) VALUES ($1, $2, $3, $4 - interval '30 seconds')",
    )
    .bind(site)
    .bind(&doc.subject)
    .bind(i64::from(std::process::id()))
    .bind(ctx.lease().expires_at)
    .execute(ctx.client().pool())
    .await
    .map_err(fetchq::Error::from)?;
    tokio::time::sleep(Duration::from_millis(300)).await; // the site answers
    sqlx::query("UPDATE fetches SET done = clock_timestamp() WHERE page = $1")
        .bind(&doc.subject)
        .execute(ctx.client().pool())
        .await
        .map_err(fetchq::Error::from)?;
    Ok(Outcome::complete())
}

#[fetchq::handler(queue = "site_a", concurrency = 4, lease = "30s")]
async fn crawl_a(doc: Doc<Value>, ctx: fetchq::Context) -> fetchq::Result<Outcome> {
    fetch("site_a", &doc, &ctx).await
}

#[fetchq::handler(queue = "site_b", concurrency = 4, lease = "30s")]
async fn crawl_b(doc: Doc<Value>, ctx: fetchq::Context) -> fetchq::Result<Outcome> {
    fetch("site_b", &doc, &ctx).await
}

/// A worker process: both handlers until SIGTERM.
async fn worker(url: &str) -> Result<(), common::BoxError> {
    let client = Client::connect(url).await?;
    fetchq::Runtime::new(client)
        .register(crawl_a)
        .register(crawl_b)
        .shutdown_timeout(Duration::from_secs(2))
        .run()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        let url = args.get(2).ok_or("worker needs the database URL")?;
        return worker(url).await;
    }
    let processes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let database = DefaultDatabase::resolve()?;
    println!("{}", database.describe());
    let url = database.url().to_owned();
    let client = Client::connect(&url).await?;
    client.migrate().await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS fetches; \
         CREATE TABLE fetches (site text, page text, pid bigint, at timestamptz, done timestamptz)",
    )
    .execute(client.pool())
    .await?;
    for (site, limit, in_flight) in SITES {
        client.queue_drop(site).await?;
        client.queue_create(site).await?;
        client
            .queue_set_rate_limit(site, Some(limit.parse()?))
            .await?;
        client
            .queue_set_key_concurrency(site, Some(in_flight))
            .await?;
        let host = format!("{site}.example");
        let pages: Vec<NewDoc> = (0..PAGES)
            .map(|i| NewDoc::new(format!("https://{host}/page/{i}")).key(host.as_str()))
            .collect();
        client.push_many(site, &pages).await?;
        println!("{site}: {PAGES} pages, at most {limit} and {in_flight} at a time");
    }

    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = (0..processes)
        .map(|_| Command::new(&exe).args(["worker", &url]).spawn())
        .collect::<Result<_, _>>()?;
    println!("{processes} worker processes started");

    let start = Instant::now();
    let want = i64::try_from(PAGES * SITES.len())?;
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(DISTINCT page) FROM fetches")
            .fetch_one(client.pool())
            .await?;
        if done >= want || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for child in &mut children {
        // SIGTERM: a graceful shutdown (Child::kill would be SIGKILL)
        let _ = Command::new("kill").arg(child.id().to_string()).status();
    }
    for child in &mut children {
        let _ = child.wait();
    }

    for (site, limit, in_flight) in SITES {
        let (fetched, busiest, workers, most): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(max((SELECT count(*) FROM fetches AS g \
                     WHERE g.site = f.site AND g.at >= f.at AND g.at < f.at + interval '1 second')), 0), \
                    count(DISTINCT pid), \
                    coalesce(max((SELECT count(*) FROM fetches AS g \
                     WHERE g.site = f.site AND g.at <= f.at AND g.done > f.at)), 0) \
             FROM fetches AS f WHERE f.site = $1",
        )
        .bind(site)
        .fetch_one(client.pool())
        .await?;
        println!(
            "{site}: {fetched} pages fetched by {workers} processes, busiest second {busiest} \
             (limit {limit}), at most {most} in flight (cap {in_flight})"
        );
    }
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
