//! A resource and the operations it serves, registered together: the application gets the
//! resource, the document its operations.

use actix_web::dev::{AppService, HttpServiceFactory};
use utoipa::openapi::{RefOr, path::Paths, schema::Schema};
use utoipa_actix_web::OpenApiFactory;

pub struct Documented<S> {
    path: &'static str,
    service: S,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl<S> Documented<S> {
    /// `service` serves `path` (an actix resource, wrapped as it needs).
    pub fn new(path: &'static str, service: S) -> Self {
        Self {
            path,
            service,
            paths: Paths::new(),
            schemas: Vec::new(),
        }
    }

    /// Adds an operation (a handler's `__path_…` description) this resource serves.
    ///
    /// # Panics
    /// When the operation is described at another path: the route and its description must not
    /// drift apart.
    pub fn with(mut self, operation: impl OpenApiFactory) -> Self {
        let paths = operation.paths();
        for path in paths.paths.keys() {
            assert_eq!(
                path, self.path,
                "an operation described at {path} is registered at {}",
                self.path
            );
        }
        self.paths.merge(paths);
        operation.schemas(&mut self.schemas);
        self
    }
}

impl<S: HttpServiceFactory> HttpServiceFactory for Documented<S> {
    fn register(self, config: &mut AppService) {
        self.service.register(config);
    }
}

impl<S> OpenApiFactory for Documented<S> {
    fn paths(&self) -> Paths {
        self.paths.clone()
    }

    fn schemas(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend(self.schemas.iter().cloned());
    }
}
