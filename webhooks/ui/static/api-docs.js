// /docs: starts Swagger UI (webhooks/ui/static/vendor/swagger-ui) with the options FastAPI's own
// page passes. A file, not inline script, for the page's CSP (script-src 'self'); the URLs come
// from the data- attributes of #swagger-ui, which the server writes.
"use strict";

(() => {
  const root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    oauth2RedirectUrl: window.location.origin + root.dataset.oauth2RedirectUrl,
    presets: [window.SwaggerUIBundle.presets.apis],
    // The default sends the spec's URL to an outside validator for a badge: never from here.
    validatorUrl: null,
  });
})();
