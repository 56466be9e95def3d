//! A user row and its welcome mail, created in one transaction.
//!
//! Run with
//! ```not_rust
//! cargo run --example signup_mailer
//! ```
//! A signup that commits has exactly one welcome mail; a signup that rolls back
//! leaves no user and no mail. The mailer "sends" (prints) and completes.

mod common;

use std::time::Duration;

use fetchq::{Doc, NewDoc, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct WelcomeMail {
    to: String,
    template: String,
}

#[fetchq::handler(queue = "mailer", concurrency = 2)]
async fn send_mail(doc: Doc<WelcomeMail>) -> fetchq::Result<Outcome> {
    println!(
        "  mailer: sending {:?} to {}",
        doc.payload.template, doc.payload.to
    );
    Ok(Outcome::complete())
}

/// Creates the user and queues the mail together; `fail` simulates an error
/// after both writes, before the commit.
async fn signup(client: &fetchq::Client, email: &str, fail: bool) -> Result<(), common::BoxError> {
    let mut tx = client.pool().begin().await?;
    sqlx::query("INSERT INTO users (email) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(email)
        .execute(&mut *tx)
        .await?;
    let mail = WelcomeMail {
        to: email.into(),
        template: "welcome".into(),
    };
    let doc = NewDoc::new(format!("welcome:{email}")).payload_from(&mail)?;
    client.push_with(&mut *tx, "mailer", &doc).await?;
    if fail {
        tx.rollback().await?;
        println!("signup of {email} failed: rolled back (no user, no mail)");
    } else {
        tx.commit().await?;
        println!("signup of {email}: user and welcome mail committed together");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), common::BoxError> {
    let client = common::setup().await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS users (email text PRIMARY KEY)")
        .execute(client.pool())
        .await?;
    client.queue_create("mailer").await?;
    signup(&client, "ada@example.com", false).await?;
    signup(&client, "mallory@example.com", true).await?;

    let runtime = fetchq::Runtime::new(client.clone()).register(send_mail);
    let c = client.clone();
    common::run_until(runtime, Duration::from_secs(20), move || {
        let c = c.clone();
        async move {
            c.metric_compute("mailer")
                .await
                .is_ok_and(|s| s.pending + s.planned + s.active == 0)
        }
    })
    .await?;

    let mails = client.metric_compute("mailer").await?;
    let mallory = client.get("mailer", "welcome:mallory@example.com").await;
    println!(
        "\nmailer: {} mails sent; mallory's mail exists: {}",
        mails.completed,
        mallory.is_ok()
    );
    Ok(())
}
