/* Steelyard: progressive enhancement only. Every form and link works without this file.
 *
 * 1. Live updates (Server-Sent Events): new posts (and boosts) appear at the top of the home feed,
 *    the unread badge follows the notification count.
 * 2. The home composer posts without a page reload.
 * 3. Like and Boost (toggle buttons, aria-pressed) without a page reload.
 * 4. Confirmation before destructive forms ([data-confirm]).
 * 5. Times shown in the reader's own time zone; recent ones in feeds as "5 minutes ago".
 * 6. "Show more" on a long post opens it in place (without this file it links to the post).
 *
 * Plain ES2017, no libraries. Never builds HTML from strings except the server-made post card,
 * which is parsed through a <template> element.
 */
(function () {
  'use strict';

  var AJAX_HEADERS = { 'X-Requested-With': 'steelyard' };
  var HIGHLIGHT_MS = 2400;
  var pendingCards = new Set();

  function homeFeed() {
    return document.querySelector('[data-feed="home"]');
  }

  /* A page further down the feed (?before=…) is not where new posts belong. */
  function isNewestPage() {
    return !new URLSearchParams(window.location.search).has('before');
  }

  function currentPath() {
    return window.location.pathname + window.location.search;
  }

  async function readJson(response) {
    var type = response.headers.get('Content-Type') || '';
    if (type.indexOf('application/json') === -1) return null;
    try {
      return await response.json();
    } catch (err) {
      return null;
    }
  }

  /* getAttribute: a field named "action" (the like form has one) shadows form.action. */
  function postForm(form) {
    return fetch(form.getAttribute('action') || window.location.href, {
      method: 'POST',
      body: new FormData(form),
      headers: AJAX_HEADERS,
      credentials: 'same-origin'
    });
  }

  /* The role="alert" element of a form: the one in the markup, or a new one at its end. */
  /* A form in a post's row of actions shows its error under the row (inside the row it
     would break the line of buttons apart); any other form shows it at its end. */
  function errorHost(form) {
    var actions = form.closest('.post-actions');
    return actions ? actions.parentNode : form;
  }

  function errorBox(form) {
    var host = errorHost(form);
    var box = host.querySelector(':scope > [data-form-error]');
    if (!box) {
      box = document.createElement('p');
      box.className = 'form-error';
      box.setAttribute('role', 'alert');
      box.setAttribute('data-form-error', '');
      box.hidden = true;
      host.appendChild(box);
    }
    return box;
  }

  function showError(form, message) {
    var box = errorBox(form);
    box.textContent = message;
    box.hidden = false;
  }

  function clearError(form) {
    var box = errorHost(form).querySelector(':scope > [data-form-error]');
    if (box) {
      box.textContent = '';
      box.hidden = true;
    }
  }

  /* ---- Times in the reader's time zone ---------------------------------------------- */

  var timeFormat = null;
  var relativeFormat = null;
  try {
    timeFormat = new Intl.DateTimeFormat(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'
    });
    relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  } catch (err) {
    /* An old browser keeps the server's text (without a relative one, the absolute one). */
  }

  /* In feeds and notifications a recent time reads as people say it ("5 minutes ago",
     "yesterday"); the full date and time is in its tooltip. Older ones, and times
     elsewhere (history, admin tables), show the date and time. */
  var RELATIVE_TIMES = '.post-info time, .notification time';
  /* [below this many seconds ago, count in this unit of this many seconds] */
  var RELATIVE_STEPS = [[3600, 'minute', 60], [86400, 'hour', 3600], [604800, 'day', 86400]];

  function relativeText(date) {
    if (!relativeFormat) return null;
    var seconds = (date.getTime() - Date.now()) / 1000;
    if (Math.abs(seconds) < 45) return relativeFormat.format(0, 'second');
    for (var i = 0; i < RELATIVE_STEPS.length; i++) {
      var step = RELATIVE_STEPS[i];
      if (Math.abs(seconds) < step[0]) {
        return relativeFormat.format(Math.round(seconds / step[2]), step[1]);
      }
    }
    return null;
  }

  function showTime(el) {
    var date = new Date(el.getAttribute('datetime'));
    if (isNaN(date.getTime())) return;
    var full = timeFormat.format(date);
    el.title = full;
    el.textContent = (el.matches(RELATIVE_TIMES) && relativeText(date)) || full;
  }

  function localizeTimes(root) {
    if (!timeFormat) return;
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      if (el.dataset.localized) return;
      showTime(el);
      el.dataset.localized = '1';
    });
  }

  /* "5 minutes ago" moves on while the page stays open. */
  function refreshRelativeTimes() {
    if (!timeFormat) return;
    document.querySelectorAll(RELATIVE_TIMES).forEach(function (el) {
      if (el.getAttribute('datetime')) showTime(el);
    });
  }

  /* ---- Long posts -------------------------------------------------------------------- */

  /* The server's "Show more" is a link to the post's own page; here it becomes a button that
     opens and closes the text where it is, and says which it would do (aria-expanded). */
  function enhanceShowMore(root) {
    root.querySelectorAll('a[data-show-more]').forEach(function (link) {
      var button = document.createElement('button');
      button.type = 'button';
      button.setAttribute('data-show-more', '');
      button.setAttribute('aria-controls', link.getAttribute('aria-controls') || '');
      button.setAttribute('aria-expanded', 'false');
      while (link.firstChild) button.appendChild(link.firstChild);
      link.replaceWith(button);
    });
  }

  function toggleShowMore(button) {
    var text = document.getElementById(button.getAttribute('aria-controls'));
    if (!text || !button.firstChild) return;
    var open = button.getAttribute('aria-expanded') !== 'true';
    text.classList.toggle('is-collapsed', !open);
    button.setAttribute('aria-expanded', open ? 'true' : 'false');
    button.firstChild.textContent = open ? 'Show less' : 'Show more';
    /* Closing a long text can leave the reader far below it: bring its card back. */
    if (!open) button.closest('article').scrollIntoView({ block: 'nearest' });
  }

  document.addEventListener('click', function (event) {
    var target = event.target;
    var button = target instanceof Element ? target.closest('button[data-show-more]') : null;
    if (button) toggleShowMore(button);
  });

  /* ---- Unread badge ------------------------------------------------------------------ */

  var UNREAD_IN_TITLE = /^\(\d+\+?\) /;

  function setUnread(value) {
    var count = parseInt(value, 10);
    if (isNaN(count) || count < 0) return;
    /* "(3) Home · ACME": a tab in the background shows it too. */
    var title = document.title.replace(UNREAD_IN_TITLE, '');
    document.title = count ? '(' + (count > 99 ? '99+' : count) + ') ' + title : title;
    document.querySelectorAll('[data-unread]').forEach(function (badge) {
      badge.textContent = '';
      if (count === 0) {
        badge.hidden = true;
        return;
      }
      badge.appendChild(document.createTextNode(count > 99 ? '99+' : String(count)));
      var hint = document.createElement('span');
      hint.className = 'sr-only';
      hint.textContent = ' unread';
      badge.appendChild(hint);
      badge.hidden = false;
    });
  }

  async function loadUnreadCount() {
    try {
      var response = await fetch('/notifications/count', {
        headers: AJAX_HEADERS,
        credentials: 'same-origin'
      });
      if (!response.ok) return;
      var data = await readJson(response);
      if (data && typeof data.unread === 'number') setUnread(data.unread);
    } catch (err) {
      /* Offline: the badge simply stays as rendered. */
    }
  }

  /* ---- New posts in the home feed ---------------------------------------------------- */

  function highlight(article) {
    article.classList.add('is-new');
    window.setTimeout(function () {
      article.classList.remove('is-new');
    }, HIGHLIGHT_MS);
  }

  /* Screen readers hear one line per live post (the feed itself is not a live region: a
     whole card, buttons and counts included, would be read out). */
  function announce(article) {
    var status = document.querySelector('[data-feed-status]');
    var author = article.querySelector('.post-author a');
    if (!status || !author) return;
    var booster = article.querySelector('.boost-note a');
    status.textContent = booster
      ? booster.textContent + ' boosted a post by ' + author.textContent
      : 'New post from ' + author.textContent;
  }

  /* Cards are fetched at once but put in the feed one after the other, in the order their
     events came (the order the posts were made): a slow fetch must not put an older post
     above a newer one. */
  var placing = Promise.resolve();

  /* The event is "<post id>" for a new post, "<post id>:<booster id>" for a boost. */
  function insertPost(data) {
    var card = fetchCard(data);
    placing = placing.then(function () {
      return card;
    }).then(placeCard).catch(function () {
      /* One card that could not be placed must not stop the ones after it. */
    });
    return placing;
  }

  async function fetchCard(data) {
    var match = /^(\d{1,20})(?::(\d{1,20}))?$/.exec(String(data).trim());
    if (!match) return null;
    var id = match[1];
    var query = match[2] ? '?via=' + match[2] : '';
    if (!homeFeed() || !isNewestPage()) return null;
    if (document.getElementById('post-' + id) || pendingCards.has(id)) return null;
    pendingCards.add(id);
    try {
      var response = await fetch('/posts/' + id + '/card' + query, {
        headers: AJAX_HEADERS,
        credentials: 'same-origin'
      });
      if (!response.ok) return null;
      var template = document.createElement('template');
      template.innerHTML = (await response.text()).trim();
      return { id: id, article: template.content.querySelector('article.post') };
    } catch (err) {
      return null; /* Network trouble: the post shows on the next page load. */
    } finally {
      pendingCards.delete(id);
    }
  }

  function placeCard(card) {
    var feed = homeFeed();
    if (!card || !card.article || !feed) return;
    if (document.getElementById('post-' + card.id)) return;
    var article = card.article;
    /* Forms in the card come back here, not to the card URL. */
    article.querySelectorAll('input[name="next"]').forEach(function (input) {
      input.value = currentPath();
    });
    var empty = feed.querySelector('[data-empty]');
    if (empty) empty.remove();
    feed.insertBefore(article, feed.firstChild);
    localizeTimes(article);
    enhanceShowMore(article);
    highlight(article);
    announce(article);
  }

  /* A post on this page was edited or deleted elsewhere: show what is there now. A card the
     reader may no longer open (its audience narrowed) goes, as a deleted one does. */
  function cardOnPage(data) {
    var id = String(data).trim();
    if (!/^\d{1,20}$/.test(id)) return null;
    return document.getElementById('post-' + id);
  }

  function removeCard(data) {
    var article = cardOnPage(data);
    if (!article) return;
    if (article.contains(document.activeElement)) {
      var next = article.nextElementSibling || article.previousElementSibling;
      if (next) next.setAttribute('tabindex', '-1');
      if (next) next.focus();
    }
    article.remove();
  }

  async function refreshCard(data) {
    var article = cardOnPage(data);
    if (!article || article.contains(document.activeElement)) return; /* not under the reader's hands */
    try {
      var response = await fetch('/posts/' + String(data).trim() + '/card', {
        headers: AJAX_HEADERS,
        credentials: 'same-origin'
      });
      if (response.status === 404) {
        removeCard(data);
        return;
      }
      if (!response.ok) return;
      var template = document.createElement('template');
      template.innerHTML = (await response.text()).trim();
      var fresh = template.content.querySelector('article.post');
      var current = cardOnPage(data);
      if (!fresh || !current) return;
      fresh.className = current.className; /* keeps "focused", "post-reply" as shown */
      /* A post shown as someone's boost stays shown as that boost. */
      var boostNote = current.querySelector(':scope > .boost-note');
      if (boostNote && !fresh.querySelector(':scope > .boost-note')) {
        fresh.insertBefore(boostNote, fresh.firstChild);
      }
      fresh.querySelectorAll('input[name="next"]').forEach(function (input) {
        input.value = currentPath();
      });
      current.replaceWith(fresh);
      localizeTimes(fresh);
      enhanceShowMore(fresh);
    } catch (err) {
      /* Network trouble: the next page load shows the new text. */
    }
  }

  /* ---- Live stream ------------------------------------------------------------------- */

  var source = null;

  function openLive() {
    var url = document.body.dataset.live;
    if (!url || !('EventSource' in window) || source) return;
    source = new EventSource(url);
    source.addEventListener('post', function (event) {
      insertPost(event.data);
    });
    source.addEventListener('notifications', function (event) {
      setUnread(event.data);
    });
    source.addEventListener('edited', function (event) {
      refreshCard(event.data);
    });
    source.addEventListener('deleted', function (event) {
      removeCard(event.data);
    });
    /* EventSource reconnects by itself (the server sends retry: 3000); every stream starts
       with the current unread count, so what was counted while it was away shows. */
  }

  function closeLive() {
    if (source) {
      source.close();
      source = null;
    }
  }

  /* ---- Composer ---------------------------------------------------------------------- */

  /* "N characters left" near the limit (the textarea's maxlength would cut the text off
     silently). The line is shown at every keystroke; a screen reader is told only when a
     threshold is crossed, not at every character. */
  var COUNT_FROM = 500;
  var COUNT_STEPS = [500, 100, 0];

  function updateCount(textarea) {
    var form = textarea.form;
    var line = form && form.querySelector('[data-char-count]');
    var limit = Number(textarea.getAttribute('maxlength'));
    if (!line || !limit) return;
    var left = limit - textarea.value.length;
    line.hidden = left > COUNT_FROM;
    var text = left + (left === 1 ? ' character left' : ' characters left');
    var step = COUNT_STEPS.filter(function (s) { return left <= s; }).pop();
    var spoken = step === undefined ? '' : String(step);
    if (line.dataset.step !== spoken) {
      line.dataset.step = spoken;
      line.setAttribute('aria-live', spoken ? 'polite' : 'off');
    } else {
      line.setAttribute('aria-live', 'off');
    }
    line.textContent = text;
  }

  document.addEventListener('input', function (event) {
    var target = event.target;
    if (target instanceof HTMLTextAreaElement && target.closest('[data-composer]')) {
      updateCount(target);
    }
  });

  /* A form being sent refuses a second submit. Its button is not disabled for that: a
     disabled button loses the keyboard focus, and the reader's place with it. */
  function setBusy(form, busy) {
    form.toggleAttribute('data-busy', busy);
    form.toggleAttribute('aria-busy', busy);
    var button = form.querySelector('button[type="submit"]');
    if (button) button.setAttribute('aria-disabled', busy ? 'true' : 'false');
  }

  async function submitComposer(form) {
    var textarea = form.querySelector('textarea[name="text"]');
    clearError(form);
    setBusy(form, true);
    var response;
    try {
      response = await postForm(form);
    } catch (err) {
      /* Could not reach the server from here: let the browser try a normal submit. */
      form.submit();
      return;
    } finally {
      setBusy(form, false);
    }
    var data = await readJson(response);
    if (response.status === 201 && data && data.id !== undefined) {
      if (textarea) {
        textarea.value = '';
        updateCount(textarea); /* setting the value sends no input event */
      }
      await insertPost(data.id);
      if (textarea) textarea.focus();
      /* Posted, but a mention named nobody: say so, as the page without JavaScript does. */
      if (data.note) showError(form, data.note);
    } else if (data && data.error) {
      showError(form, data.error); /* the text stays in the textarea */
    } else {
      /* Not our JSON (signed out, proxy page…): a normal submit shows what is going on. */
      form.submit();
    }
  }

  /* ---- Like and Boost, in place ------------------------------------------------------ */

  /* Posts the form and lets *apply* update the card from the JSON answer; anything else (an
     error page, a sign-in redirect) falls back to a normal submit, which shows it. */
  async function submitInPlace(form, apply) {
    var button = form.querySelector('button[type="submit"]');
    setBusy(form, true);
    var response;
    try {
      response = await postForm(form);
    } catch (err) {
      form.submit();
      return;
    } finally {
      setBusy(form, false);
    }
    var data = await readJson(response);
    if (response.ok && data && apply(form, button, data)) {
      clearError(form);
    } else if (data && data.error) {
      showError(form, data.error);
    } else {
      form.submit();
    }
  }

  /* Like and Boost are toggle buttons: their name stays, aria-pressed says the state. */
  function applyLike(form, button, data) {
    return applyToggle(form, button, data.liked, data.count, 'like');
  }

  function applyBoost(form, button, data) {
    return applyToggle(form, button, data.boosted, data.count, 'boost');
  }

  /* The answer to a like or a boost: the form's next action, the button's state and the
     count, as cards.py writes it (a bare number, none at zero; words for screen readers). */
  function applyToggle(form, button, on, number, kind) {
    if (typeof on !== 'boolean') return false;
    var action = form.querySelector('input[name="action"]');
    if (action) action.value = on ? 'un' + kind : kind;
    if (typeof number === 'number') {
      var count = form.querySelector('[data-' + kind + '-count]');
      if (count) count.textContent = number ? String(number) : '';
      var words = form.querySelector('[data-' + kind + '-words]');
      if (words) {
        words.textContent = number === 0 ? 'no ' + kind + 's'
          : number + ' ' + kind + (number === 1 ? '' : 's');
      }
    }
    if (button) button.setAttribute('aria-pressed', on ? 'true' : 'false');
    return true;
  }

  /* The server asks again on a page of its own unless the form says it was confirmed
     (without JavaScript that page is the only question). */
  function markConfirmed(form) {
    var field = form.querySelector('input[name="confirmed"]');
    if (!field) {
      field = document.createElement('input');
      field.type = 'hidden';
      field.name = 'confirmed';
      form.appendChild(field);
    }
    field.value = 'yes';
  }

  /* ---- One submit listener for every form (cards inserted later included) ------------- */

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || event.defaultPrevented) return;
    if (form.hasAttribute('data-busy')) {
      event.preventDefault(); /* already on its way */
      return;
    }

    var question = form.getAttribute('data-confirm');
    if (question) {
      if (!window.confirm(question)) {
        event.preventDefault();
        return;
      }
      markConfirmed(form);
    }
    if (!window.fetch || !window.FormData) return;

    if (form.hasAttribute('data-like-form')) {
      event.preventDefault();
      submitInPlace(form, applyLike);
    } else if (form.hasAttribute('data-boost-form')) {
      event.preventDefault();
      submitInPlace(form, applyBoost);
    } else if (form.hasAttribute('data-composer') && homeFeed() && isNewestPage()) {
      /* On an older page the new post would not show: the plain submit goes to the newest. */
      event.preventDefault();
      submitComposer(form);
    }
  });

  /* A file over the server's cap is refused here, before minutes of uploading on a phone. */
  document.addEventListener('change', function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.hasAttribute('data-max-bytes')) return;
    var limit = Number(input.getAttribute('data-max-bytes'));
    var file = input.files && input.files[0];
    var tooLarge = Boolean(file && limit && file.size > limit);
    input.setCustomValidity(tooLarge ? input.getAttribute('data-too-large') || 'Too large.' : '');
    if (tooLarge) input.reportValidity();
  });

  /* Ctrl+Enter / Cmd+Enter sends a composer. */
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    var target = event.target;
    if (!(target instanceof HTMLTextAreaElement)) return;
    var form = target.form;
    if (!form || !form.hasAttribute('data-composer')) return;
    event.preventDefault();
    if (typeof form.requestSubmit === 'function') {
      form.requestSubmit();
    } else {
      var button = form.querySelector('button[type="submit"]');
      if (button) button.click();
    }
  });

  /* ---- Start ------------------------------------------------------------------------- */

  function start() {
    localizeTimes(document);
    window.setInterval(refreshRelativeTimes, 60 * 1000);
    enhanceShowMore(document);
    /* The badge came with the page; the stream keeps it current from here. */
    if (document.body.dataset.live) openLive();
  }

  /* Pages restored from the back/forward cache need their stream again. */
  window.addEventListener('pagehide', closeLive);
  window.addEventListener('pageshow', function (event) {
    if (event.persisted) {
      if (document.body.dataset.live) loadUnreadCount();
      openLive();
    }
  });

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
