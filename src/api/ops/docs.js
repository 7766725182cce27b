// Swagger UI over the server's own document; "Authorize" takes a bearer token.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
