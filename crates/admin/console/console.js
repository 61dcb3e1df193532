// The palisade web console: sign-in, tenants, deploys, tokens and live statistics.
// Plain static file (no build step); the page's CSP forbids inline code and styles, so every element is
// built here with createElement/textContent (server strings are never parsed as HTML).
'use strict';

(() => {
  const STATS_MS = 2000;
  const TENANTS_MS = 15000;
  const HISTORY = 60; // points kept per tenant: 2 minutes at one poll every 2 s
  const CONFIRM_MS = 4000;

  const state = {
    session: null, // {csrf, operator, tenant}
    tenants: new Map(), // name → entry: {name, section, parts, hitRate, signature, latency}
    history: new Map(), // name → [{rate, errors, p50, p99, limits}]
    prevStats: null, // the previous /v1/stats answer, for deltas
    statsEnabled: true,
    epoch: 0, // bumped at sign-out: answers to requests made before it are dropped
    pollGen: 0, // bumped when polling stops: a poll in flight then schedules nothing
    loadSeq: 0, // only the newest /v1/tenants answer is rendered
    statsTimer: 0,
    tenantsTimer: 0,
  };

  const $ = (selector, root = document) => root.querySelector(selector);

  // el('div', {class: 'x', text: 'y', 'data-k': 'v'}, ...children): attributes are set with setAttribute
  // (never `style`), children are nodes or strings (as text).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child != null && child !== false) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // ---- formatting ----

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const list = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : null);

  function bytes(n) {
    if (!isNum(n)) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
  }

  function decimal(n) {
    if (!isNum(n)) return '—';
    const a = Math.abs(n);
    const digits = a === 0 || a >= 100 ? 0 : a >= 10 ? 1 : a >= 0.1 ? 2 : 3;
    return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function timeEl(seconds, dateOnly) {
    if (!isNum(seconds)) return el('span', { class: 'muted', text: '—' });
    const d = new Date(seconds * 1000);
    const text = dateOnly
      ? d.toLocaleDateString(undefined, { dateStyle: 'medium' })
      : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    return el('time', { datetime: d.toISOString(), title: d.toString(), text });
  }

  const scalar = (v) => (v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));

  // ---- status area ----

  function say(text, kind) {
    const box = $('#message');
    box.textContent = text || '';
    box.classList.toggle('error', kind === 'error');
    box.classList.toggle('ok', kind === 'ok');
  }

  // ---- HTTP ----

  class ApiError extends Error {
    constructor(status, message, quiet) {
      super(message);
      this.status = status;
      this.quiet = !!quiet; // already handled (sign-out or a stale answer): say nothing
    }
  }

  async function api(method, path, { json, body, type } = {}) {
    const epoch = state.epoch;
    const headers = {};
    // Every request shows the session's second secret: the cookie alone opens nothing (cookies are not kept
    // apart by port, so a tenant's app on this host name may see it; sessionStorage is kept apart by origin).
    const csrf = state.session ? state.session.csrf : stored();
    if (csrf) headers['X-CSRF-Token'] = csrf;
    if (json !== undefined) body = JSON.stringify(json);
    if (json !== undefined || type) headers['Content-Type'] = type || 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, `The server cannot be reached (${e.message}).`, epoch !== state.epoch);
    }
    let text = '';
    try { text = await res.text(); } catch { /* an empty body is handled below */ }
    if (epoch !== state.epoch) throw new ApiError(res.status, 'stale', true);
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: the status speaks */ }
    if (!res.ok) {
      const message = obj(data) && typeof data.error === 'string' && data.error
        ? data.error : `${res.status} ${res.statusText}`.trim();
      // A 401 from the API means the session expired or its token was revoked.
      if (res.status === 401 && path.startsWith('/v1/')) {
        leave('Your session has ended (it expired or its token was revoked). Sign in again.');
        throw new ApiError(401, message, true);
      }
      throw new ApiError(res.status, message);
    }
    return { status: res.status, data };
  }

  const seg = encodeURIComponent;

  // Runs an action started by `button`: says its outcome, then reloads the tenants.
  async function act(button, work) {
    if (button) button.disabled = true;
    try {
      const outcome = await work();
      if (outcome) say(outcome, 'ok');
    } catch (e) {
      if (e.quiet) return;
      say(e.message, 'error');
    } finally {
      if (button) button.disabled = false;
    }
    if (state.session) await loadTenants();
  }

  // Two-step confirm for destructive buttons: the first click arms it for CONFIRM_MS, the second acts.
  function confirmable(button, label, what, onConfirm) {
    let timer = 0;
    const reset = () => {
      clearTimeout(timer);
      button.classList.remove('confirming');
      button.textContent = label;
      button.setAttribute('aria-label', `${label} ${what}`);
    };
    reset();
    button.addEventListener('click', () => {
      if (button.classList.contains('confirming')) {
        reset();
        onConfirm();
        return;
      }
      button.classList.add('confirming');
      button.textContent = 'Confirm';
      button.setAttribute('aria-label', `Confirm: ${label.toLowerCase()} ${what}`);
      timer = setTimeout(reset, CONFIRM_MS);
    });
    return button;
  }

  // ---- session ----

  // The session's CSRF token, kept for this tab (a reload keeps the session; another tab signs in anew).
  const CSRF_KEY = 'palisade.csrf';
  function stored() {
    try { return sessionStorage.getItem(CSRF_KEY); } catch { return null; }
  }
  function store(csrf) {
    try {
      if (csrf) sessionStorage.setItem(CSRF_KEY, csrf); else sessionStorage.removeItem(CSRF_KEY);
    } catch { /* storage refused: the session lasts as long as the page */ }
  }

  // On load: resume this tab's session if its cookie and stored token are still good; otherwise the sign-in
  // form stays (and nothing is asked of the server without a stored token).
  function restore() {
    const csrf = stored();
    if (!csrf) return;
    api('GET', '/console/session').then(({ data }) => {
      if (obj(data) && data.signed_in === true) enter({ ...data, csrf });
      else store(null);
    }, (e) => {
      if (e.status !== 401) signinError(e.message);
    });
  }

  function signinError(text) {
    $('#signin-error').textContent = text || '';
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $('#token');
    const token = input.value.trim();
    say('');
    if (!token) { signinError('Enter a token.'); input.focus(); return; }
    $('#signin-button').disabled = true;
    try {
      const { data } = await api('POST', '/console/session', { json: { token } });
      input.value = '';
      enter(obj(data) || {});
    } catch (e) {
      signinError(e.message);
      input.select();
    } finally {
      $('#signin-button').disabled = false;
    }
  }

  async function enter(session) {
    store(String(session.csrf || ''));
    state.session = {
      csrf: String(session.csrf || ''),
      operator: session.operator === true,
      tenant: typeof session.tenant === 'string' ? session.tenant : null,
    };
    state.statsEnabled = true;
    signinError('');
    $('#whoami').textContent = state.session.operator ? 'operator'
      : state.session.tenant ? `tenant ${state.session.tenant}` : 'signed in';
    $('#session').hidden = false;
    $('#signin').hidden = true;
    $('#console').hidden = false;
    $('#console').classList.remove('no-stats');
    if (state.session.operator) $('#operator-tools').replaceChildren(createTenantForm());
    const epoch = state.epoch;
    await loadTenants();
    if (epoch === state.epoch && state.session) startPolling();
  }

  function signOut() {
    // api() sends the request (with the CSRF header) before leave() forgets the session.
    api('DELETE', '/console/session').catch(() => { /* the local session is gone either way */ });
    leave('Signed out.', 'ok');
  }

  // Back to the sign-in view: forget the session and every rendered tenant.
  function leave(note, kind = 'error') {
    state.epoch++;
    stopPolling();
    state.session = null;
    store(null);
    state.tenants.clear();
    state.history.clear();
    state.prevStats = null;
    for (const sel of ['#tenants', '#operator-tools', '#upstreams tbody', '#tenant-count', '#whoami']) {
      $(sel).replaceChildren();
    }
    for (const sel of ['#upstreams', '#session', '#console']) $(sel).hidden = true;
    $('#signin').hidden = false;
    say(note, kind);
    signinError('');
    $('#token').value = '';
    $('#token').focus();
  }

  // ---- polling ----

  function startPolling() {
    stopPolling();
    if (!state.session || document.hidden) return;
    pollStats();
    const gen = state.pollGen;
    const tick = async () => {
      // A periodic refresh would reset an armed Confirm button: wait for it to act or expire.
      if (!$('#tenants .confirming')) await loadTenants();
      if (gen === state.pollGen) state.tenantsTimer = setTimeout(tick, TENANTS_MS);
    };
    state.tenantsTimer = setTimeout(tick, TENANTS_MS);
  }

  function stopPolling() {
    state.pollGen++;
    clearTimeout(state.statsTimer);
    clearTimeout(state.tenantsTimer);
    state.statsTimer = state.tenantsTimer = 0;
  }

  async function pollStats() {
    const gen = state.pollGen;
    if (!state.session || !state.statsEnabled) return;
    try {
      const { data } = await api('GET', '/v1/stats');
      if (gen === state.pollGen) ingestStats(data);
    } catch (e) {
      if (e.quiet || gen !== state.pollGen) return;
      if (e.status === 403 || e.status === 404) {
        // Statistics are not available to this session: stop asking, hide the live parts.
        state.statsEnabled = false;
        $('#console').classList.add('no-stats');
        return;
      }
      say(`Statistics: ${e.message}`, 'error');
    }
    if (gen === state.pollGen && state.session) state.statsTimer = setTimeout(pollStats, STATS_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (!state.session) return;
    if (document.hidden) {
      stopPolling();
      state.prevStats = null; // the first poll after the pause sets a new baseline
    } else {
      loadTenants();
      startPolling();
    }
  });

  // ---- tenants ----

  async function loadTenants() {
    const seq = ++state.loadSeq;
    try {
      const { data } = await api('GET', '/v1/tenants');
      if (seq !== state.loadSeq || !state.session) return;
      renderTenants(list(obj(data) && data.tenants).filter((t) => obj(t) && typeof t.name === 'string'));
    } catch (e) {
      if (!e.quiet && seq === state.loadSeq) say(`Tenants: ${e.message}`, 'error');
    }
  }

  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

  function renderTenants(tenants) {
    tenants.sort(byName);
    const container = $('#tenants');
    const names = new Set(tenants.map((t) => t.name));
    for (const [name, entry] of state.tenants) {
      if (!names.has(name)) {
        entry.section.remove();
        state.tenants.delete(name);
        state.history.delete(name);
      }
    }
    const empty = $('.empty-tenants', container);
    if (empty) empty.remove();
    for (const t of tenants) {
      let entry = state.tenants.get(t.name);
      if (!entry) {
        entry = createSection(t.name);
        state.tenants.set(t.name, entry);
      }
      fillSection(entry, t);
    }
    // Put the sections in order, moving only those out of place (moving one would drop its focus).
    let cursor = container.firstElementChild;
    for (const t of tenants) {
      const section = state.tenants.get(t.name).section;
      if (section === cursor) cursor = cursor.nextElementSibling;
      else container.insertBefore(section, cursor);
    }
    if (!tenants.length) {
      container.append(el('p', { class: 'empty-tenants muted', text: 'No tenants yet.' }));
    }
    $('#tenant-count').textContent = String(tenants.length);
    for (const entry of state.tenants.values()) drawCharts(entry);
  }

  // A section has containers rebuilt from each /v1/tenants answer (head, info, routes, apps, tokens) and
  // parts built once and kept (stats, charts, forms), so a refresh never loses a chosen file or typing.
  function createSection(name) {
    const operator = state.session.operator;
    const parts = {
      head: el('div', { class: 'tenant-head' }),
      info: el('div', { class: 'tenant-info' }),
      stats: el('div', { class: 'stats' }),
      details: el('div', { class: 'details' }),
      routes: el('div', { class: 'block' }),
      apps: el('div', { class: 'block' }),
      tokens: operator ? el('div', { class: 'block' }) : null,
    };
    const readouts = el('div', { class: 'readouts' });
    const readout = (cls, label) => {
      const value = el('span', { class: `value ${cls}`, 'data-value': '', text: '—' });
      readouts.append(el('div', { class: 'readout' }, el('span', { class: 'label', text: label }), value));
      return value;
    };
    parts.values = {
      requests: readout('stat-requests', 'Requests'),
      rate: readout('stat-rate', 'Req/s'),
      errors: readout('stat-errors', 'Errors/s'),
      p50: readout('stat-p50', 'p50 ms'),
      p99: readout('stat-p99', 'p99 ms'),
      limits: readout('stat-limits', 'Limits/s'),
      hitRate: null, // added when the tenant has cache statistics
    };
    parts.readouts = readouts;
    const chart = (series, what) => el('canvas', { class: 'chart', 'data-series': series, 'data-points': '0',
      role: 'img', 'aria-label': `${what} for ${name}, last 2 minutes` });
    parts.traffic = chart('traffic', 'Requests and errors per second');
    parts.latency = chart('latency', 'p50 and p99 latency');
    parts.stats.append(readouts, el('div', { class: 'charts' }, parts.traffic, parts.latency));

    const section = el('section', { class: 'tenant card', 'data-tenant': name, 'aria-label': `Tenant ${name}` },
      parts.head, parts.info, parts.stats, parts.details, parts.routes, parts.apps, deployForm(name));
    if (operator) section.append(parts.tokens, tokenTools(name));
    return { name, section, parts, hitRate: null, signature: '', latency: {} };
  }

  function fillSection(entry, t) {
    // Unchanged data: keep the DOM as it is (no lost focus, hover or armed button every 15 s).
    const signature = JSON.stringify(t);
    if (entry.signature === signature) return;
    entry.signature = signature;
    const { parts } = entry;
    const operator = state.session.operator;

    const head = [el('h3', { class: 'tenant-name', text: t.name })];
    if (typeof t.source === 'string') {
      head.push(el('span', { class: `badge source source-${t.source === 'api' ? 'api' : 'file'}`, text: t.source }));
    }
    if (isNum(t.version)) head.push(el('span', { class: 'badge', text: `v${t.version}` }));
    head.push(el('span', { class: 'spacer' }));
    if (isNum(t.instances_in_flight)) {
      head.push(el('span', { class: 'in-flight muted', text: `${t.instances_in_flight} in flight` }));
    }
    if (operator && t.source === 'api') {
      head.push(confirmable(el('button', { type: 'button', class: 'danger delete-tenant' }), 'Delete tenant',
        t.name, () => deleteTenant(t.name)));
    }
    parts.head.replaceChildren(...head);

    const hosts = list(t.hosts);
    parts.info.replaceChildren(field('Hosts', el('ul', { class: 'hosts' },
      hosts.length ? hosts.map((h) => el('li', { text: String(h) })) : el('li', { class: 'muted', text: 'none' }))));

    parts.details.replaceChildren(limitsField(t.limits), certificatesField(t.certificates), storageField(entry, t));
    parts.routes.replaceChildren(routesTable(t.routes));
    parts.apps.replaceChildren(appsTable(t.name, t.apps));
    if (parts.tokens) parts.tokens.replaceChildren(tokensTable(t.name, t.tokens));
  }

  function field(label, content, cls) {
    return el('div', { class: `field ${cls || ''}`.trim() }, el('span', { class: 'label', text: label }), content);
  }

  function limitsField(limits) {
    const entries = Object.entries(obj(limits) || {});
    const dl = el('dl', { class: 'limits' });
    for (const [key, value] of entries) {
      dl.append(el('dt', { text: key.replace(/_/g, ' ') }), el('dd', { text: scalar(value) }));
    }
    if (!entries.length) dl.append(el('dd', { class: 'muted', text: 'defaults' }));
    return field('Limits', dl);
  }

  function certificatesField(certs) {
    const ul = el('ul', { class: 'certificates' });
    for (const c of list(certs).filter(obj)) {
      const days = isNum(c.days_left) ? c.days_left
        : isNum(c.not_after) ? Math.floor((c.not_after * 1000 - Date.now()) / 86400000) : null;
      const left = days == null ? '' : days < 0 ? ' (expired)' : ` (${days} day${days === 1 ? '' : 's'} left)`;
      ul.append(el('li', { class: days != null && days < 14 ? 'expiring' : '' },
        el('span', { class: 'mono', text: list(c.names).join(', ') || '—' }),
        el('span', { class: 'expiry' }, 'expires ', timeEl(c.not_after, true), left)));
    }
    if (!ul.childElementCount) ul.append(el('li', { class: 'muted', text: 'none' }));
    return field('Certificates', ul);
  }

  function storageField(entry, t) {
    const box = el('div', { class: 'storage' });
    const kv = obj(t.kv);
    if (kv) {
      box.append(el('div', { class: 'kv' }, el('span', { class: 'label', text: 'KV' }),
        `${isNum(kv.keys) ? kv.keys.toLocaleString() : '—'} keys · ${bytes(kv.bytes)}`));
    }
    const cache = obj(t.cache);
    if (cache) {
      const size = isNum(cache.max_size) ? `${bytes(cache.bytes)} of ${bytes(cache.max_size)}` : bytes(cache.bytes);
      const meter = el('span', { class: 'meter' }, el('span', { class: 'fill' }));
      if (isNum(cache.max_size) && cache.max_size > 0) {
        meter.firstChild.style.width = `${Math.min(100, (100 * num(cache.bytes)) / cache.max_size)}%`;
      }
      box.append(el('div', { class: 'cache' }, el('span', { class: 'label', text: 'Cache' }), size, meter,
        el('span', { class: 'cache-hit muted', text: hitText(entry.hitRate) })));
    }
    if (!box.childElementCount) box.append(el('span', { class: 'muted', text: 'no KV or cache' }));
    return field('Storage', box);
  }

  const hitText = (rate) => (isNum(rate) ? `${decimal(rate)} % hits` : '');

  function table(cls, headers, rows, emptyText) {
    const body = el('tbody', {}, rows);
    if (!rows.length) body.append(el('tr', { class: 'empty' }, el('td', { colspan: headers.length, text: emptyText })));
    return el('div', { class: 'scroll' }, el('table', { class: cls },
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))), body));
  }

  function routesTable(routes) {
    const rows = list(routes).filter(obj).map((r) => el('tr', {},
      el('td', { class: 'mono', text: scalar(r.path) }),
      el('td', {}, el('span', { class: 'badge', text: scalar(r.kind) })),
      el('td', { class: 'mono target', text: scalar(r.target) }),
      el('td', { text: r.cache === true ? 'cached' : r.cache === false ? '—' : '' })));
    return el('div', {}, el('h4', { text: 'Routes' }), table('routes', ['Path', 'Kind', 'Target', 'Cache'], rows, 'No routes'));
  }

  function appsTable(tenant, apps) {
    const rows = list(apps).filter((a) => obj(a) && typeof a.name === 'string').map((a) => {
      const name = el('td', {}, el('span', { class: 'app-name', text: a.name }));
      if (typeof a.sha256 === 'string') name.append(el('span', { class: 'mono hash', title: a.sha256, text: a.sha256.slice(0, 12) }));
      if (a.loaded === false) name.append(el('span', { class: 'badge warn', text: 'not loaded' }));
      if (a.cache === true) name.append(el('span', { class: 'badge', text: 'cached' }));
      return el('tr', { 'data-app': a.name }, name,
        el('td', { class: 'mono', text: scalar(a.route) }),
        el('td', { class: 'num', text: isNum(a.version) ? `v${a.version}` : '—' }),
        el('td', { text: scalar(a.kind) }),
        el('td', { class: 'num', text: bytes(a.size) }),
        el('td', {}, timeEl(a.deployed_at)),
        el('td', { class: 'actions' }, confirmable(el('button', { type: 'button', class: 'danger small remove-app' }),
          'Remove', `app ${a.name}`, () => removeApp(tenant, a.name))));
    });
    return el('div', {}, el('h4', { text: 'Apps' }),
      table('apps', ['Name', 'Route', 'Version', 'Kind', 'Size', 'Deployed', ''], rows, 'No apps deployed'));
  }

  function tokensTable(tenant, tokens) {
    const rows = list(tokens).filter((k) => obj(k) && k.id != null).map((k) => el('tr', { 'data-token': String(k.id) },
      el('td', { class: 'mono', text: String(k.id) }),
      el('td', {}, timeEl(k.created_at)),
      el('td', { class: 'actions' }, confirmable(el('button', { type: 'button', class: 'danger small revoke-token' }),
        'Revoke', `token ${k.id}`, () => revokeToken(tenant, String(k.id))))));
    return el('div', {}, el('h4', { text: 'Tokens' }), table('tokens', ['ID', 'Issued', ''], rows, 'No tokens'));
  }

  // ---- forms and actions ----

  function deployForm(tenant) {
    const file = el('input', { type: 'file', class: 'deploy-file', accept: '.wasm,application/wasm' });
    const name = el('input', { type: 'text', class: 'deploy-name', placeholder: 'from the file', autocomplete: 'off', spellcheck: 'false' });
    const route = el('input', { type: 'text', class: 'deploy-route', placeholder: '/name', autocomplete: 'off', spellcheck: 'false' });
    const button = el('button', { type: 'submit', class: 'primary deploy-button', text: 'Deploy' });
    const form = el('form', { class: 'deploy', novalidate: true, 'aria-label': `Deploy an app to ${tenant}` },
      el('label', { class: 'file' }, el('span', { class: 'label', text: 'WebAssembly file' }), file),
      el('label', {}, el('span', { class: 'label', text: 'App name' }), name),
      el('label', {}, el('span', { class: 'label', text: 'Route (optional)' }), route),
      button);
    // The default name (the file's, without .wasm) is offered as the placeholder and used at submit when
    // the field is still empty: filling the field itself would append to what a user (or a test) types next.
    const fromFile = () => (file.files && file.files[0] ? file.files[0].name.replace(/\.wasm$/i, '') : '');
    file.addEventListener('change', () => { name.placeholder = fromFile() || 'from the file'; });
    form.addEventListener('reset', () => { name.placeholder = 'from the file'; });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = file.files && file.files[0];
      if (!name.value.trim()) name.value = fromFile();
      const app = name.value.trim();
      if (!chosen) { say('Choose a .wasm file to deploy.', 'error'); file.focus(); return; }
      if (!app) { say('Give the app a name.', 'error'); name.focus(); return; }
      const query = route.value.trim() ? `?route=${encodeURIComponent(route.value.trim())}` : '';
      button.textContent = 'Deploying…';
      act(button, async () => {
        try {
          const { data } = await api('PUT', `/v1/tenants/${seg(tenant)}/apps/${seg(app)}${query}`,
            { body: chosen, type: 'application/wasm' });
          form.reset();
          const version = obj(data) && isNum(data.version) ? ` (v${data.version})` : '';
          return `Deployed ${app}${version} to ${tenant}.`;
        } finally {
          button.textContent = 'Deploy';
        }
      });
    });
    return form;
  }

  const removeApp = (tenant, app) => act(null, async () => {
    await api('DELETE', `/v1/tenants/${seg(tenant)}/apps/${seg(app)}`);
    return `Removed ${app} from ${tenant}.`;
  });

  const deleteTenant = (tenant) => act(null, async () => {
    await api('DELETE', `/v1/tenants/${seg(tenant)}`);
    return `Deleted tenant ${tenant}.`;
  });

  const revokeToken = (tenant, id) => act(null, async () => {
    await api('DELETE', `/v1/tenants/${seg(tenant)}/tokens/${seg(id)}`);
    return `Revoked token ${id} of ${tenant}.`;
  });

  function tokenTools(tenant) {
    const issue = el('button', { type: 'button', class: 'issue-token', text: 'Issue token' });
    const output = el('input', { type: 'text', class: 'new-token mono', readonly: true, 'aria-label': `New token for ${tenant}` });
    const copy = el('button', { type: 'button', class: 'small copy-token', text: 'Copy' });
    const box = el('div', { class: 'token-output', hidden: true },
      el('div', { class: 'row' }, output, copy),
      el('p', { class: 'note', text: 'Copy this token now: it will not be shown again.' }));
    issue.addEventListener('click', () => act(issue, async () => {
      const { data } = await api('POST', `/v1/tenants/${seg(tenant)}/tokens`);
      const token = obj(data) && typeof data.token === 'string' ? data.token : '';
      output.value = token;
      box.hidden = !token;
      if (token) output.select();
      const id = obj(data) && data.id != null ? ` ${data.id}` : '';
      return `Issued token${id} for ${tenant}.`;
    }));
    copy.addEventListener('click', () => {
      output.select();
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(output.value).then(() => {
          copy.textContent = 'Copied';
          setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
        }, () => { /* no clipboard access: the token stays selected for a manual copy */ });
      }
    });
    return el('div', { class: 'token-tools' }, issue, box);
  }

  function createTenantForm() {
    const name = el('input', { type: 'text', id: 'new-tenant-name', autocomplete: 'off', spellcheck: 'false', placeholder: 'acme' });
    const spec = el('textarea', { id: 'new-tenant-spec', rows: 4, spellcheck: 'false' });
    const button = el('button', { type: 'submit', id: 'create-tenant-button', class: 'primary', text: 'Create tenant' });
    const form = el('form', { id: 'create-tenant', class: 'card', novalidate: true },
      el('h2', { text: 'New tenant' }),
      el('label', { for: 'new-tenant-name', text: 'Name' }), name,
      el('label', { for: 'new-tenant-spec', text: 'Tenant document (JSON)' }), spec,
      el('div', { class: 'row' }, button, el('span', { class: 'muted hint', text: 'An existing API tenant of that name is replaced.' })));
    // The document follows the name until the user edits it (or empties it again).
    let edited = false;
    const prefill = () => { if (!edited) spec.value = `{"hosts": ["${name.value.trim() || 'NAME'}.localhost"]}`; };
    prefill();
    name.addEventListener('input', prefill);
    spec.addEventListener('input', () => { edited = spec.value.trim() !== ''; });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const tenant = name.value.trim();
      if (!tenant) { say('Give the tenant a name.', 'error'); name.focus(); return; }
      let doc;
      try { doc = JSON.parse(spec.value); } catch (e) {
        say(`The tenant document is not valid JSON: ${e.message}`, 'error');
        spec.focus();
        return;
      }
      act(button, async () => {
        const { status } = await api('PUT', `/v1/tenants/${seg(tenant)}`, { json: doc });
        form.reset();
        edited = false;
        prefill();
        return `${status === 201 ? 'Created' : 'Replaced'} tenant ${tenant}.`;
      });
    });
    return form;
  }

  // ---- statistics ----

  function renderUpstreams(upstreams) {
    const health = (u) => (!u.healthy ? ['bad', 'unhealthy'] : u.ejected ? ['bad', 'ejected'] : ['good', 'healthy']);
    const rows = upstreams.filter(obj).map((u) => el('tr', {},
      el('td', { text: scalar(u.tenant) }),
      el('td', { class: 'mono', text: scalar(u.route) }),
      el('td', { class: 'mono', text: scalar(u.upstream) }),
      el('td', {}, el('span', { class: `badge ${health(u)[0]}`, text: health(u)[1] })),
      el('td', { class: 'num', text: scalar(u.in_flight) })));
    $('#upstreams tbody').replaceChildren(...rows);
    $('#upstreams').hidden = rows.length === 0;
  }

  // The quantile q of a latency histogram (non-cumulative counts per bucket), in ms, interpolated
  // linearly inside the bucket that holds it; null without requests.
  function quantile(counts, bounds, q) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) return null;
    const target = q * total;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      if (counts[i] > 0 && seen + counts[i] >= target) {
        const lower = i === 0 ? 0 : num(bounds[i - 1]);
        // The last bucket has no upper bound: report its lower one.
        const upper = i < bounds.length ? num(bounds[i]) : lower;
        return (lower + ((upper - lower) * (target - seen)) / counts[i]) * 1000;
      }
      seen += counts[i];
    }
    return null;
  }

  const sumValues = (o) => Object.values(obj(o) || {}).reduce((a, v) => a + num(v), 0);

  function deltaPoint(before, now, dt, bounds) {
    const d = (k) => Math.max(0, num(now[k]) - num(before[k]));
    const was = list(before.latency);
    const counts = list(now.latency).map((c, i) => Math.max(0, num(c) - num(was[i])));
    const limitsBefore = obj(before.limits) || {};
    let limits = 0;
    for (const [kind, count] of Object.entries(obj(now.limits) || {})) limits += Math.max(0, num(count) - num(limitsBefore[kind]));
    return {
      rate: d('requests') / dt,
      errors: d('errors') / dt,
      p50: quantile(counts, bounds, 0.5),
      p99: quantile(counts, bounds, 0.99),
      limits: limits / dt,
    };
  }

  function hitRate(before, now) {
    const c = obj(now.cache);
    if (!c) return null;
    const b = obj(before && before.cache);
    if (b) {
      const hit = num(c.hit) - num(b.hit);
      const miss = num(c.miss) - num(b.miss);
      if (hit >= 0 && miss >= 0 && hit + miss > 0) return (100 * hit) / (hit + miss);
    }
    // No traffic in the interval: the rate since the server started.
    return num(c.hit) + num(c.miss) > 0 ? (100 * num(c.hit)) / (num(c.hit) + num(c.miss)) : null;
  }

  function ingestStats(s) {
    if (!obj(s)) return;
    renderUpstreams(list(s.upstreams));
    const prev = state.prevStats;
    state.prevStats = s;
    const bounds = list(s.latency_buckets);
    const dt = prev && isNum(s.at_ms) && isNum(prev.at_ms) ? (s.at_ms - prev.at_ms) / 1000 : 0;
    const prevTenants = (prev && obj(prev.tenants)) || {};
    for (const [name, now] of Object.entries(obj(s.tenants) || {})) {
      const entry = state.tenants.get(name);
      if (!entry || !obj(now)) continue; // only tenants in the list are shown
      const before = obj(prevTenants[name]);
      let point = null;
      // Counters that went down mean the server restarted: that interval has no delta.
      if (before && dt > 0 && num(now.requests) >= num(before.requests)) {
        point = deltaPoint(before, now, dt, bounds);
        const series = state.history.get(name) || [];
        series.push(point);
        if (series.length > HISTORY) series.splice(0, series.length - HISTORY);
        state.history.set(name, series);
      }
      updateReadouts(entry, now, point, hitRate(before, now));
      drawCharts(entry);
    }
  }

  // A readout: the number as text (its unit is in the label) and raw in data-value ('' when unknown).
  function setReadout(node, value, text) {
    node.dataset.value = isNum(value) ? String(value) : '';
    node.textContent = isNum(value) ? text : '—';
    node.title = isNum(value) ? text : '';
  }

  function updateReadouts(entry, now, point, hit) {
    const v = entry.parts.values;
    setReadout(v.requests, now.requests, num(now.requests).toLocaleString());
    const p = point || {};
    setReadout(v.rate, p.rate, decimal(p.rate));
    setReadout(v.errors, p.errors, decimal(p.errors));
    // An interval without requests has no latency: the readouts keep the last one measured.
    for (const q of ['p50', 'p99']) {
      if (isNum(p[q])) entry.latency[q] = p[q];
      setReadout(v[q], entry.latency[q], decimal(entry.latency[q]));
    }
    setReadout(v.limits, p.limits, decimal(p.limits));
    v.errors.classList.toggle('alert', num(p.errors) > 0);
    v.limits.classList.toggle('alert', num(p.limits) > 0);
    entry.hitRate = hit;
    if (obj(now.cache)) {
      if (!v.hitRate) {
        v.hitRate = el('span', { class: 'value stat-hit-rate', 'data-value': '' });
        entry.parts.readouts.append(el('div', { class: 'readout' }, el('span', { class: 'label', text: 'Hit rate' }), v.hitRate));
      }
      setReadout(v.hitRate, hit, `${decimal(hit)} %`);
    } else if (v.hitRate) {
      v.hitRate.parentNode.remove();
      v.hitRate = null;
    }
    const cacheHit = $('.cache-hit', entry.section);
    if (cacheHit) cacheHit.textContent = hitText(hit);
  }

  // ---- charts ----

  function drawCharts(entry) {
    const series = state.history.get(entry.name) || [];
    drawChart(entry.parts.traffic, series.length, 'req/s', [
      { label: 'requests/s', color: '--chart-1', values: series.map((p) => p.rate) },
      { label: 'errors/s', color: '--chart-2', values: series.map((p) => p.errors) },
    ]);
    drawChart(entry.parts.latency, series.length, 'ms', [
      { label: 'p50', color: '--chart-3', values: series.map((p) => p.p50) },
      { label: 'p99', color: '--chart-4', values: series.map((p) => p.p99) },
    ]);
  }

  // The smallest 1, 2 or 5 × 10^k at or above v.
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
    return 10 * p;
  }

  function drawChart(canvas, points, unit, lines) {
    canvas.dataset.points = String(points);
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return; // not laid out (hidden): drawn at the next poll
    // Backing store in device pixels, drawing in CSS pixels: sharp on high-DPI screens.
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(width * dpr);
    const h = Math.round(height * dpr);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const css = getComputedStyle(canvas);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const text = color('--chart-text', '#666');
    const grid = color('--chart-grid', '#ddd');
    ctx.font = `11px ${css.fontFamily || 'sans-serif'}`;
    ctx.textBaseline = 'middle';

    const max = Math.max(0, ...lines.flatMap((l) => l.values.filter(isNum)));
    const top = niceCeil(max);
    const area = { left: 6, right: width - 6, top: 22, bottom: height - 16 };
    const y = (v) => area.bottom - ((area.bottom - area.top) * v) / top;
    const x = (i) => area.left + ((area.right - area.left) * (HISTORY - points + i)) / (HISTORY - 1);

    const path = (style, lineWidth, coords) => {
      ctx.strokeStyle = style;
      ctx.lineWidth = lineWidth;
      ctx.beginPath();
      coords.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.stroke();
    };
    const label = (str, px, py, align) => { ctx.textAlign = align; ctx.fillStyle = text; ctx.fillText(str, px, py); };

    // Grid, axes and labels.
    const base = Math.round(area.bottom) + 0.5;
    for (let k = 1; k <= 4; k++) {
      const gy = Math.round(area.bottom - ((area.bottom - area.top) * k) / 4) + 0.5;
      path(grid, 1, [[area.left, gy], [area.right, gy]]);
    }
    path(text, 1, [[area.left + 0.5, area.top], [area.left + 0.5, base], [area.right, base]]);
    label(`max ${top.toLocaleString(undefined, { maximumFractionDigits: 4 })} ${unit}`, area.left, 9, 'left');
    label('−2 min', area.left, height - 7, 'left');
    label('now', area.right, height - 7, 'right');
    if (!points) label('collecting…', (area.left + area.right) / 2, (area.top + area.bottom) / 2, 'center');

    // Legend, right-aligned above the plot.
    let lx = area.right;
    for (const line of [...lines].reverse()) {
      lx -= ctx.measureText(line.label).width;
      label(line.label, lx, 9, 'left');
      lx -= 18;
      path(color(line.color, '#36c'), 2, [[lx, 9], [lx + 13, 9]]);
      lx -= 12;
    }

    // Lines: a missing value (no requests, so no latency) leaves a gap, a lone value is a dot.
    ctx.lineJoin = 'round';
    for (const line of lines) {
      const c = color(line.color, '#36c');
      const runs = [[]];
      line.values.forEach((v, i) => {
        if (isNum(v)) runs[runs.length - 1].push([x(i), y(Math.min(v, top))]);
        else if (runs[runs.length - 1].length) runs.push([]);
      });
      ctx.fillStyle = c;
      for (const run of runs) {
        if (run.length === 1) ctx.fillRect(run[0][0] - 1.5, run[0][1] - 1.5, 3, 3);
        else if (run.length > 1) path(c, 1.75, run);
      }
    }
  }

  let resizeFrame = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => { for (const entry of state.tenants.values()) drawCharts(entry); });
  });

  // ---- start ----

  $('#signin').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', signOut);
  restore();
})();
