"""The HTML page of the dev server (``GET /``): upload with progress, file list, token.

Plain HTML, CSS and vanilla JavaScript in one response: no CDN, no build step, nothing to
install. With JavaScript, files dropped on the zone or picked in the file input upload one
XHR each to ``POST /upload`` with a live progress bar, and the list refreshes from
``GET /?format=json``. Without JavaScript the form still posts to ``/upload?via=form``,
which redirects back here. The script is inline and allowed by its hash in
:data:`CONTENT_SECURITY_POLICY`, so the policy needs no ``'unsafe-inline'`` for scripts.

This module must not import anything from :mod:`wxtransfer`: ``_server`` imports it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Sequence
from typing import Final, TypedDict

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "FileEntry",
    "human_size",
    "render_error",
    "render_page",
]


class FileEntry(TypedDict):
    """One stored file, as listed by ``GET /`` (``sha256`` is None when not recorded)."""

    name: str
    filename: str
    size: int
    mtime: float
    url: str
    sha256: str | None


_STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 64rem;
  padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
[hidden] { display: none !important; }
.drop { border: 2px dashed #9aa4b2; border-radius: 10px; padding: 1.25rem; text-align: center;
  background: #f6f8fa; transition: background .15s, border-color .15s; }
.drop.over { border-color: #0969da; background: #ddf4ff; }
.drop p { margin: 0 0 .6rem; }
.hint { color: #59636e; font-size: 88%; }
#uploads { list-style: none; padding: 0; margin: 1rem 0 0; }
.upload { border: 1px solid #d1d9e0; border-radius: 8px; padding: .5rem .75rem;
  margin-bottom: .5rem; }
.upload .line { display: flex; justify-content: space-between; gap: 1rem; font-size: 90%; }
.upload .name { font-weight: 600; overflow-wrap: anywhere; }
.upload .bytes { color: #59636e; font-variant-numeric: tabular-nums; }
.upload .pct { font-variant-numeric: tabular-nums; }
.bar { height: .6rem; background: #e6eaef; border-radius: 4px; overflow: hidden;
  margin: .35rem 0; }
.fill { height: 100%; width: 0; background: #0969da; transition: width .15s linear; }
.upload.done .fill { background: #1a7f37; }
.upload.done .status { color: #1a7f37; }
.upload.failed .fill { background: #cf222e; }
.upload.failed .status { color: #cf222e; font-weight: 600; }
.upload.waiting .status { color: #9a6700; font-weight: 600; }
#token-form { border: 1px solid #d4a72c; background: #fff8c5; border-radius: 8px;
  padding: .75rem; margin-bottom: 1rem; }
#token-form input { font: inherit; padding: .2rem .4rem; min-width: 16rem; }
#token-note { display: block; margin-bottom: .4rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d1d9e0;
  vertical-align: top; }
td.size, th.size { text-align: right; white-space: nowrap; }
td.stored { color: #59636e; font-size: 85%; overflow-wrap: anywhere; }
td.sha code { font-size: 75%; word-break: break-all; color: #59636e; }
td.when { white-space: nowrap; font-size: 90%; }
.note { color: #59636e; }
.error { color: #cf222e; }
"""

