/*! tally.js: tally's first-party browser tag, served by tally itself. No third-party code.
 *
 * Install (calls made before this file loads are queued and replayed in order):
 *   <script>window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)};</script>
 *   <script async src="https://TALLY-HOST/tally.js" data-key="pk_..."></script>
 *
 * Commands, as tally(command, ...): track(name, properties, options), page(properties, options),
 * identify(user), consent('default'|'update', state), on('event', fn), eventId(), anonymousId().
 * The reference is docs/API.md, "Browser tag".
 *
 * Container: once loaded, it adds one script from its own origin, /v1/container.js, the
 * source's published tag container (or, in a browser that opened a preview link, the draft).
 *
 * Sending: fetch with keepalive while the page is open, so the answer can be read and a 5xx,
 * 429 or network failure retried with backoff (a 4xx is final); events that are still waiting
 * when the page is left go out with sendBeacon. Unconfirmed events are kept in localStorage and
 * sent again by the next page; the collector deduplicates them by event ID.
 *
 * Consent: identifiers that need ad consent (click IDs, _fbp, _fbc) are written to cookies or
 * storage only once ad_storage is "granted"; until then they live in this page's memory and go
 * out with events that carry the page's consent state, for the collector to apply per
 * destination. The anonymous ID cookie is not written while analytics_storage is "denied". Raw
 * contact data (identify's email, phone, names) is never written to the browser's storage.
 */
