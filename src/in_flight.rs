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

/// Counts one upload until dropped. A clone counts too: work an upload leaves behind (removing
/// an abandoned object) holds one until it is done.
#[derive(Debug)]
pub struct Guard(Arc<watch::Sender<usize>>);

impl Clone for Guard {
    fn clone(&self) -> Self {
        self.0.send_modify(|n| *n += 1);
        Self(Arc::clone(&self.0))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
