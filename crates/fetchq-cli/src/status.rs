//! `fetchq status`: every queue's counts by status, paused or not, current version.

use fetchq_core::Client;
use serde_json::json;

use crate::BoxError;
use crate::output::{print_json, table};

/// Prints every queue's counters (packing pending metric writes first).
pub(crate) async fn run(client: &Client, as_json: bool) -> Result<(), BoxError> {
    client.metric_log_pack().await?;
    let mut rows = vec![
        [
            "QUEUE",
            "STATE",
            "VERSION",
            "TOTAL",
            "PENDING",
            "PLANNED",
            "ACTIVE",
            "COMPLETED",
            "DEAD",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut queues = Vec::new();
    for q in client.queue_list().await? {
        let c = match client.metric_get_common(&q.name).await {
            Ok(c) => c,
            // dropped between the list and now
            Err(fetchq_core::Error::QueueNotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let state = if q.is_active { "active" } else { "paused" };
        queues.push(json!({
            "name": q.name,
            "paused": !q.is_active,
            "current_version": q.current_version,
            "max_attempts": q.max_attempts,
            "total": c.total,
            "pending": c.pending,
            "planned": c.planned,
            "active": c.active,
            "completed": c.completed,
            "dead": c.dead,
        }));
        rows.push(vec![
            q.name.clone(),
            state.to_owned(),
            q.current_version.to_string(),
            c.total.to_string(),
            c.pending.to_string(),
            c.planned.to_string(),
            c.active.to_string(),
            c.completed.to_string(),
            c.dead.to_string(),
        ]);
    }
    if as_json {
        print_json(&json!({ "queues": queues }));
    } else if queues.is_empty() {
        println!("no queues (create one with: fetchq queue create NAME)");
    } else {
        table(&rows);
    }
    Ok(())
}
