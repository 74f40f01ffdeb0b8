// A service worker for hosts that cannot send headers (GitHub Pages), written into the site
// only by `eutirads export-web --service-worker`. It passes each of the page's own requests
// to the host unchanged and adds the two headers that make the page cross-origin isolated
// (COOP/COEP), the condition for SharedArrayBuffer and so for onnxruntime-web's threads.
// It stores nothing, answers nothing itself, and never sees a request to another origin
// (the page makes none: its CSP forbids them, and every request once the model is loaded).
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (new URL(request.url).origin !== self.location.origin) return;  // the browser's own way
  if (request.cache === "only-if-cached" && request.mode !== "same-origin") return;
  event.respondWith(fetch(request).then((response) => {
    if (response.type === "opaque" || response.status === 0) return response;
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(ISOLATION)) headers.set(name, value);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }));
});
