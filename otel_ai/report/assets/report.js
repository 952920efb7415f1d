// otel-ai run report: draws the data in script#report-data. No library, no network.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var SVGNS = 'http://www.w3.org/2000/svg';
  var errors = [];
  window.__otelAiReport = { errors: errors, ready: false };

  var KIND_COLORS = {
    draft: '#4e79a7', debug: '#f28e2b', improve: '#59a14f', hyperparam: '#76b7b2',
    ablation: '#edc948', seed: '#b07aa1', seed_agg: '#ff9da7', node: '#9c755f'
  };
  var PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
  var STATUS = ['good', 'buggy', 'unknown'];
  var RUN_END = D.run.duration || undefined;

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function sv(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (var key in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key) || attrs[key] === null || attrs[key] === undefined) continue;
      if (key === 'text') node.textContent = String(attrs[key]);
      else if (key === 'onclick') node.addEventListener('click', attrs[key]);
      else node.setAttribute(key, String(attrs[key]));
    }
  }
  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function fmtDur(s) {
    if (s === null || s === undefined || !isFinite(s)) return '?';
    if (s === 0) return '0s';
    var neg = s < 0; s = Math.abs(s);
    var out;
    if (s < 1) out = (s * 1000).toFixed(s < 0.01 ? 1 : 0) + 'ms';
    else if (s < 60) out = s.toFixed(s < 10 ? 2 : 1) + 's';
    else {
      var m = Math.floor(s / 60), h = Math.floor(m / 60);
      out = h ? h + 'h' + pad2(m % 60) + 'm' : m + 'm' + pad2(Math.floor(s % 60)) + 's';
    }
    return (neg ? '-' : '') + out;
  }
  function pad2(n) { return (n < 10 ? '0' : '') + n; }
  function fmtBytes(b) {
    if (b === null || b === undefined || !isFinite(b)) return '?';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (Math.abs(b) >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : Math.round(b)) + ' ' + units[i];
  }
  function fmtPct(v) { return v === null || v === undefined ? '?' : (v * 100).toFixed(v < 0.1 ? 1 : 0) + '%'; }
  function fmtNum(v) {
    if (v === null || v === undefined || !isFinite(v)) return '?';
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, '');
  }
  function clock(t) {
    var d = new Date(D.run.t0_ms + t * 1000);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }
  function section(id, title) {
    var s = el('section', { id: id }, el('h2', { text: title }));
    app.appendChild(s);
    return s;
  }
  function guarded(name, fn) {
    try { fn(); } catch (err) {
      errors.push(name + ': ' + (err && err.stack || err));
      app.appendChild(el('p', { 'class': 'error-note', text: 'Could not draw ' + name + ': ' + err }));
    }
  }
  function swatch(color) { var sw = el('span', { 'class': 'sq' }); sw.style.background = color; return sw; }
  function shortId(id) { return id.length > 12 ? id.slice(0, 12) : id; }

  var app = document.getElementById('app');
  var tooltip = el('div', { id: 'tooltip' });
  document.body.appendChild(tooltip);
  function showTip(evt, text) {
    tooltip.textContent = text;
    tooltip.style.display = 'block';
    var x = evt.clientX + 14, y = evt.clientY + 14;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = evt.clientX - w - 10;
    if (y + h > window.innerHeight - 8) y = evt.clientY - h - 10;
    tooltip.style.left = x + 'px';
    tooltip.style.top = y + 'px';
  }
  function hideTip() { tooltip.style.display = 'none'; }

  // ---------------------------------------------------------------- node lookups
  var stages = D.stages;
  var nodeCount = 0, buggyCount = 0;
  stages.forEach(function (stage, si) {
    stage.byId = {};
    stage.children = stage.nodes.map(function () { return []; });
    stage.nodes.forEach(function (n, i) {
      stage.byId[n.id] = i;
      if (n.p >= 0) stage.children[n.p].push(i);
      nodeCount++;
      if (n.st === 1) buggyCount++;
    });
    stage.color = PALETTE[si % PALETTE.length];
  });
  var innerByNode = {};
  D.inner.forEach(function (bar) {
    var key = bar[0] + ':' + bar[1];
    (innerByNode[key] = innerByNode[key] || []).push(bar);
  });
  function nodeText(si, i) {
    var stage = stages[si], n = stage.nodes[i];
    var lines = [n.k + ' ' + n.id + (n.b ? '   ★ best of the stage' : '')];
    lines.push('stage ' + stage.name);
    if (n.st === 1) lines.push('buggy' + (n.et ? ': ' + n.et : ''));
    else if (n.st === 0) lines.push('good' + (n.m !== undefined ? ', metric ' + n.m : ''));
    else lines.push('not finished');
    var times = [];
    if (n.x !== undefined) times.push('exec ' + fmtDur(n.x));
    times.push('node ' + fmtDur(n.e - n.s));
    lines.push(times.join(', '));
    if (n.c) lines.push(n.c + ' LLM call' + (n.c > 1 ? 's' : '') + ', tokens ' + fmtNum(n.ti) + ' in / ' + fmtNum(n.to) + ' out');
    if (n.p >= 0) lines.push('parent ' + stage.nodes[n.p].k + ' ' + stage.nodes[n.p].id);
    else if (n.pid) lines.push('parent ' + n.pid + (n.ps ? ' (stage ' + n.ps + ')' : ' (not in this run)'));
    return lines.join('\n');
  }

  // ---------------------------------------------------------------- selection
  var selected = null;  // [stage index, node index]
  var listeners = [];
  function select(si, i, opts) {
    selected = si === null ? null : [si, i];
    listeners.forEach(function (fn) { fn(selected, opts || {}); });
    renderDetails();
  }
  var details = el('aside', { id: 'details' });
  document.body.appendChild(details);
  function renderDetails() {
    details.textContent = '';
    if (!selected) { details.style.display = 'none'; return; }
    var si = selected[0], i = selected[1], stage = stages[si], n = stage.nodes[i];
    details.style.display = 'block';
    var dl = el('dl');
    function row(k, v) { dl.appendChild(el('dt', { text: k })); dl.appendChild(el('dd', {}, v)); }
    row('node', el('span', { 'class': 'mono', text: n.id }));
    row('kind', n.k);
    row('stage', stage.name);
    row('status', n.st === 1 ? 'buggy' + (n.et ? ' (' + n.et + ')' : '') : STATUS[n.st]);
    if (n.b) row('best', '★ best node of the stage');
    if (n.m !== undefined) row('metric', n.m);
    if (n.x !== undefined) row('exec time', fmtDur(n.x));
    row('duration', fmtDur(n.e - n.s));
    row('started', clock(n.s));
    if (n.n) row('executions', String(n.n));
    if (n.c) row('LLM calls', n.c + ' (' + fmtNum(n.ti) + ' in / ' + fmtNum(n.to) + ' out tokens)');
    if (n.p >= 0) {
      var p = stage.nodes[n.p];
      row('parent', el('span', { 'class': 'linkish', text: p.k + ' ' + p.id, onclick: function () { select(si, n.p, { center: true }); } }));
    } else if (n.pid) {
      var ps = n.ps ? stages.findIndex(function (s) { return s.name === n.ps; }) : -1;
      var target = ps >= 0 ? stages[ps].byId[n.pid] : undefined;
      row('parent', target !== undefined
        ? el('span', { 'class': 'linkish', text: n.pid + ' (stage ' + n.ps + ')', onclick: function () { select(ps, target, { center: true }); } })
        : n.pid + ' (not in this run)');
    }
    var kids = stage.children[i];
    if (kids.length) {
      var list = el('span');
      kids.slice(0, 30).forEach(function (k, j) {
        if (j) list.appendChild(document.createTextNode(', '));
        var c = stage.nodes[k];
        list.appendChild(el('span', { 'class': 'linkish', text: c.k + ' ' + shortId(c.id), onclick: function () { select(si, k, { center: true }); } }));
      });
      if (kids.length > 30) list.appendChild(document.createTextNode(' and ' + (kids.length - 30) + ' more'));
      row('children', list);
    }
    var inner = innerByNode[si + ':' + i] || [];
    if (inner.length) {
      row('spans', el('span', {}, inner.slice(0, 12).map(function (b) {
        return el('div', { text: (b[2] ? 'LLM ' : 'exec ') + b[5] + ' ' + fmtDur(b[4] - b[3]) });
      })));
    }
    details.appendChild(el('button', { 'class': 'close', title: 'close', text: '×', onclick: function () { select(null); } }));
    details.appendChild(el('strong', { text: (n.b ? '★ ' : '') + n.k + ' node' }));
    details.appendChild(dl);
  }

  // ---------------------------------------------------------------- header
  function renderHeader() {
    var r = D.run;
    var head = el('header');
    head.appendChild(el('h1', {}, 'Run ', el('span', { 'class': 'mono', text: r.id }), ' ',
      el('span', { 'class': 'badge ' + r.outcome, id: 'outcome', text: r.outcome })));
    var meta = el('div', { 'class': 'meta' });
    function m(label, value) { if (value !== null && value !== undefined && value !== '') meta.appendChild(el('span', {}, label + ' ', el('strong', { text: value }))); }
    m('started', clock(0));
    m('duration', fmtDur(r.duration));
    m('trace', r.trace_id);
    m('service', r.service);
    m('pod', r.pod);
    m('region', r.region);
    if (r.gpu_count) m('GPU', r.gpu + ' ×' + r.gpu_count);
    m('attempt', r.attempt && r.attempt > 1 ? r.attempt : null);
    m('exit code', r.exit_code);
    m('nodes', String(nodeCount));
    head.appendChild(meta);
    if (r.command) head.appendChild(el('div', { 'class': 'meta' }, 'command ', el('code', { text: r.command })));
    if (r.cancel_reason) head.appendChild(el('div', { 'class': 'meta warn', text: 'canceled: ' + r.cancel_reason }));
    if (r.span_missing) head.appendChild(el('div', { 'class': 'meta warn', text: 'The run span is missing: the process may have died before the run ended (otel-ai recover closes such runs).' }));
    if (D.links.length) {
      head.appendChild(el('div', { 'class': 'links' }, D.links.map(function (l) {
        return el('a', { href: l.url, target: '_blank', rel: 'noopener noreferrer', text: 'Open in ' + l.label });
      })));
    }
    var logs = Object.keys(r.logs || {});
    if (logs.length) head.appendChild(el('div', { 'class': 'meta' }, 'log lines: ' + logs.sort().map(function (k) { return k + ' ' + r.logs[k]; }).join(', ')));
    app.appendChild(head);
    var toc = el('nav', { 'class': 'toc' });
    [['summary', 'Stages'], ['failure', D.failure ? 'Failure' : null], ['timeline', 'Timeline'], ['trees', 'Search trees'],
     ['progress', 'Progress'], ['tokens', D.tokens ? 'Tokens' : null], ['resources', D.resources.length ? 'Resources' : null],
     ['artifacts', 'Artifacts'], ['review', D.review.paper || D.review.validation ? 'Paper & review' : null]].forEach(function (item) {
      if (item[1]) toc.appendChild(el('a', { href: '#' + item[0], text: item[1] }));
    });
    app.appendChild(toc);
  }

  // ---------------------------------------------------------------- stage table
  function renderSummary() {
    var s = section('summary', 'Stages');
    if (!stages.length) { s.appendChild(el('p', { 'class': 'muted', text: 'No stage was recorded.' })); return; }
    var tokensByStage = {};
    if (D.tokens) D.tokens.by_stage.forEach(function (t) { tokensByStage[t[0]] = t; });
    var table = el('table', {}, el('tr', {}, ['stage', 'duration', 'nodes', 'good', 'buggy', 'best node', 'best metric', 'tokens in / out', 'status'].map(function (h, j) {
      return el('th', { 'class': j >= 1 && j <= 4 ? 'num' : null, text: h });
    })));
    stages.forEach(function (st, si) {
      var t = tokensByStage[st.name];
      table.appendChild(el('tr', {},
        el('td', {}, swatch(st.color), st.name, st.description ? el('div', { 'class': 'muted', text: st.description }) : null),
        el('td', { 'class': 'num', text: fmtDur(st.e - st.s) }),
        el('td', { 'class': 'num', text: st.total }),
        el('td', { 'class': 'num', text: st.good }),
        el('td', { 'class': 'num' + (st.buggy ? ' warn' : ''), text: st.buggy }),
        el('td', {}, st.best_id ? el('span', { 'class': 'linkish mono', text: '★ ' + shortId(st.best_id), onclick: function () {
          var i = st.byId[st.best_id]; if (i !== undefined) select(si, i, { center: true, scroll: true });
        } }) : '—'),
        el('td', { text: st.best_metric || '—' }),
        el('td', { text: t ? fmtNum(t[1]) + ' / ' + fmtNum(t[2]) : '—' }),
        el('td', { 'class': st.status === 'ERROR' ? 'warn' : '', text: st.open ? 'not ended' : (st.status === 'ERROR' ? 'error' : 'ok') })));
    });
    s.appendChild(table);
  }

  // ---------------------------------------------------------------- failure
  function renderFailure() {
    if (!D.failure) return;
    var f = D.failure;
    var s = section('failure', 'Failure');
    s.appendChild(el('div', { 'class': 'failure' },
      el('div', {}, el('strong', { text: (f.type || 'error') + ': ' }), f.message || ''),
      el('div', { 'class': 'muted', text: 'in stage ' + (f.stage || '?') }),
      f.stacktrace ? el('pre', { id: 'stacktrace', text: f.stacktrace }) : el('p', { 'class': 'muted', text: 'No stack trace was recorded.' })));
  }

  // ---------------------------------------------------------------- timeline
  function renderTimeline() {
    var s = section('timeline', 'Timeline');
    s.appendChild(el('div', { 'class': 'hint', text: 'Stages on top, then each worker process with its nodes as bars (inside: executions in blue, LLM calls in purple). Wheel: zoom; drag: pan; double-click: whole run; click a node to select it.' }));
    s.appendChild(el('div', { 'class': 'legend' },
      el('span', {}, swatch('#2da44e'), 'good node'),
      el('span', {}, swatch('#cf222e'), 'buggy node'),
      el('span', {}, swatch('#bf8700'), 'best node (outline)'),
      el('span', {}, swatch('#1f6feb'), 'execution'),
      el('span', {}, swatch('#8250df'), 'LLM call')));
    var wrap = el('div', { 'class': 'timeline-wrap' });
    var canvas = el('canvas');
    wrap.appendChild(canvas);
    s.appendChild(wrap);

    var LABEL_W = 170, AXIS_H = 22, TOP_ROW_H = 18;
    var rows = [];  // {label, h, items: [{s, e, kind, ref, label}], sorted by s}
    rows.push({ label: 'stages', kind: 'top', h: TOP_ROW_H, items: stages.map(function (st, si) { return { s: st.s, e: st.e, kind: 'stage', si: si, label: st.name }; }) });
    var runItems = D.run_row.map(function (r) { return { s: r[1], e: r[2], kind: ['paper', 'review', 'llm'][r[0]], label: r[3] }; });
    if (runItems.length) rows.push({ label: 'paper, review, LLM', kind: 'top', h: TOP_ROW_H, items: runItems });
    var laneRows = 0;
    D.lanes.forEach(function (lane) { laneRows += lane.rows; });
    var nodeH = Math.max(3, Math.min(14, Math.floor(1600 / Math.max(laneRows, 1))));
    var laneStart = [];
    D.lanes.forEach(function (lane, li) {
      laneStart[li] = rows.length;
      for (var r = 0; r < lane.rows; r++) rows.push({ label: r === 0 ? lane.label : '', kind: 'node', h: nodeH, items: [], lane: li });
    });
    stages.forEach(function (st, si) {
      st.nodes.forEach(function (n, i) {
        rows[laneStart[n.l] + n.r].items.push({ s: n.s, e: n.e, kind: 'node', si: si, i: i });
      });
    });
    var y = AXIS_H;
    rows.forEach(function (row) {
      row.y = y; y += row.h + (row.h >= 10 ? 2 : 1);
      row.items.sort(function (a, b) { return a.s - b.s; });
    });
    var height = y + 4;
    var tMin = 0, tMax = Math.max(D.run.duration || 0, 0.001);
    rows.forEach(function (row) { row.items.forEach(function (it) { if (it.e > tMax) tMax = it.e; if (it.s < tMin) tMin = it.s; }); });
    var view = [tMin, tMax + (tMax - tMin) * 0.01];
    var full = view.slice();
    var width = 0, dpr = window.devicePixelRatio || 1;
    var ctx = canvas.getContext('2d');

    function resize() {
      width = wrap.clientWidth || 1000;
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.height = height + 'px';
      draw();
    }
    function xOf(t) { return LABEL_W + (t - view[0]) / (view[1] - view[0]) * (width - LABEL_W - 8); }
    function tOf(x) { return view[0] + (x - LABEL_W) / (width - LABEL_W - 8) * (view[1] - view[0]); }
    function niceStep(span) {
      var raw = span / Math.max(2, Math.floor((width - LABEL_W) / 110));
      var steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];
      for (var i = 0; i < steps.length; i++) if (steps[i] >= raw) return steps[i];
      return steps[steps.length - 1];
    }
    function firstVisible(items, t) {
      var lo = 0, hi = items.length;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (items[mid].s < t) lo = mid + 1; else hi = mid; }
      return lo;
    }
    function draw() {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = '11px sans-serif';
      ctx.textBaseline = 'middle';
      // axis
      var step = niceStep(view[1] - view[0]);
      ctx.fillStyle = '#59636e';
      ctx.strokeStyle = '#eaeef2';
      for (var t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) {
        var x = xOf(t);
        ctx.beginPath(); ctx.moveTo(x, AXIS_H - 4); ctx.lineTo(x, height); ctx.stroke();
        ctx.fillText(fmtDur(t), x + 2, 9);
      }
      var sel = selected;
      var span = view[1] - view[0];
      rows.forEach(function (row) {
        if (row.label) { ctx.fillStyle = '#1f2328'; ctx.fillText(row.label.length > 27 ? row.label.slice(0, 26) + '…' : row.label, 4, row.y + row.h / 2); }
        var items = row.items;
        // items of a row never overlap for nodes; step back one to catch a bar that started before the view
        var start = Math.max(0, firstVisible(items, view[0]) - 1);
        if (row.kind !== 'node' && items.length < 2000) start = 0;
        for (var k = start; k < items.length; k++) {
          var it = items[k];
          if (it.s > view[1]) break;
          if (it.e < view[0]) continue;
          var x0 = Math.max(LABEL_W, xOf(it.s)), x1 = Math.min(width - 8, xOf(it.e));
          var w = Math.max(1, x1 - x0);
          if (it.kind === 'stage') {
            ctx.fillStyle = stages[it.si].color;
            ctx.globalAlpha = 0.8; ctx.fillRect(x0, row.y, w, row.h); ctx.globalAlpha = 1;
            ctx.fillStyle = '#fff';
            if (w > 40) { ctx.save(); ctx.beginPath(); ctx.rect(x0, row.y, w, row.h); ctx.clip(); ctx.fillText(it.label, x0 + 4, row.y + row.h / 2); ctx.restore(); }
          } else if (it.kind === 'node') {
            var n = stages[it.si].nodes[it.i];
            ctx.fillStyle = n.st === 1 ? '#cf222e' : n.st === 0 ? '#2da44e' : '#8c959f';
            ctx.globalAlpha = 0.55; ctx.fillRect(x0, row.y, w, row.h); ctx.globalAlpha = 1;
            var inner = innerByNode[it.si + ':' + it.i];
            if (inner && w > 6 && row.h >= 6) {
              inner.forEach(function (b) {
                var bx0 = Math.max(LABEL_W, xOf(b[3])), bx1 = Math.min(width - 8, xOf(b[4]));
                if (bx1 - bx0 < 0.5) return;
                ctx.fillStyle = b[2] ? '#8250df' : '#1f6feb';
                var half = row.h / 2;
                ctx.fillRect(bx0, row.y + (b[2] ? 1 : half), bx1 - bx0, half - 1);
              });
            }
            if (n.b || (sel && sel[0] === it.si && sel[1] === it.i)) {
              ctx.lineWidth = 2;
              ctx.strokeStyle = sel && sel[0] === it.si && sel[1] === it.i ? '#0969da' : '#bf8700';
              ctx.strokeRect(x0, row.y, w, row.h);
              ctx.strokeStyle = '#eaeef2'; ctx.lineWidth = 1;
            }
          } else {
            ctx.fillStyle = it.kind === 'llm' ? '#8250df' : it.kind === 'paper' ? '#6e7781' : '#9a6700';
            ctx.fillRect(x0, row.y + 2, w, row.h - 4);
            if (w > 50 && it.kind !== 'llm') { ctx.fillStyle = '#fff'; ctx.fillText(it.label, x0 + 4, row.y + row.h / 2); }
          }
        }
      });
      ctx.fillStyle = '#59636e';
      ctx.fillText(span < (full[1] - full[0]) * 0.999 ? 'zoomed: ' + fmtDur(view[0]) + ' – ' + fmtDur(view[1]) : 'whole run', 4, 9);
    }
    function hit(evt) {
      var rect = canvas.getBoundingClientRect();
      var x = evt.clientX - rect.left, yy = evt.clientY - rect.top;
      if (x < LABEL_W) return null;
      var t = tOf(x);
      var tol = (view[1] - view[0]) / (width - LABEL_W) * 2;
      for (var r = 0; r < rows.length; r++) {
        var row = rows[r];
        if (yy < row.y || yy > row.y + row.h) continue;
        var k = firstVisible(row.items, t + tol);
        for (var j = k - 1; j >= 0 && j >= k - 50; j--) {
          var it = row.items[j];
          if (it.s - tol <= t && t <= it.e + tol) return it;
        }
        return null;
      }
      return null;
    }
    var drag = null;
    canvas.addEventListener('mousemove', function (evt) {
      if (drag) {
        var dt = (evt.clientX - drag.x) / (width - LABEL_W - 8) * (drag.view[1] - drag.view[0]);
        view = [drag.view[0] - dt, drag.view[1] - dt];
        drag.moved = drag.moved || Math.abs(evt.clientX - drag.x) > 3;
        draw(); hideTip(); return;
      }
      var it = hit(evt);
      if (!it) { hideTip(); return; }
      if (it.kind === 'node') showTip(evt, nodeText(it.si, it.i));
      else if (it.kind === 'stage') {
        var st = stages[it.si];
        showTip(evt, 'stage ' + st.name + '\n' + fmtDur(st.e - st.s) + ', ' + st.total + ' nodes (' + st.good + ' good, ' + st.buggy + ' buggy)' + (st.best_metric ? '\nbest ' + st.best_metric : ''));
      } else showTip(evt, it.label + '\n' + fmtDur(it.e - it.s));
    });
    canvas.addEventListener('mouseleave', function () { hideTip(); drag = null; });
    canvas.addEventListener('mousedown', function (evt) { drag = { x: evt.clientX, view: view.slice(), moved: false }; });
    window.addEventListener('mouseup', function (evt) {
      if (!drag) return;
      var moved = drag.moved; drag = null;
      if (moved) return;
      var it = hit(evt);
      if (it && it.kind === 'node') select(it.si, it.i, { center: true });
    });
    canvas.addEventListener('wheel', function (evt) {
      evt.preventDefault();
      var rect = canvas.getBoundingClientRect();
      var t = tOf(evt.clientX - rect.left);
      var factor = Math.exp(evt.deltaY * 0.0015);
      var minSpan = 0.0005;
      var a = t - (t - view[0]) * factor, b = t + (view[1] - t) * factor;
      if (b - a < minSpan) return;
      view = [a, b]; draw();
    }, { passive: false });
    canvas.addEventListener('dblclick', function () { view = full.slice(); draw(); });
    listeners.push(function (sel, opts) {
      if (sel && opts.center) {
        var n = stages[sel[0]].nodes[sel[1]];
        if (n.s < view[0] || n.e > view[1]) {
          var spanNow = Math.max(view[1] - view[0], (n.e - n.s) * 1.2);
          var mid = (n.s + n.e) / 2;
          view = [mid - spanNow / 2, mid + spanNow / 2];
        }
      }
      draw();
    });
    window.addEventListener('resize', resize);
    resize();
  }

  // ---------------------------------------------------------------- search trees
  var treeViews = [];
  function renderTrees() {
    var s = section('trees', 'Search trees');
    s.appendChild(el('div', { 'class': 'hint', text: 'One tree per stage: a node under the node it was derived from. Fill: kind; ring: green good, red dashed buggy, gold the best node. Hover for details, click to select (the path to its root is drawn), wheel to zoom, drag to pan.' }));
    var legend = el('div', { 'class': 'legend' });
    Object.keys(KIND_COLORS).forEach(function (k) {
      var sw = el('span', { 'class': 'sw' }); sw.style.background = KIND_COLORS[k];
      legend.appendChild(el('span', {}, sw, k));
    });
    s.appendChild(legend);
    var input = el('input', { type: 'search', placeholder: 'node id (or its start)', 'aria-label': 'find a node' });
    var note = el('span', { 'class': 'muted' });
    function find() {
      var q = input.value.trim().toLowerCase();
      if (!q) return;
      for (var si = 0; si < stages.length; si++) {
        var nodes = stages[si].nodes;
        for (var i = 0; i < nodes.length; i++) {
          if (nodes[i].id.toLowerCase().indexOf(q) === 0) { note.textContent = ''; select(si, i, { center: true, scroll: true }); return; }
        }
      }
      note.textContent = 'no node ' + q;
    }
    input.addEventListener('keydown', function (evt) { if (evt.key === 'Enter') find(); });
    s.appendChild(el('div', { 'class': 'search' }, input, el('button', { text: 'find', onclick: find }), note));
    stages.forEach(function (stage, si) { treeViews.push(renderTree(s, stage, si)); });
    listeners.push(function (sel, opts) {
      treeViews.forEach(function (tv) { tv.highlight(sel && sel[0] === tv.si ? sel[1] : null, opts); });
    });
  }

  function renderTree(parent, stage, si) {
    var X = 18, Y = 46, PAD = 36;
    var W = Math.max(stage.width, 1) * X + 2 * PAD, H = Math.max(stage.depth, 1) * Y + 2 * PAD;
    var box = el('div', { 'class': 'stage-tree', id: 'tree-' + si, 'data-stage': stage.name });
    var head = el('div', { 'class': 'stage-head' },
      el('span', { 'class': 'name', text: stage.name }),
      el('span', { 'class': 'muted', text: stage.total + ' nodes, ' + stage.good + ' good, ' + stage.buggy + ' buggy, ' + fmtDur(stage.e - stage.s) }),
      stage.best_id ? el('span', { text: '★ best ' + shortId(stage.best_id) + (stage.best_metric ? ' ' + stage.best_metric : '') }) : null);
    box.appendChild(head);
    var viewBox = el('div', { 'class': 'tree-view' });
    var svg = sv('svg', { 'class': 'tree', 'data-stage': stage.name, role: 'img', 'aria-label': 'search tree of stage ' + stage.name });
    var g = sv('g', { 'class': 'viewport' });
    svg.appendChild(g);
    var px = function (n) { return PAD + n.gx * X; }, py = function (n) { return PAD + n.gy * Y; };
    var d = [];
    var nodes = stage.nodes;
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      if (n.p < 0) continue;
      var p = nodes[n.p], x0 = px(p), y0 = py(p), x1 = px(n), y1 = py(n), ym = (y0 + y1) / 2;
      d.push('M' + x0 + ' ' + y0 + 'C' + x0 + ' ' + ym + ' ' + x1 + ' ' + ym + ' ' + x1 + ' ' + y1);
    }
    g.appendChild(sv('path', { 'class': 'edges', d: d.join('') || 'M0 0' }));
    var xd = [];
    nodes.forEach(function (n) {
      if (n.p >= 0 || !n.pid) return;
      var x = px(n), y = py(n);
      xd.push('M' + x + ' ' + (y - 30) + 'L' + x + ' ' + y);
      g.appendChild(sv('text', { 'class': 'xlabel', x: x + 5, y: y - 22, text: '↑ from ' + (n.ps ? n.ps + ' ' : '') + shortId(n.pid) }));
    });
    if (xd.length) g.insertBefore(sv('path', { 'class': 'xstage', d: xd.join('') }), g.firstChild.nextSibling);
    var pathEl = sv('path', { 'class': 'path', d: 'M0 0' });
    g.appendChild(pathEl);
    var group = sv('g', { 'class': 'nodes' });
    var circles = new Array(nodes.length);
    var frag = document.createDocumentFragment();
    for (var j = 0; j < nodes.length; j++) {
      var node = nodes[j];
      var c = document.createElementNS(SVGNS, 'circle');
      c.setAttribute('cx', px(node));
      c.setAttribute('cy', py(node));
      c.setAttribute('r', node.b ? 10 : 6);
      c.setAttribute('fill', KIND_COLORS[node.k] || '#9c755f');
      c.setAttribute('class', 'n ' + STATUS[node.st] + (node.b ? ' best' : ''));
      c.setAttribute('data-i', j);
      c.setAttribute('data-node-id', node.id);
      c.setAttribute('data-kind', node.k);
      circles[j] = c;
      frag.appendChild(c);
    }
    group.appendChild(frag);
    g.appendChild(group);
    nodes.forEach(function (n) {
      if (!n.b) return;
      g.appendChild(sv('text', { 'class': 'bestlabel', x: px(n) + 12, y: py(n) - 10, text: '★ best' + (n.m !== undefined ? ' ' + n.m : '') }));
    });
    viewBox.appendChild(svg);
    var tools = el('div', { 'class': 'tree-tools' });
    viewBox.appendChild(tools);
    box.appendChild(viewBox);
    parent.appendChild(box);

    var cw = viewBox.clientWidth || 1000;
    var MAX_FIT = 1.6;
    var fitScale = Math.min((cw - 24) / W, MAX_FIT);
    var vh = Math.max(150, Math.min(560, H * fitScale));
    svg.setAttribute('height', vh);
    var state = { k: 1, x: 0, y: 0 };
    function apply() {
      g.setAttribute('transform', 'translate(' + state.x + ' ' + state.y + ') scale(' + state.k + ')');
      svg.style.setProperty('--r', String(Math.max(6, 2.5 / state.k)));
    }
    function fit() {
      cw = viewBox.clientWidth || cw;
      var k = Math.min((cw - 24) / W, (vh - 24) / H, MAX_FIT);
      state = { k: k, x: (cw - W * k) / 2, y: Math.max(12, (vh - H * k) / 2) };
      apply();
    }
    function centerOn(i, zoomIn) {
      var n = nodes[i];
      cw = viewBox.clientWidth || cw;
      if (zoomIn && state.k < 0.6) state.k = 0.8;
      state.x = cw / 2 - px(n) * state.k;
      state.y = vh / 2 - py(n) * state.k;
      apply();
    }
    tools.appendChild(el('button', { text: 'fit', title: 'the whole tree', onclick: fit }));
    tools.appendChild(el('button', { text: '+', title: 'zoom in', onclick: function () { zoomAt(cw / 2, vh / 2, 1.5); } }));
    tools.appendChild(el('button', { text: '−', title: 'zoom out', onclick: function () { zoomAt(cw / 2, vh / 2, 1 / 1.5); } }));
    function zoomAt(mx, my, factor) {
      var k = Math.max(0.002, Math.min(6, state.k * factor));
      state.x = mx - (mx - state.x) * (k / state.k);
      state.y = my - (my - state.y) * (k / state.k);
      state.k = k;
      apply();
    }
    svg.addEventListener('wheel', function (evt) {
      evt.preventDefault();
      var rect = svg.getBoundingClientRect();
      zoomAt(evt.clientX - rect.left, evt.clientY - rect.top, Math.exp(-evt.deltaY * 0.0015));
    }, { passive: false });
    var drag = null;
    svg.addEventListener('pointerdown', function (evt) {
      drag = { x: evt.clientX, y: evt.clientY, sx: state.x, sy: state.y, moved: false };
    });
    svg.addEventListener('pointermove', function (evt) {
      if (drag) {
        var dx = evt.clientX - drag.x, dy = evt.clientY - drag.y;
        if (!drag.moved && Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add('dragging'); }
        if (drag.moved) { state.x = drag.sx + dx; state.y = drag.sy + dy; apply(); hideTip(); return; }
      }
      var t = evt.target;
      if (t.classList && t.classList.contains('n')) showTip(evt, nodeText(si, +t.getAttribute('data-i')));
      else hideTip();
    });
    svg.addEventListener('pointerup', function (evt) {
      var moved = drag && drag.moved;
      drag = null; svg.classList.remove('dragging');
      if (moved) return;
      var t = evt.target;
      if (t.classList && t.classList.contains('n')) select(si, +t.getAttribute('data-i'), {});
    });
    svg.addEventListener('pointerleave', function () { drag = null; svg.classList.remove('dragging'); hideTip(); });
    fit();

    var marked = [];
    return {
      si: si,
      highlight: function (i, opts) {
        marked.forEach(function (c) { c.classList.remove('onpath', 'selected'); });
        marked = [];
        if (i === null) { pathEl.setAttribute('d', 'M0 0'); return; }
        var parts = [], cur = i, guard = 0;
        circles[i].classList.add('selected'); marked.push(circles[i]);
        while (nodes[cur].p >= 0 && guard++ < 100000) {
          var p = nodes[cur].p;
          parts.push('M' + px(nodes[cur]) + ' ' + py(nodes[cur]) + 'L' + px(nodes[p]) + ' ' + py(nodes[p]));
          circles[p].classList.add('onpath'); marked.push(circles[p]);
          cur = p;
        }
        pathEl.setAttribute('d', parts.join('') || 'M0 0');
        if (opts && opts.center) centerOn(i, true);
        if (opts && opts.scroll) box.scrollIntoView({ block: 'center' });
      }
    };
  }

  // ---------------------------------------------------------------- charts
  function lineChart(title, series, opts) {
    opts = opts || {};
    var W = 560, H = 200, L = 54, R = 10, T = 10, B = 24;
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    var box = el('div', { 'class': 'chart' }, el('div', { 'class': 'title', text: title }));
    if (!xs.length) { box.appendChild(el('div', { 'class': 'muted', text: 'no data' })); return box; }
    var x0 = opts.xMin !== undefined ? opts.xMin : Math.min.apply(null, xs);
    var x1 = Math.max(Math.max.apply(null, xs), opts.xMax !== undefined ? opts.xMax : -Infinity);
    if (x1 <= x0) x1 = x0 + 1;
    var y0 = opts.yMin !== undefined ? opts.yMin : Math.min(0, Math.min.apply(null, ys));
    var y1 = Math.max.apply(null, ys);
    if (opts.yMax !== undefined) y1 = Math.max(opts.yMax, y1);
    if (opts.fitY) { y0 = Math.min.apply(null, ys); var padY = (y1 - y0) * 0.08 || 0.01; y0 -= padY; y1 += padY; }
    if (y1 <= y0) y1 = y0 + 1;
    var fy = opts.yFmt || fmtNum;
    function X(v) { return L + (v - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); }
    var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title });
    for (var k = 0; k <= 4; k++) {
      var yv = y0 + (y1 - y0) * k / 4;
      svg.appendChild(sv('line', { 'class': 'grid', x1: L, x2: W - R, y1: Y(yv), y2: Y(yv) }));
      svg.appendChild(sv('text', { 'class': 'axis', x: L - 4, y: Y(yv) + 3, 'text-anchor': 'end', text: fy(yv) }));
    }
    for (var q = 0; q <= 4; q++) {
      var xv = x0 + (x1 - x0) * q / 4;
      svg.appendChild(sv('text', { 'class': 'axis', x: X(xv), y: H - 8, 'text-anchor': q === 0 ? 'start' : q === 4 ? 'end' : 'middle', text: fmtDur(xv) }));
    }
    series.forEach(function (s, si) {
      var color = s.color || PALETTE[si % PALETTE.length];
      var d = '', prev = null;
      s.points.forEach(function (p, j) {
        if (opts.step && prev !== null) d += 'L' + X(p[0]).toFixed(1) + ' ' + Y(prev).toFixed(1);
        d += (j ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1);
        prev = p[1];
      });
      var extend = s.extendTo !== undefined ? s.extendTo : opts.extendTo;
      if (opts.step && prev !== null && extend !== undefined) d += 'L' + X(Math.min(extend, x1)).toFixed(1) + ' ' + Y(prev).toFixed(1);
      svg.appendChild(sv('path', { d: d, fill: 'none', stroke: color, 'stroke-width': 1.8 }));
      if (s.points.length === 1) svg.appendChild(sv('circle', { cx: X(s.points[0][0]), cy: Y(s.points[0][1]), r: 3, fill: color }));
    });
    var cursor = sv('line', { x1: -10, x2: -10, y1: T, y2: H - B, stroke: '#8c959f', 'stroke-dasharray': '3 3' });
    svg.appendChild(cursor);
    box.appendChild(svg);
    var readout = el('div', { 'class': 'readout' });
    var legend = el('div', { 'class': 'legend' });
    series.forEach(function (s, si) {
      var sw = el('span', { 'class': 'sq' }); sw.style.background = s.color || PALETTE[si % PALETTE.length];
      legend.appendChild(el('span', {}, sw, s.name));
    });
    box.appendChild(legend);
    box.appendChild(readout);
    svg.addEventListener('mousemove', function (evt) {
      var rect = svg.getBoundingClientRect();
      var vx = (evt.clientX - rect.left) / rect.width * W;
      var t = x0 + (vx - L) / (W - L - R) * (x1 - x0);
      cursor.setAttribute('x1', vx); cursor.setAttribute('x2', vx);
      var parts = ['at ' + fmtDur(t)];
      series.forEach(function (s) {
        var best = null;
        for (var j = 0; j < s.points.length && s.points[j][0] <= t; j++) best = s.points[j];
        if (best) parts.push(s.name + ' ' + fy(best[1]));
      });
      readout.textContent = parts.join('   ');
    });
    svg.addEventListener('mouseleave', function () { cursor.setAttribute('x1', -10); cursor.setAttribute('x2', -10); readout.textContent = ''; });
    return box;
  }

  function renderProgress() {
    var s = section('progress', 'Progress');
    var grid = el('div', { 'class': 'charts' });
    s.appendChild(grid);
    grid.appendChild(lineChart('Stage progress', stages.filter(function (st) { return st.progress.length; }).map(function (st) {
      return { name: st.name, color: st.color, points: st.progress };
    }), { yFmt: fmtPct, yMin: 0, yMax: 1, xMin: 0, xMax: RUN_END }));
    grid.appendChild(lineChart('Best metric so far', stages.filter(function (st) { return st.best_curve.length; }).map(function (st) {
      return { name: st.name, color: st.color, points: st.best_curve, extendTo: st.e };
    }), { step: true, fitY: true, xMin: 0, xMax: RUN_END }));
    var done = [];
    stages.forEach(function (st) { st.nodes.forEach(function (n) { if (n.st !== 2) done.push([n.e, n.st]); }); });
    done.sort(function (a, b) { return a[0] - b[0]; });
    var good = [[0, 0]], buggy = [[0, 0]], g = 0, b = 0;
    var every = Math.max(1, Math.floor(done.length / 600));
    done.forEach(function (p, j) {
      if (p[1] === 0) g++; else b++;
      if (j % every === 0 || j === done.length - 1) { good.push([p[0], g]); buggy.push([p[0], b]); }
    });
    grid.appendChild(lineChart('Nodes finished', done.length ? [
      { name: 'good', color: '#2da44e', points: good }, { name: 'buggy', color: '#cf222e', points: buggy }
    ] : [], { step: true, yMin: 0, xMin: 0, xMax: RUN_END, yFmt: function (v) { return String(Math.round(v)); } }));
  }

  function renderTokens() {
    if (!D.tokens) return;
    var s = section('tokens', 'Tokens');
    var t = D.tokens;
    s.appendChild(el('div', { 'class': 'hint', text: t.source === 'spans'
      ? t.calls + ' LLM calls recorded as spans (gen_ai.usage.* attributes).'
      : 'From the gen_ai.client.token.usage metric (no LLM call spans in this run).' }));
    var table = el('table', {}, el('tr', {}, el('th', { text: 'stage' }), el('th', { 'class': 'num', text: 'input tokens' }),
      el('th', { 'class': 'num', text: 'output tokens' }), el('th', { 'class': 'num', text: 'LLM calls' })));
    var tin = 0, tout = 0, calls = 0;
    t.by_stage.forEach(function (r) {
      tin += r[1]; tout += r[2]; calls += r[3];
      table.appendChild(el('tr', {}, el('td', { text: r[0] }), el('td', { 'class': 'num', text: fmtNum(r[1]) }),
        el('td', { 'class': 'num', text: fmtNum(r[2]) }), el('td', { 'class': 'num', text: fmtNum(r[3]) })));
    });
    table.appendChild(el('tr', {}, el('th', { text: 'total' }), el('th', { 'class': 'num', text: fmtNum(tin) }),
      el('th', { 'class': 'num', text: fmtNum(tout) }), el('th', { 'class': 'num', text: fmtNum(calls) })));
    s.appendChild(table);
    if (t.curve.length) {
      var grid = el('div', { 'class': 'charts' });
      grid.appendChild(lineChart('Tokens used (cumulative)', [
        { name: 'input', points: t.curve.map(function (p) { return [p[0], p[1]]; }) },
        { name: 'output', points: t.curve.map(function (p) { return [p[0], p[2]]; }) }
      ], { step: true, yMin: 0, xMin: 0, xMax: RUN_END }));
      s.appendChild(grid);
    }
  }

  function renderResources() {
    if (!D.resources.length) return;
    var s = section('resources', 'Resources');
    var grid = el('div', { 'class': 'charts' });
    s.appendChild(grid);
    D.resources.forEach(function (chart) {
      var ratio = chart.unit === 'ratio';
      grid.appendChild(lineChart(chart.title, chart.series, ratio ? { yFmt: fmtPct, yMin: 0, yMax: 1, xMin: 0, xMax: RUN_END } : { yFmt: fmtBytes, yMin: 0, xMin: 0, xMax: RUN_END }));
    });
  }

  function renderArtifacts() {
    var s = section('artifacts', 'Artifacts');
    if (!D.artifacts.length) { s.appendChild(el('p', { 'class': 'muted', text: 'No artifact was detected or registered.' })); return; }
    var table = el('table', { id: 'artifacts-table' }, el('tr', {}, ['artifact', 'kind', 'size', 'S3 URI', 'event'].map(function (h, j) {
      return el('th', { 'class': j === 2 ? 'num' : null, text: h });
    })));
    D.artifacts.forEach(function (a) {
      table.appendChild(el('tr', {},
        el('td', { 'class': 'mono', text: a.path || a.key || '?' }),
        el('td', { text: a.kind || '' }),
        el('td', { 'class': 'num', text: a.size === null ? '' : fmtBytes(a.size) }),
        el('td', { 'class': 'mono', text: a.uri || (a.event.slice(-8) === 'detected' ? '(not uploaded)' : '') }),
        el('td', { 'class': 'muted', text: a.event })));
    });
    s.appendChild(table);
  }

  function renderReview() {
    var r = D.review;
    if (!r.paper && !r.validation) return;
    var s = section('review', 'Paper & review');
    if (r.paper) {
      s.appendChild(el('p', {}, el('strong', { text: 'Paper: ' }), r.paper.ok ? 'generated' : 'not generated',
        r.paper.key ? el('span', {}, ' ', el('code', { text: r.paper.key })) : null, el('span', { 'class': 'muted', text: '  ' + fmtDur(r.paper.duration) })));
    }
    if (r.validation) {
      var v = r.validation;
      var scores = Object.keys(v.scores).map(function (k) { return k + ' ' + v.scores[k]; }).join(', ');
      s.appendChild(el('p', {}, el('strong', { text: 'Review: ' }), (v.model || '?') + ', verdict ',
        el('strong', { text: v.verdict || '?' }), scores ? ' — ' + scores : '', el('span', { 'class': 'muted', text: '  ' + fmtDur(v.duration) })));
      if (v.notes) s.appendChild(el('blockquote', { text: v.notes }));
    }
  }

  guarded('the header', renderHeader);
  guarded('the stage table', renderSummary);
  guarded('the failure', renderFailure);
  guarded('the timeline', renderTimeline);
  guarded('the search trees', renderTrees);
  guarded('the progress charts', renderProgress);
  guarded('the token usage', renderTokens);
  guarded('the resource charts', renderResources);
  guarded('the artifacts', renderArtifacts);
  guarded('the paper and review', renderReview);
  app.appendChild(el('p', { 'class': 'muted', text: 'Generated ' + D.generated + ' by ' + D.generator + ' from ' + D.run.spans + ' spans. Self-contained: this file fetches nothing.' }));
  window.__otelAiReport.ready = true;
  window.__otelAiReport.nodes = nodeCount;
  window.__otelAiReport.buggy = buggyCount;
  document.documentElement.setAttribute('data-ready', errors.length ? 'errors' : 'yes');
})();
