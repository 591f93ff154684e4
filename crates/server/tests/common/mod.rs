//! Backends shared by the server's test suites.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use optillm_core::{Backend, BackendError, Capabilities, ChatRequest, CompletionStream};
use tokio::sync::Notify;

/// Never answers; records when its call is dropped (the request was cancelled).
pub struct Hangs {
    pub entered: Arc<Notify>,
    pub dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for Hangs {
    fn model(&self) -> &str {
        "hangs"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn stream(&self, _: ChatRequest) -> Result<CompletionStream, BackendError> {
        let _guard = SetOnDrop(self.dropped.clone());
        self.entered.notify_one();
        std::future::pending::<()>().await;
        Err(BackendError::Closed)
    }
}
