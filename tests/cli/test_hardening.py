"""Issue 24: nothing a user types or a file contains crashes fp8flow, loses a result, or misleads.

`test_hardening.py FP8FLOW_BINARY SOURCE_DIR [GROUP...]`. Every case of the issue, replayed: the exit code (2
usage, 1 bad input), a message naming the file / option / value, no partial output, existing outputs untouched.
numpy + ml_dtypes make the inputs, h5py damages stores; independent of the C++ code.
"""
import fcntl
import hashlib
import json
import os
import pty
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import h5py
import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_groups  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
del sys.argv[2]  # run_groups reads the group names from argv[2:]

TINY_TOML = """[experiment]
name = "tiny"
kind = "transpose_study"
[params]
shape = [64, 256]
[sweep]
seed = [1, 2]
"""


def run(*args, rc=None, env=None, timeout=300, cwd=None):
    e = dict(os.environ)
    e.pop("FP8FLOW_MAX_MEMORY", None)
    if env:
        e.update(env)
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout, cwd=cwd)
    if rc is not None and p.returncode != rc:
        raise AssertionError(f"fp8flow {' '.join(map(str, args))}: exit {p.returncode}, expected {rc}\n"
                             f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def expect(args, rc, *needles, env=None, cwd=None):
    """Runs, checks the exit code and that stderr names every needle; returns the process."""
    p = run(*args, rc=rc, env=env, cwd=cwd)
    for n in needles:
        assert n in p.stderr, f"fp8flow {' '.join(map(str, args))}: stderr lacks {n!r}:\n{p.stderr}"
    assert "terminate called" not in p.stderr and "Segmentation" not in p.stderr, p.stderr
    return p


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tmpdir():
    return tempfile.mkdtemp(prefix="fp8flow-hardening-")


def make_store(d, name="a.h5", toml=TINY_TOML):
    exp = os.path.join(d, "tiny.toml")
    open(exp, "w").write(toml)
    out = os.path.join(d, name)
    run("run", exp, "-o", out, rc=0)
    return exp, out


# ---- 1. thread counts ---------------------------------------------------------------------------------
def threads():
    d = tmpdir()
    x = os.path.join(d, "x.npy")
    np.save(x, np.random.default_rng(1).standard_normal(1 << 20).astype(np.float32))
    out = os.path.join(d, "o.npy")
    for n in ("100000", "50000", "1025"):
        p = expect(["--threads", n, "convert", x, out, "--to", "e4m3"], 2, "--threads", n, "0..")
        assert not os.path.exists(out)
    p = expect(["--threads", "-1", "convert", x, out, "--to", "e4m3"], 2, "--threads", "-1")
    assert len(p.stderr) < 400 and "1797693" not in p.stderr, p.stderr  # short, no 308-digit range
    expect(["--threads", "abc", "formats"], 2, "--threads")
    expect(["--threads", "100000", "transpose-study", "--shape", "128,256"], 2, "--threads")
    # The largest accepted count works, on a 1M-value tensor (the libgomp crash of the issue).
    top = int(run("--help", rc=0).stdout.split("Worker threads, 0..")[1].split()[0])
    run("--threads", top, "convert", x, out, "--to", "e4m3", rc=0)
    assert np.load(out).shape == (1 << 20,)
    # The environment: OMP_NUM_THREADS is what libgomp would use for --threads 0.
    expect(["convert", x, out, "--to", "e4m3"], 2, "OMP_NUM_THREADS=100000", env={"OMP_NUM_THREADS": "100000"})
    expect(["formats"], 2, "OMP_NUM_THREADS=x", env={"OMP_NUM_THREADS": "x"})
    run("convert", x, out, "--to", "e4m3", rc=0, env={"OMP_NUM_THREADS": "2"})


# ---- 2. memory estimates --------------------------------------------------------------------------------
def memory():
    d = tmpdir()
    t0 = time.time()
    expect(["transpose-study", "--shape", "30000,30000"], 2, "transpose-study --shape 30000,30000", "estimate",
           "available", "--max-memory")
    expect(["--max-memory", "1G", "transpose-study", "--shape", "4096,4096"], 2, "1.0 GiB", "--max-memory")
    expect(["moe", "--preset", "ds_v3"], 2, "moe --preset ds_v3", "estimate", "available")
    expect(["--max-memory", "64M", "moe", "--preset", "quickstart"], 2, "moe --preset quickstart", "64.0 MiB")
    assert time.time() - t0 < 30, "refusals must be immediate"
    # A TOML shape that cannot fit: check and run refuse it naming the file and the run; nothing written.
    big = os.path.join(d, "big.toml")
    open(big, "w").write('[experiment]\nname = "big"\nkind = "transpose_study"\n[params]\nshape = [1000000, 1000000]\n')
    expect(["check", big], 1, big, "transpose_study", "estimate")
    out = os.path.join(d, "big.h5")
    expect(["run", big, "-o", out], 1, big, "estimate")
    assert not os.path.exists(out) and not os.path.exists(out + ".lock")
    j = json.loads(run("--max-memory", "unlimited", "check", big, "--json", rc=0).stdout)
    assert j["fits"] and j["peak_memory_bytes"] >= 8 * 10 ** 12, j
    # The override: a limit under the small experiment's estimate refuses it, FP8FLOW_MAX_MEMORY alike.
    exp, store = make_store(d)
    expect(["check", exp], 1, "estimate", env={"FP8FLOW_MAX_MEMORY": "1M"})
    expect(["check", exp], 2, "FP8FLOW_MAX_MEMORY=lots", env={"FP8FLOW_MAX_MEMORY": "lots"})
    expect(["--max-memory", "lots", "check", exp], 2, "--max-memory lots")
    q = json.loads(run("check", exp, "--json", "--list", rc=0).stdout)
    assert q["fits"] and all(r["memory_bytes"] > 64 * 256 for r in q["list"]), q
    # train: moe presets in a TOML too
    ds = os.path.join(d, "ds.toml")
    open(ds, "w").write('[experiment]\nname = "ds"\nkind = "moe_dataflows"\n[params]\npreset = "ds_v3"\n')
    expect(["check", ds], 1, ds, "moe_dataflows", "estimate")
    # train corpora: a device or a directory is refused by name, at once.
    expect(["train", "--corpus", "/dev/zero", "-o", os.path.join(d, "t.h5")], 1, "/dev/zero", "not a regular file")
    expect(["train", "--corpus", d, "-o", os.path.join(d, "t.h5")], 1, d, "is a directory")
    assert not os.path.exists(os.path.join(d, "t.h5"))
    # A large estimate of a tensor command read from a .npy header (no data read).
    x = os.path.join(d, "x.npy")
    np.save(x, np.zeros((512, 512), np.float32))
    expect(["--max-memory", "1M", "quantize", x, os.path.join(d, "q")], 1, "quantize", x, "estimate")  # a file: exit 1


# ---- 3. the results store: locks, symlinks, permissions ------------------------------------------------
def store_links():
    d = tmpdir()
    exp, a = make_store(d)
    alias = os.path.join(d, "alias.h5")
    os.symlink("a.h5", alias)
    exp2 = os.path.join(d, "more.toml")
    open(exp2, "w").write(TINY_TOML.replace("seed = [1, 2]", "seed = [3]"))
    # The lock is the resolved file's: a writer holding a.h5's lock keeps a writer of alias.h5 out.
    lock = os.path.realpath(a) + ".lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242\n")
        f.flush()
        before = digest(a)
        expect(["run", exp2, "-o", alias], 1, "another fp8flow is writing", "4242")
        assert digest(a) == before
    os.remove(lock)
    # Through the link: the link stays a link, its target gets the run.
    run("run", exp2, "-o", alias, rc=0)
    assert os.path.islink(alias) and os.readlink(alias) == "a.h5"
    assert len(h5py.File(a, "r")["runs"]) == 3
    assert not os.path.exists(lock) and not os.path.exists(alias + ".lock"), os.listdir(d)
    # Permissions are kept on replace; a read-only store is refused, not replaced.
    os.chmod(a, 0o640)
    exp3 = os.path.join(d, "more3.toml")
    open(exp3, "w").write(TINY_TOML.replace("seed = [1, 2]", "seed = [4]"))
    run("run", exp3, "-o", a, rc=0)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o640
    os.chmod(a, 0o444)
    before = digest(a)
    exp4 = os.path.join(d, "more4.toml")
    open(exp4, "w").write(TINY_TOML.replace("seed = [1, 2]", "seed = [5]"))
    expect(["run", exp4, "-o", a], 1, a, "read-only")
    expect(["run", exp4, "-o", alias], 1, "read-only")
    assert digest(a) == before and stat.S_IMODE(os.stat(a).st_mode) == 0o444
    assert not os.path.exists(lock)
    # .npy outputs alike: through a link, read-only refused, mode kept.
    x = os.path.join(d, "x.npy")
    np.save(x, np.linspace(-3, 3, 64, dtype=np.float32))
    target = os.path.join(d, "t.npy")
    np.save(target, np.zeros(1, np.uint8))
    os.chmod(target, 0o600)
    link = os.path.join(d, "link.npy")
    os.symlink("t.npy", link)
    run("convert", x, link, "--to", "e4m3", rc=0)
    assert os.path.islink(link) and np.load(target).shape == (64,)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    os.chmod(target, 0o400)
    before = digest(target)
    expect(["convert", x, link, "--to", "e5m2"], 1, "read-only")
    assert digest(target) == before and stat.S_IMODE(os.stat(target).st_mode) == 0o400
    # A dangling link gets its target created; a directory as output is refused.
    dangling = os.path.join(d, "dangling.npy")
    os.symlink("new.npy", dangling)
    run("convert", x, dangling, "--to", "e4m3", rc=0)
    assert os.path.islink(dangling) and np.load(os.path.join(d, "new.npy")).shape == (64,)
    expect(["convert", x, d, "--to", "e4m3"], 1, "is a directory")


