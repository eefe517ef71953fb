// prefloop Markdown: the subset of CommonMark + GFM that model answers are written in.
//
// parse(text) turns text into a plain tree (JSON-able, so tests can inspect it); render(tree)
// builds DOM nodes from it with createElement and textContent only. Nothing from the text is
// ever parsed as HTML: a tag in the text stays visible text. Links keep only http(s) and mailto
// URLs; any other link is shown as the text it was written as.
//
// Every pattern is matched in time linear in the line: no regular expression here may
// backtrack quadratically (a long line of spaces or dashes), and unmatched delimiters are
// scanned once per text. Nesting deeper than MAX_NESTING is left as text.
//
// Blocks: paragraphs (each line break kept), ATX headings, fenced code (``` or ~~~), block
// quotes, bullet and ordered lists (nested by indentation), GFM tables, rules.
// Inline: code spans, *em*/_em_, **strong**/__strong__, ~~strike~~, [links](url), <url> and
// bare http(s) URLs, backslash escapes; images become links (the page loads nothing external).
"use strict";

const PrefloopMarkdown = (() => {
  const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t](.*))?$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^ {0,3}> ?(.*)$/;
  const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
  const DELIMITER_CELL = /^:?-+:?$/;
  const BLANK = /^[ \t]*$/;
  const SAFE_SCHEMES = ["http", "https", "mailto"];
  const PUNCTUATION = /[!-/:-@[-`{-~]/;
  const MAX_NESTING = 16; // deeper quotes, lists and emphasis are shown as text

  // ---- blocks ----

  const indentOf = (line) => line.length - line.trimStart().length;

  function startsTable(lines, i) {
    if (!lines[i].includes("|") || i + 1 >= lines.length || !lines[i + 1].includes("-")) return false;
    const delimiters = splitRow(lines[i + 1]);
    return delimiters.every((cell) => DELIMITER_CELL.test(cell))
      && splitRow(lines[i]).length === delimiters.length;
  }

  // A heading's text without its optional closing run of #s.
  function headingText(text) {
    text = text.trim();
    let end = text.length;
    while (end > 0 && text[end - 1] === "#") end--;
    return end === 0 || text[end - 1] === " " || text[end - 1] === "\t" ? text.slice(0, end).trimEnd() : text;
  }

  function startsBlock(lines, i) {
    const line = lines[i];
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
      || ITEM.test(line) || startsTable(lines, i);
  }

  function parseBlocks(lines, depth = 0) {
    const blocks = [];
    let i = 0;
    while (i < lines.length) {
      if (BLANK.test(lines[i])) { i++; continue; }
      const [block, next] = parseBlock(lines, i, depth);
      blocks.push(block);
      i = next;
    }
    return blocks;
  }

  function parseBlock(lines, i, depth) {
    const line = lines[i];
    const nested = depth < MAX_NESTING;
    let m;
    if ((m = FENCE.exec(line))) return fencedCode(lines, i, m);
    if ((m = HEADING.exec(line))) {
      const children = parseInline(headingText(m[2] || ""));
      return [{ type: "heading", level: m[1].length, children }, i + 1];
    }
    if (RULE.test(line)) return [{ type: "rule" }, i + 1];
    if (nested && QUOTE.test(line)) return quote(lines, i, depth);
    if (nested && (m = ITEM.exec(line))) return list(lines, i, m, depth);
    if (startsTable(lines, i)) return table(lines, i);
    return paragraph(lines, i);
  }

  function fencedCode(lines, i, open) {
    const [, indent, fence, lang] = open;
    const closing = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}[ \\t]*$`);
    const body = [];
    let j = i + 1;
    for (; j < lines.length && !closing.test(lines[j]); j++) {
      const strip = Math.min(indent.length, indentOf(lines[j]));
      body.push(lines[j].slice(strip));
    }
    return [{ type: "code", lang, text: body.join("\n") }, j + 1];
  }

  function quote(lines, i, depth) {
    const inner = [];
    let m;
    for (; i < lines.length && (m = QUOTE.exec(lines[i])); i++) inner.push(m[1]);
    return [{ type: "quote", children: parseBlocks(inner, depth + 1) }, i];
  }

  function markerKind(marker) {
    return /\d/.test(marker) ? marker.slice(-1) : marker;
  }

  function list(lines, i, first, depth) {
    const kind = markerKind(first[2]);
    const ordered = kind === "." || kind === ")";
    const items = [];
    let m;
    while (i < lines.length && !RULE.test(lines[i]) && (m = ITEM.exec(lines[i]))
           && markerKind(m[2]) === kind) {
      const gap = m[3] ? m[3].length : 1;
      const width = m[1].length + m[2].length + (gap > 4 ? 1 : gap);
      const body = [gap > 4 ? m[3].slice(1) + m[4] : m[4] || ""];
      i++;
      while (i < lines.length) {
        if (BLANK.test(lines[i])) {
          let j = i;
          while (j < lines.length && BLANK.test(lines[j])) j++;
          if (j === lines.length || indentOf(lines[j]) < width) break;
          for (; i < j; i++) body.push("");
        } else if (indentOf(lines[i]) >= width) {
          body.push(lines[i].slice(width));
          i++;
        } else if (body[body.length - 1] !== "" && !startsBlock(lines, i)) {
          body.push(lines[i].trim()); // a lazy continuation of the item's paragraph
          i++;
        } else break;
      }
      items.push(parseBlocks(body, depth + 1));
      let j = i;
      while (j < lines.length && BLANK.test(lines[j])) j++;
      if (j < lines.length && (m = ITEM.exec(lines[j])) && markerKind(m[2]) === kind) i = j;
    }
    const start = ordered ? parseInt(first[2], 10) : null;
    return [{ type: "list", ordered, start, items }, i];
  }

  function splitRow(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    const cells = [];
    let cell = "";
    for (let k = 0; k < row.length; k++) {
      if (row[k] === "\\" && row[k + 1] === "|") { cell += "|"; k++; }
      else if (row[k] === "|") { cells.push(cell.trim()); cell = ""; }
      else cell += row[k];
    }
    cells.push(cell.trim());
    return cells;
  }

  function table(lines, i) {
    const head = splitRow(lines[i]);
    const align = splitRow(lines[i + 1]).map((c) => {
      const left = c.startsWith(":"), right = c.endsWith(":");
      return left && right ? "center" : right ? "right" : left ? "left" : null;
    });
    const rows = [];
    for (i += 2; i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines, i); i++) {
      const cells = splitRow(lines[i]);
      rows.push(head.map((_, k) => parseInline(cells[k] || "")));
    }
    return [{ type: "table", align, head: head.map((cell) => parseInline(cell)), rows }, i];
  }

  function paragraph(lines, i) {
    const text = [lines[i].trim()];
    for (i++; i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines, i); i++) {
      text.push(lines[i].trim());
    }
    return [{ type: "paragraph", children: parseInline(text.join("\n")) }, i];
  }

  // ---- inline ----

  const isSpace = (ch) => ch === undefined || /\s/.test(ch);
  const isWordChar = (ch) => ch !== undefined && /[\p{L}\p{N}]/u.test(ch);

  function runLength(s, i) {
    let j = i;
    while (s[j] === s[i]) j++;
    return j - i;
  }

  function safeHref(url) {
    if (/[\u0000-\u0020\u007f]/.test(url)) return null; // browsers drop these inside a scheme
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url);
    return scheme && SAFE_SCHEMES.includes(scheme[1].toLowerCase()) ? url : null;
  }

  // For every "[" the index of its matching "]" (backslash escapes respected).
  function matchBrackets(s) {
    const match = new Map(), open = [];
    for (let j = 0; j < s.length; j++) {
      if (s[j] === "\\") j++;
      else if (s[j] === "[") open.push(j);
      else if (s[j] === "]" && open.length) match.set(open.pop(), j);
    }
    return match;
  }

  // A search that failed from `from` fails from any later point too: remember it, so that a
  // text full of unmatched delimiters is scanned once, not once per delimiter.
  function cached(failed, key, from, search) {
    if (from >= (failed[key] ?? Infinity)) return -1;
    const found = search();
    if (found === -1) failed[key] = from;
    return found;
  }

  // The end of the code span opened by the backtick run at i, or -1.
  function codeSpanEnd(ctx, i) {
    const { s } = ctx, n = runLength(s, i);
    return cached(ctx.failed, "`" + n, i, () => {
      for (let j = s.indexOf("`", i + n); j !== -1; j = s.indexOf("`", j + runLength(s, j))) {
        if (runLength(s, j) === n) return j;
      }
      return -1;
    });
  }

  // Where the k delimiters closing an emphasis of `ch` opened before `from` start, or -1.
  function closer(ctx, from, ch, k) {
    const { s } = ctx;
    return cached(ctx.failed, ch + k, from, () => {
      for (let j = from; j < s.length; j++) {
        if (s[j] === "\\") { j++; continue; }
        if (s[j] === "`") { // skip a code span, or an unmatched backtick run
          const end = codeSpanEnd(ctx, j), last = end === -1 ? j : end;
          j = last + runLength(s, last) - 1;
          continue;
        }
        if (s[j] !== ch) continue;
        const n = runLength(s, j);
        if (n >= k && j > from && !isSpace(s[j - 1]) && !(ch === "_" && isWordChar(s[j + n]))) {
          return j + n - k;
        }
        j += n - 1;
      }
      return -1;
    });
  }

  const DESTINATION = /\(\s*(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*))(?:\s+("[^"]*"|'[^']*'))?\s*\)/y;
  const AUTOLINK = /<([a-z][a-z0-9+.-]*:[^\s<>]*)>/iy;
  const BARE_URL = /https?:\/\/[^\s<>]*[^\s<>.,:;"')\]!?*_~]/y;

  // `re` (sticky) matched at i, without copying the rest of the text.
  function matchAt(re, s, i) {
    re.lastIndex = i;
    return re.exec(s);
  }

  // [label](destination "title") starting at i: {label, href, end} or null.
  function linkAt(ctx, i) {
    const close = ctx.brackets.get(i);
    if (close === undefined || ctx.s[close + 1] !== "(") return null;
    const m = matchAt(DESTINATION, ctx.s, close + 1);
    if (!m) return null;
    const href = (m[1] ?? m[2]).replace(/\\(.)/g, "$1");
    return { label: ctx.s.slice(i + 1, close), href, end: close + 1 + m[0].length };
  }

  function parseInline(s, depth = 0) {
    const ctx = { s, brackets: matchBrackets(s), failed: {} };
    const nested = depth < MAX_NESTING; // deeper emphasis and link labels stay text
    const out = [];
    let text = "";
    const flush = () => { if (text) out.push({ type: "text", text }); text = ""; };
    const push = (node) => { flush(); out.push(node); };
    let i = 0;
    while (i < s.length) {
      const ch = s[i];
      if (ch === "\\" && PUNCTUATION.test(s[i + 1] || "")) { text += s[i + 1]; i += 2; continue; }
      if (ch === "\n") { push({ type: "break" }); i++; continue; }
      if (ch === "`") {
        const n = runLength(s, i), end = codeSpanEnd(ctx, i);
        if (end === -1) { text += s.slice(i, i + n); i += n; continue; }
        let code = s.slice(i + n, end).replace(/\n/g, " ");
        if (code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        push({ type: "code", text: code });
        i = end + n;
        continue;
      }
      if (nested && (ch === "[" || (ch === "!" && s[i + 1] === "["))) {
        const image = ch === "!";
        const link = linkAt(ctx, image ? i + 1 : i);
        if (link) {
          const href = safeHref(link.href);
          if (href === null) text += s.slice(i, link.end);
          else if (image) push({ type: "link", href, children: [{ type: "text", text: `image: ${link.label}` }] });
          else push({ type: "link", href, children: parseInline(link.label, depth + 1) });
          i = link.end;
          continue;
        }
      }
      let m;
      if (ch === "<" && (m = matchAt(AUTOLINK, s, i)) && safeHref(m[1])) {
        push({ type: "link", href: m[1], children: [{ type: "text", text: m[1] }] });
        i += m[0].length;
        continue;
      }
      if (ch === "h" && !isWordChar(s[i - 1]) && (m = matchAt(BARE_URL, s, i))) {
        push({ type: "link", href: m[0], children: [{ type: "text", text: m[0] }] });
        i += m[0].length;
        continue;
      }
      if (ch === "*" || ch === "_" || ch === "~") {
        const n = runLength(s, i);
        const opens = nested && !isSpace(s[i + n]) && !(ch === "_" && isWordChar(s[i - 1]));
        const sizes = ch === "~" ? (n >= 2 ? [2] : []) : [3, 2, 1].filter((k) => k <= n);
        let k, end = -1;
        for (const size of opens ? sizes : []) {
          if ((end = closer(ctx, i + n, ch, size)) !== -1) { k = size; break; }
        }
        if (end === -1) { text += s.slice(i, i + n); i += n; continue; }
        text += ch.repeat(n - k);
        const inner = parseInline(s.slice(i + n, end), depth + 1);
        const type = ch === "~" ? "del" : k === 1 ? "em" : "strong";
        push({ type, children: k === 3 ? [{ type: "em", children: inner }] : inner });
        i = end + k;
        continue;
      }
      text += ch;
      i++;
    }
    flush();
    return out;
  }

  function parse(source) {
    const lines = String(source).replace(/\r\n?/g, "\n").split("\n")
      .map((line) => line.replace(/^[ \t]+/, (lead) => lead.replace(/\t/g, "    ")));
    return parseBlocks(lines);
  }

  // ---- DOM ----

  function node(tag, children, build) {
    const element = document.createElement(tag);
    for (const child of children) element.append(build(child));
    return element;
  }

  function inline(n) {
    switch (n.type) {
      case "text": return document.createTextNode(n.text);
      case "break": return document.createElement("br");
      case "code": { const c = document.createElement("code"); c.textContent = n.text; return c; }
      case "link": {
        const a = node("a", n.children, inline);
        a.setAttribute("href", n.href);
        a.setAttribute("rel", "noopener noreferrer nofollow");
        a.setAttribute("target", "_blank");
        return a;
      }
      default: return node(n.type, n.children, inline); // em, strong, del
    }
  }

  function cells(tag, row, align) {
    const tr = document.createElement("tr");
    row.forEach((content, k) => {
      const cell = node(tag, content, inline);
      if (align[k]) cell.className = `align-${align[k]}`;
      tr.append(cell);
    });
    return tr;
  }

  function block(n) {
    switch (n.type) {
      case "paragraph": return node("p", n.children, inline);
      case "heading": return node(`h${n.level}`, n.children, inline);
      case "rule": return document.createElement("hr");
      case "quote": return node("blockquote", n.children, block);
      case "code": {
        const pre = document.createElement("pre"), code = document.createElement("code");
        if (n.lang) pre.dataset.lang = n.lang;
        code.textContent = n.text;
        pre.append(code);
        return pre;
      }
      case "list": {
        const l = document.createElement(n.ordered ? "ol" : "ul");
        if (n.ordered && n.start !== 1) l.setAttribute("start", String(n.start));
        for (const item of n.items) l.append(node("li", item, block));
        return l;
      }
      case "table": {
        const wrap = document.createElement("div"), t = document.createElement("table");
        const head = document.createElement("thead"), body = document.createElement("tbody");
        wrap.className = "table-wrap";
        head.append(cells("th", n.head, n.align));
        for (const row of n.rows) body.append(cells("td", row, n.align));
        t.append(head, body);
        wrap.append(t);
        return wrap;
      }
      default: throw new Error(`unknown block ${n.type}`);
    }
  }

  function render(tree) {
    const fragment = document.createDocumentFragment();
    for (const n of tree) fragment.append(block(n));
    return fragment;
  }

  return { parse, render };
})();
