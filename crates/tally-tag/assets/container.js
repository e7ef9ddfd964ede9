/*! tally container runtime: runs one version of a browser source's tag container, served by
 * tally at /v1/container.js (tally.js loads it). Our own code, no third-party code.
 *
 * The server appends the version it serves as C: {container, version, preview, document,
 * actions: {tag: tally action}, order: [tags, tally tags first], previewError}. Triggers are
 * watched (page view, click, form submit, data-layer event, history change); when one fires,
 * its tags fire in C.order: a tally tag through tally('track', ...), the same call a page
 * makes, then pixel tags through window.fbq / gtag / ttq when the page has them. A pixel tag
 * without its own event_id takes the ID of the tally event for the same action fired with it,
 * so the platform deduplicates its pixel with tally's server copy.
 *
 * In preview (one browser, with a signed token in its tally_preview cookie) the draft runs
 * instead, and a panel on the page lists the triggers that matched, the tags that fired and
 * what they sent. window.tallyContainer tells which version runs and keeps the same log.
 */
(function (w, d, C) {
  'use strict';
  if (w.tallyContainer || !C || !C.document) return;
  var doc = C.document, vars = doc.variables || {}, triggers = doc.triggers || {}, tags = doc.tags || {};
  var META = 'AddPaymentInfo AddToCart AddToWishlist CompleteRegistration Contact CustomizeProduct Donate FindLocation InitiateCheckout Lead PageView Purchase Schedule Search StartTrial SubmitApplication Subscribe ViewContent'.split(' ');
  var state = w.tallyContainer = { container: C.container, version: C.version, preview: !!C.preview, log: [] };
  var model = {}; // the data layer, pushes merged
  var panel = null;

  var warn = function (m) { if (w.console) w.console.warn('tally container: ' + m); };
  var isObject = function (v) { return v && typeof v === 'object' && !Array.isArray(v); };

  if (C.previewError) {
    warn(C.previewError + '; running the live version');
    try { d.cookie = 'tally_preview=; Max-Age=0; Path=/'; } catch (e) { /* unreadable cookies */ }
  }

  // --- the preview panel ----------------------------------------------------------------------

  function show(kind, name, text) {
    var entry = { kind: kind, name: name, text: text };
    state.log.push(entry);
    if (state.log.length > 200) state.log.shift();
    if (!C.preview) return;
    if (!panel) {
      panel = d.createElement('div');
      panel.id = 'tally-preview';
      panel.setAttribute('style', 'position:fixed;right:8px;bottom:8px;z-index:2147483647;max-width:480px;max-height:40vh;overflow:auto;' +
        'background:#fff;color:#111;border:2px solid #6a1b9a;border-radius:6px;padding:6px 8px;font:12px/1.4 monospace;box-shadow:0 2px 8px rgba(0,0,0,.3)');
      var head = d.createElement('div');
      head.setAttribute('style', 'font-weight:bold;color:#6a1b9a');
      head.textContent = 'tally preview: draft of ' + C.container + ' (this browser only) ';
      var exit = d.createElement('a');
      exit.href = '?tally_preview=off';
      exit.textContent = '[exit]';
      head.appendChild(exit);
      panel.appendChild(head);
    }
    var line = d.createElement('div');
    line.setAttribute('data-kind', kind);
    line.setAttribute('data-name', name);
    line.textContent = ({ trigger: '▶ ', tag: '  ✓ ', skipped: '  ✗ ' }[kind] || '  ') + text;
    panel.appendChild(line);
    if (!panel.parentNode && d.body) d.body.appendChild(panel);
  }

  // --- variables -------------------------------------------------------------------------------

  function path(obj, dotted) {
    var parts = String(dotted).split('.');
    for (var i = 0; i < parts.length; i++) {
      if (obj == null) return undefined;
      obj = obj[parts[i]];
    }
    return obj;
  }

  function merge(into, from) {
    for (var k in from) {
      if (isObject(from[k]) && isObject(into[k])) merge(into[k], from[k]);
      else into[k] = isObject(from[k]) ? merge({}, from[k]) : from[k];
    }
    return into;
  }

  function cookie(name) {
    try {
      var parts = d.cookie ? d.cookie.split('; ') : [];
      for (var i = 0; i < parts.length; i++) {
        var eq = parts[i].indexOf('=');
        if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
      }
    } catch (e) { /* unreadable */ }
    return undefined;
  }

  function text(el) { return el ? (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 200) : undefined; }

  function variable(name, ctx) {
    switch (name) {
      case 'page_url': return location.href;
      case 'page_path': return location.pathname;
      case 'page_title': return d.title;
      case 'referrer': return d.referrer || undefined;
      case 'element_text': return text(ctx.el);
    }
    var v = vars[name];
    if (!v) return undefined;
    try {
      switch (v.type) {
        case 'data_layer':
          var found = ctx.message ? path(ctx.message, v.path) : undefined;
          return found !== undefined ? found : path(model, v.path);
        case 'url_parameter':
          var p = new URLSearchParams(location.search).get(v.name);
          return p == null ? undefined : p;
        case 'cookie': return cookie(v.name);
        case 'dom':
          var el = d.querySelector(v.selector);
          if (!el) return undefined;
          if (v.attribute) { var a = el.getAttribute(v.attribute); return a == null ? undefined : a; }
          return 'value' in el && el.tagName !== 'BUTTON' && el.tagName !== 'LI' ? el.value : text(el);
        case 'constant': return v.value;
      }
    } catch (e) {
      warn('variable ' + name + ': ' + e);
    }
    return undefined;
  }

  var REF = /\{\{\s*([^{}]+?)\s*\}\}/g;

  // Fills {{references}}; a string that is one reference keeps the value's type.
  function fill(value, ctx) {
    if (typeof value === 'string') {
      var whole = /^\{\{\s*([^{}]+?)\s*\}\}$/.exec(value);
      if (whole) return variable(whole[1], ctx);
      return value.replace(REF, function (m, n) { var v = variable(n, ctx); return v == null ? '' : String(v); });
    }
    if (Array.isArray(value)) return value.map(function (v) { return fill(v, ctx); });
    if (isObject(value)) {
      var out = {};
      for (var k in value) { var f = fill(value[k], ctx); if (f !== undefined) out[k] = f; }
      return out;
    }
    return value;
  }

  // An event ID template with every reference resolved, or null: an ID with a hole in it
  // ("ord--purchase") would merge unrelated actions.
  function fillId(template, ctx) {
    var missing = null;
    var id = template.replace(REF, function (m, n) {
      var v = variable(n, ctx);
      if (v == null || v === '') missing = n;
      return v == null ? '' : String(v);
    });
    return missing ? { missing: missing } : { id: id };
  }

  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return 'xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx'.replace(/x/g, function () { return (Math.random() * 16 | 0).toString(16); });
  }

  var json = function (v) { try { return JSON.stringify(v); } catch (e) { return String(v); } };

  // --- tags ------------------------------------------------------------------------------------

  function fire(trigger, ctx) {
    var shared = {}; // action -> the tally event ID of this firing
    show('trigger', trigger, 'trigger ' + trigger + ' (' + triggers[trigger].type + ') matched');
    (C.order || []).forEach(function (name) {
      var t = tags[name];
      if (!t || (t.triggers || []).indexOf(trigger) < 0) return;
      var action = (C.actions || {})[name], props = fill(t.properties || {}, ctx), id = null;
      if (t.event_id) {
        var filled = fillId(t.event_id, ctx);
        if (filled.missing) return show('skipped', name, 'tag ' + name + ' not fired: {{' + filled.missing + '}} in its event_id is empty');
        id = filled.id;
      } else if (t.type !== 'tally') {
        id = shared[action] || uuid();
      }
      try {
        if (t.type === 'tally') {
          if (typeof w.tally !== 'function' || !w.tally.loaded) return show('skipped', name, 'tag ' + name + ' not fired: tally.js is not loaded');
          id = w.tally('track', t.event, props, id ? { event_id: id } : {});
          shared[action] = id;
          return show('tag', name, "tag " + name + ": tally('track', '" + t.event + "', " + json(props) + ", {event_id: '" + id + "'})");
        }
        if (t.type === 'meta_pixel') {
          if (typeof w.fbq !== 'function') return show('skipped', name, 'tag ' + name + ' not fired: window.fbq is not defined');
          var how = META.indexOf(t.event) >= 0 ? 'track' : 'trackCustom';
          w.fbq(how, t.event, props, { eventID: id });
          return show('tag', name, 'tag ' + name + ": fbq('" + how + "', '" + t.event + "', " + json(props) + ", {eventID: '" + id + "'})");
        }
        if (t.type === 'google_tag') {
          if (typeof w.gtag !== 'function') return show('skipped', name, 'tag ' + name + ' not fired: window.gtag is not defined');
          var params = merge({}, props);
          params.event_id = id;
          if (action === 'purchase' && params.transaction_id == null) params.transaction_id = params.order_id != null ? params.order_id : id;
          w.gtag('event', t.event, params);
          return show('tag', name, 'tag ' + name + ": gtag('event', '" + t.event + "', " + json(params) + ')');
        }
        if (t.type === 'tiktok_pixel') {
          if (!w.ttq || typeof w.ttq.track !== 'function') return show('skipped', name, 'tag ' + name + ' not fired: window.ttq is not defined');
          w.ttq.track(t.event, props, { event_id: id });
          return show('tag', name, 'tag ' + name + ": ttq.track('" + t.event + "', " + json(props) + ", {event_id: '" + id + "'})");
        }
      } catch (e) {
        show('skipped', name, 'tag ' + name + ' failed: ' + e);
      }
    });
  }

  // --- triggers --------------------------------------------------------------------------------

  function pageMatches(m) {
    if (!m) return true;
    var p = location.pathname + location.search;
    if (m.equals != null && p !== m.equals) return false;
    if (m.contains != null && p.indexOf(m.contains) < 0) return false;
    if (m.starts_with != null && p.indexOf(m.starts_with) !== 0) return false;
    if (m.ends_with != null && p.slice(p.length - m.ends_with.length) !== m.ends_with) return false;
    if (m.regex != null) {
      try { if (!new RegExp(m.regex).test(p)) return false; } catch (e) { warn('bad regex ' + m.regex); return false; }
    }
    return true;
  }

  function each(type, test) {
    for (var name in triggers) {
      var t = triggers[name];
      if (t.type !== type || !pageMatches(t.path)) continue;
      var ctx = test(t);
      if (ctx) fire(name, ctx);
    }
  }

  d.addEventListener('click', function (e) {
    each('click', function (t) {
      try {
        var el = e.target && e.target.closest ? e.target.closest(t.selector) : null;
        return el ? { el: el } : null;
      } catch (err) { warn('bad selector ' + t.selector); return null; }
    });
  }, true);

  d.addEventListener('submit', function (e) {
    each('form_submit', function (t) {
      try { return !t.selector || (e.target.matches && e.target.matches(t.selector)) ? { el: e.target } : null; } catch (err) { return null; }
    });
  }, true);

  function dataLayer(message) {
    if (!isObject(message)) return;
    merge(model, message);
    if (message.event != null) each('data_layer', function (t) { return t.event === message.event ? { message: message } : null; });
  }

  var lastUrl = location.href;
  function urlChanged() {
    if (location.href === lastUrl) return;
    lastUrl = location.href;
    each('history_change', function () { return {}; });
  }
  ['pushState', 'replaceState'].forEach(function (m) {
    var original = w.history && w.history[m];
    if (typeof original !== 'function') return;
    w.history[m] = function () {
      var r = original.apply(this, arguments);
      urlChanged();
      return r;
    };
  });
  w.addEventListener('popstate', urlChanged);

  function start() {
    // What the page pushed before this script arrived, in order; then every later push.
    var dl = w.dataLayer = w.dataLayer || [];
    dl.slice().forEach(dataLayer);
    var push = dl.push;
    dl.push = function () {
      var r = push.apply(dl, arguments);
      for (var i = 0; i < arguments.length; i++) dataLayer(arguments[i]);
      return r;
    };
    each('page_view', function () { return {}; });
    if (C.preview && !panel) show('info', '', 'no trigger matched this page yet');
  }

  if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', start);
  else start();
})(window, document, /*CONFIG*/{});