# ---- 4. damaged run groups -------------------------------------------------------------------------------
def damaged_runs():
    d = tmpdir()
    exp, a = make_store(d)
    with h5py.File(a, "r+") as f:
        f["runs"].create_group("deadbeefdeadbeef")  # an empty group without attributes
        good = sorted(f["runs"])[0]
        del f["runs"][good].attrs["label"]
    p = run("ls", a, rc=0)
    assert "deadbeefdeadbeef" in p.stdout and "DAMAGED" in p.stdout and "missing attribute 'label'" in p.stdout
    assert "1 run in" in p.stdout, p.stdout
    j = json.loads(run("ls", a, "--json", rc=0).stdout)
    assert len(j["runs"]) == 1 and {x["hash"] for x in j["damaged"]} == {"deadbeefdeadbeef", good}, j
    csv = os.path.join(d, "csv")
    p = run("export", a, "--csv", csv, "--json", rc=0)
    assert json.loads(p.stdout)["runs"] == 1 and "skipped 2 damaged" in p.stderr
    p = run("report", a, "--json", rc=0)
    assert "damaged" in p.stderr
    expect(["show", a, "deadbeef"], 1, "damaged")
    # run --resume does not add to a damaged store; the file is untouched.
    before = digest(a)
    exp2 = os.path.join(d, "more.toml")
    open(exp2, "w").write(TINY_TOML.replace("seed = [1, 2]", "seed = [1, 2, 3]"))
    expect(["run", exp2, "-o", a, "--resume"], 1, "damaged", "fsck")
    assert digest(a) == before and not os.path.exists(a + ".lock")
    # fsck reports (exit 1), --drop removes them (exit 0), then the store is clean and extensible.
    p = run("fsck", a, rc=1)
    assert "deadbeefdeadbeef" in p.stdout and good in p.stdout
    j = json.loads(run("fsck", a, "--json", rc=1).stdout)
    assert j["complete"] == 1 and len(j["damaged"]) == 2
    os.chmod(a, 0o640)
    run("fsck", a, "--drop", rc=0)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o640
    run("fsck", a, rc=0)
    run("run", exp2, "-o", a, "--resume", rc=0)
    assert len(h5py.File(a, "r")["runs"]) == 3


