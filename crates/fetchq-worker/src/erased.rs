//! Handlers behind one object-safe interface, payload deserialization included.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fetchq_core::Document;

use crate::handler::{Context, Doc, Handler, HandlerError, HandlerOptions, Outcome};

pub(crate) type BoxFuture =
    Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send + 'static>>;

/// A registered handler with its payload type erased.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, doc: Document, ctx: Context) -> BoxFuture;
}

pub(crate) struct Erased<H>(pub(crate) Arc<H>);

impl<H: Handler> ErasedHandler for Erased<H> {
    fn call(&self, doc: Document, ctx: Context) -> BoxFuture {
        let handler = self.0.clone();
        Box::pin(async move {
            let doc = decode::<H::Payload>(doc, &ctx.lease.queue)?;
            handler.handle(doc, ctx).await
        })
    }
}

/// A picked document with its payload decoded into `P`; a payload that does
/// not fit is the handler's error (the document is rejected with it).
pub(crate) fn decode<P: serde::de::DeserializeOwned>(
    doc: Document,
    queue: &str,
) -> Result<Doc<P>, HandlerError> {
    let payload = serde_json::from_value::<P>(doc.payload).map_err(|e| {
        HandlerError::new(format!(
            "the payload of document {:?} in queue {queue:?} does not fit {}: {e}",
            doc.subject,
            std::any::type_name::<P>()
        ))
    })?;
    Ok(Doc {
        queue: queue.to_owned(),
        subject: doc.subject,
        payload,
        version: doc.version,
        priority: doc.priority,
        attempts: doc.attempts,
        iterations: doc.iterations,
        created_at: doc.created_at,
        last_iteration: doc.last_iteration,
    })
}

/// A registered handler and its options.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) options: HandlerOptions,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
