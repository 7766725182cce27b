//! The idempotency keys whose requests run on this instance right now. A key claimed in
//! Postgres by this instance but not held here belongs to a request that ended without an
//! answer (Postgres went away after the charge): a retry takes it over at once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

type Held = (i64, String);

pub struct KeysInUse {
    instance: Uuid,
    held: Arc<Mutex<HashSet<Held>>>,
}

impl KeysInUse {
    /// `instance`: this process's id among those sharing the database (the storage's).
    pub fn new(instance: Uuid) -> Self {
        Self {
            instance,
            held: Arc::default(),
        }
    }

    /// Holds `key` of `user_id` for one request; `None` while another request here holds it.
    pub fn hold(&self, user_id: i64, key: String) -> Option<KeyHeld> {
        let id = (user_id, key);
        let mut held = self.held.lock().expect("the key set is never poisoned");
        held.insert(id.clone()).then(|| KeyHeld {
            id,
            instance: self.instance,
            held: Arc::clone(&self.held),
        })
    }
}

/// One request's hold on a key; let go when dropped.
pub struct KeyHeld {
    id: Held,
    instance: Uuid,
    held: Arc<Mutex<HashSet<Held>>>,
}

impl KeyHeld {
    pub fn user_id(&self) -> i64 {
        self.id.0
    }

    pub fn key(&self) -> &str {
        &self.id.1
    }

    pub fn instance(&self) -> Uuid {
        self.instance
    }
}

impl Drop for KeyHeld {
    fn drop(&mut self) {
        self.held
            .lock()
            .expect("the key set is never poisoned")
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_once_per_user_until_let_go() {
        let keys = KeysInUse::new(Uuid::now_v7());
        let first = keys.hold(1, "k".into()).expect("free");
        assert!(keys.hold(1, "k".into()).is_none());
        assert!(
            keys.hold(2, "k".into()).is_some(),
            "another user's key is another key"
        );
        drop(first);
        assert!(keys.hold(1, "k".into()).is_some());
    }
}
