#!/usr/bin/env python3
"""Self-test of examples/verify_trail.py: builds small signed trails exactly as
docs/audit-format.md describes (two chains, a key rotation, checkpoints v2), tampers with
them, and checks the verifier's verdicts. Prints "N passed, M failed"; exits 1 on failure.

With BIZRA_RISK_BIN=path/to/bizra-risk, every trail is also verified by `bizra-risk verify
--json` and its failures (file, line, chain, seq, reason) must be the same."""
import hashlib, json, os, subprocess, sys, tempfile
from collections import Counter
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import verify_trail as vt  # noqa: E402

ZERO = "0" * 64
TMP = tempfile.TemporaryDirectory()      # every trail below is written under it, removed at exit
tempfile.tempdir = TMP.name
BTC, PF = "eng1.BTCUSDT", "eng1.PORTFOLIO"
RUST = os.environ.get("BIZRA_RISK_BIN")
passed, failed = 0, 0

def sha(b): return hashlib.sha256(b).hexdigest()
def canon(o): return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

def expect(name, got, want):
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: got {got!r}, want {want!r}")

class Key:
    def __init__(self):
        self.sk = Ed25519PrivateKey.generate()
        self.pub = self.sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = sha(self.pub)[:16]

def decision(i):                          # payloads are hashed, not decoded: any JSON will do
    return {"kind": "RISK_DECISION", "action_id": f"a{i}", "verdict": "PASS", "mc_z": -0.1 - 0.2,
            "data_time_ms": "-9223372036854775808", "note": "é\u2028\x01\"\\"}

def rotation(new, kid=None, pub=None, **extra):
    return dict({"kind": "KEY_ROTATION", "new_key_id": kid or new.kid,
                 "new_public_key": pub or new.pub.hex()}, **extra)

def num(n):                              # integers beyond 2^53 - 1 are decimal strings
    return n if abs(n) <= 2**53 - 1 else str(n)

def event_line(key, chain, seq, link, payload, ts, env=()):
    pb = canon(payload)
    e = {"v": 1, "chain": chain, "seq": seq, "prev": link, "key_id": key.kid, "ts_ms": num(ts),
         "kind": payload["kind"], "payload_sha256": sha(pb)}
    e.update(env)                          # fields changed (None: left out)
    eb = canon({k: v for k, v in e.items() if v is not None})
    sig = key.sk.sign(b"BIZRA-RISK/EVENT/V1\0" + eb).hex()
    return b'{"event":' + eb + b',"payload":' + pb + b',"sig":"' + sig.encode() + b'"}\n', \
        sha(b"BIZRA-RISK/EVENT/V1\0" + eb)

def merkle(leaves):                       # RFC 6962, written out again independently
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + merkle(leaves[:k]) + merkle(leaves[k:])).digest()

def checkpoint_line(key, chain, first, last, hashes, ts, prev_cp, **over):
    cp = {"v": 2, "chain": chain, "key_id": key.kid, "first_seq": first, "last_seq": last,
          "tree_size": last - first + 1, "last_event_sha256": hashes[last], "ts_ms": num(ts[last]),
          "root_sha256": merkle([bytes.fromhex(h) for h in hashes[first:last + 1]]).hex(),
          "prev_checkpoint_sha256": prev_cp}
    cp.update(over)
    cb = canon({k: v for k, v in cp.items() if v is not None})
    sig = key.sk.sign(b"BIZRA-RISK/CHECKPOINT/V1\0" + cb).hex()
    return b'{"checkpoint":' + cb + b',"sig":"' + sig.encode() + b'"}\n', \
        sha(b"BIZRA-RISK/CHECKPOINT/V1\0" + cb)