# Every string shown to the user goes through textContent: file names cannot inject HTML.
_SCRIPT: Final = """
"use strict";
(() => {
  const KEY = "wxtransfer.token";
  const needsToken = document.body.dataset.token === "required";
  const byId = (id) => document.getElementById(id);
  const tokenForm = byId("token-form");
  const tokenInput = byId("token");
  const tokenNote = byId("token-note");
  const picker = byId("picker");
  const drop = byId("drop");
  const uploads = byId("uploads");
  const table = byId("files");
  const empty = byId("empty");
  const listNote = byId("list-note");
  const waiting = []; // uploads refused with 401, sent again once a token is given
  let listSeq = 0;

  const getToken = () => sessionStorage.getItem(KEY) || "";
  const withAuth = (headers) => {
    const token = getToken();
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  };

  function humanSize(n) {
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(1) + " " + units[unit];
  }

  function when(mtime) {
    const d = new Date(mtime * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function askToken(message) {
    tokenNote.textContent = message;
    tokenForm.hidden = false;
    tokenInput.focus();
  }

  function tokenRefused() {
    const had = getToken() !== "";
    sessionStorage.removeItem(KEY);
    askToken(had ? "The token was not accepted (HTTP 401). Enter it again."
                 : "This server needs a token (wxtransfer serve --token).");
  }

  function errorText(status, body) {
    let detail = "";
    try {
      const data = JSON.parse(body);
      if (data && typeof data.error === "string") detail = data.error;
    } catch (e) {
      detail = "";
    }
    const what = {400: "Rejected", 413: "Too large", 415: "Rejected"}[status] || "Failed";
    return what + " (HTTP " + status + ")" + (detail ? ": " + detail : "");
  }

  function cell(className, ...children) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.append(...children);
    return td;
  }

  function row(f) {
    const tr = document.createElement("tr");
    tr.dataset.name = f.name;
    tr.dataset.size = String(f.size);
    tr.dataset.sha256 = f.sha256 || "";
    const link = document.createElement("a");
    link.className = "file";
    link.href = f.url;
    link.textContent = f.filename;
    const size = cell("size", humanSize(f.size));
    size.title = f.size + " bytes";
    const code = document.createElement("code");
    code.textContent = f.sha256 || "not recorded";
    const time = document.createElement("time");
    time.textContent = when(f.mtime);
    tr.append(cell("", link), cell("stored", f.name), size, cell("sha", code),
              cell("when", time));
    return tr;
  }

  function render(files) {
    table.tBodies[0].replaceChildren(...files.map(row));
    table.hidden = files.length === 0;
    empty.hidden = files.length !== 0;
    listNote.hidden = true;
  }

  async function refresh() {
    const seq = ++listSeq;
    let response;
    try {
      response = await fetch("/?format=json", {
        headers: withAuth({Accept: "application/json"}), cache: "no-store",
      });
    } catch (e) {
      response = null;
    }
    if (seq !== listSeq) return; // a newer refresh is on its way
    if (response && response.status === 401) {
      tokenRefused();
      listNote.textContent = "Enter the token to see the files.";
      listNote.hidden = false;
      return;
    }
    if (!response || !response.ok) {
      listNote.textContent = "Could not load the file list" +
        (response ? " (HTTP " + response.status + ")." : " (network error).");
      listNote.hidden = false;
      return;
    }
    const data = await response.json();
    if (seq === listSeq) render(data.files);
  }

  function show(item, fraction) {
    const pct = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
    const size = item.file.size;
    const sent = Math.min(size, Math.round(fraction * size));
    item.fill.style.width = pct + "%";
    item.bar.setAttribute("aria-valuenow", String(pct));
    item.pct.textContent = pct + " %";
    item.bytes.textContent = humanSize(sent) + " of " + humanSize(size);
    item.bytes.title = sent + " of " + size + " bytes";
  }

  function finish(item, state, message) {
    item.li.classList.remove("done", "failed", "waiting");
    if (state) item.li.classList.add(state);
    item.status.textContent = message;
  }

  function send(item) {
    finish(item, "", "Uploading…");
    show(item, 0);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/upload");
    try {
      for (const [key, value] of Object.entries(withAuth({Accept: "application/json"}))) {
        xhr.setRequestHeader(key, value);
      }
    } catch (e) {
      sessionStorage.removeItem(KEY);
      finish(item, "waiting", "The token has characters a header cannot carry.");
      waiting.push(item);
      askToken("Enter the token again (plain ASCII).");
      return;
    }
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) show(item, event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        let stored = null;
        try {
          stored = JSON.parse(xhr.responseText).files[0];
        } catch (e) {
          stored = null;
        }
        show(item, 1);
        finish(item, "done", stored ? "Stored as " + stored.name : "Stored");
        refresh();
      } else if (xhr.status === 401) {
        finish(item, "waiting", "Waiting for the token (HTTP 401); it is sent again after.");
        waiting.push(item);
        tokenRefused();
      } else {
        finish(item, "failed", errorText(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => {
      finish(item, "failed", "Network error: the connection failed before the server answered.");
    });
    xhr.addEventListener("abort", () => finish(item, "failed", "Aborted."));
    const form = new FormData();
    form.append("file", item.file, item.file.name);
    xhr.send(form);
  }

  function add(file) {
    const li = document.createElement("li");
    li.className = "upload";
    li.innerHTML =
      '<div class="line"><span class="name"></span><span class="pct"></span></div>' +
      '<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="fill"></div></div>' +
      '<div class="line"><span class="bytes"></span><span class="status"></span></div>';
    const q = (selector) => li.querySelector(selector);
    const item = {
      file, li, bar: q(".bar"), fill: q(".fill"), pct: q(".pct"),
      bytes: q(".bytes"), status: q(".status"),
    };
    q(".name").textContent = file.name;
    li.dataset.filename = file.name;
    uploads.append(li);
    send(item);
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) {
      tokenNote.textContent = "Enter the token the server was started with.";
      return;
    }
    sessionStorage.setItem(KEY, token);
    tokenInput.value = "";
    tokenForm.hidden = true;
    refresh();
    waiting.splice(0).forEach(send);
  });

  picker.addEventListener("change", () => {
    const files = Array.from(picker.files);
    picker.value = "";
    files.forEach(add);
  });
  byId("upload-form").addEventListener("submit", (event) => event.preventDefault());
  byId("send").hidden = true;

  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", (event) => {
    if (!drop.contains(event.relatedTarget)) drop.classList.remove("over");
  });
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    Array.from(event.dataTransfer.files).forEach(add);
  });
  // A file dropped next to the zone must not replace the page with the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // A plain link cannot carry the Authorization header: with a token, download through
  // fetch and hand the browser the bytes under the original name.
  table.addEventListener("click", async (event) => {
    const link = event.target.closest("a.file");
    if (!link || !needsToken) return;
    event.preventDefault();
    const response = await fetch(link.href, {headers: withAuth({}), cache: "no-store"});
    if (response.status === 401) {
      tokenRefused();
      return;
    }
    if (!response.ok) {
      listNote.textContent = "Download failed (HTTP " + response.status + ").";
      listNote.hidden = false;
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = link.textContent;
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  });

  if (needsToken) {
    if (getToken()) refresh();
    else askToken("This server needs a token (wxtransfer serve --token). " +
                  "It is kept for this tab only (sessionStorage).");
  }
})();
"""

