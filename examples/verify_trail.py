#!/usr/bin/env python3
"""Independent reference verifier for bizra-risk signed audit trails.

Specification: docs/audit-format.md ("Signed event format, version 1"); section names
below in [brackets] refer to it. Standard library plus `cryptography` only.

    python3 examples/verify_trail.py --pubkey HEX [--pubkey-file F]... [--allow-duplicates]
        [--expect-head CHAIN:SEQ:HASH]... [--anchor FILE]... [--json] PATH...

Exit 0: records read and no failure; 1: failures (or no records); 2: usage error.
Always as strict as `verify --strict`: every record is re-encoded, every signature is
checked alone with OpenSSL's RFC 8032 verification.
"""
import argparse, hashlib, json, os, re, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EVENT_DOMAIN = b"BIZRA-RISK/EVENT/V1\0"             # [Event record] 20 bytes
CHECKPOINT_DOMAIN = b"BIZRA-RISK/CHECKPOINT/V1\0"   # [Checkpoint record] 25 bytes
ZERO = "0" * 64
MAX_EXACT = 2**53 - 1
ENVELOPE = {"v", "chain", "seq", "prev", "key_id", "ts_ms", "kind", "payload_sha256"}
CHECKPOINT = {"v", "chain", "key_id", "first_seq", "last_seq", "tree_size", "root_sha256",
              "last_event_sha256", "prev_checkpoint_sha256", "ts_ms"}
HEX16, HEX64, HEX128 = (re.compile("[0-9a-f]{%d}" % n) for n in (16, 64, 128))

def sha256(b): return hashlib.sha256(b).hexdigest()
def key_id_of(pub): return sha256(pub)[:16]        # [Verifying keys]

# ---- RFC 8785 (JCS) canonical JSON [Event record] ----------------------------------------
def es_number(x):
    """ECMAScript Number::toString: shortest round-trip digits (Python repr) in ES layout."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("number not finite")
    if x == 0:
        return "0"                                   # also -0
    if x < 0:
        return "-" + es_number(-x)
    mant, _, exp = repr(x).partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    e = int(exp or 0) - len(frac) + len(digits) - len(digits.rstrip("0"))
    digits = digits.rstrip("0")                      # value = digits * 10^e
    k, n = len(digits), len(digits) + e              # ES: value = 0.digits * 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exp_text = ("+" if n - 1 >= 0 else "-") + str(abs(n - 1))
    return digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + exp_text

ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

def jcs_string(s):
    out = ['"']
    for ch in s:
        out.append(ESCAPES.get(ch) or ("\\u%04x" % ord(ch) if ch < " " else ch))
    return "".join(out) + '"'

def jcs(v):
    """Canonical JSON text of a parsed value (raises ValueError if it has none)."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, int):                           # JSON numbers are IEEE doubles
        if abs(v) <= MAX_EXACT:
            return str(v)
        if v.bit_length() > 1024:
            raise ValueError("number out of range")
        return es_number(float(v))
    if isinstance(v, float):
        return es_number(v)
    if isinstance(v, str):
        v.encode("utf-8")                            # lone surrogates: UnicodeEncodeError
        return jcs_string(v)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    keys = sorted(v, key=lambda k: k.encode("utf-16-be"))   # UTF-16 code-unit order
    return "{" + ",".join(jcs_string(k) + ":" + jcs(v[k]) for k in keys) + "}"

def load_json(raw):
    def no_duplicates(pairs):
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member name")
        return dict(pairs)
    def no_constants(name):
        raise ValueError(name + " is not a JSON value")
    return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates,
                      parse_constant=no_constants)

# ---- Ed25519 --------------------------------------------------------------------------
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P

def is_weak(pub):
    """True unless `pub` decodes to a curve point whose order does not divide 8.
    y is reduced mod p so non-canonical encodings of small-order points are caught too."""
    y = int.from_bytes(pub, "little")
    sign, y = y >> 255, (y & (2**255 - 1)) % P
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if (x * x - x2) % P:
        return True                                  # not on the curve: unusable
    if x & 1 != sign:
        x = (P - x) % P
    def add(a, b):                                   # complete twisted Edwards addition, a = -1
        t = D * a[0] * b[0] * a[1] * b[1] % P
        return ((a[0] * b[1] + a[1] * b[0]) * pow(1 + t, P - 2, P) % P,
                (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, P - 2, P) % P)
    pt = (x, y)
    for _ in range(3):
        pt = add(pt, pt)
    return pt == (0, 1)