class Trail:
    """steps: [(key, payload)] for seq 0..; cps: [(first, last, key)]."""
    def __init__(self, chain, steps, cps, ts=lambda s: 1_700_000_000_000 + 1000 * s):
        self.chain, self.events, self.hashes, self.ts = chain, [], [], []
        prev = ZERO
        for seq, (key, payload) in enumerate(steps):
            line, prev = event_line(key, chain, seq, prev, payload, ts(seq))
            self.events.append(line), self.hashes.append(prev), self.ts.append(ts(seq))
        self.cps, self.cp_hashes, prev = [], [], ZERO
        for first, last, key in cps:
            line, prev = checkpoint_line(key, chain, first, last, self.hashes, self.ts, prev)
            self.cps.append(line), self.cp_hashes.append(prev)

    def write(self, d, events=None, cps=None):
        with open(os.path.join(d, self.chain + ".jsonl"), "wb") as f:
            f.write(b"".join(self.events if events is None else events))
        with open(os.path.join(d, self.chain + ".checkpoints.jsonl"), "wb") as f:
            f.write(b"".join(self.cps if cps is None else cps))

A, B, C = Key(), Key(), Key()                    # C: the attacker
STEPS = [(A, decision(i)) for i in range(5)] + [(A, rotation(B))] + [(B, decision(i)) for i in range(6, 12)]
CPS = [(0, 3, A), (4, 5, B), (6, 9, B), (10, 11, B)]   # (4, 5) ends at the rotation: key B
BT = Trail(BTC, STEPS, CPS)
PT = Trail(PF, [(A, decision(i)) for i in range(3)], [(0, 2, A)])

def run(*args):
    r = subprocess.run([sys.executable, os.path.join(HERE, "verify_trail.py"), *args],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr

def failures(rep):                        # what must agree with `bizra-risk verify --json`
    def where(pos):
        path, _, line = pos.rpartition(":")
        return (os.path.basename(path), line) if not pos.startswith("--") else (pos, "")
    return Counter((*where(f["position"]), f["chain"], f["seq"], f["reason"]) for f in rep["failures"])

def verify(name, want, events=None, cps=None, opts=(), keys=(A,), paths=None, extra=None):
    """Write BT (tampered as given) and PT to a fresh directory, verify, compare reasons."""
    d = tempfile.mkdtemp()
    BT.write(d, events, cps)
    PT.write(d)
    for fname, data in (extra or {}).items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)
    keyargs = [a for k in keys for a in ("--pubkey", k.pub.hex())]
    targets = [os.path.join(d, p) for p in paths] if paths else [d]
    code, out, err = run(*keyargs, "--json", *opts, *targets)
    rep = json.loads(out) if out else {"failures": [], "err": err}
    expect(name, (sorted(f["reason"] for f in rep["failures"]), code), (sorted(want), 0 if not want else 1))
    if RUST:
        r = subprocess.run([RUST, "verify", *targets, *keyargs, "--json", *opts], capture_output=True, text=True)
        expect(name + " (as bizra-risk)", (failures(json.loads(r.stdout)), r.returncode), (failures(rep), code))
    return rep, d

# ---- Unit checks: integers, weak keys, step-1 codes ----
expect("integers", [vt.integer(x, *vt.I64) for x in (5, 2**53 - 1, 2**53, "9007199254740992", "5",
       "+9007199254740992", "09007199254740992", "-9223372036854775808", "-9223372036854775809", 5.0, True)],
       [5, 2**53 - 1, None, 2**53, None, None, None, -2**63, None, None, None])
SMALL = ["00" * 32, "01" + "00" * 31, "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f",
         "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
         "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"]
SMALL += [s[:62] + "%02x" % (int(s[62:], 16) ^ 0x80) for s in SMALL]   # other sign of x
expect("weak keys", [vt.is_weak(bytes.fromhex(s)) for s in SMALL], [True] * 14)
expect("strong keys", [vt.is_weak(k.pub) for k in (A, B, C)], [False] * 3)
def step1(line):
    try:
        (vt.parse_checkpoint if line.startswith(b'{"checkpoint":') else vt.parse_event)(line.rstrip(b"\n"))
        return "OK"
    except vt.Bad as b:
        return b.args[0]
e2 = BT.events[2]
def env_line(**env):                      # event 12 with envelope fields changed, re-signed
    return event_line(B, BTC, 12, BT.hashes[11], decision(12), 1_700_000_012_000, env)[0]
