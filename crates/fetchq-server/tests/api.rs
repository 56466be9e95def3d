//! Every endpoint over real HTTP against a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, PUSH, READ, Server, WORK, WORKER, code};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn with_queue(name: &str) -> Server {
    let s = Server::start().await;
    let (st, _) = s.post("/api/v1/queues", ADMIN, json!({"name": name})).await;
    assert_eq!(st, StatusCode::CREATED);
    s
}

#[tokio::test]
async fn health_index_and_openapi_need_no_token() {
    let s = Server::start().await;
    let (st, body) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["schema"], fetchq_core::latest_schema_version());
    assert_eq!(body["engine"], env!("CARGO_PKG_VERSION"));
    let (st, doc) = s
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/queues",
        "/api/v1/queues/{queue}",
        "/api/v1/queues/{queue}/pause",
        "/api/v1/queues/{queue}/resume",
        "/api/v1/queues/{queue}/docs",
        "/api/v1/queues/{queue}/docs/{subject}",
        "/api/v1/queues/{queue}/docs/{subject}/play",
        "/api/v1/queues/{queue}/docs/{subject}/kill",
        "/api/v1/queues/{queue}/docs/{subject}/reschedule",
        "/api/v1/queues/{queue}/docs:bulk",
        "/api/v1/queues/{queue}/pick",
        "/api/v1/queues/{queue}/resolve",
        "/api/v1/queues/{queue}/extend",
        "/api/v1/queues/{queue}/logs",
        "/api/v1/queues/{queue}/metrics",
        "/health",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let pick = &doc["paths"]["/api/v1/queues/{queue}/pick"]["post"];
    for status in ["200", "400", "401", "403", "404", "413", "422", "503"] {
        assert!(
            pick["responses"].get(status).is_some(),
            "pick documents {status}"
        );
    }
    let queue_param = pick["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "queue")
        .unwrap();
    assert_eq!(queue_param["schema"]["pattern"], "^[a-z][a-z0-9_]{0,39}$");
    let (st, idx) = s.call(Method::GET, "/", None, None).await;
    assert_eq!(
        (st, idx["openapi"].as_str()),
        (StatusCode::OK, Some("/api/v1/openapi.json"))
    );
    let (st, body) = s.get("/api/v1/nope", ADMIN).await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (st, body) = s
        .call(Method::PUT, "/api/v1/queues", Some(ADMIN), None)
        .await;
    assert_eq!(
        (st, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn queue_lifecycle() {
    let s = Server::start().await;
    let (st, q) = s
        .post("/api/v1/queues", ADMIN, json!({"name": "avengers"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        (q["name"].as_str(), q["is_active"].as_bool()),
        (Some("avengers"), Some(true))
    );
    assert_eq!(q["counters"]["total"], 0);
    let (st, _) = s
        .post("/api/v1/queues", ADMIN, json!({"name": "avengers"}))
        .await;
    assert_eq!(st, StatusCode::OK, "existing queue: 200");
    let (st, body) = s
        .post("/api/v1/queues", ADMIN, json!({"name": "Bad Name"}))
        .await;
    assert_eq!((st, code(&body)), (StatusCode::BAD_REQUEST, "FQ001"));
    let (st, body) = s.post("/api/v1/queues", ADMIN, json!({"nom": "x"})).await;
    assert_eq!(
        (st, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable")
    );

    let (st, list) = s.get("/api/v1/queues", READ).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["queues"].as_array().unwrap().len(), 1);
    let (st, q) = s.get("/api/v1/queues/avengers", READ).await;
    assert_eq!(
        (st, q["max_attempts"].as_i64()),
        (StatusCode::OK, Some(5)),
        "{q}"
    );
    let (st, body) = s.get("/api/v1/queues/nope", READ).await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "FQ002"));

    let patch = json!({"max_attempts": 3, "current_version": 2, "logs_retention": "7d",
                       "max_payload_size": 4096, "retry_delay": "10s", "retry_delay_max": "1h", "retry_jitter": 0.1});
    let (st, q) = s
        .call(
            Method::PATCH,
            "/api/v1/queues/avengers",
            Some(ADMIN),
            Some(patch),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{q}");
    assert_eq!(
        (q["max_attempts"].as_i64(), q["current_version"].as_i64()),
        (Some(3), Some(2))
    );
    let info = s.db.client.queue_status("avengers").await.unwrap();
    assert_eq!((info.max_attempts, info.current_version), (3, 2));
    assert_eq!(
        info.logs_retention,
        std::time::Duration::from_secs(7 * 86_400)
    );
    for bad in [
        json!({"max_attempts": 0}),
        json!({"max_attempts": 1_000_000_000_000i64}),
        json!({"logs_retention": "forever"}),
        json!({"retry_jitter": 2.0}),
        json!({"current_version": -1}),
    ] {
        let (st, body) = s
            .call(
                Method::PATCH,
                "/api/v1/queues/avengers",
                Some(ADMIN),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    assert_eq!(
        s.db.client
            .queue_status("avengers")
            .await
            .unwrap()
            .max_attempts,
        3,
        "bad patches changed nothing"
    );
    let (st, _) = s
        .call(
            Method::PATCH,
            "/api/v1/queues/nope",
            Some(ADMIN),
            Some(json!({"max_attempts": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, body) = s
        .post("/api/v1/queues/avengers/pause", ADMIN, json!({}))
        .await;
    assert_eq!(
        (st, body["is_active"].as_bool(), body["changed"].as_bool()),
        (StatusCode::OK, Some(false), Some(true))
    );
    assert!(
        !s.db
            .client
            .queue_status("avengers")
            .await
            .unwrap()
            .is_active
    );
    let (st, body) = s
        .post("/api/v1/queues/avengers/resume", ADMIN, json!({}))
        .await;
    assert_eq!(
        (st, body["is_active"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (st, _) = s.post("/api/v1/queues/nope/pause", ADMIN, json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, _) = s
        .call(Method::DELETE, "/api/v1/queues/avengers", Some(ADMIN), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = s
        .call(Method::DELETE, "/api/v1/queues/avengers", Some(ADMIN), None)
        .await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "FQ002"));
}

#[tokio::test]
async fn push_upsert_append_and_validation() {
    let s = with_queue("q").await;
    let docs = json!({"docs": [
        {"subject": "a", "payload": {"n": 1}},
        {"subject": "b", "priority": 5, "delay": "1h"},
        {"subject": "c", "version": 1, "next_iteration": "2030-01-01T00:00:00Z"},
        {"subject": "a"}
    ]});
    let (st, body) = s.post("/api/v1/queues/q/docs", PUSH, docs).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["queued"].as_u64(), body["unchanged"].as_u64()),
        (Some(3), Some(1))
    );
    let a = s.db.client.get("q", "a").await.unwrap();
    assert_eq!(a.payload, json!({"n": 1}));
    let b = s.db.client.get("q", "b").await.unwrap();
    assert_eq!((b.priority, b.status), (5, fetchq_core::Status::Planned));
    let c = s.db.client.get("q", "c").await.unwrap();
    assert_eq!(
        (c.version, c.next_iteration.to_rfc3339()),
        (1, "2030-01-01T00:00:00+00:00".to_owned())
    );

    let (st, body) = s.post("/api/v1/queues/q/docs", PUSH,
        json!({"mode": "upsert", "docs": [{"subject": "a", "payload": {"n": 2}}, {"subject": "d"}]})).await;
    assert_eq!(
        (st, body["queued"].as_u64(), body["updated"].as_u64()),
        (StatusCode::OK, Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(
        s.db.client.get("q", "a").await.unwrap().payload,
        json!({"n": 2})
    );

    let (st, body) = s
        .post(
            "/api/v1/queues/q/docs",
            PUSH,
            json!({"mode": "append", "docs": [{"payload": {"to": "x"}}, {"payload": {"to": "y"}}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let subjects = body["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 2);
    let got =
        s.db.client
            .get("q", subjects[1].as_str().unwrap())
            .await
            .unwrap();
    assert_eq!(got.payload, json!({"to": "y"}));

    // one bad document: 400 naming it, nothing written
    let before = s.db.client.metric_compute("q").await.unwrap().total;
    for (bad, needle) in [
        (
            json!({"docs": [{"subject": "ok1"}, {"subject": ""}]}),
            "docs[1]",
        ),
        (
            json!({"docs": [{"subject": "ok1"}, {"subject": "x".repeat(256)}]}),
            "docs[1]",
        ),
        (
            json!({"docs": [{"subject": "ok1", "delay": "5m", "next_iteration": "2030-01-01T00:00:00Z"}]}),
            "docs[0]",
        ),
        (
            json!({"docs": [{"subject": "ok1", "delay": "soon"}]}),
            "docs[0]",
        ),
        (
            json!({"docs": [{"subject": "ok1", "next_iteration": "tomorrow"}]}),
            "docs[0]",
        ),
        (
            json!({"docs": [{"subject": "ok1", "version": -1}]}),
            "docs[0]",
        ),
        (
            json!({"docs": [{"subject": "ok1", "priority": 1_000_000_000_000i64}]}),
            "docs[0]",
        ),
        (
            json!({"mode": "append", "docs": [{"subject": "ok1"}]}),
            "docs[0]",
        ),
        (
            json!({"docs": [{"subject": "ok1"}, {"payload": {}}]}),
            "docs[1]",
        ),
    ] {
        let (st, body) = s.post("/api/v1/queues/q/docs", PUSH, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    assert_eq!(s.db.client.metric_compute("q").await.unwrap().total, before);
    let (st, body) = s
        .post(
            "/api/v1/queues/q/docs",
            PUSH,
            json!({"mode": "shove", "docs": []}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, body) = s
        .post(
            "/api/v1/queues/nope/docs",
            PUSH,
            json!({"docs": [{"subject": "a"}]}),
        )
        .await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "FQ002"));
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"subject": format!("s{i}")}))
        .collect();
    let (st, _) = s
        .post("/api/v1/queues/q/docs", PUSH, json!({"docs": many}))
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);

    // payload larger than the queue allows: 413 FQ005
    s.db.client
        .queue_set_max_payload_size("q", 100)
        .await
        .unwrap();
    let (st, body) = s
        .post(
            "/api/v1/queues/q/docs",
            PUSH,
            json!({"docs": [{"subject": "big", "payload": {"x": "y".repeat(500)}}]}),
        )
        .await;
    assert_eq!(
        (st, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "FQ005"),
        "{body}"
    );
}

#[tokio::test]
async fn pick_resolve_extend_and_fencing() {
    let s = with_queue("q").await;
    let docs: Vec<Value> = (0..6)
        .map(|i| json!({"subject": format!("d{i}")}))
        .collect();
    s.post("/api/v1/queues/q/docs", PUSH, json!({"docs": docs}))
        .await;
    let (st, picked) = s
        .post(
            "/api/v1/queues/q/pick",
            WORK,
            json!({"limit": 6, "lease": "1m"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{picked}");
    let docs = picked["docs"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 6);
    let tok = |i: usize| docs[i]["lease_token"].as_str().unwrap().to_owned();
    let sub = |i: usize| docs[i]["subject"].as_str().unwrap().to_owned();

    let (st, ext) = s
        .post(
            "/api/v1/queues/q/extend",
            WORK,
            json!({"leases": [
        {"subject": sub(0), "lease_token": tok(0)},
        {"subject": sub(1), "lease_token": uuid::Uuid::new_v4().to_string()}], "lease": "10m"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ext}");
    assert_eq!(ext["extended"], json!([sub(0)]));
    assert_eq!(ext["lost"], json!([sub(1)]));
    let (st, body) = s
        .post(
            "/api/v1/queues/q/extend",
            WORK,
            json!({"leases": [
        {"subject": sub(1), "lease_token": uuid::Uuid::new_v4().to_string()}]}),
        )
        .await;
    assert_eq!((st, code(&body)), (StatusCode::CONFLICT, "lease_lost"));

    let stale = uuid::Uuid::new_v4().to_string();
    let (st, res) = s.post("/api/v1/queues/q/resolve", WORK, json!({"results": [
        {"subject": sub(0), "lease_token": tok(0), "outcome": "complete", "payload": {"done": true}},
        {"subject": sub(1), "lease_token": tok(1), "outcome": "reschedule", "delay": "1h"},
        {"subject": sub(2), "lease_token": tok(2), "outcome": "reject", "message": "HTTP 503", "details": {"s": 503}},
        {"subject": sub(3), "lease_token": tok(3), "outcome": "kill"},
        {"subject": sub(4), "lease_token": tok(4), "outcome": "migrate", "version": 2},
        {"subject": sub(5), "lease_token": stale, "outcome": "complete"},
    ]})).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    let statuses: Vec<&str> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok", "ok", "ok", "ok", "lease_lost"]);
    assert_eq!(res["results"][5]["subject"], json!(sub(5)));
    use fetchq_core::Status;
    let st_of = |i: usize| {
        let c = s.db.client.clone();
        let subject = sub(i);
        async move { c.get("q", &subject).await.unwrap() }
    };
    assert_eq!(st_of(0).await.status, Status::Completed);
    assert_eq!(st_of(0).await.payload, json!({"done": true}));
    assert_eq!(st_of(1).await.status, Status::Planned);
    assert_eq!(st_of(3).await.status, Status::Dead);
    assert_eq!(st_of(4).await.version, 2);
    assert_eq!(
        st_of(5).await.status,
        Status::Active,
        "a stale token changed nothing"
    );

    // the same tokens again: every item lost -> 409 with per-item results
    let (st, res) = s
        .post(
            "/api/v1/queues/q/resolve",
            WORK,
            json!({"results": [
        {"subject": sub(0), "lease_token": tok(0), "outcome": "complete"}]}),
        )
        .await;
    assert_eq!(
        (st, code(&res)),
        (StatusCode::CONFLICT, "lease_lost"),
        "{res}"
    );
    assert_eq!(res["results"][0]["status"], "lease_lost");
    // drop with the good token
    let (st, res) = s
        .post(
            "/api/v1/queues/q/resolve",
            WORKER,
            json!({"results": [
        {"subject": sub(5), "lease_token": tok(5), "outcome": "drop"}]}),
        )
        .await;
    assert_eq!(
        (st, res["results"][0]["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert!(s.db.client.get("q", &sub(5)).await.is_err());

    for bad in [
        json!({"results": [{"subject": "x", "lease_token": "not-a-uuid", "outcome": "complete"}]}),
        json!({"results": [{"subject": "x", "lease_token": stale_uuid(), "outcome": "migrate"}]}),
        json!({"results": [{"subject": "x", "lease_token": stale_uuid(), "outcome": "complete", "delay": "1m"}]}),
        json!({"results": [{"subject": "", "lease_token": stale_uuid(), "outcome": "complete"}]}),
    ] {
        let (st, body) = s.post("/api/v1/queues/q/resolve", WORK, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    let (st, _) = s.post("/api/v1/queues/q/resolve", WORK,
        json!({"results": [{"subject": "x", "lease_token": stale_uuid(), "outcome": "explode"}]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    for bad in [
        json!({"limit": 0}),
        json!({"limit": -1}),
        json!({"limit": 1_000_000_000_000i64}),
        json!({"limit": 1001}),
        json!({"lease": "0s"}),
        json!({"lease": "ever"}),
        json!({"version": -3}),
    ] {
        let (st, body) = s.post("/api/v1/queues/q/pick", WORK, bad.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    let (st, body) = s
        .post("/api/v1/queues/q/pick", WORK, json!({"limit": "ten"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, _) = s.post("/api/v1/queues/nope/pick", WORK, json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, picked) = s.post("/api/v1/queues/q/pick", WORK, json!({})).await;
    assert_eq!(
        (st, picked["docs"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "nothing due"
    );

    // a read token never sees a lease token
    s.post(
        "/api/v1/queues/q/docs",
        PUSH,
        json!({"docs": [{"subject": "late"}]}),
    )
    .await;
    let (_, picked) = s.post("/api/v1/queues/q/pick", WORK, json!({})).await;
    let token = picked["docs"][0]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, shown) = s.get("/api/v1/queues/q/docs/late", READ).await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    assert_eq!(
        (shown["leased"].as_bool(), shown["status"].as_str()),
        (Some(true), Some("active")),
        "{shown}"
    );
    assert!(shown["lease_expires_at"].is_string());
    assert!(
        !shown.to_string().contains(&token),
        "lease token leaked: {shown}"
    );
}

fn stale_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn doc_listing_show_logs_and_metrics() {
    let s = with_queue("q").await;
    let docs: Vec<Value> = (0..25)
        .map(|i| json!({"subject": format!("page:{i:02}")}))
        .collect();
    s.post("/api/v1/queues/q/docs", PUSH, json!({"docs": docs}))
        .await;
    s.post(
        "/api/v1/queues/q/docs",
        PUSH,
        json!({"docs": [{"subject": "other", "version": 1}]}),
    )
    .await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path =
            "/api/v1/queues/q/docs?subject_prefix=page:&limit=10&status=pending".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (st, page) = s.get(&path, READ).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        for d in page["docs"].as_array().unwrap() {
            seen.push(d["subject"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let (_, page) = s.get("/api/v1/queues/q/docs?version=1", READ).await;
    assert_eq!(page["docs"][0]["subject"], "other");
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=1000000000000",
        "limit=1001",
        "limit=abc",
        "status=weird",
        "version=-1",
    ] {
        let (st, body) = s.get(&format!("/api/v1/queues/q/docs?{bad}"), READ).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }

    // a rejection shows in the document's errors and in the log
    let picked =
        s.db.client
            .pick("q", &fetchq_core::PickOptions::new())
            .await
            .unwrap();
    let d = &picked[0];
    s.db.client
        .reject(&d.lease, "boom", Some(&json!({"code": 7})), Some("w1"))
        .await
        .unwrap();
    let (st, shown) = s
        .get(&format!("/api/v1/queues/q/docs/{}", d.subject), READ)
        .await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    assert_eq!(
        (shown["attempts"].as_i64(), shown["leased"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(shown["errors"][0]["message"], "boom");
    let (st, logs) = s
        .get(
            &format!("/api/v1/queues/q/logs?subject={}&limit=5", d.subject),
            READ,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{logs}");
    assert_eq!(logs["logs"][0]["details"], json!({"code": 7}));
    let (st, _) = s.get("/api/v1/queues/q/logs?limit=0", READ).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) = s.get("/api/v1/queues/q/docs/missing", READ).await;
    assert_eq!((st, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    s.db.client.metric_log_pack().await.unwrap();
    s.db.client.metric_snap("q").await.unwrap();
    let (st, m) = s.get("/api/v1/queues/q/metrics", READ).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["counters"]["total"], 26);
    assert!(m.get("history").is_none());
    let (st, m) = s.get("/api/v1/queues/q/metrics?since=1h", READ).await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert!(!m["history"].as_array().unwrap().is_empty(), "{m}");
    let (st, _) = s
        .get(
            "/api/v1/queues/q/metrics?since=2000-01-01T00:00:00Z&limit=5",
            READ,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get("/api/v1/queues/q/metrics?since=yesterday-ish", READ)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/api/v1/queues/nope/metrics", READ).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_actions_one_and_bulk() {
    let s = with_queue("q").await;
    let docs: Vec<Value> = (0..10)
        .map(|i| json!({"subject": format!("d{i}"), "delay": "1h"}))
        .collect();
    s.post("/api/v1/queues/q/docs", PUSH, json!({"docs": docs}))
        .await;
    use fetchq_core::Status;
    let (st, body) = s
        .post("/api/v1/queues/q/docs/d0/play", ADMIN, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        s.db.client.get("q", "d0").await.unwrap().status,
        Status::Pending
    );
    let (st, _) = s
        .post("/api/v1/queues/q/docs/d1/kill", ADMIN, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        s.db.client.get("q", "d1").await.unwrap().status,
        Status::Dead
    );
    let (st, _) = s
        .post(
            "/api/v1/queues/q/docs/d0/reschedule",
            ADMIN,
            json!({"delay": "2h"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        s.db.client.get("q", "d0").await.unwrap().status,
        Status::Planned
    );
    let (st, _) = s
        .post("/api/v1/queues/q/docs/d0/reschedule", ADMIN, json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "reschedule needs a time");
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/queues/q/docs/d2",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(s.db.client.get("q", "d2").await.is_err());
    for path in [
        "/api/v1/queues/q/docs/zz/play",
        "/api/v1/queues/q/docs/zz/kill",
    ] {
        let (st, body) = s.post(path, ADMIN, json!({})).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/queues/q/docs/zz",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // a worker's lease is taken by a play: its resolution then changes nothing
    s.db.client.queue_create("w").await.unwrap();
    s.db.client
        .push("w", &fetchq_core::NewDoc::new("job"))
        .await
        .unwrap();
    let picked =
        s.db.client
            .pick("w", &fetchq_core::PickOptions::new())
            .await
            .unwrap();
    let (st, _) = s
        .post("/api/v1/queues/w/docs/job/play", ADMIN, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.post("/api/v1/queues/w/resolve", WORK, json!({"results": [
        {"subject": "job", "lease_token": picked[0].lease.token.to_string(), "outcome": "complete"}]})).await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (st, body) = s.post("/api/v1/queues/q/docs:bulk", ADMIN,
        json!({"filter": {"status": "planned", "subject_prefix": "d"}, "action": "play", "batch": 3})).await;
    assert_eq!(
        (st, body["changed"].as_u64()),
        (StatusCode::OK, Some(8)),
        "{body}"
    );
    let (st, body) = s
        .post(
            "/api/v1/queues/q/docs:bulk",
            ADMIN,
            json!({"filter": {}, "action": "reschedule", "delay": "1d"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .post(
            "/api/v1/queues/q/docs:bulk",
            ADMIN,
            json!({"filter": {}, "action": "drop"}),
        )
        .await;
    assert_eq!(
        (st, body["changed"].as_u64()),
        (StatusCode::OK, Some(9)),
        "{body}"
    );
    for bad in [
        json!({"filter": {}, "action": "reschedule"}),
        json!({"filter": {}, "action": "drop", "batch": 0}),
        json!({"filter": {"status": "odd"}, "action": "kill"}),
        json!({"filter": {}, "action": "kill", "delay": "1m"}),
    ] {
        let (st, body) = s
            .post("/api/v1/queues/q/docs:bulk", ADMIN, bad.clone())
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    let (st, _) = s
        .post(
            "/api/v1/queues/q/docs:bulk",
            ADMIN,
            json!({"action": "drop"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the filter is required"
    );
}

#[tokio::test]
async fn schedules_list_set_drop_with_scopes_and_errors() {
    let s = with_queue("reports").await;
    let put = |name: &str, token: &'static str, body: Value| {
        let path = format!("/api/v1/schedules/{name}");
        let s = &s;
        async move { s.call(Method::PUT, &path, Some(token), Some(body)).await }
    };
    let body = json!({"cron": "30 2 * * *", "time_zone": "Europe/Stockholm", "queue": "reports",
                      "payload": {"kind": "full"}, "priority": 3});
    let (st, b) = put("nightly", ADMIN, body.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(
        (
            &b["name"],
            &b["subject"],
            &b["time_zone"],
            &b["payload"]["kind"],
            &b["priority"]
        ),
        (
            &json!("nightly"),
            &json!("nightly"),
            &json!("Europe/Stockholm"),
            &json!("full"),
            &json!(3)
        )
    );
    assert_eq!(b["next_tick_at"], Value::Null);
    let (st, _) = put("nightly", ADMIN, body.clone()).await;
    assert_eq!(st, StatusCode::OK);
    // the leader plans it; the API shows the plan
    s.db.client.schedule_tick(10).await.unwrap();
    let (st, list) = s.get("/api/v1/schedules", READ).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
    assert!(list["schedules"][0]["next_tick_at"].is_string(), "{list}");

    // scopes: read lists, only admin changes
    for token in [READ, PUSH, WORK] {
        let (st, b) = put("other", token, body.clone()).await;
        assert_eq!((st, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
        let (st, _) = s
            .call(
                Method::DELETE,
                "/api/v1/schedules/nightly",
                Some(token),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, _) = s.call(Method::GET, "/api/v1/schedules", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // bad input: 400 with the reason, 404 for an unknown queue, 422 for a wrong shape
    for (b, needle) in [
        (
            json!({"cron": "61 * * * *", "queue": "reports"}),
            "61 * * * *",
        ),
        (json!({"cron": "* * *", "queue": "reports"}), "5 fields"),
        (
            json!({"cron": "@daily", "queue": "reports", "time_zone": "Mars/Base"}),
            "Mars/Base",
        ),
        (json!({"cron": "@daily", "queue": "Bad!"}), "queue"),
        (
            json!({"cron": "@daily", "queue": "reports", "subject": ""}),
            "subject",
        ),
    ] {
        let (st, e) = put("x", ADMIN, b.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(needle),
            "{b}: {e}"
        );
    }
    let (st, e) = put("x", ADMIN, json!({"cron": "@daily", "queue": "ghost"})).await;
    assert_eq!((st, code(&e)), (StatusCode::NOT_FOUND, "FQ002"));
    let (st, _) = put(
        "x",
        ADMIN,
        json!({"cron": "@daily", "queue": "reports", "when": 1}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, e) = put(
        "bad%20name",
        ADMIN,
        json!({"cron": "@daily", "queue": "reports"}),
    )
    .await;
    assert_eq!((st, code(&e)), (StatusCode::BAD_REQUEST, "FQ004"), "{e}");
    let (_, list) = s.get("/api/v1/schedules", READ).await;
    assert_eq!(
        list["schedules"].as_array().unwrap().len(),
        1,
        "nothing stored by the failures"
    );

    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/schedules/nightly",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = s
        .call(
            Method::DELETE,
            "/api/v1/schedules/nightly",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!((st, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
}