def signature_ok(pub, sig_hex, message):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(bytes.fromhex(sig_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False

def merkle_root(leaves):
    """RFC 6962 Merkle tree hash over the 32-byte event hashes [Checkpoint record]."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\0" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)    # largest power of two below n
    return hashlib.sha256(b"\1" + merkle_root(leaves[:k]) + merkle_root(leaves[k:])).digest()

# ---- Record parsing: step 1 of [Verification procedure] -----------------------------------
class Bad(Exception):
    """A record refused in step 1: args = (failure code, detail)."""

def integer(v, name, unsigned=False):
    """An integer field: a JSON number up to 2^53-1, beyond it the decimal string [Event record]."""
    if isinstance(v, int) and not isinstance(v, bool):
        if abs(v) > MAX_EXACT:
            raise Bad("NON_CANONICAL", f"{name}: beyond 2^53-1 must be a decimal string")
        n = v
    elif isinstance(v, str) and re.fullmatch(r"[+-]?[0-9]+", v):
        n = int(v)
        if abs(n) <= MAX_EXACT or not re.fullmatch(r"-?[1-9][0-9]*", v):
            raise Bad("NON_CANONICAL", f"{name}: {v!r} is not the canonical integer form")
    elif isinstance(v, float) and v.is_integer():
        raise Bad("NON_CANONICAL", f"{name}: integer written as {v!r}")
    else:
        raise Bad("MALFORMED", f"{name}: not an integer")
    if unsigned and n < 0:
        raise Bad("MALFORMED", f"{name}: negative")
    return n

def check(ok, name):
    if not ok:
        raise Bad("MALFORMED", f"{name}: wrong type or format")

def parse_record(raw, name, outer, fields, version):
    """Parse one line into (record, record[name]); checks the fields and the version."""
    try:
        rec = load_json(raw)
    except (ValueError, RecursionError) as e:        # includes UnicodeDecodeError
        raise Bad("MALFORMED", f"not JSON: {e}")
    if not isinstance(rec, dict) or set(rec) != outer or not isinstance(rec[name], dict):
        raise Bad("MALFORMED", "record must be an object with fields " + ",".join(sorted(outer)))
    inner = rec[name]
    v = inner.get("v")
    if isinstance(v, int) and not isinstance(v, bool) and v != version:
        raise Bad("UNSUPPORTED_VERSION", f"v = {v}, expected {version}")
    if set(inner) != fields:
        raise Bad("MALFORMED", "fields must be exactly " + ",".join(sorted(fields)))
    check(v == version and not isinstance(v, bool), "v")
    check(isinstance(inner["chain"], str) and inner["chain"], "chain")
    check(isinstance(inner["key_id"], str) and HEX16.fullmatch(inner["key_id"]), "key_id")
    check(isinstance(rec["sig"], str) and HEX128.fullmatch(rec["sig"]), "sig")
    integer(inner["ts_ms"], "ts_ms")
    return rec, inner

def parse_event(raw):
    rec, ev = parse_record(raw, "event", {"event", "payload", "sig"}, ENVELOPE, 1)
    check(isinstance(rec["payload"], dict), "payload")
    for f in ("prev", "payload_sha256"):
        check(isinstance(ev[f], str) and HEX64.fullmatch(ev[f]), f)
    check(ev["kind"] in ("RISK_DECISION", "KEY_ROTATION"), "kind")
    integer(ev["seq"], "seq", unsigned=True)
    try:
        event_bytes = jcs(ev).encode()
    except ValueError as e:
        raise Bad("MALFORMED", f"envelope: {e}")
    # Layout {"event":EVENT,"payload":PAYLOAD,"sig":"SIG"}; PAYLOAD is judged in step 3.
    head, tail = b'{"event":' + event_bytes + b',"payload":', b',"sig":"' + rec["sig"].encode() + b'"}'
    if not (raw.startswith(head) and raw.endswith(tail) and len(raw) > len(head) + len(tail)):
        raise Bad("NON_CANONICAL", "event record is not laid out canonically")
    return rec, ev, event_bytes, raw[len(head):-len(tail)]

def parse_checkpoint(raw):
    rec, cp = parse_record(raw, "checkpoint", {"checkpoint", "sig"}, CHECKPOINT, 2)
    for f in ("root_sha256", "last_event_sha256", "prev_checkpoint_sha256"):
        check(isinstance(cp[f], str) and HEX64.fullmatch(cp[f]), f)
    for f in ("first_seq", "last_seq", "tree_size"):
        integer(cp[f], f, unsigned=True)
    try:
        canonical = jcs(rec).encode()
    except ValueError as e:
        raise Bad("MALFORMED", str(e))
    if raw != canonical:
        raise Bad("NON_CANONICAL", "checkpoint record is not canonical JSON")
    return rec, cp, jcs(cp).encode()

def peek(raw):
    """Best effort (kind, chain, seq) of a record, for routing and for reporting failures."""
    try:
        rec = json.loads(raw.decode("utf-8", "replace"))
        kind = "checkpoint" if "checkpoint" in rec else "event"
        inner = dict(rec[kind])
    except Exception:
        return None, None, None
    chain = inner.get("chain") if isinstance(inner.get("chain"), str) else None
    try:
        seq = integer(inner.get("seq", inner.get("last_seq")), "seq", unsigned=True)
    except Bad:
        seq = None
    return kind, chain, seq

# ---- Verifier -------------------------------------------------------------------------------
class Event:
    def __init__(self, ev, h, line, pos, in_order):
        self.hash, self.prev, self.key_id, self.line, self.pos = h, ev["prev"], ev["key_id"], line, pos
        self.ts_ms, self.in_order, self.holder_after = integer(ev["ts_ms"], "ts_ms"), in_order, ev["key_id"]

class Chain:
    def __init__(self):
        self.events = {}          # seq -> Event: the first authentic (steps 1-2) copy
        self.head = -1            # highest seq taken in order
        self.head_hash = None     # its event hash; None: do not check the next link
        self.gaps = []            # [failure, first missing, last missing, arrived]
        self.rotations = []       # (seq, old key_id, new key_id, new key) [KEY_ROTATION payload]
        self.checkpoints = []     # (pos, record, cp, cp_bytes), byte-identical copies once
        self.cp_lines = set()
        self.duplicates = self.cp_verified = 0

class Verifier:
    def __init__(self, trusted, allow_duplicates=False):
        self.trusted, self.allow_duplicates = trusted, allow_duplicates
        self.chains, self.failures, self.records = {}, [], 0

    def chain(self, name):
        return self.chains.setdefault(name, Chain())

    def fail(self, pos, chain, seq, code, detail):
        f = {"position": pos, "chain": chain, "seq": seq, "reason": code, "detail": detail}
        self.failures.append(f)
        return f

    def key_for(self, cs, key_id, seq):
        """Public key allowed to sign `seq` of the chain: a trusted key or one introduced by a
        rotation before `seq`, unless a rotation before `seq` retired it [step 2]."""
        pub = self.trusted.get(key_id)
        for r, old, new, new_pub in sorted(cs.rotations):
            if r >= seq:
                break
            if old == key_id:
                pub = None
            if new == key_id:
                pub = new_pub
        return pub

    def read_file(self, path, dir_chain):
        """dir_chain: the chain a directory's file name gives, else None [step 1]."""
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for number, raw in enumerate(lines, 1):
            pos = f"{path}:{number}"
            if number == len(lines):                 # text after the last newline
                if raw:
                    self.records += 1
                    _, chain, seq = peek(raw)
                    self.fail(pos, dir_chain or chain, seq, "TRUNCATED", "final line has no newline")
                return
            self.records += 1
            kind, chain, seq = peek(raw)
            if kind == "checkpoint" or (kind is None and path.endswith(".checkpoints.jsonl")):
                self.checkpoint_record(raw, pos, dir_chain)
            else:
                self.event_record(raw, pos, dir_chain or chain, seq, dir_chain)

    def checkpoint_record(self, raw, pos, dir_chain):
        try:
            rec, cp, cp_bytes = parse_checkpoint(raw)
        except Bad as b:
            _, chain, seq = peek(raw)
            return self.fail(pos, dir_chain or chain, seq, *b.args)
        last = integer(cp["last_seq"], "last_seq")
        if dir_chain and cp["chain"] != dir_chain:
            return self.fail(pos, cp["chain"], last, "WRONG_CHAIN", f"found in the file of {dir_chain}")
        cs = self.chain(cp["chain"])
        if raw not in cs.cp_lines:                   # byte-identical copies count once
            cs.cp_lines.add(raw)
            cs.checkpoints.append((pos, rec, cp, cp_bytes))

    def event_record(self, raw, pos, chain, seq, dir_chain):
        try:                                         # step 1
            rec, ev, event_bytes, payload_bytes = parse_event(raw)
        except Bad as b:
            self.fail(pos, chain, seq, *b.args)
            return self.not_authentic(chain, seq)
        chain, seq = ev["chain"], integer(ev["seq"], "seq")
        if dir_chain and chain != dir_chain:
            return self.fail(pos, chain, seq, "WRONG_CHAIN", f"found in the file of {dir_chain}")
        cs = self.chain(chain)
        pub = self.key_for(cs, ev["key_id"], seq)   # step 2
        if pub is None:
            self.fail(pos, chain, seq, "UNKNOWN_KEY", f"key {ev['key_id']} may not sign this event")
            return self.not_authentic(chain, seq)
        signing_input = EVENT_DOMAIN + event_bytes
        if not signature_ok(pub, rec["sig"], signing_input):
            self.fail(pos, chain, seq, "BAD_SIGNATURE", f"signature by {ev['key_id']} does not verify")
            return self.not_authentic(chain, seq)
        h = sha256(signing_input)
        old = cs.events.get(seq)
        if old and old.line == raw:                  # step 4, byte-identical copy
            if self.allow_duplicates:
                cs.duplicates += 1
            else:
                self.fail(pos, chain, seq, "DUPLICATE", f"copy of {old.pos}")
            return
        payload_ok = self.check_payload(pos, chain, seq, ev, rec["payload"], payload_bytes)
        if old:
            code = "DUPLICATE" if old.hash == h else "FORK"
            return self.fail(pos, chain, seq, code, f"seq already at {old.pos}")
        e = Event(ev, h, raw, pos, in_order=seq > cs.head)
        self.link(cs, pos, chain, seq, e)
        cs.events[seq] = e
        if ev["kind"] == "KEY_ROTATION" and payload_ok:   # step 5
            self.rotation(cs, pos, chain, seq, e, rec["payload"])

    def not_authentic(self, chain, seq):
        """After a record failing step 1 or 2 the next link is not checked; if it held the
        next expected seq, the chain continues from it [step 4]."""
        if chain is not None:
            cs = self.chain(chain)
            cs.head_hash = None
            if seq == cs.head + 1:
                cs.head = seq

    def check_payload(self, pos, chain, seq, ev, payload, payload_bytes):
        """Step 3: the envelope stays authentic even when the payload is refused."""
        if sha256(payload_bytes) != ev["payload_sha256"]:
            self.fail(pos, chain, seq, "PAYLOAD_MISMATCH", "SHA-256 of PAYLOAD != payload_sha256")
        elif payload.get("kind") != ev["kind"]:
            self.fail(pos, chain, seq, "PAYLOAD_MISMATCH", "payload kind != envelope kind")
        else:
            try:
                if jcs(payload).encode() == payload_bytes:
                    return True
            except ValueError:
                pass
            self.fail(pos, chain, seq, "NON_CANONICAL", "payload is not canonical JSON")
        return False

    def link(self, cs, pos, chain, seq, e):
        """Step 4: genesis, links, gaps and late arrivals."""
        if seq == 0 and e.prev != ZERO:
            self.fail(pos, chain, seq, "BAD_GENESIS", "seq 0 must have prev = 64 zeros")
        if seq == cs.head + 1:
            if seq > 0 and cs.head_hash is not None and e.prev != cs.head_hash:
                self.fail(pos, chain, seq, "BROKEN_LINK", f"prev is not the hash of seq {seq - 1}")
        elif seq > cs.head + 1:
            f = self.fail(pos, chain, seq, "GAP", f"missing seq {cs.head + 1}..{seq - 1}")
            cs.gaps.append([f, cs.head + 1, seq - 1, 0])
        else:                                        # a number that was missing arrives late
            gap = next((g for g in cs.gaps if g[1] <= seq <= g[2]), None)
            if gap is None:
                self.fail(pos, chain, seq, "REORDERED", f"arrived after seq {cs.head}")
            else:
                gap[3] += 1
                if gap[3] == gap[2] - gap[1] + 1:   # "the same failure becomes REORDERED"
                    gap[0]["reason"] = "REORDERED"
                    gap[0]["detail"] = f"seq {gap[1]}..{gap[2]} arrived late"
                else:
                    gap[0]["detail"] = f"missing seq {gap[1]}..{gap[2]} ({gap[3]} arrived late)"
            before, after = cs.events.get(seq - 1), cs.events.get(seq + 1)
            if seq > 0 and before and e.prev != before.hash:
                self.fail(pos, chain, seq, "BROKEN_LINK", f"prev is not the hash of seq {seq - 1}")
            if after and after.prev != e.hash:
                self.fail(after.pos, chain, seq + 1, "BROKEN_LINK", f"prev is not the hash of seq {seq}")
            return
        cs.head, cs.head_hash = seq, e.hash

    def rotation(self, cs, pos, chain, seq, e, payload):
        new_hex, new_id = payload.get("new_public_key"), payload.get("new_key_id")
        if set(payload) != {"kind", "new_key_id", "new_public_key"} or \
                not (isinstance(new_hex, str) and HEX64.fullmatch(new_hex)):
            reason = "payload is not {kind, new_key_id, new_public_key} with a 64-hex key"
        elif key_id_of(bytes.fromhex(new_hex)) != new_id:
            reason = "new_key_id is not the key ID of new_public_key"
        elif is_weak(bytes.fromhex(new_hex)):
            reason = "new_public_key is weak (small order) or not a curve point"
        else:
            cs.rotations.append((seq, e.key_id, new_id, bytes.fromhex(new_hex)))
            e.holder_after = new_id
            return
        self.fail(pos, chain, seq, "ROTATION_REFUSED", reason + "; the chain keeps its key")

    def verify_checkpoints(self):
        """[Verification procedure] checkpoint table, per chain in reading order."""
        for name, cs in self.chains.items():
            prev_hash, prev_last = ZERO, None
            for pos, rec, cp, cp_bytes in cs.checkpoints:
                first, last = integer(cp["first_seq"], "f"), integer(cp["last_seq"], "l")
                n = len(self.failures)
                if cp["prev_checkpoint_sha256"] != prev_hash:
                    self.fail(pos, name, last, "CHECKPOINT_BROKEN_LINK",
                              "prev_checkpoint_sha256 is not the hash of the previous checkpoint"
                              if prev_last is not None else "first checkpoint must link to 64 zeros")
                elif prev_last is not None and first <= prev_last:
                    self.fail(pos, name, last, "CHECKPOINT_BROKEN_LINK",
                              f"first_seq {first} <= previous last_seq {prev_last}")
                signing_input = CHECKPOINT_DOMAIN + cp_bytes
                prev_hash, prev_last = sha256(signing_input), last
                # Which key signs a checkpoint: the chain's key after last_seq.
                pub = self.key_for(cs, cp["key_id"], last + 1)
                last_event = cs.events.get(last)
                if last_event and last_event.holder_after != cp["key_id"]:
                    pub = None
                if pub is None:
                    self.fail(pos, name, last, "CHECKPOINT_UNKNOWN_KEY",
                              f"key {cp['key_id']} is not the chain's key after seq {last}")
                elif not signature_ok(pub, rec["sig"], signing_input):
                    self.fail(pos, name, last, "CHECKPOINT_BAD_SIGNATURE", "signature does not verify")
                problem = self.checkpoint_content(cs, cp, first, last)
                if problem:
                    self.fail(pos, name, last, "CHECKPOINT_MISMATCH", problem)
                if len(self.failures) == n:
                    cs.cp_verified += 1

    def checkpoint_content(self, cs, cp, first, last):
        if first > last or integer(cp["tree_size"], "t") != last - first + 1:
            return "tree_size is not last_seq - first_seq + 1"
        if last - first + 1 > len(cs.events):
            return "covered events are not all present and authentic"
        leaves = []
        for s in range(first, last + 1):             # each seq once, first authentic copy
            e = cs.events.get(s)
            if e is None:
                return f"event {s} is not present and authentic"
            if not e.in_order:
                return f"event {s} was not read in order"
            leaves.append(bytes.fromhex(e.hash))
        if merkle_root(leaves).hex() != cp["root_sha256"]:
            return "root_sha256 does not match the events"
        if cs.events[last].hash != cp["last_event_sha256"]:
            return "last_event_sha256 is not the hash of event last_seq"
        if cs.events[last].ts_ms != integer(cp["ts_ms"], "ts_ms"):
            return "ts_ms is not the ts_ms of event last_seq"
        return None

    def check_anchor(self, chain, seq, want, source):
        """[Anchors and the witness]"""
        cs = self.chains.get(chain)
        if cs is None or not cs.events or max(cs.events) < seq:
            return self.fail(source, chain, seq, "TRUNCATED_BEFORE_ANCHOR",
                             "the trail ends before the anchored event")
        e = cs.events.get(seq)
        if e is None or not e.in_order or e.hash != want:
            self.fail(e.pos if e else source, chain, seq, "ANCHOR_MISMATCH",
                      "event is missing or out of order" if e is None or not e.in_order
                      else f"event hash {e.hash} != anchored {want}")

    def report(self):
        chains = {n: {"events": len(c.events), "last_seq": max(c.events) if c.events else None,
                      "checkpoints_verified": c.cp_verified, "duplicates": c.duplicates}
                  for n, c in sorted(self.chains.items())}
        return {"ok": self.records > 0 and not self.failures, "records": self.records,
                "failures": self.failures, "chains": chains}

# ---- Inputs ---------------------------------------------------------------------------------
def load_key(text, source):
    try:
        pub = bytes.fromhex(text.strip())            # [Verifying keys]: 64 hex digits
    except ValueError:
        pub = b""
    if len(pub) != 32:
        die(f"{source}: not 64 hex digits")
    if is_weak(pub):
        die(f"{source}: weak (small-order) key, never trusted")
    return key_id_of(pub), pub

def load_anchor_file(path):
    """Highest last_seq per chain among the checkpoint records of a witness file."""
    best = {}
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh.read().splitlines(), 1):
            try:
                cp = load_json(raw)["checkpoint"]
                chain, last, h = cp["chain"], integer(cp["last_seq"], "last_seq", True), cp["last_event_sha256"]
                assert isinstance(chain, str) and HEX64.fullmatch(h)
            except Exception:
                die(f"{path}:{number}: not a checkpoint record")
            if chain not in best or last > best[chain][0]:
                best[chain] = (last, h, f"{path}:{number}")
    return [(c, s, h, src) for c, (s, h, src) in best.items()]

def trail_files(paths):
    """(path, chain from the directory's file name or None); checkpoint files first."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if n.endswith(".jsonl")
                           and os.path.isfile(os.path.join(p, n)))
            for n in names:
                cp_file = n.endswith(".checkpoints.jsonl")
                chain = n[:-len(".checkpoints.jsonl")] if cp_file else n[:-len(".jsonl")]
                out.append((not cp_file, os.path.join(p, n), chain))
        elif os.path.isfile(p):
            out.append((not p.endswith(".checkpoints.jsonl"), p, None))
        else:
            die(f"{p}: no such file or directory")
    return [(p, c) for _, p, c in sorted(out, key=lambda t: t[0])]   # stable: name order kept

def die(message):                                    # usage error: exit 2
    print(f"verify_trail: {message}", file=sys.stderr)
    sys.exit(2)

def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify a bizra-risk signed audit trail.")
    ap.add_argument("--pubkey", action="append", default=[], help="trusted verifying key, hex")
    ap.add_argument("--pubkey-file", action="append", default=[], help="file holding a key's hex")
    ap.add_argument("--allow-duplicates", action="store_true")
    ap.add_argument("--expect-head", action="append", default=[], metavar="CHAIN:SEQ:HASH")
    ap.add_argument("--anchor", action="append", default=[], metavar="FILE")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("paths", nargs="+", metavar="PATH")
    args = ap.parse_args(argv)
    trusted = dict(load_key(k, "--pubkey") for k in args.pubkey)
    for f in args.pubkey_file:
        try:
            with open(f, "rb") as fh:
                trusted.update([load_key(fh.read().decode("ascii", "replace"), f)])
        except OSError as e:
            die(str(e))
    if not trusted:
        die("no trusted key: give --pubkey or --pubkey-file")
    anchors = []
    for a in args.expect_head:
        m = re.fullmatch(r"(.+):([0-9]+):([0-9a-fA-F]{64})", a)
        if not m:
            die(f"--expect-head {a}: expected CHAIN:SEQ:HASH")
        anchors.append((m[1], int(m[2]), m[3].lower(), "--expect-head"))
    for a in args.anchor:
        try:
            anchors += load_anchor_file(a)
        except OSError as e:
            die(str(e))
    files = trail_files(args.paths)
    v = Verifier(trusted, args.allow_duplicates)
    for path, chain in files:                        # checkpoints first, then events
        v.read_file(path, chain)
    v.verify_checkpoints()
    for anchor in anchors:
        v.check_anchor(*anchor)
    rep = v.report()
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        for f in rep["failures"]:
            print(f"{f['position']}: {f['reason']} chain={f['chain']} seq={f['seq']}: {f['detail']}")
        print(("OK" if rep["ok"] else "FAILED") + f": {rep['records']} records, "
              f"{len(rep['failures'])} failures, {len(rep['chains'])} chains")
    return 0 if rep["ok"] else 1

if __name__ == "__main__":
    sys.exit(main())
