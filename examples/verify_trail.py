#!/usr/bin/env python3
"""Independent reference verifier for bizra-risk signed audit trails.

Specification: docs/audit-format.md; [brackets] name its sections and steps. It checks what
`bizra-risk verify` checks without `--strict` (payloads are hashed, not decoded, except a
key rotation's) and reports the same failures; a control request's payload that hashes
right it also decodes, as `--strict` does. Standard library plus `cryptography` only.

    python3 examples/verify_trail.py (--pubkey HEX | --pubkey-file F)... [--allow-duplicates]
        [--expect-head CHAIN:SEQ:HASH]... [--anchor FILE]... [--json] PATH...

Exit 0: records read and no failure; 1: failures (or no records); 2: usage or I/O error.
"""
import argparse, collections, decimal, hashlib, json, math, os, re, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EVENT_DOMAIN = b"BIZRA-RISK/EVENT/V1\0"             # [Event record] 20 bytes
CHECKPOINT_DOMAIN = b"BIZRA-RISK/CHECKPOINT/V1\0"   # [Checkpoint record] 25 bytes
EVENT_PREFIX, CHECKPOINT_PREFIX, PAYLOAD_INFIX = b'{"event":', b'{"checkpoint":', ',"payload":'
SIG_SUFFIX = re.compile(rb',"sig":"[0-9a-f]{128}"\}')   # 138 bytes
HEX64, HEX128 = re.compile("[0-9a-fA-F]{64}"), re.compile("[0-9a-fA-F]{128}")
ZERO = "0" * 64
MAX_EXACT = 2**53 - 1
U64, I64 = (0, 2**64 - 1), (-2**63, 2**63 - 1)
ENVELOPE = {"v": 1, "chain": str, "seq": U64, "prev": str, "key_id": str, "ts_ms": I64,
            "kind": {"RISK_DECISION", "KEY_ROTATION", "CONTROL_REQUEST"}, "payload_sha256": str}
CHECKPOINT = {"v": 2, "chain": str, "key_id": str, "first_seq": U64, "last_seq": U64,
              "tree_size": U64, "root_sha256": str, "last_event_sha256": str,
              "prev_checkpoint_sha256": str, "ts_ms": I64}
ROTATION = {"kind", "new_key_id", "new_public_key"}
# [CONTROL_REQUEST payload]: member -> str, bool, OPTIONAL (a string or null), the values
# allowed, or None (`request`: null or one of CONTROL_REQUESTS, checked apart)
OPTIONAL = (str, None)
CONTROL = {"kind": {"CONTROL_REQUEST"}, "client": OPTIONAL, "detail": OPTIONAL, "method": str,
           "outcome": {"ACCEPTED", "REFUSED", "FAILED"}, "path": str,
           "reason": {None, "UNAUTHENTICATED", "TOKEN_MALFORMED", "TOKEN_UNKNOWN", "TOKEN_IN_QUERY",
                      "FORBIDDEN", "RATE_LIMITED", "BAD_REQUEST", "BODY_TOO_LARGE",
                      "UNKNOWN_ENDPOINT", "UNKNOWN_SYMBOL", "RULES_REJECTED",
                      "DECISION_ALTERING", "NOTHING_TO_ROLL_BACK"},
           "request": None, "request_id": str, "role": {None, "operator", "viewer"},
           "source": {"HTTP", "SIGNAL", "RESTART", "WATCHDOG"}, "token_id": OPTIONAL}
CONTROL_REQUESTS = {"KILL_SWITCH": {"type": str, "engaged": bool},   # `request`, tagged by `type`
                    "TRADING_STATE": {"type": str, "state": {"ACTIVE", "REDUCING", "HALTED"},
                                      "symbol": OPTIONAL},
                    "RULES_RELOAD": {"type": str}, "STATE": {"type": str}}
# CONFIG_APPLY / CONFIG_ROLLBACK members that are numbers, integers, lists or objects are
# checked by these functions (see `members`).
SETTINGS = {"elf.parallelize_l2_l3", "elf.enable_decision_cache", "elf.decision_cache_size",
            "elf.decision_cache_ttl_s", "elf.constitutional_compliance"}
