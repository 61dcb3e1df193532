// A wasi:http component in JavaScript, built with ComponentizeJS: greets, then echoes what it was asked.
//
// Build: scripts/guest-build.sh js examples/hello-js/app.js hello-js.wasm
addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const body = await request.text();
  const text = [
    'hello from JavaScript!',
    `method=${request.method}`,
    `path=${url.pathname}${url.search}`,
    `x-test=${request.headers.get('x-test') ?? ''}`,
    `body=${body}`,
  ].join('\n');
  return new Response(`${text}\n`, {
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-lang': 'js' },
  });
}
