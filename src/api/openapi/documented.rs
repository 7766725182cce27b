//! A resource and the operations it serves, registered together: the application gets the
//! resource, the document its operations.

use std::cell::Cell;

use actix_web::dev::{AppService, HttpServiceFactory};
use utoipa::openapi::{RefOr, path::Paths, schema::Schema};
use utoipa_actix_web::OpenApiFactory;

thread_local! {
    /// Set while `super::document` builds the document. The server's workers register the same
    /// routes without it: building the descriptions costs megabytes of short-lived allocations
    /// per worker, which the allocator keeps as resident memory.
    static DOCUMENTING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` with the operations' descriptions collected.
pub fn documenting<T>(build: impl FnOnce() -> T) -> T {
    DOCUMENTING.set(true);
    let built = build();
    DOCUMENTING.set(false);
    built
}

pub struct Documented<S> {
    path: &'static str,
    service: S,
    operations: Vec<Box<dyn OpenApiFactory>>,
}

impl<S> Documented<S> {
    /// `service` serves `path` (an actix resource, wrapped as it needs).
    pub fn new(path: &'static str, service: S) -> Self {
        Self {
            path,
            service,
            operations: Vec::new(),
        }
    }

    /// Adds an operation (a handler's `__path_…` description) this resource serves.
    pub fn with(mut self, operation: impl OpenApiFactory + 'static) -> Self {
        self.operations.push(Box::new(operation));
        self
    }
}

impl<S: HttpServiceFactory> HttpServiceFactory for Documented<S> {
    fn register(self, config: &mut AppService) {
        self.service.register(config);
    }
}

impl<S> OpenApiFactory for Documented<S> {
    /// # Panics
    /// When an operation is described at another path than its resource's: the route and its
    /// description must not drift apart.
    fn paths(&self) -> Paths {
        let mut all = Paths::new();
        if !DOCUMENTING.get() {
            return all;
        }
        for operation in &self.operations {
            let paths = operation.paths();
            for path in paths.paths.keys() {
                assert_eq!(
                    path, self.path,
                    "an operation described at {path} is registered at {}",
                    self.path
                );
            }
            all.merge(paths);
        }
        all
    }

    fn schemas(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        if DOCUMENTING.get() {
            for operation in &self.operations {
                operation.schemas(schemas);
            }
        }
    }
}
