// The local trace view: a single page over the JSON API (/api/...), with hash routes:
//   #/?app=&model=&customer=&errors=1&range=&q=   the trace list
//   #/trace/<trace id>[/<span id>]                 one trace: waterfall, tree and the selected span
//   #/overview?range=                              latency, tokens and cost over time and per model
// Prompts and completions are untrusted text: every value reaches the page through textContent or an attribute
// set with setAttribute, never as markup.
"use strict";

(() => {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 1500;
  const RANGES = [
    ["", "any time"],
    ["15m", "last 15 min"],
    ["1h", "last hour"],
    ["24h", "last 24 h"],
    ["7d", "last 7 days"],
    ["30d", "last 30 days"],
  ];
  const RANGE_SECONDS = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 };

  // ---- building blocks -------------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key === "cls" ? "class" : key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class Refused extends Error {}

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
    }
    const qs = query.toString();
    const response = await fetch(path + (qs ? "?" + qs : ""), { credentials: "same-origin", cache: "no-store" });
    if (response.status === 403) throw new Refused("refused");
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((payload && payload.error) || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return payload;
  }

  function problem(error) {
    if (error instanceof Refused) {
      return el("div", { cls: "notice bad" },
        "This page has no access to the store any more: open the address that respan-instrument ui printed, ",
        "with its token, again.");
    }
    return el("div", { cls: "notice bad" }, "Could not read the store: " + error.message);
  }

  // ---- formatting ------------------------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");

  function count(value) {
    return value === null || value === undefined ? "–" : integer.format(value);
  }

  function when(ns) {
    if (ns === null || ns === undefined) return "–";
    const date = new Date(ns / 1e6);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    const today = new Date();
    const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    if (date.toDateString() === today.toDateString()) return time;
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 60000) return (value / 60000).toFixed(1) + " min";
    if (value >= 1000) return (value / 1000).toFixed(value >= 10000 ? 1 : 2) + " s";
    if (value >= 10) return value.toFixed(0) + " ms";
    return value.toFixed(1) + " ms";
  }

  function duration(ns) {
    return ns === null || ns === undefined ? "–" : ms(ns / 1e6);
  }

  function usd(value) {
    if (value === null || value === undefined) return "unknown";
    if (value <= 0) return "$0";
    if (value < 1) {
      const decimals = Math.max(2, 2 - Math.floor(Math.log10(value)));
      return "$" + value.toFixed(decimals).replace(/0+$/, "").replace(/\.$/, "");
    }
    return "$" + value.toFixed(2);
  }

  function compact(value) {
    if (Math.abs(value) >= 1e6) return (value / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (Math.abs(value) >= 1e3) return (value / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    return String(Math.round(value * 100) / 100);
  }

  // ---- routing and live refresh ----------------------------------------------------------------------------

  let view = null; // the page shown: { refresh() } called when the store changes
  let marker = null;

  function parseHash() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const decode = (part) => {
      try {
        return decodeURIComponent(part);
      } catch (error) {
        return part; // a malformed escape in a hand-made link: shown as written, not a blank page
      }
    };
    return { parts: path.split("/").filter(Boolean).map(decode), params: new URLSearchParams(query || "") };
  }

  function route() {
    const { parts, params } = parseHash();
    const name = parts[0] === "trace" ? "trace" : parts[0] === "overview" ? "overview" : "list";
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.route === name || (name === "trace" && link.dataset.route === "list"));
    }
    main.replaceChildren();
    if (name === "trace") view = new TraceView(parts[1] || "", parts[2] || null);
    else if (name === "overview") view = new OverviewView(params);
    else view = new ListView(params);
  }

  async function poll() {
    try {
      const changes = await api("/api/changes");
      live.classList.remove("off");
      live.textContent = "live";
      if (marker !== null && changes.marker !== marker && view && view.refresh) view.refresh();
      marker = changes.marker;
    } catch (error) {
      live.classList.add("off");
      live.textContent = error instanceof Refused ? "no access" : "offline";
    }
  }

  // ---- the trace list --------------------------------------------------------------------------------------

  class ListView {
    constructor(params) {
      this.filters = {
        app: params.get("app") || "",
        model: params.get("model") || "",
        customer: params.get("customer") || "",
        errors: params.get("errors") === "1",
        range: params.get("range") || "",
        q: params.get("q") || "",
      };
      this.known = null; // trace ids already shown, so that new ones can be marked
      this.shown = 0;
      this.nextBefore = null;
      this.menus = {};
      this.body = el("tbody");
      this.status = el("div", { cls: "list-status" });
      this.more = el("button", { cls: "more", type: "button", hidden: true, onclick: () => this.older() }, "Older traces");
      main.append(el("section", { cls: "list" },
        this.filterBar(),
        el("table", { cls: "traces" },
          el("thead", {}, el("tr", {},
            ["Time", "App", "Root span", "Duration", "LLM calls", "Tokens in → out", "Cost", ""].map(
              (label, i) => el("th", { cls: i >= 3 && i <= 6 ? "num" : null }, label)))),
          this.body),
        this.status, this.more));
      this.loadFacets();
      this.load(false);
    }

    filterBar() {
      const menu = (key, label) => {
        const select = el("select", { "aria-label": label, "data-filter": key, onchange: () => {
          this.filters[key] = select.value;
          this.changed();
        } }, el("option", { value: "" }, "all " + label));
        this.menus[key] = select;
        return select;
      };
      const range = el("select", { "aria-label": "time range", "data-filter": "range", onchange: () => {
        this.filters.range = range.value;
        this.changed();
      } }, RANGES.map(([value, label]) => el("option", { value }, label)));
      range.value = this.filters.range;
      const errors = el("input", { type: "checkbox", "data-filter": "errors", onchange: () => {
        this.filters.errors = errors.checked;
        this.changed();
      } });
      errors.checked = this.filters.errors;
      let typing = null;
      const search = el("input", { type: "search", placeholder: "Search every attribute: prompts, replies, tool calls, inputs", "data-filter": "q",
        "aria-label": "search", oninput: () => {
          clearTimeout(typing);
          typing = setTimeout(() => {
            this.filters.q = search.value.trim();
            this.changed();
          }, 250);
        } });
      search.value = this.filters.q;
      return el("div", { cls: "filters" },
        search, menu("app", "apps"), menu("model", "models"), menu("customer", "customers"), range,
        el("label", { cls: "check" }, errors, "errors only"));
    }

    async loadFacets() {
      try {
        const facets = await api("/api/facets");
        for (const [key, values] of [["app", facets.apps], ["model", facets.models], ["customer", facets.customers]]) {
          const select = this.menus[key];
          const chosen = this.filters[key];
          const options = [...new Set([...(values || []), ...(chosen ? [chosen] : [])])];
          select.replaceChildren(select.options[0], ...options.map((v) => el("option", { value: v }, v)));
          select.value = chosen;
        }
      } catch (error) {
        /* the menus stay with "all" only; the list shows the problem */
      }
    }

    changed() {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(this.filters)) {
        if (value === true) params.set(key, "1");
        else if (value) params.set(key, value);
      }
      const qs = params.toString();
      history.replaceState(null, "", "#/" + (qs ? "?" + qs : ""));
      this.known = null;
      this.load(false);
    }

    query(before, limit) {
      const seconds = RANGE_SECONDS[this.filters.range];
      return {
        app: this.filters.app, model: this.filters.model, customer: this.filters.customer,
        errors: this.filters.errors ? 1 : "", q: this.filters.q,
        since: seconds ? String(BigInt(Date.now() - seconds * 1000) * 1000000n) : "",
        before: before, limit: limit,
      };
    }

    async load(append) {
      const limit = append ? 50 : Math.min(500, Math.max(50, this.shown));
      const token = (this.loading = {});
      let page;
      try {
        page = await api("/api/traces", this.query(append ? this.nextBefore : "", limit));
      } catch (error) {
        if (token === this.loading) this.status.replaceChildren(problem(error));
        return;
      }
      if (token !== this.loading) return; // a newer load superseded this one
      const first = this.known === null;
      if (!append) {
        this.body.replaceChildren();
        this.shown = 0;
        this.known = this.known || new Set();
      }
      for (const trace of page.traces) {
        const fresh = !first && !this.known.has(trace.trace_id);
        this.known.add(trace.trace_id);
        this.body.append(this.row(trace, fresh));
      }
      this.shown += page.traces.length;
      this.nextBefore = page.next_before;
      this.more.hidden = page.next_before === null;
      this.status.replaceChildren(this.shown ? "" : this.empty());
    }

    empty() {
      const filtered = Object.values(this.filters).some(Boolean);
      return el("div", { cls: "notice" }, filtered
        ? "No traces match these filters."
        : "No traces yet. Run a program under respan-instrument: its traces appear here as they are stored.");
    }

    row(trace, fresh) {
      const href = "#/trace/" + encodeURIComponent(trace.trace_id);
      const tokens = trace.llm_calls ? `${count(trace.input_tokens)} → ${count(trace.output_tokens)}` : "–";
      const row = el("tr", { cls: ["trace-row", trace.error ? "failed" : "", fresh ? "fresh" : ""].join(" ").trim(),
        "data-trace": trace.trace_id, onclick: (event) => {
          if (event.target.closest("a") === null) location.hash = href;
        } },
      el("td", { cls: "time", title: new Date(trace.start / 1e6).toString() }, when(trace.start)),
      el("td", { cls: "app" }, trace.app || "–"),
      el("td", { cls: "root" }, el("a", { href }, trace.root_name || "(unnamed)"),
        trace.customer ? el("span", { cls: "chip" }, trace.customer) : null),
      el("td", { cls: "num" }, duration(trace.duration_ns)),
      el("td", { cls: "num" }, count(trace.llm_calls)),
      el("td", { cls: "num tokens" }, tokens),
      el("td", { cls: "num cost", title: unpricedNote(trace) }, costText(trace)),
      el("td", { cls: "mark" }, trace.error ? el("span", { cls: "error-mark", title: "a span failed" }, "error") : null));
      return row;
    }

    older() {
      this.load(true);
    }

    refresh() {
      this.load(false);
      this.loadFacets();
    }
  }

  // ---- one trace -------------------------------------------------------------------------------------------

  class TraceView {
    constructor(traceId, spanId) {
      this.traceId = traceId;
      this.selected = spanId;
      main.append(el("div", { cls: "notice" }, "Loading trace…"));
      this.load();
    }

    async load() {
      let trace;
      try {
        trace = await api("/api/traces/" + encodeURIComponent(this.traceId));
      } catch (error) {
        main.replaceChildren(error.status === 404
          ? el("div", { cls: "notice" }, "No trace " + this.traceId + " in the store (retention may have removed it).")
          : problem(error));
        return;
      }
      this.trace = trace;
      const spans = trace.spans;
      if (!spans.some((s) => s.span_id === this.selected)) {
        const llm = spans.find((s) => s.usage || s.input.length || s.output.length);
        this.selected = (llm || spans[0]).span_id;
      }
      this.render();
    }

    render() {
      const trace = this.trace;
      this.detail = el("section", { cls: "detail" });
      main.replaceChildren(
        el("div", { cls: "trace-head" },
          el("a", { cls: "back", href: "#/" }, "← Traces"),
          el("h1", {}, trace.root_name || "(unnamed)"),
          el("div", { cls: "facts" },
            fact("app", trace.app || "–"),
            fact("started", when(trace.start)),
            fact("duration", duration(trace.duration_ns)),
            fact("spans", count(trace.spans.length)),
            fact("cost", costText(trace)),
            trace.error ? el("span", { cls: "error-mark" }, "error") : null,
            el("code", { cls: "trace-id", title: "trace id" }, trace.trace_id))),
        el("div", { cls: "trace-body" }, this.waterfall(), this.detail));
      this.showSpan();
    }

    waterfall() {
      const trace = this.trace;
      const t0 = trace.start || 0;
      const total = Math.max(1, trace.duration_ns || 1);
      const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
        el("span", { cls: "tick", "data-at": f }, duration(total * f)));
      const axis = el("div", { cls: "wf-axis" }, el("div", { cls: "wf-name" }, "Span"),
        el("div", { cls: "wf-track" }, ticks));
      ticks.forEach((tick, i) => { tick.style.left = (i * 25) + "%"; });
      this.rows = new Map();
      const rows = trace.spans.map((span) => {
        const left = ((span.start || t0) - t0) / total * 100;
        const width = Math.max(0, (span.duration_ns || 0) / total * 100);
        const kind = span.error ? "bar-error" : span.usage || span.request_model ? "bar-llm" : "bar-other";
        const bar = el("div", { cls: "bar " + kind, title: `${span.name}: ${duration(span.duration_ns)}` });
        bar.style.left = Math.min(left, 99.5) + "%";
        bar.style.width = `max(3px, ${Math.min(width, 100 - left)}%)`;
        const label = el("span", { cls: "bar-label" }, duration(span.duration_ns));
        // after the bar; near the right edge, inside a wide bar or before a narrow one
        const place = left + width <= 80 ? "after" : width >= 12 ? "inside" : "before";
        label.classList.add(place);
        label.style.left = `calc(${place === "before" ? left : left + width}% ${place === "after" ? "+" : "-"} 6px)`;
        const name = el("div", { cls: "wf-name" },
          el("span", { cls: "dot " + kind }),
          el("span", { cls: "span-name" }, span.name),
          span.usage && span.usage.total_tokens ? el("small", {}, count(span.usage.total_tokens) + " tok") : null);
        name.style.paddingLeft = 8 + span.depth * 16 + "px";
        const row = el("div", { cls: "wf-row", role: "button", tabindex: 0, "data-span": span.span_id,
          onclick: () => this.select(span.span_id),
          onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") this.select(span.span_id); } },
        name, el("div", { cls: "wf-track" }, bar, label));
        this.rows.set(span.span_id, row);
        return row;
      });
      return el("section", { cls: "waterfall" }, el("h2", {}, "Timeline"), axis, rows);
    }

    select(spanId) {
      this.selected = spanId;
      history.replaceState(null, "", "#/trace/" + encodeURIComponent(this.traceId) + "/" + encodeURIComponent(spanId));
      this.showSpan();
    }

    showSpan() {
      for (const [id, row] of this.rows) row.classList.toggle("selected", id === this.selected);
      const span = this.trace.spans.find((s) => s.span_id === this.selected) || this.trace.spans[0];
      this.detail.replaceChildren(...spanDetail(span));
    }

    refresh() {
      /* a trace is complete once listed; a span still arriving shows on the next visit */
    }
  }

  function fact(label, value) {
    return el("span", { cls: "fact" }, el("small", {}, label), el("b", {}, value));
  }

  function section(title, ...children) {
    return el("div", { cls: "panel" }, el("h3", {}, title), children);
  }

  function table(rows, cls) {
    return el("table", { cls: "kv " + (cls || "") }, el("tbody", {},
      rows.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, value)))));
  }

  function spanDetail(span) {
    const out = [];
    const model = span.request_model && span.response_model && span.request_model !== span.response_model
      ? `${span.request_model} → ${span.response_model}` : span.response_model || span.request_model;
    out.push(el("div", { cls: "span-head" },
      el("h2", {}, span.name),
      el("div", { cls: "facts" },
        fact("duration", duration(span.duration_ns)),
        span.kind ? fact("kind", span.kind) : null,
        span.status ? fact("status", span.status) : null,
        model ? fact("model", model) : null,
        span.service ? fact("app", span.service) : null)));
    if (span.error) {
      const e = span.error;
      out.push(el("div", { cls: "panel error-panel" }, el("h3", {}, "Error"),
        el("div", { cls: "error-line" },
          el("b", {}, e.type || "error"),
          e.http_status ? el("span", { cls: "http" }, "HTTP " + e.http_status) : null,
          e.status ? el("span", { cls: "chip" }, "status " + e.status) : null),
        e.message ? el("pre", { cls: "error-message" }, e.message) : null));
    }
    if (span.input.length || span.output.length) {
      out.push(section("Messages",
        el("div", { cls: "chat" },
          span.input.map((m) => message(m)),
          span.output.length ? el("div", { cls: "divider" }, "response") : null,
          span.output.map((m) => message(m)))));
    }
    if (span.tools.length) {
      out.push(section("Tools offered", span.tools.map((tool) => el("details", { cls: "tool-def" },
        el("summary", {}, el("code", {}, tool.name), tool.description ? " — " + tool.description : ""),
        tool.parameters ? el("pre", {}, tool.parameters) : null))));
    }
    if (span.entity_input !== null) out.push(section("Input", el("pre", { cls: "entity" }, span.entity_input)));
    if (span.entity_output !== null) out.push(section("Output", el("pre", { cls: "entity" }, span.entity_output)));
    if (span.params.length) out.push(section("Request parameters", table(span.params)));
    if (span.usage) {
      const u = span.usage;
      out.push(section("Usage and cost", el("div", { cls: "stats" },
        stat("input tokens", count(u.input_tokens)),
        stat("output tokens", count(u.output_tokens)),
        u.cached_tokens ? stat("cached tokens", count(u.cached_tokens)) : null,
        stat("total tokens", count(u.total_tokens)),
        stat("cost", costText(u), "cost"))));
    }
    if (span.stream) {
      const s = span.stream;
      out.push(section("Stream",
        el("div", { cls: "stats" },
          stat("time to first chunk", ms(s.time_to_first_chunk_ms)),
          stat("chunks", count(s.chunk_count)),
          stat("gap mean", ms(s.gap_mean_ms)),
          stat("gap max", ms(s.gap_max_ms)),
          s.completed === false ? stat("stream", "interrupted", "bad") : stat("stream", "completed")),
        s.chunks.length ? chunkChart(s.chunks, span.duration_ns) : null));
    }
    if (span.respan.length) out.push(section("Respan attributes", table(span.respan)));
    if (span.events.length) {
      out.push(section("Events", span.events.map((e) => el("div", { cls: "event" },
        el("h4", {}, e.name, e.time !== null && span.start !== null
          ? el("small", {}, " at +" + duration(e.time - span.start)) : null),
        table(e.attributes.map(([key, value]) => [key, key === "exception.stacktrace"
          ? el("pre", { cls: "stack" }, value) : value]))))));
    }
    out.push(el("details", { cls: "panel raw" },
      el("summary", {}, `All attributes (${span.attributes.length})`), table(span.attributes, "mono")));
    return out;
  }

  // A price, "unknown" set apart, and the calls left out of a sum said so: a total never hides what it lacks.
  function costText(x) {
    if (!x.cost_text) return "–";
    if (x.cost === null) return el("span", { cls: "unknown", title: unpricedNote(x) }, x.cost_text);
    return x.unpriced_calls ? [x.cost_text, el("small", { cls: "unknown" }, ` + ${x.unpriced_calls} unpriced`)]
      : x.cost_text;
  }

  function unpricedNote(x) {
    return x.unpriced_calls ? `${x.unpriced_calls} call(s) with no price in the price table` : null;
  }

  function stat(label, value, cls) {
    return el("div", { cls: "stat " + (cls || "") }, el("small", {}, label), el("b", {}, value));
  }

  function message(m) {
    const role = ["system", "user", "assistant", "tool"].includes(m.role) ? m.role : "other";
    return el("div", { cls: "msg role-" + role },
      el("div", { cls: "msg-role" }, m.role, m.finish_reason ? el("small", {}, "finish: " + m.finish_reason) : null),
      m.parts.length ? m.parts.map(part) : el("div", { cls: "msg-text empty" }, "(empty)"));
  }

  function part(p) {
    if (p.type === "text") return el("div", { cls: "msg-text" }, p.text);
    if (p.type === "tool_call") {
      return el("div", { cls: "tool-call" },
        el("div", { cls: "tool-head" }, el("span", { cls: "tool-icon" }, "ƒ"), el("code", { cls: "tool-name" }, p.name),
          p.id ? el("small", {}, p.id) : null),
        el("pre", { cls: "tool-args" }, p.arguments));
    }
    if (p.type === "tool_result") {
      return el("div", { cls: "tool-result" },
        el("div", { cls: "tool-head" }, "tool result", p.id ? el("small", {}, p.id) : null),
        el("pre", {}, p.text));
    }
    return el("div", { cls: "msg-other" }, el("small", {}, p.label), el("pre", {}, p.text));
  }

  function chunkChart(chunks, durationNs) {
    const width = 560, height = 120, pad = { l: 36, r: 10, t: 10, b: 22 };
    const end = Math.max(durationNs ? durationNs / 1e6 : 0, ...chunks.map((c) => c.offset_ms), 1);
    const biggest = Math.max(1, ...chunks.map((c) => c.size || 1));
    const x = (v) => pad.l + v / end * (width - pad.l - pad.r);
    const y = (v) => height - pad.b - v / biggest * (height - pad.t - pad.b);
    const bars = chunks.map((c) => svg("rect", {
      x: x(c.offset_ms) - 2, y: y(c.size || 1), width: 4, height: height - pad.b - y(c.size || 1), rx: 1,
      class: "chunk-bar" }, svg("title", {}, `chunk ${c.index ?? ""} at ${ms(c.offset_ms)}: ${c.size ?? "?"} chars`)));
    const ticks = [0, 0.5, 1].map((f) => svg("text", { x: x(end * f), y: height - 6, class: "axis-label",
      "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, ms(end * f)));
    return el("figure", { cls: "chart chunk-chart" },
      svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "chunk arrival times" },
        svg("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b, class: "axis" }),
        svg("text", { x: pad.l - 6, y: pad.t + 8, class: "axis-label", "text-anchor": "end" }, String(biggest)),
        bars, ticks),
      el("figcaption", {}, "Chunk arrivals since the request (height: characters)"));
  }

  // ---- overview --------------------------------------------------------------------------------------------

  class OverviewView {
    constructor(params) {
      this.range = params.get("range") ?? "7d";
      const range = el("select", { "aria-label": "time range", onchange: () => {
        this.range = range.value;
        history.replaceState(null, "", "#/overview?range=" + encodeURIComponent(this.range));
        this.load();
      } }, RANGES.map(([value, label]) => el("option", { value }, label)));
      range.value = this.range;
      this.content = el("div", { cls: "overview-body" }, el("div", { cls: "notice" }, "Loading…"));
      main.append(el("section", { cls: "overview" },
        el("div", { cls: "filters" }, el("h1", {}, "Overview"), range), this.content));
      this.load();
    }

    async load() {
      const seconds = RANGE_SECONDS[this.range];
      let data;
      try {
        data = await api("/api/overview", { since: seconds ? String(BigInt(Date.now() - seconds * 1000) * 1000000n) : "" });
      } catch (error) {
        this.content.replaceChildren(problem(error));
        return;
      }
      if (!data.calls) {
        this.content.replaceChildren(el("div", { cls: "notice" }, "No LLM calls in this time range."));
        return;
      }
      const lat = data.latency_ms, first = data.time_to_first_chunk_ms;
      this.content.replaceChildren(
        el("div", { cls: "stats cards" },
          stat("LLM calls", count(data.calls)),
          stat("errors", count(data.errors), data.errors ? "bad" : ""),
          stat("tokens in → out", `${compact(data.input_tokens)} → ${compact(data.output_tokens)}`),
          stat("cost", costText(data), "cost"),
          triple("latency", lat),
          first.p50 !== null ? triple("time to first chunk", first) : null),
        el("div", { cls: "charts" },
          chartPanel("Tokens over time", barChart(data.series, data.bucket_ns,
            [["input_tokens", "s-in", "input"], ["output_tokens", "s-out", "output"]], compact)),
          chartPanel("Cost over time", barChart(data.series, data.bucket_ns, [["cost", "s-cost", "cost"]], usd)),
          chartPanel("Calls over time", barChart(data.series, data.bucket_ns,
            [["ok", "s-calls", "succeeded"], ["errors", "s-err", "failed"]], compact))),
        section("Per model", modelTable(data.models)));
    }

    refresh() {
      this.load();
    }
  }

  function triple(label, values) {
    return el("div", { cls: "stat wide" }, el("small", {}, label), el("div", { cls: "triple" },
      ["p50", "p90", "p99"].map((p) => el("span", { "data-percentile": p }, el("small", {}, p), ms(values[p])))));
  }

  function chartPanel(title, chart) {
    return el("div", { cls: "panel chart-panel" }, el("h3", {}, title), chart);
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // A bucket's start: its date when the buckets are days; its time, with the date when the range crosses midnight
  // or is not today's.
  function bucketLabel(ns, bucketNs, withDate) {
    const date = new Date(ns / 1e6);
    const pad = (n) => String(n).padStart(2, "0");
    const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    if (bucketNs >= 86400e9) return day;
    const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    return withDate ? `${day.slice(5)} ${time}` : time;
  }

  function crossesDays(series) {
    if (!series.length) return false;
    const day = (b) => new Date(b.start / 1e6).toDateString();
    return day(series[0]) !== day(series[series.length - 1]) || day(series[0]) !== new Date().toDateString();
  }

  // Stacked bars, one per time bucket; keys name the series in the bucket ("ok" is calls minus errors).
  function barChart(series, bucketNs, keys, format) {
    const width = 520, height = 200, pad = { l: 66, r: 8, t: 12, b: 26 };
    const value = (b, key) => (key === "ok" ? b.calls - b.errors : b[key]) || 0;
    const totals = series.map((b) => keys.reduce((sum, [key]) => sum + value(b, key), 0));
    const top = niceMax(Math.max(...totals, 0));
    const slot = (width - pad.l - pad.r) / Math.max(1, series.length);
    const y = (v) => height - pad.b - v / top * (height - pad.t - pad.b);
    const grid = [0, 0.5, 1].map((f) => [
      svg("line", { x1: pad.l, x2: width - pad.r, y1: y(top * f), y2: y(top * f), class: f ? "grid" : "axis" }),
      svg("text", { x: pad.l - 6, y: y(top * f) + 4, class: "axis-label", "text-anchor": "end" }, format(top * f)),
    ]);
    const dated = crossesDays(series);
    const bars = series.map((b, i) => {
      let base = 0;
      const tip = bucketLabel(b.start, bucketNs, true) + ": " + keys.map(([key, , label]) => `${label} ${format(value(b, key))}`).join(", ");
      return svg("g", {}, svg("title", {}, tip), keys.map(([key, cls]) => {
        const v = value(b, key);
        const rect = svg("rect", { x: pad.l + i * slot + slot * 0.15, width: Math.max(1, slot * 0.7),
          y: y(base + v), height: Math.max(0, y(base) - y(base + v)), class: cls });
        base += v;
        return rect;
      }));
    });
    const every = Math.max(1, Math.ceil(series.length / 6));
    const labels = series.map((b, i) => (i % every ? null : svg("text", { x: pad.l + (i + 0.5) * slot, y: height - 8,
      class: "axis-label", "text-anchor": "middle" }, bucketLabel(b.start, bucketNs, dated))));
    const legend = el("div", { cls: "legend" }, keys.map(([, cls, label]) => el("span", {}, el("i", { cls }), label)));
    return el("figure", { cls: "chart" },
      svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" }, grid, bars, labels), keys.length > 1 ? legend : null);
  }

  function modelTable(models) {
    const most = Math.max(1, ...models.map((m) => m.calls));
    return el("table", { cls: "models" },
      el("thead", {}, el("tr", {}, ["Model", "Calls", "Errors", "Tokens in → out", "Cost", "p50", "p90", "p99"].map(
        (label, i) => el("th", { cls: i ? "num" : null }, label)))),
      el("tbody", {}, models.map((m) => {
        const share = el("i", { cls: "share" });
        share.style.width = (m.calls / most * 100) + "%";
        return el("tr", {},
          el("td", {}, el("code", {}, m.model),
            m.answered_by.length ? el("small", { cls: "answered" }, " → " + m.answered_by.join(", ")) : null,
            el("div", { cls: "share-track" }, share)),
          el("td", { cls: "num" }, count(m.calls)),
          el("td", { cls: "num" + (m.errors ? " bad" : "") }, count(m.errors)),
          el("td", { cls: "num" }, `${count(m.input_tokens)} → ${count(m.output_tokens)}`),
          el("td", { cls: "num", title: unpricedNote(m) }, costText(m)),
          el("td", { cls: "num" }, ms(m.latency_ms.p50)),
          el("td", { cls: "num" }, ms(m.latency_ms.p90)),
          el("td", { cls: "num" }, ms(m.latency_ms.p99)));
      })));
  }

  window.addEventListener("hashchange", route);
  route();
  poll();
  setInterval(poll, POLL_MS);
})();