KPIS = {"DECIDE_MEAN_US", "DECIDE_P50_US", "DECIDE_P95_US", "DECIDE_P99_US", "GATE_MEAN_US",
        "GATE_P99_US", "MARKET_EVENTS_PER_S"}
def NUM(x): return type(x) in (int, float) and math.isfinite(x)
def INT(x): return integer(x, *I64) is not None
def checked(spec, what):                             # an object with exactly `spec`
    def check(x):
        members(x, spec, what)
        return True
    return check
def nullable(check): return lambda x: x is None or check(x)
CHANGE = {"from": str, "setting": SETTINGS, "to": str}
def CHANGES(x):
    return isinstance(x, list) and all(checked(CHANGE, "control payload: change")(c) for c in x)
AB_EVIDENCE = {"baseline": NUM, "candidate": NUM, "decisions_compared": INT,
               "decisions_changed": INT, "improvement_pct": NUM, "kpi": KPIS,
               "pairs_better_pct": NUM, "input_sha256": str, "runs_per_side": INT}
WATCH = {"baseline": NUM, "baseline_decisions": INT, "degradation_pct": NUM, "kpi": KPIS,
         "until_ms": INT}
WATCH_EVIDENCE = {"baseline": NUM, "degradation_pct": NUM, "kpi": KPIS, "observed": NUM,
                  "observed_decisions": INT}
CONTROL_REQUESTS["CONFIG_APPLY"] = {
    "type": str, "changes": CHANGES,
    "evidence": nullable(checked(AB_EVIDENCE, "control payload: evidence")),
    "watch": nullable(checked(WATCH, "control payload: watch"))}
CONTROL_REQUESTS["CONFIG_ROLLBACK"] = {
    "type": str, "changes": CHANGES, "cause": {"KPI_DEGRADED", "OPERATOR"},
    "evidence": nullable(checked(WATCH_EVIDENCE, "control payload: evidence"))}
RECENT = 4096                                        # [step 4] sequence numbers remembered

def sha256(b): return hashlib.sha256(b).hexdigest()
def key_id_of(pub): return sha256(pub)[:16]          # [Verifying keys]

# ---- JSON, read strictly [Reading a record] -------------------------------------------------
class Obj(dict):
    dup = False                                      # a member name occurs twice

def _obj(pairs):
    o = Obj(pairs)
    o.dup = len(o) < len(pairs)
    return o

def _no_constant(name):
    raise ValueError(name + " is not JSON")

# `-0` is read as a float: it is not an integer [Integers].
DECODER = json.JSONDecoder(object_pairs_hook=_obj, parse_constant=_no_constant,
                           parse_int=lambda s: float(s) if s == "-0" else int(s))

def load_json(text):
    try:
        return DECODER.decode(text)
    except (ValueError, RecursionError):             # includes UnicodeDecodeError
        raise Bad("MALFORMED", "not JSON")

def integer(x, lo, hi):
    """[Integers]: a JSON number up to 2^53-1 in magnitude, beyond it the decimal string."""
    if type(x) is int and abs(x) <= MAX_EXACT:
        n = x
    elif type(x) is str and len(x) < 40 and re.fullmatch("-?[1-9][0-9]*", x) and abs(int(x)) > MAX_EXACT:
        n = int(x)
    else:
        return None
    return n if lo <= n <= hi else None

# ---- Ed25519 [Verifying keys] ----------------------------------------------------------------
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

def parse_key(text):
    """A verifying key: 64 hex digits of either case, white space around ignored, not weak."""
    t = text.strip()
    if not HEX64.fullmatch(t):
        raise ValueError("expected 64 hex digits")
    pub = bytes.fromhex(t)
    if is_weak(pub):
        raise ValueError("weak (small-order) key, or not a curve point")
    return pub

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

# ---- Step 1 [Reading a record] -------------------------------------------------------------
class Bad(Exception):
    """A record refused in step 1: args = (failure code, detail)."""