# ---- 5. locks of outputs that are not files; failed runs ---------------------------------------------------
def locks():
    d = tmpdir()
    exp = os.path.join(d, "tiny.toml")
    open(exp, "w").write(TINY_TOML)
    expect(["run", exp, "-o", "/dev/null"], 1, "/dev/null", "not a regular file")
    assert not os.path.exists("/dev/null.lock")
    # A failed run leaves no lock: the store already holds the runs, no --resume.
    _, a = make_store(d)
    expect(["run", exp, "-o", a], 1, "already holds")
    assert not os.path.exists(a + ".lock"), os.listdir(d)
    # An empty output name: a usage error, nothing created.
    p = expect(["run", exp, "-o", ""], 2, "-o")
    assert "filesystem" not in p.stderr
    assert not os.path.exists(os.path.join(d, ".lock"))
    for args in (["convert", exp, "", "--to", "e4m3"], ["quantize", exp, ""], ["transpose-study", "-o", ""],
                 ["train", "-o", ""], ["export", exp, "--csv", ""]):
        expect(args, 2, cwd=d)
    assert not os.path.exists(os.path.join(d, ".lock")), os.listdir(d)


# ---- 6. bf16 and float8 tensors everywhere ---------------------------------------------------------------
def bf16_inputs():
    d = tmpdir()
    rng = np.random.default_rng(7)
    x32 = (rng.standard_normal((256, 256)) * 4).astype(ml_dtypes.bfloat16).astype(np.float32)  # bf16-exact
    xb = os.path.join(d, "xb.npy")
    np.save(xb, x32.astype(ml_dtypes.bfloat16))
    assert b"'<V2'" in open(xb, "rb").read(128)
    xf = os.path.join(d, "xf.npy")
    np.save(xf, x32)
    xu = os.path.join(d, "xu.npy")
    np.save(xu, x32.astype(ml_dtypes.bfloat16).view(np.uint16))
    # convert: ml_dtypes bf16, with and without --from bf16, equals the float32 of the same values
    for args in ([xb], [xb, "--from", "bf16"], [xu, "--from", "bf16"]):
        o = os.path.join(d, "c.npy")
        run("convert", args[0], o, "--to", "e4m3", *args[1:], rc=0)
        run("convert", xf, os.path.join(d, "cf.npy"), "--to", "e4m3", rc=0)
        assert np.array_equal(np.load(o), np.load(os.path.join(d, "cf.npy")))
    expect(["convert", xu, os.path.join(d, "c.npy"), "--to", "e4m3"], 1, xu, "--from")
    # quantize: bf16 file, uint16 + --from bf16 -> the same codes and scales as float32
    run("quantize", xf, os.path.join(d, "qf"), "--granularity", "1x128", rc=0)
    for name, args in (("qb", [xb]), ("qu", [xu, "--from", "bf16"])):
        run("quantize", *args[:1], os.path.join(d, name), "--granularity", "1x128", *args[1:], rc=0)
        for part in ("codes", "scale_inv"):
            assert np.array_equal(np.load(os.path.join(d, f"{name}.{part}.npy")),
                                  np.load(os.path.join(d, f"qf.{part}.npy"))), (name, part)
        meta = json.load(open(os.path.join(d, f"{name}.meta.json")))
        assert meta["input_dtype"] == "bfloat16", meta
    expect(["quantize", xu, os.path.join(d, "qx")], 1, xu, "--from")
    # ml_dtypes float8 arrays ('<V1', and '<f1' for e5m2): decoded with the format given
    codes = (rng.standard_normal((32, 128))).astype(ml_dtypes.float8_e4m3fn)
    x8 = os.path.join(d, "x8.npy")
    np.save(x8, codes)
    o = os.path.join(d, "dec.npy")
    run("convert", x8, o, "--decode", "e4m3", rc=0)
    assert np.array_equal(np.load(o), codes.astype(np.float32))
    expect(["convert", x8, o, "--to", "e5m2"], 1, x8, "ml_dtypes float8", "--from")
    e5 = os.path.join(d, "e5.npy")
    e5codes = codes.astype(np.float32).astype(ml_dtypes.float8_e5m2)
    np.save(e5, e5codes)  # descr '<f1', which numpy itself cannot load back
    run("convert", e5, o, "--decode", "e5m2", rc=0)
    assert np.array_equal(np.load(o), e5codes.astype(np.float32))
    run("quantize", x8, os.path.join(d, "q8"), "--from", "e4m3", rc=0)
    # gemm takes float8 operands as uint8 codes
    b8 = os.path.join(d, "b8.npy")
    np.save(b8, rng.standard_normal((16, 128)).astype(ml_dtypes.float8_e4m3fn))
    run("gemm", x8, b8, os.path.join(d, "g8.npy"), rc=0)
    np.save(os.path.join(d, "a8u.npy"), codes.view(np.uint8))
    np.save(os.path.join(d, "b8u.npy"), np.load(b8).view(np.uint8))
    run("gemm", os.path.join(d, "a8u.npy"), os.path.join(d, "b8u.npy"), os.path.join(d, "gu.npy"), rc=0)
    assert np.array_equal(np.load(os.path.join(d, "g8.npy")), np.load(os.path.join(d, "gu.npy")))
    # transpose-study and transpose on bf16 inputs
    run("transpose-study", "--dist", f"file:{xb}", "--json", rc=0)
    run("transpose", os.path.join(d, "qb"), os.path.join(d, "qbt"), "--method", "exact", rc=0)
    # moe --inputs in bf16 equals the same values in float32
    tiny = dict(tokens=48, hidden=256, ffn=128, experts=4, topk=2)
    T, H, F, E = tiny["tokens"], tiny["hidden"], tiny["ffn"], tiny["experts"]
    shapes = dict(x=(T, H), wr=(E, H), w1=(E, 2 * F, H), w2=(E, H, F), dy=(T, H))
    for kind in ("f32", "bf16"):
        os.makedirs(os.path.join(d, kind))
    for n, s in shapes.items():
        v = (rng.standard_normal(s) * 0.05).astype(ml_dtypes.bfloat16)
        np.save(os.path.join(d, "bf16", n + ".npy"), v)
        np.save(os.path.join(d, "f32", n + ".npy"), v.astype(np.float32))
    outs = [json.loads(run("moe", "--preset", "tiny", "--dataflow", "fp8_flow", "--inputs", os.path.join(d, k), "--json",
                           rc=0).stdout)["dataflows"][0]["tensors"] for k in ("f32", "bf16")]
    assert outs[0] == outs[1]


