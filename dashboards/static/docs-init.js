/* Starts Swagger UI on /docs from the vendored bundle (a file, not an inline script, so the page's
 * Content-Security-Policy can allow only this origin). The document's URL comes from the page. */
/* global SwaggerUIBundle */
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,  // the default sends the document to validator.swagger.io
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
})();