for name, line, code in [
        ("valid event", e2, "OK"), ("empty line", b"", "MALFORMED"), ("not UTF-8", e2.replace(b"a2", b"\xff"), "MALFORMED"),
        ("CRLF", e2.rstrip(b"\n") + b"\r", "NON_CANONICAL"), ("space", b"{ " + e2[1:], "NON_CANONICAL"),
        ("upper-case sig", e2[:-131] + e2[-131:-3].upper() + b'"}', "NON_CANONICAL"),
        ("upper-case prev", env_line(prev=BT.hashes[11].upper()), "OK"),
        ("v 2", env_line(v=2), "UNSUPPORTED_VERSION"), ("v 2, a field missing", env_line(v=2, prev=None), "UNSUPPORTED_VERSION"),
        ("v 2, unknown field", env_line(v=2, x=1), "UNSUPPORTED_VERSION"), ("v '2'", env_line(v="2"), "MALFORMED"),
        ("unknown field", env_line(x=1), "MALFORMED"), ("seq 12.0", env_line(seq=12.0), "MALFORMED"),
        ("ts_ms small as string", env_line(ts_ms="5"), "MALFORMED"), ("ts_ms 2^53 as number", env_line(ts_ms=2**53), "MALFORMED"),
        ("ts_ms with leading zero", env_line(ts_ms="-09223372036854775808"), "MALFORMED"),
        ("seq negative", env_line(seq=-1), "MALFORMED"), ("kind unknown", env_line(kind="HALT"), "MALFORMED"),
        ("repeated member", e2.replace(b'"seq":2', b'"seq":2,"seq":2'), "MALFORMED"),
        ("lone surrogate", e2.replace(b'"chain":"eng1.BTCUSDT"', b'"chain":"eng1.BTCUSDT\\ud800"'), "MALFORMED"),
        ("payload not parsed", e2.replace(b'"verdict":"PASS"', b'"verdict":PASS'), "OK"),
        ("checkpoint", BT.cps[0], "OK"), ("checkpoint CRLF", BT.cps[0].rstrip(b"\n") + b"\r", "MALFORMED"),
        ("checkpoint not canonical", BT.cps[0].replace(b'{"chain"', b'{ "chain"'), "NON_CANONICAL")]:
    expect("step 1: " + name, step1(line), code)

# ---- Clean trail ----
rep, d = verify("clean", [])
expect("clean chains", rep["chains"], {
    BTC: {"events": 12, "first_seq": 0, "last_seq": 11, "head_sha256": BT.hashes[11],
          "checkpoints_verified": 4, "key_ids": [A.kid, B.kid]},
    PF: {"events": 3, "first_seq": 0, "last_seq": 2, "head_sha256": PT.hashes[2],
         "checkpoints_verified": 1, "key_ids": [A.kid]}})
expect("clean records", rep["records"], 12 + 4 + 3 + 1)
code, out, _ = run("--pubkey", A.pub.hex(), d)
expect("clean human", (code, out.startswith("verification: OK")), (0, True))
verify("files named directly", [], paths=[BTC + ".checkpoints.jsonl", BTC + ".jsonl"])
verify("only the new key trusted", ["UNKNOWN_KEY"] * 6 + ["CHECKPOINT_MISMATCH"] * 3, keys=(B,),
       paths=[BTC + ".checkpoints.jsonl", BTC + ".jsonl"])

# ---- Events: tampering ----
ev = list(BT.events)
def with_event(i, line):
    e = list(BT.events)
    e[i] = line
    return e
