//! Watches on etcd: one task per watch owning the gRPC stream, turning etcd's responses into
//! [`WatchEvent`]s. The task ends (and etcd cancels the watch) when the consumer drops the
//! [`Watch`]; a compaction, a cancellation or a broken stream ends it with an `Err` so the
//! consumer relists.

use etcd_client::{EventType, WatchResponse, WatchStream};
use tokio::sync::mpsc;

use super::{EtcdStore, describe, kv_from};
use crate::error::{Error, Result};
use crate::kv::{Revision, WatchEvent};
use crate::store::Watch;

/// Events buffered between the stream and the consumer.
const WATCH_BUFFER: usize = 1024;

/// Starts a watch of `prefix` from `from` (0: from now) and waits, bounded by the request
/// timeout, for etcd to confirm it, so every write after this returns is seen.
pub(super) async fn start(store: &EtcdStore, prefix: &str, from: Revision) -> Result<Watch> {
    let mut options = etcd_client::WatchOptions::new().with_prefix();
    if from > 0 {
        options = options.with_start_revision(from);
    }
    let mut client = store
        .client
        .watch_client()
        .max_decoding_message_size(super::MAX_RESPONSE_BYTES);
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let prefix = prefix.to_string();
    let stream = store
        .call("watch", client.watch(prefix.as_bytes(), Some(options)))
        .await?;
    let mut task = WatchTask {
        stream,
        tx,
        next: from,
        endpoints: store.endpoints.clone(),
        prefix,
    };
    // The first response confirms the watch (or already reports a compaction).
    let first = store.call("watch", task.stream.message()).await?;
    if !task.handle(Ok(first)).await {
        return Ok(Watch::new(rx));
    }
    tokio::spawn(task.run());
    Ok(Watch::new(rx))
}

struct WatchTask {
    stream: WatchStream,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// The first revision not yet delivered (0 before any event of a watch from now).
    next: Revision,
    endpoints: String,
    prefix: String,
}

impl WatchTask {
    async fn run(mut self) {
        loop {
            let message = tokio::select! {
                m = self.stream.message() => m,
                _ = self.tx.closed() => return,
            };
            let message = message.map_err(|e| describe(&e));
            if !self.handle(message).await {
                return;
            }
        }
    }

    /// Forwards one response (or the stream's failure); false when the watch is over.
    async fn handle(&mut self, message: Result<Option<WatchResponse>, String>) -> bool {
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return self.fail(self.broken("the server closed the stream")).await,
            Err(why) => return self.fail(self.broken(&why)).await,
        };
        if response.compact_revision() > 0 {
            let e = Error::Compacted {
                requested: self.next,
                oldest: response.compact_revision(),
            };
            return self.fail(e).await;
        }
        if response.canceled() {
            let reason = response.cancel_reason().to_string();
            return self
                .fail(self.broken(&format!("canceled by the server: {reason}")))
                .await;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let converted = match event.event_type() {
                EventType::Put => kv_from(kv).map(WatchEvent::Put),
                EventType::Delete => kv
                    .key_str()
                    .map_err(|e| e.to_string())
                    .map_err(|reason| Error::Decode {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        reason,
                    })
                    .map(|key| WatchEvent::Delete {
                        key: key.to_string(),
                        revision: kv.mod_revision(),
                    }),
            };
            match converted {
                Ok(event) => {
                    self.next = event.revision() + 1;
                    if self.tx.send(Ok(event)).await.is_err() {
                        return false;
                    }
                }
                Err(e) => return self.fail(e).await,
            }
        }
        true
    }

    fn broken(&self, why: &str) -> Error {
        tracing::debug!(prefix = %self.prefix, "etcd watch ended: {why}");
        Error::Backend(format!(
            "etcd {}: watch of {} ended: {why}",
            self.endpoints, self.prefix
        ))
    }

    async fn fail(&self, e: Error) -> bool {
        let _ = self.tx.send(Err(e)).await;
        false
    }
}