def split_line(line, prefix):
    """The bytes between `prefix` and `,"sig":"<128 lower-case hex>"}`, or None."""
    cut = len(line) - 138
    if cut >= len(prefix) and line.startswith(prefix) and SIG_SUFFIX.fullmatch(line, cut):
        return line[len(prefix):cut]
    return None

def fields(obj, spec, what):
    """Version first, then exactly the fields of `spec`; returns them with integers read."""
    v = obj.get("v") if isinstance(obj, Obj) else None
    if type(v) is int and 0 <= v <= U64[1] and v != spec["v"]:
        raise Bad("UNSUPPORTED_VERSION", f"format version {v}")
    if not isinstance(obj, Obj) or obj.dup or set(obj) != set(spec):
        raise Bad("MALFORMED", f"{what} must have exactly the fields " + ", ".join(spec))
    out = {}
    for name, want in spec.items():
        x = obj[name]
        if want is str:                              # (a lone surrogate is not a string)
            ok = isinstance(x, str) and not re.search("[\ud800-\udfff]", x)
        elif isinstance(want, set):
            ok = isinstance(x, str) and x in want
        elif isinstance(want, tuple):
            x = integer(x, *want)
            ok = x is not None
        else:
            ok = type(x) is int and x == want
        if not ok:
            raise Bad("MALFORMED", f"{what}: bad {name}")
        out[name] = x
    return out

def is_string(x):                                    # (a lone surrogate is not a string)
    return isinstance(x, str) and not re.search("[\ud800-\udfff]", x)

def members(obj, spec, what):
    """Exactly the members of `spec`, each a string, a boolean, or one of the values allowed."""
    if not (isinstance(obj, Obj) and not obj.dup and set(obj) == set(spec)):
        raise Bad("MALFORMED", f"{what} must have exactly the members " + ", ".join(spec))
    for name, want in spec.items():
        x = obj[name]
        if want is str or want is OPTIONAL:
            ok = is_string(x) or (x is None and want is OPTIONAL)
        elif want is bool:
            ok = type(x) is bool
        elif isinstance(want, set):
            ok = (x is None or isinstance(x, str)) and x in want
        elif callable(want):
            ok = want(x)
        else:
            ok = True                                    # checked by the caller
        if not ok:
            raise Bad("MALFORMED", f"{what}: bad {name}")

def jcs_number(x):
    """A number as RFC 8785 writes it: ECMAScript's shortest form (integers without `.0`,
    fixed notation from 1e-6 to 1e21, else `1e-7` / `1e+21`)."""
    if type(x) is int:
        return str(x)
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    r = repr(x)                                      # shortest digits that round-trip
    if "e" not in r:
        return r
    if 1e-6 <= abs(x) < 1e21:
        return format(decimal.Decimal(r), "f")
    m, e = r.split("e")
    return f"{m}e{'+' if int(e) > 0 else '-'}{abs(int(e))}"

def canonical(x):
    """RFC 8785 canonical JSON of a decoded value (member names sorted; ASCII here)."""
    if isinstance(x, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(x[k])
                              for k in sorted(x)) + "}"
    if isinstance(x, list):
        return "[" + ",".join(canonical(v) for v in x) + "]"
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    return jcs_number(x)

def control_payload(payload):
    """[CONTROL_REQUEST payload] of an event whose payload hashes right, read as `--strict`
    reads it: False when it is a payload of another kind (PAYLOAD_MISMATCH, step 3), Bad when
    it is not a control request (MALFORMED) or not canonical (NON_CANONICAL), else True."""
    try:
        p = load_json(payload.decode("utf-8"))
    except Bad:
        raise Bad("MALFORMED", "control payload is not JSON")
    if isinstance(p, Obj) and isinstance(p.get("kind"), str) \
            and p["kind"] in ENVELOPE["kind"] - {"CONTROL_REQUEST"}:
        return False
    members(p, CONTROL, "control payload")
    r = p["request"]
    if r is not None:
        tag = r.get("type") if isinstance(r, Obj) else None
        spec = CONTROL_REQUESTS.get(tag) if is_string(tag) else None
        if spec is None:
            raise Bad("MALFORMED", "control payload: bad request")
        members(r, spec, "control payload: request")
    if canonical(p).encode() != payload:
        raise Bad("NON_CANONICAL", "control payload is not canonical JSON")
    return True

