//! How many uploads each caller may have in flight on this instance at once
//! (`upload.max_in_flight_per_user`): a user with a token counts as one caller, each client
//! address as one when it acts as `anonymous`. A body may take as long as it keeps the minimum
//! rate, and each holds a batch in memory; without a cap one caller could hold them by the
//! hundred.

use std::{net::IpAddr, sync::Arc};

use actix_web::{HttpMessage, HttpRequest};
use dashmap::DashMap;

use crate::base::error::ApiError;

/// Whose slots a request takes: set by `auth::identify` beside the request's `Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    User(i64),
    /// Acting as `anonymous` (auth off, or a route open without a token): its client address.
    Address(Option<IpAddr>),
}

/// The uploads in flight per caller; `max` 0: no cap.
pub struct UploadSlots {
    max: usize,
    taken: Arc<DashMap<Caller, usize>>,
}

/// One upload's slot, given back when dropped (the request ended, however).
pub struct Slot {
    caller: Caller,
    taken: Arc<DashMap<Caller, usize>>,
}

impl UploadSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            taken: Arc::default(),
        }
    }

    /// Takes a slot for the request's caller, or refuses with `429 too_many_uploads` when all of
    /// theirs are taken.
    pub fn take(&self, req: &HttpRequest) -> Result<Option<Slot>, ApiError> {
        if self.max == 0 {
            return Ok(None);
        }
        let caller = req.extensions().get::<Caller>().copied().ok_or_else(|| {
            ApiError::internal("an upload slot taken on a route not wrapped in auth::identify")
        })?;
        let mut taken = self.taken.entry(caller).or_insert(0);
        if *taken >= self.max {
            return Err(ApiError::TooManyUploads(self.max));
        }
        *taken += 1;
        Ok(Some(Slot {
            caller,
            taken: Arc::clone(&self.taken),
        }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut taken) = self.taken.get_mut(&self.caller) {
            *taken -= 1;
        }
        // The last one out takes the entry, so that memory follows the callers uploading now.
        self.taken.remove_if(&self.caller, |_, taken| *taken == 0);
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(caller: Caller) -> HttpRequest {
        let req = TestRequest::default().to_http_request();
        req.extensions_mut().insert(caller);
        req
    }

    #[test]
    fn each_caller_has_its_own_slots_and_a_dropped_slot_is_free_again() {
        let slots = UploadSlots::new(2);
        let (ada, bob) = (request(Caller::User(1)), request(Caller::User(2)));
        let first = slots.take(&ada).unwrap();
        let _second = slots.take(&ada).unwrap();
        assert!(matches!(slots.take(&ada), Err(ApiError::TooManyUploads(2))));
        let _other = slots.take(&bob).unwrap();
        let address = request(Caller::Address(Some([10, 0, 0, 1].into())));
        let _anonymous = slots.take(&address).unwrap();

        drop(first);
        let _again = slots.take(&ada).unwrap();
        assert!(slots.take(&ada).is_err());
    }

    #[test]
    fn the_entry_goes_with_the_last_slot() {
        let slots = UploadSlots::new(1);
        let slot = slots.take(&request(Caller::User(1))).unwrap();
        assert_eq!(slots.taken.len(), 1);
        drop(slot);
        assert!(slots.taken.is_empty());
    }

    #[test]
    fn no_cap_takes_nothing() {
        let slots = UploadSlots::new(0);
        let req = TestRequest::default().to_http_request();
        assert!(slots.take(&req).unwrap().is_none());
    }
}