flip = lambda b: b[:-10] + (b"0" if b[-10:-9] != b"0" else b"1") + b[-9:]
verify("payload byte flip", ["PAYLOAD_MISMATCH"], events=with_event(2, ev[2].replace(b'"action_id":"a2"', b'"action_id":"a3"')))
verify("envelope byte flip", ["BAD_SIGNATURE", "CHECKPOINT_MISMATCH"], events=with_event(2, ev[2].replace(b'"ts_ms":1700000002000', b'"ts_ms":1700000002001')))
verify("signature byte flip", ["BAD_SIGNATURE", "CHECKPOINT_MISMATCH"], events=with_event(2, flip(ev[2])))
verify("deleted line", ["GAP", "CHECKPOINT_MISMATCH"], events=ev[:2] + ev[3:])
verify("duplicate line", ["DUPLICATE"], events=ev[:3] + [ev[2]] + ev[3:])
rep, _ = verify("duplicate allowed", [], events=ev[:3] + [ev[2]] + ev[3:], opts=["--allow-duplicates"])
expect("duplicate counted", rep["duplicates_skipped"], 1)
verify("copy with another payload", ["PAYLOAD_MISMATCH", "DUPLICATE"],
       events=ev[:3] + [ev[2].replace(b'"action_id":"a2"', b'"action_id":"a3"')] + ev[3:])
verify("reordered lines", ["REORDERED", "CHECKPOINT_MISMATCH"], events=ev[:2] + [ev[3], ev[2]] + ev[4:])
verify("late arrival after the checkpoints", ["REORDERED", "CHECKPOINT_MISMATCH"], events=ev[:7] + ev[8:] + [ev[7]])
verify("one of two missing arrives late", ["GAP", "CHECKPOINT_MISMATCH"], events=ev[:1] + ev[3:] + [ev[2]])
verify("truncated tail", ["TRUNCATED", "CHECKPOINT_MISMATCH"], events=ev[:11] + [ev[11][:50]])
verify("missing final newline", ["TRUNCATED", "CHECKPOINT_MISMATCH"], events=ev[:11] + [ev[11][:-1]])
verify("non-canonical layout", ["NON_CANONICAL", "GAP", "CHECKPOINT_MISMATCH"], events=with_event(2, b"{ " + ev[2][1:]))
verify("garbage line appended", ["MALFORMED"], events=ev + [b"garbage\n"])
verify("garbage line in place of an event", ["MALFORMED", "GAP", "CHECKPOINT_MISMATCH"], events=with_event(2, b"garbage\n"))
def resign(seq, key, payload=None, prev=None, **env):
    return event_line(key, BTC, seq, prev or (BT.hashes[seq - 1] if seq else ZERO),
                      payload or decision(seq), 1_700_000_000_000 + 1000 * seq, env)[0]
verify("forged event by unknown key", ["UNKNOWN_KEY"], events=ev + [resign(12, C)])
verify("forged event naming key B", ["BAD_SIGNATURE"], events=ev + [resign(12, C, key_id=B.kid)])
verify("bad signature far ahead changes nothing", ["BAD_SIGNATURE"], events=ev[:8] + [flip(resign(99, B, prev="ab" * 32))] + ev[8:])
verify("retired key signs after rotation", ["UNKNOWN_KEY"], events=ev + [resign(12, A)])
verify("new key before its rotation", ["UNKNOWN_KEY", "CHECKPOINT_MISMATCH", "CHECKPOINT_MISMATCH"], events=with_event(3, resign(3, B)))
verify("another trusted key, no rotation", [], keys=(A, C), events=ev + [resign(12, C)])
verify("fork", ["FORK"], events=ev + [resign(3, A, payload=decision(99))])
verify("broken link", ["BROKEN_LINK"], events=ev + [resign(12, B, prev="ab" * 32)])
verify("replaced event", ["BROKEN_LINK", "BROKEN_LINK", "CHECKPOINT_MISMATCH", "CHECKPOINT_MISMATCH"],
       events=with_event(3, resign(3, A, prev="ab" * 32)))