def parse_event(line):
    """(envelope, event bytes, payload bytes, sig hex, payload of the envelope's kind) of an
    event line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("MALFORMED", "not UTF-8")
    if split_line(line, EVENT_PREFIX) is not None:
        body = text[len(EVENT_PREFIX):-138]
        start = len(body) - len(body.lstrip(" \t\n\r"))
        try:
            env, end = DECODER.raw_decode(body, start)
        except (ValueError, RecursionError):
            raise Bad("MALFORMED", "the envelope is not JSON")
        ev = fields(env, ENVELOPE, "envelope")
        if body.startswith(PAYLOAD_INFIX, end):
            if not (HEX64.fullmatch(ev["prev"]) and HEX64.fullmatch(ev["payload_sha256"])):
                raise Bad("MALFORMED", "prev or payload_sha256 is not 64 hex digits")
            ev["prev"], ev["payload_sha256"] = ev["prev"].lower(), ev["payload_sha256"].lower()
            payload, same_kind = body[end + len(PAYLOAD_INFIX):].encode(), True
            if ev["kind"] == "CONTROL_REQUEST" and sha256(payload) == ev["payload_sha256"]:
                same_kind = control_payload(payload)
            return ev, body[:end].encode(), payload, text[-130:-2], same_kind
    rec = load_json(text)                            # any other layout
    if not (isinstance(rec, Obj) and not rec.dup and set(rec) == {"event", "payload", "sig"}
            and isinstance(rec["sig"], str)):
        raise Bad("MALFORMED", "not an {event, payload, sig} record")
    fields(rec["event"], ENVELOPE, "envelope")
    if not HEX128.fullmatch(rec["sig"]):
        raise Bad("MALFORMED", "sig is not 128 hex digits")
    raise Bad("NON_CANONICAL", "record is not laid out canonically")

def parse_checkpoint(line):
    """(checkpoint, CP bytes, sig hex) of a checkpoint line."""
    body = split_line(line, CHECKPOINT_PREFIX)
    if body is None:
        raise Bad("MALFORMED", 'not a {"checkpoint":…,"sig":…} record')
    try:
        obj = load_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Bad("MALFORMED", "not UTF-8")
    optional = ("inputs", "run_start_sha256")
    core = Obj((k, v) for k, v in obj.items() if k not in optional) if isinstance(obj, Obj) else obj
    if isinstance(obj, Obj):
        core.dup = obj.dup
    cp = fields(core, CHECKPOINT, "checkpoint")
    if isinstance(obj, Obj) and "inputs" in obj:         # optional: the input digest
        inputs = obj["inputs"]
        if not (isinstance(inputs, Obj) and not inputs.dup
                and set(inputs) == {"connection", "position", "sha256"}
                and integer(inputs["connection"], 0, 2**32 - 1) is not None
                and integer(inputs["position"], *U64) is not None
                and isinstance(inputs["sha256"], str) and HEX64.fullmatch(inputs["sha256"])):
            raise Bad("MALFORMED", "checkpoint: bad inputs")
    if isinstance(obj, Obj) and "run_start_sha256" in obj:  # optional: a run's start state
        if not (isinstance(obj["run_start_sha256"], str) and HEX64.fullmatch(obj["run_start_sha256"])):
            raise Bad("MALFORMED", "checkpoint: bad run_start_sha256")
    if json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() != body:
        raise Bad("NON_CANONICAL", "checkpoint is not canonical JSON")
    return cp, body, line[-130:-2].decode()

# ---- Steps 2-5, checkpoints, anchors [Verification procedure] -----------------------------
class Chain:
    def __init__(self, seq):
        self.next_seq, self.last_hash = 0, ZERO      # last_hash None: next link not checked
        self.recent = collections.deque(maxlen=RECENT)   # (seq, event hash) of events taken
        self.gaps = []                               # [first missing, last missing, GAP failure]
        self.introduced, self.retired = {}, {}       # key_id -> key; key_id -> seq retired at
        self.tree = None                             # [first_seq, leaves] [Checkpoint trees]
        self.summary = {"events": 0, "first_seq": seq, "last_seq": seq, "head_sha256": "",
                        "checkpoints_verified": 0, "key_ids": []}

class Verifier:
    def __init__(self, trusted, allow_duplicates=False, anchors=()):
        self.trusted, self.allow_duplicates = trusted, allow_duplicates
        self.chains, self.failures, self.records, self.duplicates_skipped = {}, [], 0, 0
        self.pending = {}        # chain -> first_seq -> [checkpoint] not yet checked
        self.links = {}          # chain -> [checkpoint]: every distinct one, in reading order
        self.anchors = anchors   # [{chain, seq, hash, source, seen}]

    def fail(self, pos, chain, seq, reason, detail):
        f = {"position": pos, "chain": chain, "seq": seq, "reason": reason, "detail": detail}
        self.failures.append(f)
        return f

    def push_file(self, path, file_chain):
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for number, line in enumerate(lines[:-1], 1):
            self.push(f"{path}:{number}", line, file_chain)
        if lines[-1]:
            self.records += 1
            self.fail(f"{path}:{len(lines)}", None, None, "TRUNCATED",
                      f"{len(lines[-1])} bytes without a terminating newline")

    def push(self, pos, line, file_chain):
        self.records += 1
        is_cp = line.startswith(CHECKPOINT_PREFIX)
        try:
            rec = parse_checkpoint(line) if is_cp else parse_event(line)
        except Bad as b:
            return self.fail(pos, None, None, *b.args)
        chain, seq = rec[0]["chain"], rec[0]["last_seq" if is_cp else "seq"]
        if file_chain is not None and chain != file_chain:
            return self.fail(pos, chain, seq, "WRONG_CHAIN",
                             f"record of chain {chain} in the file of chain {file_chain}")
        (self.checkpoint if is_cp else self.event)(pos, *rec)

    def checkpoint(self, pos, cp, body, sig):
        c = {"pos": pos, "cp": cp, "sig": sig, "input": CHECKPOINT_DOMAIN + body}
        c["hash"] = sha256(c["input"])
        links = self.links.setdefault(cp["chain"], [])
        if all(o["hash"] != c["hash"] for o in links):   # a copy counts once, whatever its sig
            links.append(c)
            self.pending.setdefault(cp["chain"], {}).setdefault(cp["first_seq"], []).append(c)

    def key_for(self, cs, seq, key_id):
        """[step 2] The key that may sign `seq` of the chain, and why not if None."""
        at = cs.retired.get(key_id) if cs else None
        if at is not None and seq > at:
            return None, f"key_id {key_id} was retired by the rotation at seq {at}"
        pub = self.trusted.get(key_id) or (cs.introduced.get(key_id) if cs else None)
        return pub, f"key_id {key_id} is not trusted"

    def event(self, pos, ev, event_bytes, payload, sig, same_kind):
        chain, seq = ev["chain"], ev["seq"]
        pub, why = self.key_for(self.chains.get(chain), seq, ev["key_id"])
        signing_input = EVENT_DOMAIN + event_bytes
        if pub is None or not signature_ok(pub, sig, signing_input):
            self.fail(pos, chain, seq, "UNKNOWN_KEY" if pub is None else "BAD_SIGNATURE",
                      why if pub is None else "Ed25519 signature does not verify")
            cs = self.chains.setdefault(chain, Chain(seq))
            if seq == cs.next_seq:                   # it takes its place, unchecked
                cs.next_seq, cs.last_hash, cs.tree = seq + 1, None, None
            return
        payload_ok = sha256(payload) == ev["payload_sha256"] and same_kind   # step 3
        if not payload_ok:
            self.fail(pos, chain, seq, "PAYLOAD_MISMATCH", "the payload's kind is not the envelope's"
                      if same_kind is False else "payload does not hash to payload_sha256")
        self.link(pos, ev, sha256(signing_input), payload if payload_ok else None)

    def link(self, pos, ev, h, payload):
        """Step 4 (and 5): sequence, links, gaps; then rotation and checkpoint tree."""
        chain, seq, prev = ev["chain"], ev["seq"], ev["prev"]
        cs = self.chains.setdefault(chain, Chain(seq))
        old = next((x for s, x in cs.recent if s == seq), None) if seq < cs.next_seq else None
        if old == h:
            if self.allow_duplicates:
                self.duplicates_skipped += 1
            else:
                self.fail(pos, chain, seq, "DUPLICATE", f"seq {seq} seen before")
            return
        in_order = False
        if seq == 0 and prev != ZERO:
            self.fail(pos, chain, seq, "BAD_GENESIS", "seq 0 must link to the all-zero hash")
        if seq > cs.next_seq:
            gap = self.fail(pos, chain, seq, "GAP", f"seq {cs.next_seq} to {seq - 1} missing")
            cs.gaps.append([cs.next_seq, seq - 1, gap])
        elif seq == cs.next_seq and cs.last_hash is not None:
            if prev != cs.last_hash and seq != 0:
                self.fail(pos, chain, seq, "BROKEN_LINK",
                          f"prev {prev} but the previous record hashes to {cs.last_hash}")
            else:
                in_order = True
        elif old is not None:
            self.fail(pos, chain, seq, "FORK", f"seq {seq} seen before with different content")
        elif seq < cs.next_seq:
            gap = next((g for g in cs.gaps if g[0] <= seq <= g[1]), None)
            if gap is None:
                self.fail(pos, chain, seq, "FORK", f"seq {seq} is older than the remembered window")
            else:                                    # a missing number arrives late
                before = next((x for s, x in cs.recent if s + 1 == seq), None)
                if before is not None and before != prev:
                    self.fail(pos, chain, seq, "BROKEN_LINK", f"late seq {seq} does not link to seq {seq - 1}")
                a, b, f = gap
                cs.gaps.remove(gap)
                cs.gaps += [g for g in ([a, seq - 1, f], [seq + 1, b, f]) if g[0] <= g[1]]
                if all(g[2] is not f for g in cs.gaps):   # all of them arrived
                    f["reason"], f["detail"] = "REORDERED", f["detail"].replace("missing", "arrived after later records")
        if seq >= cs.next_seq:                       # the chain's new head
            cs.next_seq, cs.last_hash = seq + 1, h
            cs.summary.update(last_seq=seq, head_sha256=h)
        sm = cs.summary
        sm["events"] += 1
        sm["first_seq"] = min(sm["first_seq"], seq)
        if sm["key_ids"][-1:] != [ev["key_id"]]:
            sm["key_ids"].append(ev["key_id"])
        cs.recent.append((seq, h))
        if not in_order:
            cs.tree = None
        for a in self.anchors:                       # [Anchors]: the first such event counts
            if a["chain"] == chain and a["seq"] == seq and a["seen"] is None:
                a["seen"] = h
        if ev["kind"] == "KEY_ROTATION" and payload is not None:
            self.rotate(pos, cs, ev, payload)
        if in_order:
            self.extend_tree(cs, chain, seq, h, ev["ts_ms"])

    def rotate(self, pos, cs, ev, payload):
        """Step 5."""
        try:
            p = load_json(payload.decode("utf-8"))
        except (Bad, UnicodeDecodeError):
            p = None
        try:
            if not (isinstance(p, Obj) and not p.dup and set(p) == ROTATION and p["kind"] == "KEY_ROTATION"
                    and isinstance(p["new_key_id"], str) and isinstance(p["new_public_key"], str)):
                raise ValueError("the payload is not {kind, new_key_id, new_public_key}")
            pub = parse_key(p["new_public_key"])
            if key_id_of(pub) != p["new_key_id"]:
                raise ValueError("new_key_id is not the ID of new_public_key")
        except ValueError as e:
            return self.fail(pos, ev["chain"], ev["seq"], "ROTATION_REFUSED", f"key rotation: {e}")
        cs.introduced[p["new_key_id"]] = pub
        cs.retired[ev["key_id"]] = ev["seq"]

    def extend_tree(self, cs, chain, seq, h, ts_ms):
        """[Checkpoint trees]: add an event in order; check the checkpoints ending at it."""
        pending = self.pending.get(chain)
        if pending is None:
            return
        if cs.tree is None and seq in pending:
            cs.tree = [seq, []]
        if cs.tree is None:
            return
        first, leaves = cs.tree
        leaves.append(bytes.fromhex(h))
        todo = pending.pop(first, [])
        done = [c for c in todo if c["cp"]["last_seq"] <= seq]
        if len(done) < len(todo):
            pending[first] = [c for c in todo if c["cp"]["last_seq"] > seq]
        else:
            cs.tree = None
        root = merkle_root(leaves).hex() if done else None
        for c in done:
            cp = c["cp"]
            pub, why = self.key_for(cs, seq + 1, cp["key_id"])   # the chain's key after last_seq
            if pub is None:
                code, detail = "CHECKPOINT_UNKNOWN_KEY", why
            elif not signature_ok(pub, c["sig"], c["input"]):
                code, detail = "CHECKPOINT_BAD_SIGNATURE", "checkpoint signature does not verify"
            elif cp["last_seq"] != seq or cp["tree_size"] != seq - first + 1:
                code, detail = "CHECKPOINT_MISMATCH", f"tree_size {cp['tree_size']} does not cover seq {first}..={cp['last_seq']}"
            elif cp["root_sha256"] != root:
                code, detail = "CHECKPOINT_MISMATCH", f"root {cp['root_sha256']} but the events give {root}"
            elif cp["last_event_sha256"] != h:
                code, detail = "CHECKPOINT_MISMATCH", "last_event_sha256 is not the hash of the last event"
            elif cp["ts_ms"] != ts_ms:
                code, detail = "CHECKPOINT_MISMATCH", f"ts_ms {cp['ts_ms']} but the last event's is {ts_ms}"
            else:
                cs.summary["checkpoints_verified"] += 1
                continue
            self.fail(c["pos"], chain, cp["last_seq"], code, detail)

    def finish(self):
        for chain, links in self.links.items():     # CHECKPOINT_BROKEN_LINK
            prev = None
            for c in sorted(links, key=lambda c: (c["cp"]["first_seq"], c["cp"]["last_seq"])):
                cp = c["cp"]
                if prev is None:
                    bad = cp["prev_checkpoint_sha256"] != ZERO and "the chain's first checkpoint does not link to 64 zeros"
                elif cp["first_seq"] <= prev["cp"]["last_seq"]:
                    bad = f"covers seq {cp['first_seq']}..={cp['last_seq']}, overlapping the checkpoint up to seq {prev['cp']['last_seq']}"
                else:
                    bad = cp["prev_checkpoint_sha256"] != prev["hash"] and f"does not link to the checkpoint up to seq {prev['cp']['last_seq']}"
                if bad:
                    self.fail(c["pos"], chain, cp["last_seq"], "CHECKPOINT_BROKEN_LINK", bad)
                prev = c
        for a in self.anchors:
            if a["seen"] is None:
                self.fail(a["source"], a["chain"], a["seq"], "TRUNCATED_BEFORE_ANCHOR",
                          f"the trail ends before seq {a['seq']}")
            elif a["seen"] != a["hash"]:
                self.fail(a["source"], a["chain"], a["seq"], "ANCHOR_MISMATCH",
                          f"seq {a['seq']} hashes to {a['seen']} but the anchor says {a['hash']}")
        for chain, pending in self.pending.items():
            for c in (c for todo in pending.values() for c in todo):
                cp = c["cp"]
                self.fail(c["pos"], chain, cp["last_seq"], "CHECKPOINT_MISMATCH",
                          f"events {cp['first_seq']}..={cp['last_seq']} are not all present, valid and in order")
        return {"records": self.records,
                "chains": {n: c.summary for n, c in sorted(self.chains.items())},
                "checkpoints_unchecked": 0, "duplicates_skipped": self.duplicates_skipped,
                "failures": self.failures}

# ---- Inputs [Verification procedure, Inputs], [Anchors and the witness] ---------------------
def record_files(paths):
    """(path, chain its records must name or None): checkpoint files first, in path order."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for n in os.listdir(p):
                if n.endswith(".jsonl"):
                    cut = -len(".checkpoints.jsonl") if n.endswith(".checkpoints.jsonl") else -len(".jsonl")
                    files.append((os.path.join(p, n), n[:cut]))
        else:
            files.append((p, None))
    files.sort(key=lambda f: (not f[0].endswith(".checkpoints.jsonl"),
                              [c.encode() for c in f[0].split("/")], f[1] is not None, f[1] or ""))
    return [f for i, f in enumerate(files) if i == 0 or f[0] != files[i - 1][0]]

