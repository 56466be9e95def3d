// fetchq console: every action is a call to the REST API, signed by the
// session cookie and this page's CSRF token. No inline script anywhere.
"use strict";
(() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function api(method, url, body) {
    const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const msg = data && data.error ? data.error.message : res.status + " " + res.statusText;
      throw new Error(msg);
    }
    return data;
  }

  function flash(text, isError) {
    const el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function then(target, extra) {
    if (!target || target === "reload") { location.reload(); return; }
    location.href = target + (extra || "");
  }

  // Buttons: data-api (URL), data-method, data-confirm (a second click runs it), data-then.
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-api]");
    if (!b || b.disabled) return;
    ev.preventDefault();
    if (b.dataset.confirm && !b.classList.contains("armed")) {
      b.dataset.label = b.textContent;
      b.textContent = b.dataset.confirm;
      b.classList.add("armed");
      setTimeout(() => { if (b.classList.contains("armed")) { b.classList.remove("armed"); b.textContent = b.dataset.label; } }, 6000);
      return;
    }
    b.disabled = true;
    try {
      await api(b.dataset.method || "POST", b.dataset.api);
      flash("Done.");
      then(b.dataset.then);
    } catch (e) {
      flash(e.message, true);
      b.disabled = false;
      if (b.dataset.label) { b.textContent = b.dataset.label; b.classList.remove("armed"); }
    }
  });

  // Forms: data-api (URL), data-method; fields typed by data-type (int, float, json, datetime); empty fields are left out.
  function formBody(form) {
    const out = {};
    const changedOnly = form.dataset.changedOnly !== undefined;
    for (const el of form.querySelectorAll("input[name], select[name], textarea[name]")) {
      const v = el.value.trim();
      if (v === "") continue;
      // a settings form sends only what the user changed: a value loaded with
      // the page must not undo a change made meanwhile by someone else
      if (changedOnly && el.value === el.defaultValue) continue;
      switch (el.dataset.type) {
        case "int": out[el.name] = parseInt(v, 10); break;
        case "float": out[el.name] = parseFloat(v); break;
        case "json": out[el.name] = JSON.parse(v); break;
        case "datetime": out[el.name] = new Date(v).toISOString(); break;
        default: out[el.name] = v;
      }
    }
    return out;
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (form.id === "bulk") { ev.preventDefault(); review(form); return; }
    if (!form.dataset.api) return;
    ev.preventDefault();
    let body;
    try { body = formBody(form); } catch (e) { flash("Payload is not valid JSON: " + e.message, true); return; }
    if (form.dataset.wrap === "docs") body = { docs: [body] };
    try {
      const out = await api(form.dataset.method || "POST", form.dataset.api, body);
      if (form.dataset.wrap === "docs") {
        flash(out && out.queued === 0 ? "That subject exists already: left as it was." : "Pushed.");
        then(form.dataset.then, encodeURIComponent(body.docs[0].subject || ""));
      } else {
        flash("Saved.");
        then(form.dataset.then);
      }
    } catch (e) {
      flash(e.message, true);
    }
  });

  // Bulk: count what the filter matches, say it, act only once confirmed.
  let pending = null;
  async function review(form) {
    const f = formBody(form);
    const box = form.querySelector(".confirm");
    const result = form.querySelector(".result");
    result.textContent = "";
    try {
      const c = await api("GET", form.dataset.count);
      const n = c.matched.toLocaleString() + (c.capped ? "+ (more than that)" : "");
      const filter = JSON.parse(form.dataset.filter || "{}");
      const what = Object.keys(filter).length ? Object.entries(filter).map(([k, v]) => k + " " + v).join(", ") : "every document";
      pending = { action: f.action, delay: f.delay, filter, matched: c.matched };
      box.querySelector(".count").textContent = "This will " + f.action + " " + n + " document" + (c.matched === 1 ? "" : "s") + " (" + what + ").";
      box.hidden = false;
    } catch (e) {
      flash(e.message, true);
    }
  }

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("#bulk [data-role]");
    if (!b) return;
    const form = b.closest("form");
    const box = form.querySelector(".confirm");
    if (b.dataset.role === "cancel") { box.hidden = true; pending = null; return; }
    if (!pending) return;
    b.disabled = true;
    const req = { filter: pending.filter, action: pending.action };
    if (pending.action === "reschedule") req.delay = pending.delay || "0s";
    let changed = 0;
    try {
      for (;;) {
        const out = await api("POST", form.dataset.bulk, req);
        changed += out.changed;
        form.querySelector(".result").textContent = "Changed " + changed.toLocaleString() + " so far…";
        if (out.done) break;
        req.after = out.next_after;
      }
      flash("Changed " + changed.toLocaleString() + " documents.");
      box.hidden = true;
      setTimeout(() => location.reload(), 600);
      pending = null;
    } catch (e) {
      // what changed stays changed; Confirm again goes on from the start
      flash(e.message + " (changed " + changed.toLocaleString() + " before that)", true);
    } finally {
      b.disabled = false;
    }
  });

  // Parts that refresh themselves: data-refresh (URL), data-every (ms). One
  // request at a time, abandoned after 10 s, backing off while they fail, and
  // skipped while the tab is hidden: a slow database never gets a pile-up.
  for (const el of document.querySelectorAll("[data-refresh]")) {
    const every = parseInt(el.dataset.every || "3000", 10);
    let wait = every;
    const tick = async () => {
      if (!document.hidden) {
        const ctl = new AbortController();
        const timer = setTimeout(() => ctl.abort(), 10000);
        try {
          const res = await fetch(el.dataset.refresh, { credentials: "same-origin", signal: ctl.signal });
          if (res.redirected && new URL(res.url).pathname === "/login") {
            location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
            return;
          }
          if (!res.ok) throw new Error(String(res.status));
          el.innerHTML = await res.text();
          wait = every;
        } catch (_) {
          wait = Math.min(wait * 2, 60000);
        } finally {
          clearTimeout(timer);
        }
      }
      setTimeout(tick, wait);
    };
    setTimeout(tick, every);
  }
})();