# ---- 7. exit codes, quiet, --json, progress ---------------------------------------------------------------
def exit_codes():
    d = tmpdir()
    x = os.path.join(d, "x.npy")
    np.save(x, np.random.default_rng(2).standard_normal((128, 256)).astype(np.float32))
    q = os.path.join(d, "q")
    run("quantize", x, q, rc=0)
    exp, store = make_store(d)
    missing = os.path.join(d, "missing.npy")
    cases = [  # (args, exit code, text stderr must hold)
        (["formats", "--bogus"], 2, "--bogus"),
        (["inspect", "e9m9", "1.0"], 2, "e9m9"),
        (["inspect", "e4m3", "pizza"], 2, "pizza"),
        (["inspect", "e4m3", "0x1ff"], 2, "0x1FF"),
        (["inspect", "e4m3", "--code", "12x"], 2, "12x"),
        (["convert", x, "o.npy", "--to", "e9m9"], 2, "e9m9"),
        (["convert", missing, "o.npy", "--to", "e4m3"], 1, missing),
        (["convert", x, "o.npy", "--to", "e4m3", "--seed", "-1"], 2, "-1"),
        (["quantize", x, q, "--scale", "bogus"], 2, "bogus"),
        (["quantize", x, q, "--granularity", "7"], 2, "--granularity"),
        (["quantize", x, q, "--format", "e9m9"], 2, "e9m9"),
        (["quantize", x, q, "--overflow", "wrap"], 2, "wrap"),
        (["quantize", x, q, "--scale", "deepgemm", "--eps", "1"], 2, "--eps"),
        (["quantize", missing, q], 1, missing),
        (["dequantize", os.path.join(d, "nope"), "o.npy"], 1, "nope"),
        (["transpose", q, "qt", "--method", "bogus"], 2, "bogus"),
        (["transpose", q, "qt", "--method", "naive", "--round", "stochastic"], 2, "--round"),
        (["transpose", q, "qt", "--method", "exact", "--round", "up"], 2, "up"),
        (["transpose", os.path.join(d, "nope"), "qt", "--method", "exact"], 1, "nope"),
        (["transpose-study", "--dist", "bogus"], 2, "bogus"),
        (["transpose-study", "--shape", "10"], 2, "--shape"),
        (["transpose-study", "--shape", "0,10"], 2, "--shape"),
        (["transpose-study", "--seed", "-1"], 2, "--seed"),
        (["transpose-study", "--dist", f"file:{missing}"], 1, missing),
        (["gemm", q + ".codes.npy", q + ".codes.npy", "g.npy", "--accum", "bogus"], 2, "bogus"),
        (["gemm", q + ".codes.npy", q + ".codes.npy", "g.npy", "--granularity-a", "1x128"], 2, "--scale-a"),
        (["gemm", missing, q + ".codes.npy", "g.npy"], 1, missing),
        (["gemm-probes", "--check", d, "--accum", "bogus"], 2, "bogus"),
        (["gemm-probes"], 2, "--gpu"),
        (["dataflows", "--toml", "bogus"], 2, "bogus"),
        (["dataflows", "--file", os.path.join(d, "nope.toml")], 1, "nope.toml"),
        (["moe", "--preset", "bogus"], 2, "bogus"),
        (["moe", "--dataflow", "bogus"], 2, "bogus"),
        (["moe", "--accum", "bogus"], 2, "bogus"),
        (["moe", "--tokens", "-5"], 2, "--tokens"),
        (["validate", "--op", "bogus"], 2, "bogus"),
        (["validate"], 2, "--gpu"),
        (["train", "--preset", "bogus"], 2, "bogus"),
        (["train", "--dataflow", "bogus"], 2, "bogus"),
        (["train", "--steps", "0"], 2, "--steps"),
        (["train", "--corpus", missing], 1, missing),
        (["run", os.path.join(d, "nope.toml"), "-o", "x.h5"], 1, "nope.toml"),
        (["run", exp], 2, "--out"),
        (["check", os.path.join(d, "nope.toml")], 1, "nope.toml"),
        (["check", d], 1, "is a directory"),
        (["check", "quantize", x, "--codes", q + ".codes.npy", "--scales", q + ".scale_inv.npy", "--scale", "bogus"], 2,
         "bogus"),
        (["check", "transpose", q + ".codes.npy", q + ".scale_inv.npy", "--codes", q + ".codes.npy", "--scales",
          q + ".scale_inv.npy", "--method", "bogus"], 2, "bogus"),
        (["check", "quantize", missing, "--codes", q + ".codes.npy", "--scales", q + ".scale_inv.npy"], 1, missing),
        (["ls", os.path.join(d, "nope.h5")], 1, "nope.h5"),
        (["ls", x], 1, x),
        (["show", store, "zzzz"], 1, "zzzz"),
        (["export", os.path.join(d, "nope.h5"), "--csv", d], 1, "nope.h5"),
        (["fsck", os.path.join(d, "nope.h5")], 1, "nope.h5"),
        (["report", os.path.join(d, "nope.h5"), "--json"], 1, "nope.h5"),
        (["quickstart", "--experiment", os.path.join(d, "nope.toml")], 1, "nope.toml"),
        (["bogus-command"], 2, "bogus-command"),
    ]
    failures = []
    for args, code, needle in cases:
        try:
            expect(args, code, needle, cwd=d)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)
    # Large integers in TOML: an integer, out of its range, said so with the range.
    big = os.path.join(d, "steps.toml")
    open(big, "w").write('[experiment]\nname = "s"\nkind = "train"\n[params]\nsteps = 100000000\n')
    expect(["check", big], 1, f"{big}:5:", "steps = 100000000", "out of range", "0..16777216")
    huge = os.path.join(d, "huge.toml")
    open(huge, "w").write('[experiment]\nname = "s"\nkind = "train"\n[params]\nsteps = 99999999999999999999\n')
    expect(["check", huge], 1, huge)


