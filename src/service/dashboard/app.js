// floe's dashboard: one page that polls floe's REST API (Flink's paths and JSON shapes) once a
// second and renders the jobs, one job's operators, checkpoints and configuration, with buttons
// for a savepoint, stop-with-savepoint and cancel. No framework and no build step: this file is
// served as written, from the binary. Everything shown comes from the API; the page keeps no
// state of its own beyond which job is open and the savepoint it is waiting for.
'use strict';

(() => {
  const POLL_MS = 1000;
  const SAVEPOINT_POLL_MS = 250;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const TERMINAL = new Set(['FINISHED', 'CANCELED', 'FAILED', 'SUSPENDED']);

  const $ = (sel) => document.querySelector(sel);

  // ---- DOM helpers: text always goes in as text nodes, never parsed as markup. ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'onclick') node.addEventListener('click', v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // ---- Formatting ----

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  function fmtTime(ms) {
    if (typeof ms !== 'number' || ms <= 0) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtDuration(ms) {
    if (typeof ms !== 'number' || ms < 0) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? `${h}h ${m}m ${s % 60}s` : `${m}m ${s % 60}s`;
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || n < 0) return '—';
    if (n < 1024) return `${n} B`;
    const units = ['KB', 'MB', 'GB', 'TB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
  }

  function fmtCount(n) {
    return typeof n === 'number' ? n.toLocaleString('en-US') : '—';
  }

  // Flink's errors carry a Java class prefix and a stack trace after "\n\tat"; people need the
  // sentence in between.
  function firstLine(msg) {
    return String(msg)
      .split('\n\tat ')[0]
      .replace(/^(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): /, '')
      .trim();
  }

  // ---- The API ----

  class ApiError extends Error {
    constructor(status, messages, what) {
      super(messages.join('; '));
      this.status = status;
      this.messages = messages;
      this.what = what;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = $('#token-input').value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    const what = `${method} ${path}`;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, [`cannot reach floe (${e.message})`], what);
    }
    const text = await resp.text();
    let json = null;
    if (text) {
      try { json = JSON.parse(text); } catch (_) { json = null; }
    }
    if (!resp.ok) {
      let messages;
      if (json && Array.isArray(json.errors) && json.errors.length > 0) {
        messages = json.errors.map(firstLine);
      } else {
        messages = [`HTTP ${resp.status} ${resp.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`];
      }
      if (resp.status === 401 || resp.status === 403) {
        $('#token-box').open = true;
        messages.push('Enter the API token (rest.auth.token) at the top right.');
      }
      throw new ApiError(resp.status, messages, what);
    }
    return json;
  }

  // ---- Errors shown in the page, keyed by where they came from ----

  const errors = new Map();

  function setError(key, err) {
    if (err) errors.set(key, err); else errors.delete(key);
    renderErrors();
  }

  function renderErrors() {
    const items = [];
    for (const [key, err] of errors) {
      const messages = err instanceof ApiError ? err.messages : [String(err && err.message || err)];
      const what = err instanceof ApiError ? err.what : '';
      const close = key.startsWith('action')
        ? el('button', { type: 'button', class: 'close', title: 'Dismiss', onclick: () => setError(key, null) }, '×')
        : null;
      items.push(el('li', { 'data-source': key },
        close,
        el('span', { class: 'error-what' }, what),
        ...messages.map((m) => el('span', { class: 'error-message' }, m))));
    }
    $('#errors').replaceChildren(...items);
  }

  // Runs one poll step; its error replaces the previous error of the same step, and a success
  // clears it, so the list shows what is wrong now.
  async function guarded(key, fn) {
    try {
      await fn();
      setError(key, null);
      return true;
    } catch (e) {
      setError(key, e);
      return false;
    }
  }

  // ---- Page state ----

  const page = {
    jobId: null,
    job: null,
    configFor: null,
    autoOpened: false,
    busy: false,
    reachable: null,
    noPipelines: false,
  };

  function route() {
    const m = /^#\/jobs\/([^/?#]+)/.exec(location.hash);
    const id = m ? decodeURIComponent(m[1]) : null;
    if (id === page.jobId) return;
    page.jobId = id;
    page.job = null;
    page.configFor = null;
    for (const key of [...errors.keys()]) if (key.startsWith('job:') || key.startsWith('action')) errors.delete(key);
    renderErrors();
    $('#job-view').hidden = !id;
    $('#savepoint-status').textContent = '';
    $('#savepoint-location').textContent = '';
    $('#job-graph').replaceChildren();
    replaceRows($('#checkpoint-history tbody'), []);
    highlightSelectedJob();
    if (id) poll();
  }

  // ---- Jobs list ----

  async function pollJobs() {
    const data = await api('GET', '/jobs/overview');
    const jobs = (data && Array.isArray(data.jobs) ? data.jobs : [])
      .slice()
      .sort((a, b) => (b['start-time'] || 0) - (a['start-time'] || 0));
    const rows = jobs.map((j) => el('tr', {
      'data-job-id': j.jid,
      'data-state': j.state,
      class: j.jid === page.jobId ? 'selected' : null,
      onclick: () => { location.hash = `#/jobs/${encodeURIComponent(j.jid)}`; },
    },
    el('td', null, el('a', { href: `#/jobs/${encodeURIComponent(j.jid)}` }, j.name || '(unnamed)'),
      j['reload-error'] ? el('span', { class: 'reload-flag', title: j['reload-error'] }, ' edit not applied') : null),
    el('td', null, el('code', null, j.jid)),
    el('td', null, stateBadge(j.state)),
    el('td', { class: 'time' }, fmtTime(j['start-time'])),
    el('td', null, fmtDuration(j.duration))));
    replaceRows($('#jobs-table tbody'), rows);
    $('#jobs-empty').hidden = jobs.length > 0;
    // `floe run` serves one job: open it rather than make the user click, once per page load.
    if (!page.autoOpened && !page.jobId && !location.hash.startsWith('#/jobs/') && jobs.length === 1) {
      page.autoOpened = true;
      location.hash = `#/jobs/${encodeURIComponent(jobs[0].jid)}`;
    }
  }

  // ---- Pipelines (floe serve: one per file) ----

  // `floe run` has no pipelines (404): the section stays hidden and is not asked again.
  async function pollPipelines() {
    if (page.noPipelines) return;
    let data;
    try {
      data = await api('GET', '/pipelines');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        page.noPipelines = true;
        $('#pipelines').hidden = true;
        return;
      }
      throw e;
    }
    const list = data && Array.isArray(data.pipelines) ? data.pipelines : [];
    $('#pipelines').hidden = false;
    replaceRows($('#pipelines-table tbody'), list.map(pipelineRow));
  }

  function pipelineRow(p) {
    const job = p['job-id'];
    const versions = Array.isArray(p.versions) ? p.versions : [];
    const held = p.held ? el('button', {
      type: 'button',
      class: 'start',
      onclick: (ev) => { ev.stopPropagation(); startPipeline(p.file); },
    }, 'Start') : null;
    return el('tr', { 'data-file': p.file, 'data-ready': String(!!p.ready) },
      el('td', null, el('code', null, p.file)),
      el('td', null, p.name || '—'),
      el('td', null, stateBadge(p.status)),
      el('td', { class: p.ready ? 'ready' : 'not-ready' },
        p.ready ? 'ready' : el('span', { class: 'reason' }, firstLine(p.reason || 'not ready'))),
      el('td', null, job ? el('a', { href: `#/jobs/${encodeURIComponent(job)}` }, el('code', null, job.slice(0, 8))) : '—'),
      el('td', { title: versions.map((v) => `${v['job-id']} ${v.state}`).join('\n') },
        `${versions.length} listed, ${fmtCount(p['versions-started'])} started`),
      el('td', null, fmtCount(p.restarts)),
      el('td', null, fmtCount(p.rollbacks)),
      el('td', null, held));
  }

  async function startPipeline(file) {
    await guarded('action:start', async () => {
      const report = await api('POST', `/pipelines/${encodeURIComponent(file)}/start`, {});
      if (report && report.ok === false) {
        const p = (report.pipelines || [])[0] || {};
        throw new Error(p.error || `${file} did not start`);
      }
    });
    poll();
  }

  function highlightSelectedJob() {
    for (const tr of document.querySelectorAll('#jobs-table tbody tr')) {
      tr.classList.toggle('selected', tr.dataset.jobId === page.jobId);
    }
  }

  function stateBadge(state) {
    return el('span', { class: `state state-${String(state || '').toLowerCase()}` }, state || '?');
  }

  // ---- One job ----

  async function pollJob(id) {
    const job = await api('GET', `/jobs/${encodeURIComponent(id)}`);
    if (id !== page.jobId) return;
    page.job = job;
    $('#job-name').textContent = job.name || '(unnamed)';
    $('#job-state').replaceWith(Object.assign(stateBadge(job.state), { id: 'job-state' }));
    $('#job-id').textContent = job.jid || id;
    $('#job-start').textContent = fmtTime(job['start-time']);
    $('#job-duration').textContent = fmtDuration(job.duration);
    // `floe serve`: why the last edit of the job's file was not applied.
    const reloadError = $('#job-reload-error');
    reloadError.hidden = !job['reload-error'];
    reloadError.textContent = job['reload-error'] ? `Last edit of ${job.file || 'the pipeline file'} not applied: ${job['reload-error']}` : '';
    updateButtons();
    renderGraph(Array.isArray(job.vertices) ? job.vertices : [], job.plan);
  }

  function updateButtons() {
    const state = page.job && page.job.state;
    const live = !!state && !TERMINAL.has(state);
    for (const id of ['#savepoint-button', '#stop-button', '#cancel-button']) {
      $(id).disabled = page.busy || !live;
    }
  }

  // Lays vertices out left to right: a vertex's column is the longest path from a source, from
  // the plan's `inputs`. Without a plan the vertices form a chain in the order given.
  function layout(vertices, plan) {
    const ids = vertices.map((v) => v.id);
    const known = new Set(ids);
    const inputs = new Map(ids.map((id) => [id, []]));
    const nodes = plan && Array.isArray(plan.nodes) ? plan.nodes : [];
    const edges = [];
    if (nodes.length > 0) {
      for (const n of nodes) {
        if (!known.has(n.id) || !Array.isArray(n.inputs)) continue;
        for (const input of n.inputs) {
          if (!known.has(input.id)) continue;
          inputs.get(n.id).push(input.id);
          edges.push({ from: input.id, to: n.id, label: input.ship_strategy || '' });
        }
      }
    } else {
      for (let i = 1; i < ids.length; i += 1) {
        inputs.get(ids[i]).push(ids[i - 1]);
        edges.push({ from: ids[i - 1], to: ids[i], label: '' });
      }
    }
    const column = new Map();
    const visiting = new Set();
    const depth = (id) => {
      if (column.has(id)) return column.get(id);
      if (visiting.has(id)) return 0; // a cycle cannot come from Flink's plan; do not loop on one
      visiting.add(id);
      const d = inputs.get(id).reduce((acc, up) => Math.max(acc, depth(up) + 1), 0);
      visiting.delete(id);
      column.set(id, d);
      return d;
    };
    const rows = new Map();
    const placed = vertices.map((v) => {
      const col = depth(v.id);
      const row = rows.get(col) || 0;
      rows.set(col, row + 1);
      return { v, col, row };
    });
    return { placed, edges, cols: Math.max(0, ...column.values()) + 1, rows: Math.max(1, ...rows.values()) };
  }

  function metric(v, name) {
    const m = v.metrics || {};
    return typeof m[name] === 'number' ? m[name] : null;
  }

  function renderGraph(vertices, plan) {
    const box = $('#job-graph');
    if (vertices.length === 0) {
      box.replaceChildren(el('p', { class: 'muted' }, 'No operators reported.'));
      return;
    }
    const W = 220;
    const H = 92;
    const GX = 70;
    const GY = 22;
    const M = 8;
    const { placed, edges, cols, rows } = layout(vertices, plan);
    const pos = new Map(placed.map((p) => [p.v.id, { x: M + p.col * (W + GX), y: M + p.row * (H + GY) }]));
    const width = M * 2 + cols * W + (cols - 1) * GX;
    const height = M * 2 + rows * H + (rows - 1) * GY;
    const root = svg('svg', {
      width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Operator graph',
    });
    root.append(svg('defs', null,
      svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }))));
    for (const e of edges) {
      const a = pos.get(e.from);
      const b = pos.get(e.to);
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x;
      const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      root.append(svg('path', {
        class: 'edge', 'data-from': e.from, 'data-to': e.to,
        d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 1},${y2}`, 'marker-end': 'url(#arrow)',
      }));
      if (e.label) {
        root.append(svg('text', { class: 'edge-label', x: mx, y: (y1 + y2) / 2 - 6, 'text-anchor': 'middle' }, e.label));
      }
    }
    for (const { v } of placed) {
      const { x, y } = pos.get(v.id);
      const name = String(v.name || v.id);
      const short = name.length > 30 ? `${name.slice(0, 29)}…` : name;
      const readRecords = metric(v, 'read-records');
      const writeRecords = metric(v, 'write-records');
      root.append(svg('g', {
        class: `vertex state-${String(v.status || '').toLowerCase()}`,
        'data-vertex-id': v.id,
        'data-parallelism': v.parallelism,
        'data-read-records': readRecords,
        'data-write-records': writeRecords,
        transform: `translate(${x},${y})`,
      },
      svg('title', null, `${name}\n${v.id}`),
      svg('rect', { width: W, height: H, rx: 6 }),
      svg('rect', { class: 'status-bar', width: 5, height: H, rx: 2 }),
      svg('text', { class: 'v-name', x: 14, y: 22 }, short),
      svg('text', { class: 'v-meta', x: 14, y: 42 }, `parallelism ${v.parallelism ?? '?'} · ${v.status || '?'}`),
      svg('text', { class: 'v-records', x: 14, y: 62 }, `in  ${fmtCount(readRecords)} records`),
      svg('text', { class: 'v-records', x: 14, y: 80 }, `out ${fmtCount(writeRecords)} records`)));
    }
    box.replaceChildren(root);
  }

  // ---- Checkpoints ----

  function dl(node, title, pairs) {
    const items = [el('h4', null, title)];
    for (const [label, value, field] of pairs) {
      if (label) items.push(el('dt', null, label));
      items.push(el('dd', { 'data-field': field || null, class: label ? null : 'whole' }, value));
    }
    node.replaceChildren(...items);
  }

  function typeLabel(c) {
    switch (c.checkpoint_type) {
      case 'SAVEPOINT': return 'Savepoint';
      case 'SYNC_SAVEPOINT': return 'Savepoint (stop)';
      case 'UNALIGNED_CHECKPOINT': return 'Unaligned checkpoint';
      case 'CHECKPOINT': return 'Checkpoint';
      default: return c.is_savepoint ? 'Savepoint' : 'Checkpoint';
    }
  }

  function pathNode(path, discarded) {
    if (!path) return '—';
    return el('code', { class: discarded ? 'discarded' : null, title: discarded ? 'discarded (subsumed)' : path }, path);
  }

  async function pollCheckpoints(id) {
    let data;
    try {
      data = await api('GET', `/jobs/${encodeURIComponent(id)}/checkpoints`);
    } catch (e) {
      // Flink answers 404 "Checkpointing has not been enabled." for such jobs: a state, not a fault.
      if (e instanceof ApiError && e.status === 404 && /not been enabled/i.test(e.message)) {
        if (id !== page.jobId) return;
        $('#checkpoints-message').textContent = 'Checkpointing is not enabled for this job.';
        $('#checkpoints-message').hidden = false;
        $('#checkpoints-body').hidden = true;
        return;
      }
      throw e;
    }
    if (id !== page.jobId || !data) return;
    $('#checkpoints-message').hidden = true;
    $('#checkpoints-body').hidden = false;

    const counts = data.counts || {};
    $('#checkpoint-counts').replaceChildren(...[
      ['Triggered', 'total'],
      ['In progress', 'in_progress'],
      ['Completed', 'completed'],
      ['Failed', 'failed'],
      ['Restored', 'restored'],
    ].map(([label, field]) => el('div', { class: `stat stat-${field}` },
      el('dt', null, label),
      el('dd', { 'data-field': field }, fmtCount(counts[field])))));

    const latest = data.latest || {};
    const c = latest.completed;
    dl($('#latest-completed'), 'Latest completed checkpoint', c ? [
      ['ID', c.id, 'id'],
      ['Completion time', fmtTime(c.latest_ack_timestamp), 'time'],
      ['End to end duration', fmtDuration(c.end_to_end_duration), 'duration'],
      ['Checkpointed size', fmtBytes(c.checkpointed_size), 'size'],
      ['Path', pathNode(c.external_path, c.discarded), 'path'],
    ] : [['', 'None', 'none']]);

    const s = latest.savepoint;
    dl($('#latest-savepoint'), 'Latest savepoint', s ? [
      ['ID', s.id, 'id'],
      ['Completion time', fmtTime(s.latest_ack_timestamp), 'time'],
      ['Type', typeLabel(s), 'type'],
      ['Path', pathNode(s.external_path, s.discarded), 'path'],
    ] : [['', 'None', 'none']]);

    const f = latest.failed;
    dl($('#latest-failed'), 'Latest failed checkpoint', f ? [
      ['ID', f.id, 'id'],
      ['Failure time', fmtTime(f.failure_timestamp), 'time'],
      ['Cause', f.failure_message || '—', 'cause'],
    ] : [['', 'None', 'none']]);

    // The "Latest Restore" block of Flink's checkpoint overview.
    const r = latest.restored;
    dl($('#latest-restore'), 'Latest restore', r ? [
      ['ID', r.id, 'id'],
      ['Restore time', fmtTime(r.restore_timestamp), 'time'],
      ['Type', r.is_savepoint ? 'Savepoint' : 'Checkpoint', 'type'],
      ['Path', pathNode(r.external_path, false), 'path'],
    ] : [['', 'None', 'none']]);

    const history = Array.isArray(data.history) ? data.history : [];
    const rows = history.map((h) => el('tr', {
      'data-checkpoint-id': h.id, 'data-status': h.status, class: h.is_savepoint ? 'savepoint' : null,
    },
    el('td', null, h.id),
    el('td', null, stateBadge(h.status)),
    el('td', null, typeLabel(h)),
    el('td', null, `${h.num_acknowledged_subtasks ?? '?'}/${h.num_subtasks ?? '?'}`),
    el('td', { class: 'time' }, fmtTime(h.trigger_timestamp)),
    el('td', null, fmtDuration(h.end_to_end_duration)),
    el('td', { class: 'num' }, fmtBytes(h.checkpointed_size)),
    el('td', { class: 'num' }, fmtBytes(h.state_size)),
    el('td', { class: 'path' }, h.status === 'FAILED'
      ? el('span', { class: 'failure' }, h.failure_message || 'failed')
      : pathNode(h.external_path, h.discarded))));
    replaceRows($('#checkpoint-history tbody'), rows);
    $('#history-empty').hidden = history.length > 0;
  }

  // ---- Configuration (loaded once per job: it does not change while the job runs) ----

  const CHECKPOINT_CONFIG_LABELS = {
    mode: ['Checkpointing mode', (v) => (v === 'exactly_once' ? 'Exactly once' : v === 'at_least_once' ? 'At least once' : v)],
    interval: ['Interval', fmtDuration],
    timeout: ['Timeout', fmtDuration],
    min_pause: ['Minimum pause between checkpoints', fmtDuration],
    max_concurrent: ['Maximum concurrent checkpoints', String],
    externalization: ['Persist checkpoints externally', (v) => (v && v.enabled
      ? `Enabled (${v.delete_on_cancellation ? 'deleted' : 'retained'} on cancellation)` : 'Disabled')],
    state_backend: ['State backend', String],
    checkpoint_storage: ['Checkpoint storage', String],
    unaligned_checkpoints: ['Unaligned checkpoints', (v) => (v ? 'Enabled' : 'Disabled')],
    tolerable_failed_checkpoints: ['Tolerable failed checkpoints', String],
  };

  function kvRows(pairs) {
    return pairs.map(([k, v]) => el('tr', { 'data-key': k }, el('th', null, k), el('td', null, v)));
  }

  function flatten(value, prefix, out) {
    if (Array.isArray(value) && value.every((x) => x && typeof x === 'object' && 'key' in x && 'value' in x)) {
      for (const { key, value: v } of value) out.push([prefix ? `${prefix}.${key}` : key, String(v)]);
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
    } else {
      out.push([prefix, Array.isArray(value) ? JSON.stringify(value) : String(value)]);
    }
    return out;
  }

  async function loadCheckpointConfig(id) {
    const body = $('#checkpoint-config tbody');
    let cfg;
    try {
      cfg = await api('GET', `/jobs/${encodeURIComponent(id)}/checkpoints/config`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        replaceRows(body, kvRows([['', firstLine(e.messages[0] || 'not available')]]));
        return;
      }
      throw e;
    }
    // Flink's labels first, in Flink's order, then whatever else the server sends, as sent.
    const pairs = [];
    for (const [k, [label, show]] of Object.entries(CHECKPOINT_CONFIG_LABELS)) {
      if (cfg && k in cfg) pairs.push([label, show(cfg[k])]);
    }
    for (const [k, v] of Object.entries(cfg || {})) {
      if (!(k in CHECKPOINT_CONFIG_LABELS)) flatten(v, k, pairs);
    }
    replaceRows(body, kvRows(pairs));
  }

  // Flink has the job's execution config at /jobs/:id/config and the effective configuration at
  // /jobs/:id/jobmanager/config; show the first this server has.
  async function loadJobConfig(id) {
    const body = $('#job-config tbody');
    let last = null;
    for (const path of [`/jobs/${encodeURIComponent(id)}/config`, `/jobs/${encodeURIComponent(id)}/jobmanager/config`]) {
      try {
        const cfg = await api('GET', path);
        const pairs = flatten(cfg, '', []).filter(([k]) => k !== 'jid' && k !== 'name');
        replaceRows(body, kvRows(pairs));
        body.parentElement.dataset.source = path;
        return;
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        last = e;
      }
    }
    replaceRows(body, kvRows([['', last ? last.messages[0] : 'not available']]));
  }

  async function loadConfig(id) {
    await Promise.all([loadCheckpointConfig(id), loadJobConfig(id)]);
    if (id === page.jobId) page.configFor = id;
  }

  // ---- Actions ----

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  function setBusy(busy) {
    page.busy = busy;
    updateButtons();
  }

  // Savepoint and stop-with-savepoint share the trigger-then-poll protocol: 202 with a
  // request-id, then GET /jobs/:id/savepoints/:triggerid until COMPLETED with either a location
  // or a failure-cause.
  async function savepoint(stop) {
    const id = page.jobId;
    if (!id || page.busy) return;
    const dir = $('#savepoint-dir').value.trim();
    if (stop && !window.confirm(`Stop job ${page.job ? page.job.name : id} with a savepoint? The job finishes after the savepoint.`)) return;
    setError('action', null);
    setBusy(true);
    const status = $('#savepoint-status');
    const location_ = $('#savepoint-location');
    location_.textContent = '';
    status.textContent = stop ? 'Stopping with a savepoint…' : 'Triggering a savepoint…';
    status.dataset.state = 'running';
    const jobPath = `/jobs/${encodeURIComponent(id)}`;
    try {
      const body = stop
        ? { drain: false, ...(dir ? { targetDirectory: dir } : {}) }
        : { 'cancel-job': false, ...(dir ? { 'target-directory': dir } : {}) };
      const res = await api('POST', stop ? `${jobPath}/stop` : `${jobPath}/savepoints`, body);
      const trigger = res && res['request-id'];
      if (!trigger) throw new ApiError(200, ['the server answered without a request-id'], `POST ${jobPath}`);
      status.textContent = `Savepoint ${trigger.slice(0, 8)}… in progress`;
      for (;;) {
        await sleep(SAVEPOINT_POLL_MS);
        const st = await api('GET', `${jobPath}/savepoints/${encodeURIComponent(trigger)}`);
        if (!st || !st.status || st.status.id !== 'COMPLETED') continue;
        const op = st.operation || {};
        if (op.location) {
          status.textContent = stop ? 'Stopped with savepoint:' : 'Savepoint completed:';
          status.dataset.state = 'completed';
          location_.textContent = op.location;
        } else {
          const cause = op['failure-cause'] || {};
          throw new ApiError(200, [firstLine(cause['stack-trace'] || cause.class || 'the savepoint failed without a cause')],
            `savepoint ${trigger}`);
        }
        break;
      }
    } catch (e) {
      status.textContent = 'Savepoint failed.';
      status.dataset.state = 'failed';
      setError('action', e);
    } finally {
      setBusy(false);
    }
  }

  async function cancelJob() {
    const id = page.jobId;
    if (!id || page.busy) return;
    if (!window.confirm(`Cancel job ${page.job ? page.job.name : id}? It stops without a savepoint.`)) return;
    setError('action', null);
    setBusy(true);
    try {
      await api('PATCH', `/jobs/${encodeURIComponent(id)}?mode=cancel`);
      $('#savepoint-status').textContent = 'Cancellation requested.';
      $('#savepoint-status').dataset.state = 'completed';
      $('#savepoint-location').textContent = '';
    } catch (e) {
      setError('action', e);
    } finally {
      setBusy(false);
    }
    poll();
  }

  // ---- Polling ----

  let polling = false;

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const id = page.jobId;
      const steps = [guarded('jobs', pollJobs), guarded('pipelines', pollPipelines)];
      if (id) {
        steps.push(guarded('job:detail', () => pollJob(id)));
        steps.push(guarded('job:checkpoints', () => pollCheckpoints(id)));
        if (page.configFor !== id) steps.push(guarded('job:config', () => loadConfig(id)));
      }
      await Promise.all(steps);
      const unreachable = [...errors.values()].some((e) => e instanceof ApiError && e.status === 0);
      const conn = $('#connection');
      conn.dataset.state = unreachable ? 'down' : 'live';
      conn.textContent = unreachable ? 'floe unreachable' : 'live';
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } finally {
      polling = false;
    }
  }

  async function loop() {
    await poll();
    setTimeout(loop, POLL_MS);
  }

  async function loadServerInfo() {
    try {
      const cfg = await api('GET', '/config');
      const v = cfg && cfg['flink-version'];
      if (v) $('#server-info').textContent = `REST API as Flink ${v}`;
    } catch (_) {
      // Only decoration; the polls report a server that does not answer.
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#savepoint-button').addEventListener('click', () => savepoint(false));
    $('#stop-button').addEventListener('click', () => savepoint(true));
    $('#cancel-button').addEventListener('click', cancelJob);
    $('#savepoint-dir').addEventListener('keydown', (e) => { if (e.key === 'Enter') savepoint(false); });
    const token = $('#token-input');
    token.value = sessionStorage.getItem('floe-token') || '';
    token.addEventListener('change', () => sessionStorage.setItem('floe-token', token.value.trim()));
    window.addEventListener('hashchange', route);
    updateButtons();
    loadServerInfo();
    route();
    loop();
  });
})();