def parse_expected_head(text):
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not re.fullmatch(r"\+?[0-9]{1,20}", parts[1]) \
            or int(parts[1]) > U64[1] or not HEX64.fullmatch(parts[2]):
        die(f"--expect-head {text}: expected CHAIN:SEQ:HASH")
    return {"chain": parts[0], "seq": int(parts[1]), "hash": parts[2].lower(),
            "source": f"--expect-head {text}", "seen": None}

def heads_from_witness(path):
    """For each chain, the head pinned by its newest checkpoint in a witness file."""
    newest = {}
    with open(path, "rb") as fh:
        for number, line in enumerate(fh.read().split(b"\n"), 1):
            if not line:
                continue
            try:
                cp = parse_checkpoint(line)[0]
            except Bad as b:
                die(f"{path}:{number}: not a checkpoint record ({b.args[0]})")
            if not HEX64.fullmatch(cp["last_event_sha256"]):
                die(f"{path}:{number}: last_event_sha256 is not 64 hex digits")
            if cp["chain"] not in newest or cp["last_seq"] > newest[cp["chain"]]["seq"]:
                newest[cp["chain"]] = {"chain": cp["chain"], "seq": cp["last_seq"], "seen": None,
                                       "hash": cp["last_event_sha256"].lower(), "source": f"{path}:{number}"}
    return [newest[c] for c in sorted(newest)]

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
    trusted = {}
    try:
        for source, text in [("--pubkey " + k, k) for k in args.pubkey] + \
                [(f, open(f, encoding="utf-8").read()) for f in args.pubkey_file]:
            try:
                pub = parse_key(text)
            except ValueError as e:
                die(f"{source}: {e}")
            trusted[key_id_of(pub)] = pub
        if not trusted:
            die("give at least one trusted key with --pubkey or --pubkey-file")
        anchors = [parse_expected_head(t) for t in args.expect_head]
        for f in args.anchor:
            anchors += heads_from_witness(f)
        v = Verifier(trusted, args.allow_duplicates, anchors)
        for path, chain in record_files(args.paths):     # checkpoints first, then events
            v.push_file(path, chain)
    except (OSError, UnicodeDecodeError) as e:
        die(str(e))
    rep = v.finish()
    ok = rep["records"] > 0 and not rep["failures"]
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"verification: {'OK' if ok else 'FAILED'}: {rep['records']} records, "
              f"{len(rep['chains'])} chains, {len(rep['failures'])} failures")
        for name, c in rep["chains"].items():
            print(f"  chain {name}: {c['events']} events, seq {c['first_seq']}..{c['last_seq']}, "
                  f"head {c['head_sha256'][:16]}, {c['checkpoints_verified']} checkpoints verified, "
                  f"keys {' -> '.join(c['key_ids'])}")
        if rep["duplicates_skipped"]:
            print(f"  {rep['duplicates_skipped']} byte-identical copies of records skipped (--allow-duplicates)")
        for f in rep["failures"]:
            print(f"  FAIL {f['position']} {f['reason']} chain={f['chain'] or '?'} "
                  f"seq={'?' if f['seq'] is None else f['seq']}: {f['detail']}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