(function (w, d) {
  'use strict';
  var prev = w.tally;
  if (prev && prev.loaded) return; // on the page twice: the first copy serves both

  // currentScript is null when another script injected this one after the fact.
  var script = d.currentScript || d.querySelector('script[data-key][src*="tally"]');
  var attr = function (name) { return script ? script.getAttribute(name) : null; };
  var KEY = attr('data-key');
  var ORIGIN = script ? new URL(script.src, location.href).origin : '';
  var ENDPOINT = ORIGIN + '/v1/collect';
  var COOKIE = attr('data-cookie') || 'tally_id';
  var QUEUE_KEY = 'tally_queue';
  var LANDING_KEY = 'tally_landing';
  var USER_KEY = 'tally_user';
  var CLICK_IDS = ['gclid', 'gbraid', 'wbraid', 'fbclid', 'ttclid', 'msclkid'];
  var UTM = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'utm_id'];
  var SIGNALS = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];
  var KEPT_USER = ['anonymous_id', 'external_id', 'click_ids']; // what stored events keep of `user`
  var DAY = 864e5;
  var CLICK_TTL = 90 * DAY; // the longest ad click window (Google Ads)
  var QUEUE_TTL = 7 * DAY; // an event unsent for this long is given up
  var MAX_QUEUE = 200;
  var MAX_BODY = 60000; // keepalive fetch and sendBeacon allow 64 KiB in flight per page

  var consent = {}; // Consent Mode signals the page declared (+ tcf)
  var updated = {}; // signals set by 'update', which a later 'default' must not undo
  var user = {}; // identify()'s external_id, for later events
  var listeners = [];
  var queue = []; // unconfirmed events: {e: event, n: attempts, at: next try (ms), f: in flight}
  var finished = {}; // events this page saw through (sent, or refused for good)
  var lastId = null;
  var timer = null;

  var now = function () { return Date.now(); };
  var granted = function (s) { return consent[s] === 'granted'; };
  var denied = function (s) { return consent[s] === 'denied'; };
  var warn = function (m) { if (w.console) w.console.warn('tally: ' + m); };
  var copy = function (to, from) { for (var k in from) if (from[k] != null) to[k] = from[k]; return to; };
  var hasKeys = function (o) { for (var k in o) return true; return false; };
  var keyOf = function (e) { return e.event + '\n' + e.event_id; };

  function random(n) {
    var a = new Uint8Array(n);
    if (w.crypto && w.crypto.getRandomValues) w.crypto.getRandomValues(a);
    else for (var i = 0; i < n; i++) a[i] = Math.floor(Math.random() * 256);
    return a;
  }

  // A version 4 UUID (crypto.randomUUID exists only in secure contexts).
  function uuid() {
    var b = random(16), h = '';
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (var i = 0; i < 16; i++) h += (i === 4 || i === 6 || i === 8 || i === 10 ? '-' : '') + (b[i] + 256).toString(16).slice(1);
    return h;
  }

  // --- cookies and storage -------------------------------------------------------------------

  // Cookie access throws in sandboxed frames: the tag then works from memory.
  function getCookie(name) {
    try {
      var parts = d.cookie ? d.cookie.split('; ') : [];
      for (var i = 0; i < parts.length; i++) {
        var eq = parts[i].indexOf('=');
        if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
      }
    } catch (e) { /* unreadable: as if absent */ }
    return null;
  }

  function writeCookie(name, value, maxAge, domain) {
    try {
      d.cookie = name + '=' + encodeURIComponent(value) + '; Max-Age=' + maxAge + '; Path=/; SameSite=Lax' +
        (domain ? '; Domain=' + domain : '') + (location.protocol === 'https:' ? '; Secure' : '');
    } catch (e) { /* not writable */ }
  }

  // The widest domain that takes a cookie (shop.example from www.shop.example), so the cookies
  // are the ones a collector on t.shop.example renews and the platforms' own tags read.
  var DOMAIN = (function () {
    var host = location.hostname, parts = host.split('.');
    if (parts.length < 2 || /^[\d.]+$/.test(host) || host.indexOf(':') >= 0) return '';
    for (var i = parts.length - 2; i >= 0; i--) {
      var candidate = parts.slice(i).join('.');
      writeCookie('tally_probe', '1', 10, candidate);
      if (getCookie('tally_probe') === '1') {
        writeCookie('tally_probe', '', 0, candidate);
        return candidate;
      }
    }
    return '';
  })();

  function setCookie(name, value, days) {
    if (value) writeCookie(name, value, Math.round(days * 86400), DOMAIN);
  }

  function load(key) {
    try { return JSON.parse(w.localStorage.getItem(key)); } catch (e) { return null; }
  }

  function store(key, value) {
    try {
      if (value == null) w.localStorage.removeItem(key);
      else w.localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage full or disabled: memory still works */ }
  }

  // --- identifiers ---------------------------------------------------------------------------

  var anon = getCookie(COOKIE) || uuid();
  var storedUser = load(USER_KEY);
  if (storedUser && typeof storedUser.external_id === 'string') user.external_id = storedUser.external_id;

  // Meta's cookie format: fb.<subdomain index>.<creation ms>.<value>[.<appendix>]
  function metaCookie(v) {
    return v && /^fb\.\d+\.\d{10,}\.[^.]+(\.[^.]+)?$/.test(v) ? v : null;
  }

  // The landing that brought the visitor: click IDs and UTM parameters, with the click time.
  var landing = (function () {
    var params = new URLSearchParams(location.search), ids = {}, utm = {};
    CLICK_IDS.forEach(function (k) { var v = params.get(k); if (v) ids[k] = v; });
    UTM.forEach(function (k) { var v = params.get(k); if (v) utm[k] = v; });
    var stored = load(LANDING_KEY);
    if (!stored || !stored.ids || !(stored.at > now() - CLICK_TTL)) stored = null;
    if (!hasKeys(ids)) {
      // A visit from a campaign without an ad click keeps the earlier click.
      return hasKeys(utm) ? { ids: stored ? stored.ids : {}, at: stored ? stored.at : null, utm: utm } : stored;
    }
    // The same click IDs again (a reload, a bookmark of the landing URL) are the same click.
    if (stored && JSON.stringify(stored.ids) === JSON.stringify(ids)) return stored;
    // Navigation start is the closest the page knows to the moment of the click.
    var at = Math.round((w.performance && w.performance.timeOrigin) || now());
    return { ids: ids, at: at, utm: utm };
  })();

  var fbp = metaCookie(getCookie('_fbp')) || 'fb.1.' + now() + '.' + (1e9 + (random(4).reduce(function (a, b) { return a * 256 + b; }, 0) % 9e9));

  function currentFbc() {
    var cookie = metaCookie(getCookie('_fbc')), fbclid = landing && landing.ids.fbclid;
    if (fbclid && landing.at && !(cookie && cookie.split('.')[3] === fbclid)) return 'fb.1.' + landing.at + '.' + fbclid;
    return cookie;
  }

  function clickIds() {
    var c = copy({}, landing && landing.ids);
    if (hasKeys(c) && landing.at) c.clicked_at = landing.at;
    // A browser ID made up by this page is worth sending only once it is kept.
    var cookieFbp = metaCookie(getCookie('_fbp'));
    if (cookieFbp || granted('ad_storage')) c.fbp = cookieFbp || fbp;
    var fbc = currentFbc();
    if (fbc) c.fbc = fbc;
    var ttp = getCookie('_ttp');
    if (ttp) c.ttp = ttp;
    var ga = /^GA\d\.\d+\.(\d+\.\d+)$/.exec(getCookie('_ga') || '');
    if (ga) c.ga_client_id = ga[1];
    return c;
  }

  // Writes identifiers as far as consent allows; called after every consent change.
  function persist() {
    if (!denied('analytics_storage')) {
      setCookie(COOKIE, anon, 395);
      if (user.external_id) store(USER_KEY, user);
    } else {
      store(USER_KEY, null);
    }
    if (granted('ad_storage')) {
      if (landing) store(LANDING_KEY, landing);
      setCookie('_fbp', fbp, 90);
      setCookie('_fbc', currentFbc(), 90);
    } else if (denied('ad_storage')) {
      store(LANDING_KEY, null);
    }
    save();
  }

  // --- the queue -----------------------------------------------------------------------------

  // The copy of an event that may be written to storage under the current consent.
  function storable(e) {
    var s = copy({}, e), u = {};
    KEPT_USER.forEach(function (k) { if (e.user[k] != null) u[k] = e.user[k]; });
    if (denied('analytics_storage')) delete u.anonymous_id;
    s.user = u;
    if (!granted('ad_storage')) {
      delete u.click_ids;
      // The landing URL carries the click IDs too.
      s.page = copy({}, e.page);
      s.page.url = withoutClickIds(s.page.url);
      s.page.referrer = withoutClickIds(s.page.referrer);
    }
    return s;
  }

  function withoutClickIds(url) {
    if (!url) return url;
    try {
      var u = new URL(url);
      CLICK_IDS.forEach(function (k) { u.searchParams.delete(k); });
      return u.href;
    } catch (err) {
      return undefined;
    }
  }

  // Mirrors the queue into localStorage, keeping what other tabs stored meanwhile.
  function save(skipInFlight) {
    var mine = {}, list = [];
    queue.forEach(function (q) {
      mine[keyOf(q.e)] = 1;
      if (!(skipInFlight && q.f)) list.push({ e: storable(q.e), n: q.n, at: q.at, since: q.since });
    });
    (load(QUEUE_KEY) || []).forEach(function (s) {
      if (s && s.e && !mine[keyOf(s.e)] && !finished[keyOf(s.e)]) list.push(s);
    });
    store(QUEUE_KEY, list.length ? list : null);
  }

  function enqueue(e) {
    queue.push({ e: e, n: 0, at: 0, since: now() });
    if (queue.length > MAX_QUEUE) finish(queue.slice(0, queue.length - MAX_QUEUE));
    save();
    flush();
  }

  function finish(batch) {
    batch.forEach(function (q) {
      finished[keyOf(q.e)] = 1;
      var i = queue.indexOf(q);
      if (i >= 0) queue.splice(i, 1);
    });
    save();
  }

  function body(batch) {
    var events = batch.map(function (q) { return q.e; });
    return JSON.stringify(events.length === 1 ? copy({ key: KEY }, events[0]) : { key: KEY, batch: events });
  }

  // Sends what is due, in batches under MAX_BODY; sets the timer for what waits.
  function flush() {
    clearTimeout(timer);
    timer = null;
    var t = now(), batch = [], size = 0, wait = Infinity;
    for (var i = 0; i < queue.length; i++) {
      var q = queue[i];
      if (q.f) continue;
      if (q.at > t) { wait = Math.min(wait, q.at - t); continue; }
      var len = JSON.stringify(q.e).length;
      if (batch.length && size + len > MAX_BODY) { wait = 0; break; }
      batch.push(q);
      size += len;
    }
    if (batch.length) send(batch);
    if (wait < Infinity) timer = setTimeout(flush, wait);
  }

  function send(batch) {
    var text = body(batch);
    batch.forEach(function (q) { q.f = 1; q.n++; });
    if (!w.fetch) {
      // No way to read an answer: a beacon the browser took is as far as this page can see.
      if (beacon(text)) finish(batch);
      else retry(batch);
      return;
    }
    w.fetch(ENDPOINT, {
      method: 'POST', body: text, keepalive: text.length <= MAX_BODY, credentials: 'include',
      // text/plain keeps it a simple CORS request: no preflight.
      headers: { 'Content-Type': 'text/plain' }
    }).then(function (r) {
      var s = r.status;
      if (r.ok) {
        r.json().then(function (answer) {
          (answer.results || []).forEach(function (res) {
            if (res.status === 'rejected') warn(res.event_id + ' rejected: ' + res.code + ': ' + res.message);
          });
        }, function () {});
        finish(batch);
      } else if (s === 408 || s === 429 || s >= 500) {
        retry(batch, Number(r.headers.get('Retry-After')) * 1000);
      } else {
        warn('the collector refused ' + batch.length + ' event(s) with ' + s + '; not retried');
        finish(batch);
      }
      flush();
    }, function () {
      retry(batch); // offline, collector unreachable, or CORS refused
      flush();
    });
  }

  function retry(batch, afterMs) {
    var t = now();
    batch.forEach(function (q) {
      q.f = 0;
      var backoff = Math.min(60000, 1000 * Math.pow(2, q.n - 1)) * (0.8 + 0.4 * Math.random());
      q.at = t + Math.max(backoff, afterMs || 0);
    });
    finish(batch.filter(function (q) { return t - q.since > QUEUE_TTL; }));
  }

  function beacon(text) {
    try { return !!(w.navigator.sendBeacon && w.navigator.sendBeacon(ENDPOINT, text)); } catch (e) { return false; }
  }

  // Leaving the page: requests in flight were sent with keepalive and outlive it; events waiting
  // for a retry go out as beacons now and stay stored until a later page sees them answered.
  w.addEventListener('pagehide', function () {
    var waiting = queue.filter(function (q) { return !q.f; }), chunk = [], size = 0;
    waiting.forEach(function (q) {
      var len = JSON.stringify(q.e).length;
      if (chunk.length && size + len > MAX_BODY) { beacon(body(chunk)); chunk = []; size = 0; }
      chunk.push(q);
      size += len;
    });
    if (chunk.length) beacon(body(chunk));
    save(true);
  });
  w.addEventListener('pageshow', function (ev) { if (ev.persisted) { save(); flush(); } });
  w.addEventListener('online', function () {
    queue.forEach(function (q) { q.at = 0; });
    flush();
  });

  // --- commands ------------------------------------------------------------------------------

  function build(name, props, options) {
    var e = {
      event: String(name),
      event_id: options.event_id ? String(options.event_id) : uuid(),
      timestamp: now(),
      user: copy({ anonymous_id: anon }, user),
      properties: copy(copy({}, landing && landing.utm), props),
      // Within the collector's limits (8 KiB URLs, 1 KiB titles).
      page: { url: location.href.slice(0, 8000), referrer: d.referrer.slice(0, 8000) || undefined, title: d.title.slice(0, 1000) || undefined }
    };
    var ids = clickIds();
    if (hasKeys(ids)) e.user.click_ids = ids;
    if (hasKeys(consent)) e.consent = copy({}, consent);
    if (options.test) e.test = true;
    return e;
  }

  function emit(e, options) {
    // Properties that cannot become JSON (cycles) would block the queue: refuse them here.
    var text = JSON.stringify(e);
    lastId = e.event_id;
    var handlers = listeners.slice();
    if (typeof options.callback === 'function') handlers.push(function (ev) { options.callback(ev.event_id, ev); });
    handlers.forEach(function (fn) {
      try { fn(JSON.parse(text)); } catch (err) { warn('an event handler failed: ' + err); }
    });
    enqueue(e);
    return e.event_id;
  }

  function track(name, props, options) {
    if (!name) return warn('track needs an event name');
    options = options || {};
    return emit(build(name, props || {}, options), options);
  }

  function identify(traits, options) {
    traits = typeof traits === 'object' && traits ? traits : { external_id: traits };
    if (traits.external_id != null) {
      user.external_id = String(traits.external_id);
      persist();
    }
    options = options || {};
    var e = build('identify', {}, options);
    copy(e.user, traits);
    return emit(e, options);
  }

  function setConsent(command, state) {
    if (command !== 'default' && command !== 'update') return warn("consent takes 'default' or 'update'");
    for (var k in state) {
      var v = state[k];
      if (k === 'tcf') {
        if (typeof v === 'string') consent.tcf = v;
        continue;
      }
      if (SIGNALS.indexOf(k) < 0) continue; // other gtag types (security_storage, ...) are not sent
      v = v === true ? 'granted' : v === false ? 'denied' : v;
      if (v !== 'granted' && v !== 'denied') { warn('consent ' + k + ' must be granted or denied'); continue; }
      if (command === 'default' && updated[k]) continue;
      if (command === 'update') updated[k] = 1;
      consent[k] = v;
    }
    persist();
  }

  var api = function (command) {
    var a = arguments;
    try {
      switch (command) {
        case 'track': return track(a[1], a[2], a[3]);
        case 'page': return track('page_view', a[1], a[2]);
        case 'identify': return identify(a[1], a[2]);
        case 'consent': return setConsent(a[1], a[2] || {});
        case 'on':
          if (a[1] === 'event' && typeof a[2] === 'function') listeners.push(a[2]);
          else warn("on takes 'event' and a function");
          return;
        case 'eventId': return lastId;
        case 'anonymousId': return anon;
        default: warn('unknown command ' + command);
      }
    } catch (err) {
      warn(command + ' failed: ' + err); // the tag never breaks the page
    }
  };
  api.loaded = true;
  api.version = 1;

  if (!KEY) warn('the script tag has no data-key; events cannot be sent');
  // Events a previous page could not confirm are sent again (the collector dedups them).
  (load(QUEUE_KEY) || []).forEach(function (s) {
    if (s && s.e && s.e.event && now() - (s.since || 0) <= QUEUE_TTL) queue.push({ e: s.e, n: s.n || 0, at: 0, since: s.since });
  });
  var pending = (prev && prev.q) || [];
  w.tally = api;
  for (var i = 0; i < pending.length; i++) api.apply(null, pending[i]);
  persist();
  flush();

  // The tag container: its live version, or for a browser that opened a preview link
  // (?tally_preview=TOKEN, kept in a cookie until the token expires; =off ends it) the draft.
  var previewParam = new URLSearchParams(location.search).get('tally_preview');
  if (previewParam === 'off') writeCookie('tally_preview', '', 0);
  else if (previewParam) writeCookie('tally_preview', previewParam, Math.max(0, Math.round((Number(previewParam.split('.')[1]) - now()) / 1000)) || 3600);
  var preview = getCookie('tally_preview');
  if (KEY && attr('data-container') !== 'off') {
    var s = d.createElement('script');
    s.async = true;
    s.src = ORIGIN + '/v1/container.js?key=' + encodeURIComponent(KEY) + (preview ? '&preview=' + encodeURIComponent(preview) : '');
    (d.head || d.documentElement).appendChild(s);
  }
})(window, document);
