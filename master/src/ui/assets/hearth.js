// Hearth dashboard: the only script (served from /ui/assets, no inline code, no build step).
// Verifies a ledger entry's inclusion proof in the browser: reads the entry line, its audit
// path and the latest checkpoint from the master's public ledger routes, recomputes the root
// with WebCrypto SHA-256 (RFC 9162 §2.1.3.2) and compares it with the checkpoint's root hash.
"use strict";

const enc = new TextEncoder();

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function fromBase64(text) {
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function leafHash(line) {
  return sha256(concat(new Uint8Array([0]), enc.encode(line)));
}

async function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

// RFC 9162 §2.1.3.2: the root of a tree of `size` leaves from leaf `index`'s hash and path.
async function rootFromPath(index, size, leaf, path) {
  if (index >= size) throw new Error("index beyond the tree");
  let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new Error("path longer than the tree");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("path shorter than the tree");
  return r;
}

// The checkpoint note's body: origin, size, base64 root hash (C2SP tlog-checkpoint).
function parseCheckpoint(text) {
  const lines = text.split("\n");
  const size = BigInt(lines[1]);
  return { size, root: fromBase64(lines[2]) };
}

async function getText(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error(url + " answered " + r.status);
  return r.text();
}

async function verify(button) {
  const out = document.getElementById(button.dataset.out);
  const seq = button.dataset.seq;
  out.textContent = button.dataset.checking;
  out.className = "proof";
  try {
    const cp = parseCheckpoint(await getText("/v1/ledger/checkpoint"));
    const line = (await getText("/v1/ledger/entries?start=" + seq + "&limit=1")).replace(/\n$/, "");
    const proof = JSON.parse(await getText("/v1/ledger/proof/inclusion?seq=" + seq + "&size=" + cp.size));
    const raw = fromBase64(proof.path);
    const path = [];
    for (let i = 0; i < raw.length; i += 32) path.push(raw.slice(i, i + 32));
    const root = await rootFromPath(Number(seq), Number(cp.size), await leafHash(line), path);
    const ok = equal(root, cp.root);
    out.textContent = (ok ? button.dataset.ok : button.dataset.bad).replace("{size}", cp.size);
    out.className = ok ? "proof ok" : "proof bad";
    out.dataset.result = ok ? "verified" : "mismatch";
  } catch (e) {
    out.textContent = button.dataset.bad.replace("{size}", "?") + " (" + e.message + ")";
    out.className = "proof bad";
    out.dataset.result = "error";
  }
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-verify]");
  if (b) { ev.preventDefault(); verify(b); }
});

// The language menu submits on change (it also works without script, with its button).
document.addEventListener("change", (ev) => {
  if (ev.target.matches("select[data-autosubmit]")) ev.target.form.submit();
});
