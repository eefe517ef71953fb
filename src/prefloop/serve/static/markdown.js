// prefloop Markdown: the subset of CommonMark + GFM that model answers are written in.
//
// parse(text) turns text into a plain tree (JSON-able, so tests can inspect it); render(tree)
// builds DOM nodes from it with createElement and textContent only. Nothing from the text is
// ever parsed as HTML: a tag in the text stays visible text. Links keep only http(s) and mailto
// URLs; any other link is shown as the text it was written as.
//
// Blocks: paragraphs (each line break kept), ATX headings, fenced code (``` or ~~~), block
// quotes, bullet and ordered lists (nested by indentation), GFM tables, rules.
// Inline: code spans, *em*/_em_, **strong**/__strong__, ~~strike~~, [links](url), <url> and
// bare http(s) URLs, backslash escapes; images become links (the page loads nothing external).
"use strict";

const PrefloopMarkdown = (() => {
  const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^ {0,3}> ?(.*)$/;
  const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
  const DELIMITER_ROW = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
  const BLANK = /^[ \t]*$/;
  const SAFE_SCHEMES = ["http", "https", "mailto"];
  const PUNCTUATION = /[!-/:-@[-`{-~]/;

  // ---- blocks ----

  const indentOf = (line) => line.length - line.trimStart().length;

  function startsTable(lines, i) {
    return lines[i].includes("|") && i + 1 < lines.length && DELIMITER_ROW.test(lines[i + 1])
      && splitRow(lines[i]).length === splitRow(lines[i + 1]).length;
  }

  function startsBlock(lines, i) {
    const line = lines[i];
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
      || ITEM.test(line) || startsTable(lines, i);
  }

  function parseBlocks(lines) {
    const blocks = [];
    let i = 0;
    while (i < lines.length) {
      if (BLANK.test(lines[i])) { i++; continue; }
      const [block, next] = parseBlock(lines, i);
      blocks.push(block);
      i = next;
    }
    return blocks;
  }

  function parseBlock(lines, i) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) return fencedCode(lines, i, m);
    if ((m = HEADING.exec(line))) {
      return [{ type: "heading", level: m[1].length, children: parseInline(m[2] || "") }, i + 1];
    }
    if (RULE.test(line)) return [{ type: "rule" }, i + 1];
    if (QUOTE.test(line)) return quote(lines, i);
    if ((m = ITEM.exec(line))) return list(lines, i, m);
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

  function quote(lines, i) {
    const inner = [];
    let m;
    for (; i < lines.length && (m = QUOTE.exec(lines[i])); i++) inner.push(m[1]);
    return [{ type: "quote", children: parseBlocks(inner) }, i];
  }

  function markerKind(marker) {
    return /\d/.test(marker) ? marker.slice(-1) : marker;
  }

  function list(lines, i, first) {
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
      items.push(parseBlocks(body));
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
    return [{ type: "table", align, head: head.map(parseInline), rows }, i];
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

  // The end of the code span opened by the backtick run at i, or -1.
  function codeSpanEnd(s, i) {
    const n = runLength(s, i);
    for (let j = s.indexOf("`", i + n); j !== -1; j = s.indexOf("`", j + runLength(s, j))) {
      if (runLength(s, j) === n) return j;
    }
    return -1;
  }

  // Where the k delimiters closing an emphasis of `ch` opened before `from` start, or -1.
  function closer(s, from, ch, k) {
    for (let j = from; j < s.length; j++) {
      if (s[j] === "\\") { j++; continue; }
      if (s[j] === "`") {
        const end = codeSpanEnd(s, j);
        if (end !== -1) { j = end + runLength(s, end) - 1; continue; }
        j += runLength(s, j) - 1;
        continue;
      }
      if (s[j] !== ch) continue;
      const n = runLength(s, j);
      const after = s[j + n];
      if (n >= k && j > from && !isSpace(s[j - 1]) && !(ch === "_" && isWordChar(after))) {
        return j + n - k;
      }
      j += n - 1;
    }
    return -1;
  }

  // [label](destination "title") starting at i: {label, href, end} or null.
  function linkAt(s, i) {
    let depth = 0, j = i;
    for (; j < s.length; j++) {
      if (s[j] === "\\") j++;
      else if (s[j] === "[") depth++;
      else if (s[j] === "]" && --depth === 0) break;
    }
    if (j >= s.length || s[j + 1] !== "(") return null;
    const m = /^\(\s*(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*))(?:\s+("[^"]*"|'[^']*'))?\s*\)/
      .exec(s.slice(j + 1));
    if (!m) return null;
    const href = (m[1] ?? m[2]).replace(/\\(.)/g, "$1");
    return { label: s.slice(i + 1, j), href, end: j + 1 + m[0].length };
  }

  function parseInline(s) {
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
        const n = runLength(s, i), end = codeSpanEnd(s, i);
        if (end === -1) { text += s.slice(i, i + n); i += n; continue; }
        let code = s.slice(i + n, end).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        push({ type: "code", text: code });
        i = end + n;
        continue;
      }
      if (ch === "[" || (ch === "!" && s[i + 1] === "[")) {
        const image = ch === "!";
        const link = linkAt(s, image ? i + 1 : i);
        if (link) {
          const href = safeHref(link.href);
          if (href === null) text += s.slice(i, link.end);
          else if (image) push({ type: "link", href, children: [{ type: "text", text: `image: ${link.label}` }] });
          else push({ type: "link", href, children: parseInline(link.label) });
          i = link.end;
          continue;
        }
      }
      if (ch === "<") {
        const m = /^<([a-z][a-z0-9+.-]*:[^\s<>]*)>/i.exec(s.slice(i));
        if (m && safeHref(m[1])) {
          push({ type: "link", href: m[1], children: [{ type: "text", text: m[1] }] });
          i += m[0].length;
          continue;
        }
      }
      if (ch === "h" && !isWordChar(s[i - 1])) {
        const m = /^https?:\/\/[^\s<>]*[^\s<>.,:;"')\]!?*_~]/.exec(s.slice(i));
        if (m) {
          push({ type: "link", href: m[0], children: [{ type: "text", text: m[0] }] });
          i += m[0].length;
          continue;
        }
      }
      if (ch === "*" || ch === "_" || ch === "~") {
        const n = runLength(s, i);
        const opens = !isSpace(s[i + n]) && !(ch === "_" && isWordChar(s[i - 1]));
        const sizes = ch === "~" ? (n >= 2 ? [2] : []) : [3, 2, 1].filter((k) => k <= n);
        const k = opens ? sizes.find((size) => closer(s, i + n, ch, size) !== -1) : undefined;
        if (k === undefined) { text += s.slice(i, i + n); i += n; continue; }
        const end = closer(s, i + n, ch, k);
        text += ch.repeat(n - k);
        const inner = parseInline(s.slice(i + n, end));
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