verify("bad genesis", ["BAD_GENESIS", "CHECKPOINT_MISMATCH", "BROKEN_LINK"], events=with_event(0, resign(0, A, prev="cd" * 32)))
verify("unsupported event version", ["UNSUPPORTED_VERSION"], events=ev + [resign(12, B, v=2)])
verify("rotation envelope, decision payload", ["ROTATION_REFUSED"], events=ev + [resign(12, B, kind="KEY_ROTATION")])
verify("wrong chain in directory", ["WRONG_CHAIN"], events=ev + [PT.events[2]])
verify("wrong chain file named directly", ["REORDERED", "DUPLICATE"], events=ev + [PT.events[2]],
       paths=[PF + ".jsonl", BTC + ".jsonl"])

# ---- Rotations ----
def rot_trail(payload):
    steps = [(A, decision(0)), (A, payload), (B, decision(2))]
    return Trail(BTC, steps, [(0, 2, B)])
for name, bad in [("rotation key id mismatch", rotation(B, kid=C.kid)),
                  ("rotation with an extra member", rotation(B, note="x")),
                  ("rotation to weak key", rotation(B, kid=sha(bytes.fromhex(SMALL[5]))[:16], pub=SMALL[5]))]:
    t = rot_trail(bad)
    verify(name, ["ROTATION_REFUSED", "UNKNOWN_KEY", "CHECKPOINT_MISMATCH"], events=t.events, cps=t.cps)
t = rot_trail(rotation(B, pub=" " + B.pub.hex().upper() + "\n"))
verify("rotation key in upper case, white space around", [], events=t.events, cps=t.cps)
t = Trail(BTC, STEPS[:7] + [(B, rotation(A)), (A, decision(8))], [])
verify("a retired key stays retired", ["UNKNOWN_KEY"], events=t.events, cps=[])
t = Trail(BTC, STEPS, [(0, 3, A), (4, 5, A), (6, 9, B), (10, 11, B)])
verify("checkpoint at rotation signed by old key", ["CHECKPOINT_UNKNOWN_KEY"], cps=t.cps)
t = Trail(BTC, STEPS, [(0, 11, B)])
verify("one checkpoint over the rotation", [], cps=t.cps)

# ---- Checkpoints ----
cps = list(BT.cps)
verify("deleted middle checkpoint", ["CHECKPOINT_BROKEN_LINK"], cps=cps[:1] + cps[2:])
verify("duplicate checkpoint copy", [], cps=cps[:2] + [cps[1]] + cps[2:])
verify("checkpoint byte flip", ["CHECKPOINT_BAD_SIGNATURE", "CHECKPOINT_BROKEN_LINK"],
       cps=[cps[0], cps[1].replace(b'"tree_size":2', b'"tree_size":3')] + cps[2:])
verify("checkpoint forged by attacker", ["CHECKPOINT_UNKNOWN_KEY", "CHECKPOINT_BROKEN_LINK", "CHECKPOINT_BROKEN_LINK"]
       + ["CHECKPOINT_MISMATCH"] * 3, cps=cps + [checkpoint_line(C, BTC, 0, 11, BT.hashes, BT.ts, ZERO)[0]])
verify("checkpoint by another trusted key", [], keys=(A, C), cps=[checkpoint_line(C, BTC, 0, 3, BT.hashes, BT.ts, ZERO)[0]])
def resign_cp(i, **over):
    first, last, key = CPS[i]
    return checkpoint_line(key, BTC, first, last, BT.hashes, BT.ts, BT.cp_hashes[i - 1] if i else ZERO, **over)[0]
verify("checkpoint wrong root", ["CHECKPOINT_MISMATCH", "CHECKPOINT_BROKEN_LINK"], cps=[cps[0], resign_cp(1, root_sha256="ee" * 32)] + cps[2:])
verify("checkpoint wrong ts_ms", ["CHECKPOINT_MISMATCH"], cps=cps[:3] + [resign_cp(3, ts_ms=5)])
verify("checkpoint version 1", ["UNSUPPORTED_VERSION"], cps=cps + [resign_cp(3, v=1, prev_checkpoint_sha256=None)])
verify("checkpoint after its events", ["CHECKPOINT_MISMATCH"], cps=cps[:3], events=ev + [cps[3]])
t = Trail(BTC, STEPS, [(0, 3, A), (6, 9, B)])
verify("coverage hole after restart", [], cps=t.cps)
t = Trail(BTC, STEPS, [(6, 9, B)])
verify("first checkpoint after seq 0", [], cps=t.cps)
t = Trail(BTC, STEPS, [(0, 3, A), (3, 9, B)])
verify("overlapping checkpoints", ["CHECKPOINT_BROKEN_LINK", "CHECKPOINT_MISMATCH"], cps=t.cps)
t = Trail(BTC, [(A, decision(0)), (A, decision(1))], [(0, 1, A)], ts=lambda s: -2**63)
verify("ts_ms beyond 2^53 as string", [], events=t.events, cps=t.cps)