_SCRIPT_HASH: Final = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode()

#: The page's policy: its own inline style and (by hash) script, requests to this origin.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wxtransfer dev server</title>
<style>@STYLE@</style>
</head>
<body data-token="@TOKEN@">
<h1>wxtransfer dev server</h1>
<form id="token-form" hidden>
<label><span id="token-note"></span>
Token <input id="token" type="password" autocomplete="off" spellcheck="false"></label>
<button type="submit">Use token</button>
</form>
<form id="upload-form" method="post" action="/upload?via=form" enctype="multipart/form-data">
<div id="drop" class="drop">
<p>Drop files here, or pick some:</p>
<input id="picker" type="file" name="file" multiple>
<button id="send" type="submit">Upload</button>
<p class="hint">@HINT@</p>
</div>
</form>
<ul id="uploads"></ul>
<h2>Files</h2>
<p id="list-note" class="note"@NOTE_HIDDEN@>@NOTE@</p>
<p id="empty"@EMPTY_HIDDEN@>No files yet.</p>
<table id="files"@TABLE_HIDDEN@><thead><tr><th>File</th><th>Stored as</th>
<th class="size">Size</th><th>SHA-256</th><th>Modified</th></tr></thead>
<tbody>
@ROWS@
</tbody></table>
<script>@SCRIPT@</script>
</body>
</html>
"""

_ERROR_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Upload failed - wxtransfer dev server</title>
<style>@STYLE@</style>
</head>
<body>
<h1>wxtransfer dev server</h1>
<p class="error">Upload failed (HTTP @STATUS@): @MESSAGE@</p>
<p><a href="/">Back to the files</a></p>
</body>
</html>
"""


def human_size(size: int) -> str:
    """``size`` bytes as ``123 B`` or ``4.5 MiB`` (the script's humanSize does the same)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _row(e: FileEntry) -> str:
    """One table row, the same markup the script's ``row()`` builds."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["mtime"]))
    sha = e["sha256"] or ""
    return (
        f'<tr data-name="{html.escape(e["name"])}" data-size="{e["size"]}" '
        f'data-sha256="{sha}">'
        f'<td><a class="file" href="{html.escape(e["url"])}">'
        f"{html.escape(e['filename'])}</a></td>"
        f'<td class="stored">{html.escape(e["name"])}</td>'
        f'<td class="size" title="{e["size"]} bytes">{human_size(e["size"])}</td>'
        f'<td class="sha"><code>{sha or "not recorded"}</code></td>'
        f'<td class="when"><time>{when}</time></td></tr>'
    )


def _hidden(flag: bool) -> str:
    return " hidden" if flag else ""


def render_page(
    entries: Sequence[FileEntry] | None, *, token_required: bool, max_size: int | None
) -> str:
    """The page; ``entries`` None serves the shell only (the script asks for the token)."""
    hint = "Each file uploads on its own, with a progress bar."
    if max_size is not None:
        hint += f" Largest upload: {human_size(max_size)} ({max_size} bytes)."
    if token_required:
        hint += " This server needs a token."
    rows = entries or []
    page = _PAGE
    for marker, value in (
        ("@STYLE@", _STYLE),
        ("@SCRIPT@", _SCRIPT),
        ("@TOKEN@", "required" if token_required else "none"),
        ("@HINT@", html.escape(hint)),
        ("@NOTE_HIDDEN@", _hidden(entries is not None)),
        ("@NOTE@", "Enter the token to see the files." if entries is None else ""),
        ("@EMPTY_HIDDEN@", _hidden(entries is None or bool(rows))),
        ("@TABLE_HIDDEN@", _hidden(not rows)),
    ):
        page = page.replace(marker, value)
    # Last: file names are user content and must not be searched for markers.
    return page.replace("@ROWS@", "\n".join(_row(e) for e in rows))


def render_error(status: int, message: str) -> str:
    """The page a no-JavaScript form upload lands on when it fails (never raw JSON)."""
    page = _ERROR_PAGE.replace("@STYLE@", _STYLE).replace("@STATUS@", str(status))
    return page.replace("@MESSAGE@", html.escape(message))
