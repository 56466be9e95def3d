//! The `fetchq` facade: a user depending on `fetchq` alone gets the whole client.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use fetchq::{Error, NewDoc, PickOptions, Schedule};
use fetchq_testing::TestDb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WelcomeMail {
    to: String,
    template: String,
}

#[tokio::test]
async fn signup_and_welcome_mail_commit_or_roll_back_together() {
    let db = TestDb::new().await;
    let client = &db.client;
    client.queue_create("mailer").await.unwrap();
    sqlx::query("CREATE TABLE users (email text PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();

    for (email, commit) in [("ada@example.com", true), ("bob@example.com", false)] {
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO users VALUES ($1)")
            .bind(email)
            .execute(&mut *tx)
            .await
            .unwrap();
        let mail = WelcomeMail {
            to: email.into(),
            template: "signup".into(),
        };
        let doc = NewDoc::new(format!("welcome:{email}"))
            .payload_from(&mail)
            .unwrap();
        client.push_with(&mut *tx, "mailer", &doc).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }

    let picked = client
        .pick("mailer", &PickOptions::new().limit(10))
        .await
        .unwrap();
    assert_eq!(picked.len(), 1, "only the committed signup has a mail");
    let mail: WelcomeMail = picked[0].payload_as().unwrap();
    assert_eq!(
        mail,
        WelcomeMail {
            to: "ada@example.com".into(),
            template: "signup".into()
        }
    );
    client.complete(&picked[0].lease, None).await.unwrap();

    // a payload of the wrong shape is a typed error, not a panic
    client
        .push(
            "mailer",
            &NewDoc::new("odd").payload(serde_json::json!({"to": 42})),
        )
        .await
        .unwrap();
    let odd = client
        .pick("mailer", &PickOptions::new())
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        odd.payload_as::<WelcomeMail>(),
        Err(Error::Payload(_))
    ));
    client
        .reschedule(&odd.lease, Schedule::now(), None)
        .await
        .unwrap();
}