# ---- Anchors ----
witness = os.path.join(d, BTC + ".checkpoints.jsonl")
cut_events, cut_cps = ev[:10], cps[:3]
verify("tail and its checkpoint deleted", [], events=cut_events, cps=cut_cps)
verify("... against the anchor file", ["TRUNCATED_BEFORE_ANCHOR"], events=cut_events, cps=cut_cps, opts=["--anchor", witness])
verify("... against --expect-head", ["TRUNCATED_BEFORE_ANCHOR"], events=cut_events, cps=cut_cps,
       opts=["--expect-head", f"{BTC}:11:{BT.hashes[11]}"])
verify("expect-head matches", [], opts=["--expect-head", f"{BTC}:9:{BT.hashes[9]}", "--expect-head", f"{PF}:2:{PT.hashes[2]}"])
verify("expect-head other hash", ["ANCHOR_MISMATCH"], opts=["--expect-head", f"{BTC}:9:{BT.hashes[8]}"])
verify("expect-head unknown chain", ["TRUNCATED_BEFORE_ANCHOR"], opts=["--expect-head", f"eng9.X:0:{ZERO}"])
verify("anchor file of the full trail", [], opts=["--anchor", witness])
verify("the same anchor twice", [], opts=["--anchor", witness, "--expect-head", f"{BTC}:11:{BT.hashes[11].upper()}"])
verify("anchored event missing, chain goes on", ["GAP", "TRUNCATED_BEFORE_ANCHOR"] + ["CHECKPOINT_MISMATCH"] * 2,
       events=ev[:9] + ev[10:], opts=["--expect-head", f"{BTC}:9:{BT.hashes[9]}"])

# ---- Command line and report ----
e = tempfile.mkdtemp()
expect("no records", run("--pubkey", A.pub.hex(), e)[0], 1)
expect("no key", run(d)[0], 2)
expect("weak key", run("--pubkey", SMALL[5], d)[0], 2)
expect("bad path", run("--pubkey", A.pub.hex(), os.path.join(e, "nope"))[0], 2)
expect("bad expect-head", run("--pubkey", A.pub.hex(), "--expect-head", "x:1", d)[0], 2)
with open(os.path.join(e, "w.jsonl"), "wb") as f:
    f.write(cps[0] + cps[1][:40])
expect("half-written anchor file", run("--pubkey", A.pub.hex(), "--anchor", os.path.join(e, "w.jsonl"), d)[0], 2)
with open(os.path.join(e, "k.pub"), "w") as f:
    f.write("  " + A.pub.hex().upper() + "\n")
expect("pubkey file", run("--pubkey-file", os.path.join(e, "k.pub"), d)[0], 0)
BT.write(e, ev[:2] + [b"garbage\n"] + ev[3:])
code, out, _ = run("--pubkey", A.pub.hex(), e)
expect("human failure line", (code, f"{BTC}.jsonl:4 GAP chain={BTC} seq=3" in out), (1, True))
rep = json.loads(run("--pubkey", A.pub.hex(), "--json", e)[1])
expect("json failure", rep["failures"][0], {"position": os.path.join(e, BTC + ".jsonl:3"), "chain": None,
       "seq": None, "reason": "MALFORMED", "detail": "not JSON"})
expect("json report fields", sorted(rep), ["chains", "checkpoints_unchecked", "duplicates_skipped", "failures", "records"])

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
