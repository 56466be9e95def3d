//! What the fault-worker tests share: the handler runs that
//! `fetchq-fault-worker` processes record in their runs files.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// One handler run, from a worker's runs file.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub subject: String,
    pub token: String,
    pub pid: i64,
    pub started: i64,
    pub ended: Option<i64>,
    pub outcome: Option<String>,
    /// The handler saw its cancellation token fire.
    pub cancelled: bool,
}

/// Every run recorded in the runs files of `dir` (a line being written right
/// now is skipped); a run is a subject and lease token.
pub fn read_runs(dir: &Path) -> Vec<RunRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let texts: Vec<String> = entries
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .collect();
    parse_runs(&texts)
}

/// The runs recorded in `texts` (contents of runs files, or parts of them
/// cut at line ends): an `end` line whose `start` line is not in `texts` is
/// ignored.
pub fn parse_runs(texts: &[String]) -> Vec<RunRecord> {
    let mut runs: Vec<RunRecord> = Vec::new();
    // one pick gives one token to all its documents: a run is (subject, token)
    let mut by_lease: HashMap<(String, String), Vec<usize>> = HashMap::new();
    let mut ends: Vec<Value> = Vec::new();
    for text in texts {
        for line in text.lines() {
            // a line being written right now may be incomplete: skip it
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            match v["ev"].as_str() {
                Some("start") => {
                    let token = v["token"].as_str().unwrap_or_default().to_owned();
                    let subject = v["subject"].as_str().unwrap_or_default().to_owned();
                    by_lease
                        .entry((subject.clone(), token.clone()))
                        .or_default()
                        .push(runs.len());
                    runs.push(RunRecord {
                        subject,
                        token,
                        pid: v["pid"].as_i64().unwrap_or(0),
                        started: v["t"].as_i64().unwrap_or(0),
                        ended: None,
                        outcome: None,
                        cancelled: false,
                    });
                }
                Some("end") => ends.push(v),
                _ => {}
            }
        }
    }
    for v in ends {
        let key = (
            v["subject"].as_str().unwrap_or_default().to_owned(),
            v["token"].as_str().unwrap_or_default().to_owned(),
        );
        if let Some(idx) = by_lease.get(&key) {
            for &i in idx {
                runs[i].ended = v["t"].as_i64();
                runs[i].outcome = v["outcome"].as_str().map(str::to_owned);
                runs[i].cancelled = v["cancelled"].as_bool().unwrap_or(false);
            }
        }
    }
    runs
}
