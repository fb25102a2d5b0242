/* Starts ReDoc on /redoc from the vendored bundle. ReDoc styles itself with <style> elements it writes
 * (styled-components); the page's Content-Security-Policy allows those only with this response's nonce,
 * which the page hands over in data-nonce (a script of this origin is the only one that can read it). */
/* global Redoc */
(function () {
  "use strict";
  const root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, { nonce: root.dataset.nonce }, root);
})();
