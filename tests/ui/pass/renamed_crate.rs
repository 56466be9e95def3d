//! `crate = "..."` for a renamed or re-exported fetchq.

mod deps {
    pub use fetchq as queue_lib;
}

use deps::queue_lib;

#[queue_lib::handler(queue = "mailer", crate = "crate::deps::queue_lib")]
async fn send(doc: queue_lib::Doc<serde_json::Value>) -> queue_lib::Outcome {
    let _ = doc;
    queue_lib::Outcome::complete()
}

fn main() {
    use queue_lib::Handler;
    assert_eq!(send.options().queue(), "mailer");
}
