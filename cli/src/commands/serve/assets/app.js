// effnas serve: draws a page's charts (uPlot) and keeps the page up to date. The server pushes
// an event whenever the database changes (server-sent events on /events; /api/token is polled
// where EventSource is missing); the page then fetches itself again and swaps the parts marked
// data-live, so forms being typed into are left alone. No values are ever inserted as HTML
// here: the server escaped them, and charts get numbers.
(function () {
  'use strict';
  var body = document.body;
  var page = body.dataset.page;
  var run = body.dataset.run;
  var status = document.getElementById('live-status');
  // How many times the page updated itself: read by the browser test.
  window.effnasUpdates = 0;

  var busy = false;
  var again = false;

  function setStatus(text, on) {
    if (!status) return;
    status.textContent = text;
    status.className = on ? 'live on' : 'live off';
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html');
        document.querySelectorAll('[data-live]').forEach(function (part) {
          var next = fresh.getElementById(part.id);
          if (next && next.innerHTML !== part.innerHTML) part.innerHTML = next.innerHTML;
        });
        return drawCharts();
      })
      .then(function () {
        window.effnasUpdates += 1;
        setStatus('live · updated ' + new Date().toLocaleTimeString(), true);
      })
      .catch(function () { setStatus('update failed', false); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function listen() {
    var last = body.dataset.token || null;
    var seen = function (token) {
      if (last !== null && token !== last) refresh();
      last = token;
    };
    if (window.EventSource) {
      var source = null;
      var open = function () {
        source = new EventSource('/events');
        source.addEventListener('change', function (event) { setStatus('live', true); seen(event.data); });
        source.onerror = function () { setStatus('reconnecting…', false); };
      };
      open();
      // A page left for another may be kept whole in the back/forward cache; its stream would
      // keep one of the six connections a browser allows per host, and after a few pages the
      // next one waits for a free connection. Closed when left, opened again when come back to.
      window.addEventListener('pagehide', function () { if (source) { source.close(); source = null; } });
      window.addEventListener('pageshow', function (event) { if (event.persisted && !source) open(); });
    } else {
      setInterval(function () {
        fetch('/api/token', { cache: 'no-store' })
          .then(function (r) { return r.json(); })
          .then(function (answer) { setStatus('live (polling)', true); seen(answer.token); })
          .catch(function () { setStatus('offline', false); });
      }, 1000);
    }
  }

  // --- charts -------------------------------------------------------------------------------
  var COLORS = { point: 'rgba(70,110,180,0.45)', best: '#c0392b', front: '#1e8449', ref: '#8e44ad', target: '#888' };

  function width(el) { return Math.max(320, el.clientWidth || 480); }

  function points(label, color, size) {
    return { label: label, stroke: color, fill: color, paths: function () { return null; }, points: { show: true, size: size || 4, fill: color } };
  }

  function make(el, title, xLabel, yLabel, series, data, hooks, xRange) {
    if (!el) return;
    el.textContent = '';
    if (!data[0] || data[0].length === 0) {
      var empty = document.createElement('p');
      empty.className = 'empty';
      empty.textContent = title + ': nothing complete yet';
      el.appendChild(empty);
      return;
    }
    new uPlot({
      title: title, width: width(el), height: 280,
      scales: { x: xRange ? { time: false, range: xRange } : { time: false } },
      axes: [{ label: xLabel }, { label: yLabel }],
      series: [{ label: xLabel }].concat(series),
      hooks: hooks || {},
    }, data, el);
  }

  // Sorted (x, y) pairs as two columns, for uPlot's ascending x.
  function sortedColumns(xs, ys) {
    var pairs = [];
    for (var i = 0; i < xs.length; i++) if (xs[i] !== null && ys[i] !== null) pairs.push([xs[i], ys[i]]);
    pairs.sort(function (a, b) { return a[0] - b[0]; });
    return [pairs.map(function (p) { return p[0]; }), pairs.map(function (p) { return p[1]; })];
  }

  // A vertical line at x (the FLOPS target) and labelled points (reference networks).
  function marks(target, labels) {
    return {
      draw: [function (u) {
        var ctx = u.ctx;
        ctx.save();
        if (target !== null && target !== undefined) {
          var x = u.valToPos(target, 'x', true);
          ctx.strokeStyle = COLORS.target;
          ctx.setLineDash([6, 4]);
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = COLORS.target;
          ctx.font = '12px sans-serif';
          ctx.fillText('target', x + 4, u.bbox.top + 14);
        }
        (labels || []).forEach(function (l) {
          ctx.fillStyle = COLORS.ref;
          ctx.font = 'bold 12px sans-serif';
          ctx.fillText(l.name, u.valToPos(l.x, 'x', true) + 6, u.valToPos(l.y, 'y', true) - 6);
        });
        ctx.restore();
      }],
    };
  }

  // An x range that holds the data and the target, with some room.
  function withTarget(target) {
    if (target === null || target === undefined) return null;
    return function (u, min, max) {
      var low = Math.min(min, target), high = Math.max(max, target);
      var pad = (high - low) * 0.05 || 1;
      return [low - pad, high + pad];
    };
  }

  function drawRun(data) {
    var p = data.progress;
    make(document.getElementById('chart-progress'), 'Reward by trial (' + p.total + ' trials, ' + p.failed.length + ' failed)',
      'trial', 'reward', [points('reward', COLORS.point), { label: 'best so far', stroke: COLORS.best, width: 2 }],
      [p.n, p.reward, p.best]);

    var byTime = sortedColumns(p.hours, p.reward);
    var span = byTime[0].length ? byTime[0][byTime[0].length - 1] : 0;
    var unit = 'hours';
    if (span < 2) {
      unit = 'minutes';
      byTime[0] = byTime[0].map(function (h) { return h * 60; });
    }
    var best = [];
    var top = -Infinity;
    byTime[1].forEach(function (r) { top = Math.max(top, r); best.push(top); });
    make(document.getElementById('chart-time'), 'Reward by wall time', unit + ' since the start', 'reward',
      [points('reward', COLORS.point), { label: 'best so far', stroke: COLORS.best, width: 2 }],
      [byTime[0], byTime[1], best]);

    var all = sortedColumns(data.front.all.mflops, data.front.all.accuracy);
    var front = [data.front.front.mflops, data.front.front.accuracy];
    var refs = data.references.map(function (r) { return { name: r.name, x: r.mflops, y: r.accuracy }; });
    var refCols = sortedColumns(refs.map(function (r) { return r.x; }), refs.map(function (r) { return r.y; }));
    var joined = all[0].length ? uPlot.join([all, front, refCols]) : [[]];
    make(document.getElementById('chart-front'), 'Accuracy vs multiply-adds (Pareto front)', 'M mult-adds', 'accuracy %',
      [points('trial', COLORS.point), { label: 'Pareto front', stroke: COLORS.front, width: 2, spanGaps: true, points: { show: true, size: 6 } },
        points('reference', COLORS.ref, 9)],
      joined, marks(data.target_mflops, refs), withTarget(data.target_mflops));

    var extra = document.getElementById('chart-extra');
    if (data.fidelity) {
      var f = sortedColumns(data.fidelity.cheap, data.fidelity.reference);
      var tau = data.fidelity.kendall_tau === null ? '–' : data.fidelity.kendall_tau.toFixed(2);
      make(extra, 'Cheap vs reference accuracy (Kendall τ ' + tau + ')', 'cheap accuracy %', 'reference accuracy %',
        [points('architecture', COLORS.best, 7)], f);
    } else if (data.compound && data.compound.length) {
      var c = sortedColumns(data.compound.map(function (g) { return g.flops_factor; }), data.compound.map(function (g) { return g.accuracy; }));
      make(extra, 'Compound grid: accuracy vs α·β²·γ²', 'α·β²·γ²', 'accuracy %', [points('grid point', COLORS.front, 7)], c, marks(2, []));
    } else if (extra) {
      extra.remove();
    }
  }

  function drawTrial(trial) {
    var e = trial.epochs || [];
    var pct = function (v) { return v === null || v === undefined ? null : v * 100; };
    make(document.getElementById('chart-curve'), 'Training curve', 'epoch', 'accuracy %',
      [{ label: 'train accuracy', stroke: COLORS.point, width: 2 }, { label: 'validation accuracy', stroke: COLORS.best, width: 2 }],
      [e.map(function (x) { return x.epoch; }), e.map(function (x) { return pct(x.train_accuracy); }), e.map(function (x) { return pct(x.val_accuracy); })]);
  }

  function drawCharts() {
    var url = null;
    if (page === 'run') url = '/api/runs/' + run + '/chart';
    if (page === 'trial') url = '/api/trials/' + body.dataset.trial;
    if (!url || !window.uPlot) return Promise.resolve();
    return fetch(url, { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (data) { if (page === 'run') drawRun(data); else drawTrial(data); });
  }

  drawCharts().catch(function () { setStatus('charts failed to load', false); });
  listen();
})();
