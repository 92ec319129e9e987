// countersign live updates: follow the page's event stream and swap in the fresh parts of the
// page when something changes. Without JavaScript the page says so and offers a reload link.
(function () {
  'use strict';
  var body = document.body;
  var url = body.getAttribute('data-events');
  var status = document.getElementById('live');
  if (!url || !window.EventSource || !window.fetch || !window.DOMParser) return;

  // A one-time notice (?done=…) belongs to the moment it was shown: neither a reload nor a
  // live refresh should bring it back.
  if (window.history && window.URLSearchParams) {
    var params = new URLSearchParams(window.location.search);
    if (params.has('done')) {
      params.delete('done');
      var rest = params.toString();
      window.history.replaceState(null, '', window.location.pathname + (rest ? '?' + rest : ''));
    }
  }

  function setState(state) {
    if (status) status.setAttribute('data-state', state);
  }

  var timer = null;
  var busy = false;
  var again = false;
  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(swap, 100);
  }

  // Regions with a data-state keep what the user is typing unless the state changed.
  function swap() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, {
      credentials: 'same-origin',
      // Tells the server this is not the person's own activity (no idle-timeout extension).
      headers: { 'Accept': 'text/html', 'X-Countersign-Live': '1' }
    })
      .then(function (res) {
        if (!res.ok || res.redirected) throw new Error('not signed in');
        return res.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var regions = document.querySelectorAll('[data-region]');
        for (var i = 0; i < regions.length; i++) {
          var old = regions[i];
          var fresh = doc.querySelector('[data-region="' + old.getAttribute('data-region') + '"]');
          if (!fresh) continue;
          var keep = old.hasAttribute('data-state') &&
            old.getAttribute('data-state') === fresh.getAttribute('data-state') &&
            old.getAttribute('data-region') === 'actions';
          if (keep) continue;
          var liveNow = old.querySelector('#live');
          var liveFresh = fresh.querySelector('#live');
          if (liveNow && liveFresh) liveFresh.setAttribute('data-state', liveNow.getAttribute('data-state'));
          old.replaceWith(fresh);
        }
        status = document.getElementById('live');
        var title = doc.querySelector('title');
        if (title) document.title = title.textContent;
      })
      .catch(function () { setState('off'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var source = new EventSource(url);
  source.addEventListener('open', function () { setState('on'); });
  source.addEventListener('error', function () {
    setState(source.readyState === EventSource.CLOSED ? 'off' : 'retrying');
  });
  source.addEventListener('changed', refresh);
  source.addEventListener('request', function (event) {
    var version = null;
    try { version = String(JSON.parse(event.data).version); } catch (e) { return; }
    if (version !== body.getAttribute('data-version')) {
      body.setAttribute('data-version', version);
      refresh();
    }
  });
})();
