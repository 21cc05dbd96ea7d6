// Behaviour shared by every page of the web UI (the CSP allows scripts from /static only).
"use strict";

// htmx requests carry the session's CSRF token (base.html's <meta>), so an hx-post or
// hx-put passes api.csrf like a form does.
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) event.detail.headers["X-CSRF-Token"] = meta.content;
});
