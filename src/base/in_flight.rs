//! How many uploads are being received or cleaned up right now: observable, so that shutdown,
//! health checks and tests can wait for the count to change instead of guessing.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct InFlight(Arc<watch::Sender<usize>>);

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl InFlight {
    pub fn enter(&self) -> Guard {
        self.0.send_modify(|n| *n += 1);
        Guard(Arc::clone(&self.0))
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

/// Counts one upload until dropped.
#[derive(Debug)]
pub struct Guard(Arc<watch::Sender<usize>>);

/// One upload's count, shared with the work it leaves behind (removing an abandoned object), so
/// that the upload counts until that work is done too.
pub type Shared = Arc<Guard>;

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