def quiet_and_json():
    d = tmpdir()
    x = os.path.join(d, "x.npy")
    np.save(x, np.random.default_rng(3).standard_normal((128, 256)).astype(np.float32))
    for args in (["quantize", x, os.path.join(d, "q")], ["transpose-study", "--shape", "128,256"],
                 ["moe", "--preset", "tiny", "--dataflow", "bf16"]):
        p = run("-q", *args, rc=0)
        assert p.stdout == "", (args, p.stdout)
        assert run(*args, rc=0).stdout != ""
    exp, store = make_store(d)
    for args in (["ls", store, "--json"], ["check", exp, "--json"], ["export", store, "--csv", os.path.join(d, "c"), "--json"],
                 ["fsck", store, "--json"]):
        json.loads(run(*args, rc=0).stdout)
    exp2 = os.path.join(d, "more.toml")
    open(exp2, "w").write(TINY_TOML.replace("seed = [1, 2]", "seed = [1, 2, 9]"))
    j = json.loads(run("run", exp2, "-o", store, "--resume", "--json", rc=0).stdout)
    assert j["written"] == 1 and j["already_complete"] == 2, j


def progress():
    """transpose-study draws a bar on a terminal (its steps), never into a pipe."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(BIN, [BIN, "transpose-study", "--shape", "512,1024"])
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out[-2000:]
    assert b"steps" in out and b"\r" in out, out[:500]
    assert b"steps" not in subprocess.run([BIN, "transpose-study", "--shape", "512,1024"], capture_output=True).stdout


# ---- 8. all-or-nothing outputs, validation before writing, dataflow files -----------------------------------
def all_or_nothing():
    d = tmpdir()
    x = os.path.join(d, "x.npy")
    np.save(x, np.random.default_rng(4).standard_normal((128, 256)).astype(np.float32))
    q = os.path.join(d, "q")
    run("quantize", x, q, rc=0)
    files = [q + s for s in (".codes.npy", ".scale_inv.npy", ".meta.json")]
    before = [digest(f) for f in files]
    # The last of the three cannot be written: nothing changes (it used to leave new codes + old metadata).
    os.chmod(files[2], 0o444)
    expect(["quantize", x, q, "--scale", "te_fp32"], 1, files[2], "read-only")
    assert [digest(f) for f in files] == before
    os.chmod(files[2], 0o644)
    os.remove(files[1])
    os.mkdir(files[1])
    expect(["quantize", x, q, "--scale", "te_fp32"], 1, files[1], "directory")
    assert digest(files[0]) == before[0] and digest(files[2]) == before[2]
    assert not [f for f in os.listdir(d) if ".partial" in f or ".previous" in f], os.listdir(d)
    # quickstart validates its experiment before writing anything
    bad = os.path.join(d, "bad.toml")
    open(bad, "w").write('[experiment]\nname = "b"\nkind = "transpose_study"\n[params]\nshape = [1, 2, 3]\n')
    outdir = os.path.join(d, "qs")
    expect(["quickstart", "--experiment", bad, "--out", outdir, "-o", os.path.join(d, "qs.h5")], 1, f"{bad}:5:", "shape")
    assert not os.path.exists(outdir) and not os.path.exists(os.path.join(d, "qs.h5"))
    # dataflow files: truncated ones are refused, errors carry file:line
    full = run("dataflows", "--toml", "fp8_flow", rc=0).stdout
    lines = full.splitlines()
    cut = os.path.join(d, "cut.toml")
    open(cut, "w").write("\n".join(lines[: len(lines) // 2]) + "\n")
    expect(["moe", "--preset", "tiny", "--dataflow", cut], 1, f"{cut}:", "is the file complete")
    expect(["dataflows", "--file", cut], 1, f"{cut}:")
    whole = os.path.join(d, "whole.toml")
    open(whole, "w").write(full.replace('name = "fp8_flow"', 'name = "mine"'))
    run("dataflows", "--file", whole, rc=0)
    # an unknown op on a known line
    text = full.replace('name = "fp8_flow"', 'name = "mine"')
    at = text.index('op = "', text.index("[[step]]", text.index("[[step]]") + 1))
    line = text[:at].count("\n") + 1
    bad_op = os.path.join(d, "badop.toml")
    open(bad_op, "w").write(text[:at] + 'op = "frobnicate"' + text[text.index("\n", at):])
    expect(["dataflows", "--file", bad_op], 1, f"{bad_op}:{line}:", "frobnicate")
    typo = os.path.join(d, "typo.toml")
    open(typo, "w").write(text.replace("prec =", "precision =", 1))
    expect(["dataflows", "--file", typo], 1, typo, "unknown key 'precision'")
    syntax = os.path.join(d, "syntax.toml")
    open(syntax, "w").write('name = "x"\n[[step]]\nop = "gemm\n')
    expect(["dataflows", "--file", syntax], 1, f"{syntax}:3:")


def sanitized_fuzz_regressions():
    """The regression inputs of crashes the fuzzers found (tests/fuzz/regressions) exist for each target."""
    for t in ("npy", "experiment", "dataflow", "quant_meta", "store"):
        assert os.path.isdir(os.path.join(SRC, "tests", "fuzz", "regressions", t)), t
        assert os.listdir(os.path.join(SRC, "tests", "fuzz", "corpus", t)), t


if __name__ == "__main__":
    run_groups({"threads": threads, "memory": memory, "store_links": store_links, "damaged_runs": damaged_runs,
                "locks": locks, "bf16_inputs": bf16_inputs, "exit_codes": exit_codes, "quiet_and_json": quiet_and_json,
                "progress": progress, "all_or_nothing": all_or_nothing, "fuzz_corpus": sanitized_fuzz_regressions})
